"""`python -m fastnn demo` end to end: bundled digits to >= 0.97 test accuracy."""
import os
import re
import subprocess
import sys
import types


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, timeout=120, **env):
    return subprocess.run([sys.executable, "-m", "fastnn", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **env})


def test_demo_reaches_097_and_reports_throughput():
    proc = run("demo", FASTNN_PROGRESS="0")
    assert proc.returncode == 0, proc.stderr
    acc = re.search(r"test accuracy:\s*([0-9.]+)", proc.stdout)
    assert acc, proc.stdout
    assert float(acc.group(1)) >= 0.97, proc.stdout
    assert re.search(r"train time:\s*[0-9.]+ s \([0-9,]+ samples/s\)", proc.stdout)


def test_demo_progress_bar_and_epochs_flag():
    proc = run("demo", "--epochs", "1", FASTNN_PROGRESS="1")
    assert proc.returncode == 0, proc.stderr
    assert "1 epochs" in proc.stdout
    assert "epoch 1/1" in proc.stderr          # the bar goes to stderr
    assert re.search(r"test accuracy:\s*0\.[0-9]+", proc.stdout)


def test_demo_rejects_bad_epochs():
    proc = run("demo", "--epochs", "0")
    assert proc.returncode != 0 and "--epochs" in proc.stderr


def test_demo_main_dispatches_distributed(monkeypatch):
    from fastnn.apps import demo
    calls = []
    monkeypatch.setattr(demo, "run_distributed", lambda args: calls.append(args) or 0)
    args = types.SimpleNamespace(epochs=None, distributed=True)
    assert demo.main(args) == 0 and calls == [args]


def test_train_function_in_process():
    from fastnn.apps import demo
    _, _, history, results = demo.train(epochs=2, progress=False, verbose=False)
    assert len(history.history["loss"]) == 2 and "val_accuracy" in history.history
    assert 0.5 < results["test_accuracy"] <= 1.0 and results["train_samples_per_s"] > 0
