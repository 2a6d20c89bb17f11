"""The benchmark harness behind ``python -m fastnn bench``: fastnn against a
careful pure-NumPy implementation and its peers (PyTorch eager and
fused-optimizer, a ``jax.jit`` whole step, ONNX Runtime for inference), the
same models from the same weights and batches, in one run.

Each (implementation, thread count) runs in its own fresh Python process
whose thread count is fixed through the environment before anything is
imported; the processes take turns (A B C ... A B C ..., the order rotated
every round, a pause between turns), so slow machine drift hits every
implementation alike, and the table reports medians. Inference is also
measured in a new process per run, as a serving process meets it.

    configs     what is measured: configurations, targets, budgets, the same start
    cli         the command line, the run, the JSON
    runner      the parent's run: workers taking turns, then the summary
    procs       starting worker processes, their environment, the turn order
    worker      a worker process (run by path), impls: which builder for which column
    timing      warm-up, calibration, timed repeats inside a worker
    impl_*      one implementation each: fastnn, numpy, torch, jax, onnxruntime, gemm
    sequence    the sequence LMs' rows: fastnn.apps' models against PyTorch's
    fresh       fresh-process inference rows (both sides)
    summary     medians, ratios, same-start checks, target verdicts
    report      the table and the plot;  machine: the machine record
"""
from .cli import add_arguments, main
from .configs import CONFIG_BY_NAME, CONFIGS, TARGETS
from .machine import machine_info
from .report import format_table, plot
from .runner import run_all

__all__ = ["main", "add_arguments", "run_all", "CONFIGS", "CONFIG_BY_NAME", "TARGETS",
           "machine_info", "format_table", "plot"]
