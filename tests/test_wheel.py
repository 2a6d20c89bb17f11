"""The release artifacts: ``python -m build`` makes an sdist holding the sources
and no build products, builds the wheel from that sdist (so the sdist is known to
build with only a C compiler and the declared build requirements), and the wheel,
installed into a fresh virtual environment, imports and trains from a folder that
is not the repository.

Slow by nature (a from-scratch compile and three package installs: about two
minutes on two cores), and run by default because nothing else checks the
packaging. FASTNN_SKIP_WHEEL_TEST=1 skips it for quick local runs (never in CI).
The packages come from pip's configured index (numpy, scipy, threadpoolctl for
the wheel; setuptools, Cython, numpy, scipy for the isolated builds; build).
"""
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(
    os.environ.get("FASTNN_SKIP_WHEEL_TEST") == "1" and os.environ.get("FASTNN_REQUIRE_OPTIONAL") != "1",
    reason="FASTNN_SKIP_WHEEL_TEST=1 (the wheel build takes about two minutes)")

# Build products and local state that a copy of the tree must not carry along.
TREE_IGNORE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
    ".benchmarks", "*.so", "*.pyd", "*.o", "*.npz", "_ops.c", "_ops.html")

SMOKE = r"""
import os, sys
import numpy as np
import fastnn as fn
here = os.path.dirname(os.path.abspath(fn.__file__))
assert "site-packages" in here, here
info = fn.info()
print("OPENMP", info["openmp"])
fn.seed(0)
X = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
model = fn.Sequential(fn.Linear(4, 16), fn.ReLU(), fn.Linear(16, 2))
trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=1e-2))
hist = trainer.fit(X, y, epochs=30, batch_size=16, progress=False, seed=0)
acc = trainer.evaluate(X, y)["accuracy"]
assert hist.history["loss"][-1] < hist.history["loss"][0] and acc > 0.9, (hist.history, acc)
X_digits, _ = fn.datasets.load_digits()  # package data made it into the wheel
assert X_digits.shape[0] > 1000
print("SMOKE OK", acc)
"""


def _run(cmd, cwd, env, timeout=900):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                    f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}", pytrace=False)
    return proc.stdout, time.perf_counter() - t0


def _clean_env():
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSAFEPATH",
                "FASTNN_NATIVE"):  # wheels are never -march=native builds
        env.pop(var, None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _venv_python(venv):
    sub = ("Scripts", "python.exe") if sys.platform == "win32" else ("bin", "python")
    return os.path.join(venv, *sub)


@pytest.mark.slow
def test_sdist_and_wheel_build_install_and_run(tmp_path):
    env = _clean_env()
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=TREE_IGNORE)  # the repository is never written to
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)  # no system site-packages
    py = _venv_python(venv)
    _run([py, "-m", "pip", "install", "-q", "build"], tmp_path, env)

    dist = tmp_path / "dist"
    out, build_s = _run([py, "-m", "build", "--outdir", str(dist), str(src)], tmp_path, env)
    (sdist,) = dist.glob("fastnn-*.tar.gz")
    (wheel,) = dist.glob("fastnn-*.whl")

    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for need in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in", "csrc/kernels.c",
                 "csrc/fnn.h", "csrc/fnn_decl.h", "csrc/fnn_template.h",
                 "fastnn/_kernels/_ops.pyx", "fastnn/_kernels/_fnn.pxd.tp", "fastnn/_kernels/_ops.pyi",
                 "fastnn/datasets/digits.csv.gz", "fastnn/py.typed", "fastnn/__init__.py",
                 "tests/conftest.py", "tests/test_wheel.py"):
        assert need in names, f"sdist lacks {need}"
    built = [n for n in names if n.endswith((".so", ".pyd", ".o", ".pyc"))
             or n == "fastnn/_kernels/_ops.c" or n.startswith(("build/", "dist/"))]
    assert not built, f"sdist carries build products {built}"

    with zipfile.ZipFile(wheel) as whl:
        files = set(whl.namelist())
    assert any(f.startswith("fastnn/_kernels/_ops.") and f.endswith((".so", ".pyd")) for f in files)
    for need in ("fastnn/_kernels/_ops.pyi", "fastnn/datasets/digits.csv.gz", "fastnn/py.typed",
                 "fastnn/onnx_export.py"):
        assert need in files, f"wheel lacks {need}"
    assert not [f for f in files if f.startswith(("csrc/", "tests/")) or f.endswith((".c", ".pyx"))]

    _run([py, "-m", "pip", "install", "-q", str(wheel)], tmp_path, env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out, _ = _run([py, "-c", SMOKE], elsewhere, env)
    assert "SMOKE OK" in out
    from fastnn._kernels import _ops  # the wheel probes the same compiler as the tested build
    assert f"OPENMP {_ops.openmp_enabled()}" in out
    print(f"\nsdist {sdist.stat().st_size / 1024:.0f} KiB, wheel {wheel.stat().st_size / 1024:.0f} KiB, "
          f"python -m build {build_s:.0f} s")
