#!/usr/bin/env python
"""The sequence LMs' rows of ``fastnn bench``: training tokens/s of GRU, LSTM,
transformer and causal Conv1d language models, fastnn against PyTorch (see
fastnn/bench/sequence.py and benchmarks/README.md). The same as
``python -m fastnn bench --only "gru lm,lstm lm,transformer lm,conv lm"``.

    python benchmarks/sequence.py [--threads N] [--json out.json] [--quick] [--plot out.png]
"""
import sys

from fastnn.bench import main
from fastnn.bench.configs import SEQ_CONFIGS

if __name__ == "__main__":
    sys.exit(main(["--only", ",".join(c["name"] for c in SEQ_CONFIGS), *sys.argv[1:]]))
