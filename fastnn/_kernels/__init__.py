"""The compiled floor: C kernels behind one Cython module, ``_ops``.

A source checkout has no ``_ops`` until it is built; importing fastnn from the
repository root then finds the unbuilt tree before the installed package
(Python puts the current folder first on ``sys.path``). Say so, and how to fix
it, instead of a bare ImportError."""
import os

try:
    from . import _ops  # noqa: F401
except ImportError as exc:
    _here = os.path.dirname(os.path.abspath(__file__))
    _root = os.path.dirname(os.path.dirname(_here))
    _checkout = os.path.exists(os.path.join(_root, "setup.py"))
    if any(f.startswith("_ops.") and f.endswith((".so", ".pyd")) for f in os.listdir(_here)):
        raise ImportError(f"fastnn's compiled core in {_here} failed to load ({exc}); rebuild "
                          "it: `pip install -e . --no-build-isolation` or `python setup.py "
                          "build_ext --inplace`") from exc
    raise ImportError(
        f"fastnn's compiled core (fastnn._kernels._ops) is not built in {_here}."
        + (f" Python imported the source checkout at {_root} (the current folder comes "
           "first on sys.path), not an installed fastnn. Either use the installed command "
           "`fastnn demo` / run Python from another folder, or build the checkout in "
           "place: `pip install -e . --no-build-isolation` (or "
           "`python setup.py build_ext --inplace`)." if _checkout else
           " Reinstall fastnn: `pip install --force-reinstall fastnn`.")) from exc
