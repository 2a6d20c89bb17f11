"""The benchmark harness: workers run and answer well-formed JSON, and every
implementation (fastnn, the NumPy reference, PyTorch) computes the same loss
before and after one update from the same weights and batch -- which checks
that the harness compares like with like. No timings are asserted."""
import json
import math
import subprocess
import sys

import pytest

from fastnn import bench

HAVE_TORCH = bench.torch_available()

MLP = {"name": "t mlp", "mode": "train", "sizes": [20, 16, 8, 5], "act": "relu", "loss": "ce",
       "opt": "adam", "lr": 1e-2, "batch": 8, "unit": "samples"}
BCE = {"name": "t bce", "mode": "train", "sizes": [6, 10, 10, 1], "act": "relu", "loss": "bce",
       "opt": "sgd", "lr": 0.1, "momentum": 0.9, "batch": 8, "unit": "samples"}
LM = {"name": "t lm", "mode": "train", "embed": {"vocab": 11, "dim": 3, "context": 4},
      "sizes": [12, 16, 11], "act": "tanh", "loss": "ce", "opt": "adam", "lr": 1e-2, "batch": 8,
      "unit": "tokens"}
INFER = {"name": "t infer", "mode": "infer", "sizes": [20, 16, 5], "act": "relu", "batch": 1,
         "unit": "samples"}
CONFIGS = [MLP, BCE, LM, INFER]
TRAIN = [MLP, BCE, LM]
IMPLS = ["numpy", "fastnn", "gemm", "torch", "torch_fused"]
BUDGET = {"rounds": 1, "repeats": 2, "repeat_s": 0.003, "warmup_s": 0.0, "warmup_steps": 2,
          "rewarm_s": 0.0, "settle_s": 0.0, "cap_s": 1.0}
N_LOSSES = 3


def _need(impl):
    if impl.startswith("torch") and not HAVE_TORCH:
        pytest.skip("torch is not installed")


@pytest.fixture(scope="module")
def served():
    """Every implementation in its own persistent worker (1 thread), one turn
    per configuration; {(impl, config name): reply}."""
    impls = [i for i in IMPLS if HAVE_TORCH or not i.startswith("torch")]
    workers = {impl: bench._Worker(impl, 1) for impl in impls}
    replies = {}
    try:
        for impl, w in workers.items():
            info = w.wait_ready(timeout=120)
            assert info.get("ready"), info
        for cfg in CONFIGS:
            for impl, w in workers.items():
                replies[impl, cfg["name"]] = w.request(
                    {"config": cfg, "budget": BUDGET, "losses": N_LOSSES}, timeout=120)
    finally:
        bench.close_all(workers.values())
    return replies


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c["name"])
@pytest.mark.parametrize("impl", IMPLS)
def test_worker_reply_is_well_formed(served, impl, cfg):
    _need(impl)
    reply = served[impl, cfg["name"]]
    if impl == "torch_fused" and cfg["mode"] == "infer":
        assert "skipped" in reply and not reply["ok"]
        return
    assert reply["ok"], reply.get("error")
    assert isinstance(reply["rate"], float) and math.isfinite(reply["rate"]) and reply["rate"] > 0
    assert isinstance(reply["steps"], int) and reply["steps"] >= 3
    json.dumps(reply)  # round-trips
    if cfg["mode"] == "train" and impl != "gemm":
        assert len(reply["losses"]) == N_LOSSES
        assert all(math.isfinite(v) for v in reply["losses"])
    else:
        assert reply["losses"] is None


@pytest.mark.parametrize("cfg", TRAIN, ids=lambda c: c["name"])
@pytest.mark.parametrize("impl", ["fastnn", "torch", "torch_fused"])
def test_same_losses_from_same_start(served, impl, cfg):
    """Loss before the first update, after one and after two: same weights, data
    and hyperparameters everywhere, so equal to float32 rounding."""
    _need(impl)
    ref = served["numpy", cfg["name"]]["losses"]
    got = served[impl, cfg["name"]]["losses"]
    assert ref[1] != ref[0]  # the update did something
    assert got == pytest.approx(ref, rel=2e-5, abs=1e-6)


def test_same_start_is_deterministic():
    a, b = bench.make_params(MLP), bench.make_params(MLP)
    assert [p.shape for p in a] == [(16, 20), (16,), (8, 16), (8,), (5, 8), (5,)]
    assert all((x == y).all() and x.dtype == "float32" for x, y in zip(a, b))
    (x, y), = bench.make_data(BCE)[:1]
    assert x.shape == (8, 6) and y.shape == (8, 1) and set(y.ravel()) <= {0.0, 1.0}
    (x, y), = bench.make_data(LM)[:1]
    assert x.dtype == "int64" and x.shape == (8, 4) and 0 <= x.min() and x.max() < 11
    assert bench.make_params(LM)[0].shape == (11, 3)


@pytest.mark.parametrize("impl", ["numpy", "fastnn"])
def test_one_shot_worker(impl):
    res = bench.launch({"config": MLP, "impl": impl, "threads": 1, "losses": 2, **BUDGET},
                       timeout=120)
    assert res["ok"], res.get("error")
    assert len(res["rates"]) == BUDGET["repeats"] and res["median"] > 0
    assert len(res["losses"]) == 2 and res["threads"] == 1


def test_one_shot_worker_via_module():
    spec = {"config": INFER, "impl": "gemm", "threads": 1, **BUDGET}
    proc = subprocess.run([sys.executable, "-m", "fastnn.bench", "--worker", json.dumps(spec)],
                          capture_output=True, text=True, timeout=120)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and res["ok"], proc.stderr


def test_worker_reports_errors_as_json():
    res = bench.run_worker({"config": MLP, "impl": "nonsense", "threads": 1})
    assert not res["ok"] and "unknown implementation" in res["error"]


def _fake_summary():
    rates = {"fastnn": 300.0, "numpy": 100.0, "torch": 200.0, "torch_fused": 250.0, "gemm": 310.0}
    samples = {}
    for threads, scale in ((1, 1.0), (2, 1.9)):
        for name in ("mlp b16", "mlp b256", "infer b1"):
            for impl, r in rates.items():
                samples[name, threads, impl] = [r * scale * f for f in (0.9, 1.0, 1.1)]
    configs = [bench.CONFIG_BY_NAME[n] for n in ("mlp b16", "mlp b256", "infer b1")]
    return bench.summarize(configs, [1, 2], samples, {}, {}, bench.QUICK)


def test_summary_ratios_and_verdicts():
    s = _fake_summary()
    row = next(r for r in s["rows"] if r["config"] == "mlp b16" and r["threads"] == 1)
    assert row["fastnn_over_numpy"] == pytest.approx(3.0)
    assert row["fastnn_over_best_torch"] == pytest.approx(300 / 250)
    assert row["pct_of_gemm_floor"] == pytest.approx(100 * 300 / 310)
    verdict = {(t["config"], t["threads"], t["kind"]): t["met"] for t in s["targets"]}
    assert verdict["mlp b16", 1, "numpy"] is True      # 3.0 >= 2.5
    assert verdict["mlp b16", 1, "torch"] is False     # 1.2 < 1.8
    assert verdict["mlp b256", 1, "floor"] is True     # 97% >= 90%
    assert verdict["mlp b256", 2, "scaling"] is True   # 1.9 >= 1.8
    assert ("mlp b256", 1, "scaling") not in verdict
    assert verdict["infer b1", 1, "numpy_time"] is True  # time ratio 1/3 <= 0.6
    table = bench.format_table(s)
    assert "NOT met" in table and "met (3.00×" in table
    json.dumps(s)


def test_cli_help():
    proc = subprocess.run([sys.executable, "-m", "fastnn", "bench", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for flag in ("--threads", "--json", "--quick"):
        assert flag in proc.stdout


def test_run_all_end_to_end(tmp_path):
    """The parent: persistent workers taking turns, medians, loss check (torch's
    workers are exercised above; leaving them out keeps this test fast)."""
    s = bench.run_all([1], quick=True, configs=[MLP, INFER], log=None, with_torch=False)
    rows = {r["config"]: r for r in s["rows"]}
    assert set(rows) == {"t mlp", "t infer"}
    for r in rows.values():
        assert r["results"]["fastnn"]["n"] == bench.QUICK["rounds"]
        assert r["fastnn_over_numpy"] > 0 and r["pct_of_gemm_floor"] > 0
        assert not r["errors"], r["errors"]
        assert "torch" not in r["results"]
    assert rows["t mlp"]["methods"]["fastnn"] == "Trainer.step(x, y)"
    assert s["loss_check"] and all(c["agree"] for c in s["loss_check"])
    (tmp_path / "out.json").write_text(json.dumps(s))
