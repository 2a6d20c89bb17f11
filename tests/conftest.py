"""Make sure the tests exercise the compiled package.

``python -m pytest`` run from the repository root puts the source tree first on
sys.path; without an in-place build its ``fastnn/`` has no compiled kernels and
would shadow the installed package. Drop the root from sys.path in that case.
"""
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not glob.glob(os.path.join(ROOT, "fastnn", "_kernels", "_ops*.so")) + \
        glob.glob(os.path.join(ROOT, "fastnn", "_kernels", "_ops*.pyd")):
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != ROOT]
