#!/usr/bin/env python
"""Run the benchmarks (the harness is the package fastnn/bench/); the same as
``python -m fastnn bench``.

    python benchmarks/run.py [--threads N] [--json out.json] [--quick] [--only "mlp b16,tiny"]
"""
import sys

from fastnn.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
