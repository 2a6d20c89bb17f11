"""``python -m fastnn.bench [bench options]``, the same as ``python -m fastnn bench``;
``python -m fastnn.bench --serve|--worker|--fresh ...`` runs a worker in this
process (the parent runs worker.py by path instead)."""
import sys

if len(sys.argv) > 1 and sys.argv[1] in ("--serve", "--worker", "--fresh"):
    from .worker import main
else:
    from .cli import main

sys.exit(main(sys.argv[1:]))
