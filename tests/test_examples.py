"""Every script in examples/ runs to completion, quickly, and prints its result."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

EXPECTED = {
    "xor.py": ["MLP accuracy: 1.00", "converged=False", "ConvergenceWarning"],
    "sine_regression.py": ["test MSE"],
    "perceptron.py": ["converged: True", "test accuracy"],
    "digits.py": ["test accuracy", "identical predictions: True", "architecture mismatch"],
}


def test_every_example_is_tested():
    assert sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script, tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, script)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "FASTNN_PROGRESS": "0"})
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    for text in EXPECTED[script]:
        assert text in proc.stdout, f"{script}: {text!r} not in\n{proc.stdout}"
    assert os.listdir(tmp_path) == []            # examples leave no files behind
