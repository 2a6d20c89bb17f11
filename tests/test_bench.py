"""The benchmark harness: workers run and answer well-formed JSON, and every
implementation (fastnn's Trainer.step and layer loop, the NumPy reference,
PyTorch, a jax.jit step, ONNX Runtime) computes the same loss before and after
one update -- or the same inference output -- from the same weights and batch,
which checks that the harness compares like with like. Fresh-process inference
rows, targets, the table and the plot are exercised too. No timings are asserted.

Optional peers (torch, jax+optax, onnx+onnxruntime, matplotlib) are skipped when
missing, except under FASTNN_REQUIRE_OPTIONAL=1 (CI), where that is a failure."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from fastnn import bench
from fastnn.bench import configs, fresh, procs, summary, worker

REQUIRE_OPTIONAL = os.environ.get("FASTNN_REQUIRE_OPTIONAL") == "1"

MLP = {"name": "t mlp", "mode": "train", "sizes": [20, 16, 8, 5], "act": "relu", "loss": "ce",
       "opt": "adam", "lr": 1e-2, "batch": 8, "unit": "samples"}
BCE = {"name": "t bce", "mode": "train", "sizes": [6, 10, 10, 1], "act": "relu", "loss": "bce",
       "opt": "sgd", "lr": 0.1, "momentum": 0.9, "batch": 8, "unit": "samples"}
LM = {"name": "t lm", "mode": "train", "embed": {"vocab": 11, "dim": 3, "context": 4},
      "sizes": [12, 16, 11], "act": "tanh", "loss": "ce", "opt": "adam", "lr": 1e-2, "batch": 8,
      "unit": "tokens"}
INFER = {"name": "t infer", "mode": "infer", "sizes": [20, 16, 5], "act": "relu", "batch": 1,
         "unit": "samples"}
INFER3 = {"name": "t infer3", "mode": "infer", "sizes": [20, 16, 8, 5], "act": "relu",
          "batch": 6, "unit": "samples"}
CONFIGS = [MLP, BCE, LM, INFER, INFER3]
TRAIN = [MLP, BCE, LM]
IMPLS = ["numpy", "fastnn", "fastnn_layers", "gemm", "torch", "torch_fused", "jax", "onnxruntime"]
OPTIONAL = ["torch", "jax", "onnxruntime"]
BUDGET = {"rounds": 1, "repeats": 2, "repeat_s": 0.003, "warmup_s": 0.0, "warmup_steps": 2,
          "rewarm_s": 0.0, "settle_s": 0.0, "cap_s": 1.0}
N_LOSSES = 3


def _missing(what, available):
    if available:
        return
    if REQUIRE_OPTIONAL:
        pytest.fail(f"FASTNN_REQUIRE_OPTIONAL=1 but {what} is not installed: install the extras")
    pytest.skip(f"{what} is not installed")


def _need(impl):
    _missing(" and ".join(configs.OPTIONAL_MODULES.get(impl, ())), procs.impl_available(impl))


def _need_matplotlib():
    _missing("matplotlib", importlib.util.find_spec("matplotlib") is not None)


def _skips(impl, cfg):
    """Whether a worker must answer "skipped" for this pair (and not measure)."""
    return ((impl in ("torch_fused", "fastnn_layers") and cfg["mode"] == "infer")
            or (impl == "onnxruntime" and cfg["mode"] != "infer"))


@pytest.mark.parametrize("impl", OPTIONAL)
def test_optional_peers_installed_when_required(impl):
    """CI installs every peer: there, a missing one fails instead of skipping."""
    _need(impl)


@pytest.fixture(scope="module")
def served():
    """Every implementation in its own persistent worker (1 thread), one turn
    per configuration; {(impl, config name): reply}."""
    impls = [i for i in IMPLS if procs.impl_available(i)]
    workers = {impl: procs.Worker(impl, 1) for impl in impls}
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
        procs.close_all(workers.values())
    return replies


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c["name"])
@pytest.mark.parametrize("impl", IMPLS)
def test_worker_reply_is_well_formed(served, impl, cfg):
    _need(impl)
    reply = served[impl, cfg["name"]]
    if _skips(impl, cfg):
        assert "skipped" in reply and not reply["ok"]
        return
    assert reply["ok"], reply.get("error")
    assert isinstance(reply["rate"], float) and math.isfinite(reply["rate"]) and reply["rate"] > 0
    assert isinstance(reply["steps"], int) and reply["steps"] >= 3
    assert isinstance(reply["cpu_per_wall"], float) and reply["cpu_per_wall"] >= 0
    json.dumps(reply)  # round-trips
    if cfg["mode"] == "train" and impl != "gemm":
        assert len(reply["losses"]) == N_LOSSES
        assert all(math.isfinite(v) for v in reply["losses"])
    else:
        assert reply["losses"] is None
    if cfg["mode"] == "infer" and impl != "gemm":
        out = np.array(reply["outputs"])
        assert out.shape == (min(cfg["batch"], 4), cfg["sizes"][-1]) and np.isfinite(out).all()


@pytest.mark.parametrize("cfg", TRAIN, ids=lambda c: c["name"])
@pytest.mark.parametrize("impl", ["fastnn", "fastnn_layers", "torch", "torch_fused", "jax"])
def test_same_losses_from_same_start(served, impl, cfg):
    """Loss before the first update, after one and after two: same weights, data
    and hyperparameters everywhere, so equal to float32 rounding."""
    _need(impl)
    ref = served["numpy", cfg["name"]]["losses"]
    got = served[impl, cfg["name"]]["losses"]
    assert ref[1] != ref[0]  # the update did something
    assert got == pytest.approx(ref, rel=2e-5, abs=1e-6)


@pytest.mark.parametrize("cfg", [INFER, INFER3], ids=lambda c: c["name"])
@pytest.mark.parametrize("impl", ["fastnn", "torch", "jax", "onnxruntime"])
def test_same_inference_outputs(served, impl, cfg):
    """The same weights give the same logits in every implementation (for ONNX
    Runtime this checks the graph built from them: Gemm transB, biases, Relu)."""
    _need(impl)
    ref = np.array(served["numpy", cfg["name"]]["outputs"])
    got = np.array(served[impl, cfg["name"]]["outputs"])
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_check_outputs_flags_a_mismatch():
    outs = {("c", 1, "numpy"): [[1.0, 2.0]], ("c", 1, "jax"): [[1.0, 2.0 + 1e-7]],
            ("d", 1, "numpy"): [[1.0, 2.0]], ("d", 1, "onnxruntime"): [[1.0, 2.1]]}
    res = {c["config"]: c for c in summary.check_outputs(outs)}
    assert res["c"]["agree"] and not res["d"]["agree"]


def test_same_start_is_deterministic():
    a, b = configs.make_params(MLP), configs.make_params(MLP)
    assert [p.shape for p in a] == [(16, 20), (16,), (8, 16), (8,), (5, 8), (5,)]
    assert all((x == y).all() and x.dtype == "float32" for x, y in zip(a, b))
    (x, y), = configs.make_data(BCE)[:1]
    assert x.shape == (8, 6) and y.shape == (8, 1) and set(y.ravel()) <= {0.0, 1.0}
    (x, y), = configs.make_data(LM)[:1]
    assert x.dtype == "int64" and x.shape == (8, 4) and 0 <= x.min() and x.max() < 11
    assert configs.make_params(LM)[0].shape == (11, 3)


@pytest.mark.parametrize("impl", ["numpy", "fastnn"])
def test_one_shot_worker(impl):
    res = procs.launch({"config": MLP, "impl": impl, "threads": 1, "losses": 2, **BUDGET},
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
    res = worker.run_worker({"config": MLP, "impl": "nonsense", "threads": 1})
    assert not res["ok"] and "unknown implementation" in res["error"]


def test_jax_worker_env_and_pinning():
    """How the 1-thread JAX worker is held to one core: XLA's Eigen pool off
    through XLA_FLAGS, and the worker's CPU affinity cut to one CPU (XLA sizes
    its pools from it). The 2-thread worker keeps the default flags."""
    env1, env2 = procs.thread_env(1, "jax"), procs.thread_env(2, "jax")
    assert "--xla_cpu_multi_thread_eigen=false" in env1["XLA_FLAGS"]
    assert "--xla_cpu_multi_thread_eigen=false" not in env2.get("XLA_FLAGS", "")
    assert env1["OMP_NUM_THREADS"] == "1" and env2["OPENBLAS_NUM_THREADS"] == "2"
    assert procs.thread_env(1, "numpy").get("XLA_FLAGS") == os.environ.get("XLA_FLAGS")
    _need("jax")
    w = procs.Worker("jax", 1)
    try:
        info = w.wait_ready(timeout=120)
    finally:
        procs.close_all([w])
    assert info.get("ready"), info
    if procs.PIN_JAX and hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) > 1:
        assert len(info["affinity"]) == 1


def _weights(tmp_path, cfg):
    path = str(tmp_path / "w.npz")
    np.savez(path, **{f"p{i}": p for i, p in enumerate(configs.make_params(cfg))})
    return path


@pytest.mark.parametrize("impl", ["numpy", "fastnn", "gemm", "torch", "jax", "onnxruntime"])
def test_fresh_process_inference(tmp_path, impl):
    """A new process loads the weights from .npz, builds the model and times
    its first call and the next few."""
    _need(impl)
    spec = {"config": INFER3, "impl": impl, "threads": 1, "weights": _weights(tmp_path, INFER3),
            "calls": 3}
    res = procs.launch(spec, timeout=180, mode="--fresh")
    assert res["ok"], res.get("error")
    assert res["fresh"] and res["first_s"] > 0 and res["median_s"] > 0 and res["build_s"] > 0
    assert len(res["times"]) == 3


def test_fresh_process_rejects_training_config(tmp_path):
    res = procs.launch({"config": MLP, "impl": "numpy", "threads": 1,
                        "weights": _weights(tmp_path, MLP)}, timeout=120, mode="--fresh")
    assert not res["ok"] and "inference" in res["error"]


def test_fresh_rows():
    """run_fresh_rows: one process per (implementation, threads, repetition),
    giving both the steady "(fresh)" and the first-call "(fresh, 1st)" rows."""
    budget = dict(configs.QUICK, fresh_reps=2, fresh_calls=2, settle_s=0.0)
    samples, errors, skipped, details = fresh.run_fresh_rows([INFER3], [1], [], budget)
    assert not errors, errors
    for impl in ("fastnn", "numpy", "gemm"):
        for suffix in (configs.FRESH, configs.FRESH_FIRST):
            rates = samples["t infer3" + suffix, 1, impl]
            assert len(rates) == 2 and all(r > 0 for r in rates)
        assert len(details[f"t infer3 1T {impl}"]) == 2


def test_machine_info_records_build_and_blas():
    info = bench.machine_info()
    json.dumps(info)
    if os.path.exists("/proc/cpuinfo"):
        assert info.get("cpu_model") or info.get("cpu_family")
    assert info["versions"]["numpy"] == np.__version__
    assert "scipy" in info["versions"] and "onnxruntime" in info["versions"]
    assert "OPENBLAS_CORETYPE" in info
    build = info["fastnn_build"]
    assert build["extension"] and "compile_flags" in build
    if importlib.util.find_spec("threadpoolctl"):
        assert info["blas"] and all("internal_api" in b and "architecture" in b
                                    for b in info["blas"])


def _fake_summary():
    rates = {"fastnn": 300.0, "fastnn_layers": 150.0, "numpy": 100.0, "torch": 200.0,
             "torch_fused": 250.0, "jax": 280.0, "onnxruntime": 320.0, "gemm": 310.0}
    samples = {}
    names = ("mlp b16", "mlp b256", "tiny b32", "infer b1", "infer b256",
             "infer b256" + configs.FRESH)
    cfgs = [bench.CONFIG_BY_NAME[n] for n in names[:-1]]
    cfgs.append(dict(bench.CONFIG_BY_NAME["infer b256"], name=names[-1],
                     fresh_of="infer b256"))
    for threads, scale in ((1, 1.0), (2, 1.9)):
        for cfg in cfgs:
            for impl in configs.impls_for(cfg, list(configs.PEERS)):
                samples[cfg["name"], threads, impl] = [rates[impl] * scale * f
                                                       for f in (0.9, 1.0, 1.1)]
    cpus = {k: [1.0] for k in samples}
    return summary.summarize(cfgs, [1, 2], samples, {}, {}, configs.QUICK, cpus=cpus)


def test_summary_ratios_and_verdicts():
    s = _fake_summary()
    rows = {(r["config"], r["threads"]): r for r in s["rows"]}
    row = rows["mlp b16", 1]
    assert row["fastnn_over_numpy"] == pytest.approx(3.0)
    assert row["fastnn_over_best_torch"] == pytest.approx(300 / 250)
    assert row["best_peer"] == "jax"  # onnxruntime runs inference only
    assert row["fastnn_over_best_peer"] == pytest.approx(300 / 280)
    assert row["fastnn_layers_over_fastnn"] == pytest.approx(0.5)
    assert row["pct_of_gemm_floor"] == pytest.approx(100 * 300 / 310)
    assert row["results"]["jax"]["cpu_per_wall"] == 1.0
    assert rows["infer b256", 1]["best_peer"] == "onnxruntime"
    assert "fastnn_layers" not in rows["infer b256", 1]["results"]
    verdict = {(t["config"], t["threads"], t["kind"]): t for t in s["targets"]}
    assert verdict["mlp b16", 1, "numpy"]["met"] is True          # 3.0 >= 1
    assert verdict["mlp b16", 1, "peer"]["met"] is True           # 1.07 >= 1
    assert ("mlp b16", 1, "floor") not in verdict                 # no floor target at b16
    assert verdict["mlp b256", 1, "floor"]["met"] is True         # 97% >= 90%
    assert verdict["tiny b32", 1, "numpy"]["threshold"] == 5.0    # own target replaces "*"
    assert verdict["tiny b32", 1, "numpy"]["met"] is False        # 3.0 < 5
    assert verdict["infer b256", 1, "peer"]["met"] is False       # 300 < ort's 320
    assert verdict["infer b256", 1, "floor"]["met"] is True       # 97% >= 95%
    assert verdict["infer b256" + configs.FRESH, 2, "floor"]["threshold"] == 95.0
    assert verdict["infer b1", 1, "floor"]["met"] is False        # slower than the floor
    assert verdict["infer b1", 1, "floor"]["target"] == "time ≤ GEMM floor"
    table = bench.format_table(s)
    assert "vs best peer" in table and "1.07× jax" in table and "0.94× onnxruntime" in table
    assert "NOT met: tiny b32 1T" in table
    assert "CPU time / wall time at 1 thread" in table
    json.dumps(s)


def test_plot_and_from_json(tmp_path):
    """--plot draws the speed-ups; --from-json re-makes table and plot
    from an earlier run's JSON without measuring."""
    _need_matplotlib()
    s = _fake_summary()
    png = tmp_path / "direct.png"
    bench.plot(s, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    js = tmp_path / "out.json"
    js.write_text(json.dumps(s))
    png2 = tmp_path / "cli.png"
    proc = subprocess.run([sys.executable, "-m", "fastnn", "bench", "--from-json", str(js),
                           "--plot", str(png2)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "vs best peer" in proc.stdout and png2.stat().st_size > 1000


def test_from_json_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    proc = subprocess.run([sys.executable, "-m", "fastnn", "bench", "--from-json", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "not a fastnn bench JSON" in proc.stderr


def test_cli_help():
    proc = subprocess.run([sys.executable, "-m", "fastnn", "bench", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for flag in ("--threads", "--json", "--quick", "--plot", "--from-json"):
        assert flag in proc.stdout


def test_run_all_end_to_end(tmp_path):
    """The parent: persistent workers taking turns, medians, loss and output
    checks, fresh-process inference rows (peers are exercised above; leaving
    them out keeps this test fast)."""
    s = bench.run_all([1], quick=True, configs=[MLP, INFER], log=None, peers=[])
    rows = {r["config"]: r for r in s["rows"]}
    assert set(rows) == {"t mlp", "t infer", "t infer (fresh)", "t infer (fresh, 1st)"}
    for name, r in rows.items():
        n = configs.QUICK["fresh_reps"] if "fresh" in name else configs.QUICK["rounds"]
        assert r["results"]["fastnn"]["n"] == n
        assert r["fastnn_over_numpy"] > 0 and r["pct_of_gemm_floor"] > 0
        assert not r["errors"], r["errors"]
        assert "torch" not in r["results"] and r["fastnn_over_best_peer"] is None
    assert rows["t mlp"]["methods"]["fastnn"] == "Trainer.step(x, y)"
    assert "fastnn_layers" in rows["t mlp"]["results"]
    assert rows["t infer (fresh, 1st)"]["first_call"]
    assert s["loss_check"] and all(c["agree"] for c in s["loss_check"])
    assert {c["kind"] for c in s["loss_check"]} == {"losses", "outputs"}
    (tmp_path / "out.json").write_text(json.dumps(s))


def _small(name, **seq):
    """A bench sequence-LM row, shrunk (its name, and so its targets, kept)."""
    cfg = bench.CONFIG_BY_NAME[name]
    return dict(cfg, batch=3, seq=dict(cfg["seq"], context=5, **seq))


SEQ = [_small("gru lm", hidden=12), _small("lstm lm", hidden=12),
       _small("transformer lm d512", d_model=16, nhead=2, dim_feedforward=24),
       _small("conv lm", dim=6, channels=8)]


@pytest.fixture(scope="module")
def served_seq():
    """fastnn and PyTorch workers, one turn per shrunk sequence row; {(impl, name): reply}."""
    _need("torch")
    workers = {impl: procs.Worker(impl, 1) for impl in ("fastnn", "torch")}
    try:
        for w in workers.values():
            assert w.wait_ready(timeout=120).get("ready"), w.info
        return {(impl, cfg["name"]): w.request({"config": cfg, "budget": BUDGET,
                                                "losses": N_LOSSES}, timeout=120)
                for cfg in SEQ for impl, w in workers.items()}
    finally:
        procs.close_all(workers.values())


@pytest.mark.parametrize("cfg", SEQ, ids=lambda c: c["name"])
def test_sequence_models_same_start(served_seq, cfg):
    """fastnn.apps' model and its PyTorch twin take the same weights by name
    and compute the same losses before and after one Adam step."""
    got = {impl: served_seq[impl, cfg["name"]] for impl in ("fastnn", "torch")}
    for res in got.values():
        assert res["ok"], res.get("error")
        assert res["rate"] > 0 and res["method"]
    ref = got["torch"]["losses"]
    assert ref[1] != ref[0]
    assert got["fastnn"]["losses"] == pytest.approx(ref, rel=2e-5, abs=1e-6)


def test_sequence_rows_only_fastnn_and_torch():
    res = worker.run_worker({"config": SEQ[0], "impl": "numpy", "threads": 1, **BUDGET})
    assert not res["ok"] and "fastnn, torch only" in res["skipped"]
    assert configs.impls_for(SEQ[0], list(configs.PEERS)) == ["fastnn", "torch"]
    assert configs.impls_for(SEQ[0], []) == ["fastnn"]


def test_only_selects_the_sequence_rows():
    names = [c["name"] for c in bench.cli.select("gru lm,transformer lm")]
    assert names == [n for n in bench.CONFIG_BY_NAME
                     if n.startswith(("gru lm", "transformer lm"))] and len(names) > 2


def test_sequence_rows_end_to_end():
    """The sequence rows run in the harness (tiny models, the quick budget):
    tokens/s of fastnn and PyTorch, the same-start check, and a verdict on
    the row's own target against PyTorch (no NumPy or GEMM-floor target)."""
    peers = [p for p in ("torch",) if procs.impl_available(p)]
    s = bench.run_all([1], quick=True, configs=SEQ[::2], log=None, peers=peers)
    rows = {r["config"]: r for r in s["rows"]}
    assert set(rows) == {c["name"] for c in SEQ[::2]}
    for cfg in SEQ[::2]:
        r = rows[cfg["name"]]
        assert not r["errors"], r["errors"]
        assert r["unit"] == "tokens" and r["results"]["fastnn"]["n"] == configs.QUICK["rounds"]
        assert set(r["results"]) == {"fastnn", *peers}
        assert r["pct_of_gemm_floor"] is None and r["fastnn_over_numpy"] is None
        (t,) = r["targets"]
        own = [thr for n, k, thr in bench.TARGETS if n == cfg["name"] and k == "peer"]
        assert t["kind"] == "peer" and [t["threshold"]] == own
        if peers:
            assert r["best_peer"] == "torch" and t["met"] == (t["value"] >= t["threshold"])
        else:
            assert t["met"] is None
    assert s["budget_by_config"][SEQ[0]["name"]]["min_steps"] == configs.SEQ_QUICK["min_steps"]
    if peers:
        assert {c["config"] for c in s["loss_check"]} == set(rows)
        assert all(c["agree"] for c in s["loss_check"])
    assert "gru lm" in bench.format_table(s)
    json.dumps(s)


def test_numpy_worker_never_imports_fastnn(tmp_path):
    """Run by path from outside the tree, as the parent runs it, the NumPy
    worker loads _reference.py by path and no module of the fastnn package."""
    code = ("import runpy, sys\n"
            "sys.argv = sys.argv[1:]\n"
            "try:\n"
            "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'fastnn'))\n")
    spec = {"config": MLP, "impl": "numpy", "threads": 1, "losses": 2, **BUDGET}
    proc = subprocess.run([sys.executable, "-c", code, procs.WORKER, "--worker",
                           json.dumps(spec)], env=procs.thread_env(1, "numpy"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    *_, result, loaded = proc.stdout.strip().splitlines()
    assert json.loads(result)["ok"], proc.stderr
    assert loaded == "[]"
