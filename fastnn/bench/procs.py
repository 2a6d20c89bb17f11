"""The parent's side of the worker processes: which can run here, their
environment (thread counts fixed before import), starting them (one-shot or
persistent), and the interleaved order in which they take turns."""
import json
import os
import subprocess
import sys

from .configs import IMPL_LABELS, OPTIONAL_MODULES, PEERS, impls_for

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "FASTNN_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(_HERE, "worker.py")  # run by path: see its docstring
# Workers start outside any source tree, so that only an installed fastnn or
# FASTNN_BENCH_ROOT's is imported, never one that happens to be the cwd.
WORKER_CWD = os.path.abspath(os.sep)


def impl_available(impl):
    """Whether an implementation's optional packages are importable."""
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in OPTIONAL_MODULES.get(impl, ()))


def available_peers(with_torch=None):
    """The peers that can run here (with_torch=False leaves PyTorch out)."""
    return [p for p in PEERS if impl_available(p)
            and (with_torch is not False or not p.startswith("torch"))]


# XLA's CPU client ignores OMP_NUM_THREADS: its matrix products run on an Eigen
# pool as wide as the machine (sized from the CPU affinity mask). The often
# quoted "intra_op_parallelism_threads=1" is not an XLA flag (a lone token in
# XLA_FLAGS is read as a file of flags), so only the Eigen switch is set; it
# was measured not to be enough on its own (jax 0.10: with it, 2 of the
# worker's threads were running or runnable at once three quarters of the
# time), hence the affinity mask too (PIN_JAX; then never).
PIN_JAX = True  # see pin
JAX_1T_FLAGS = "--xla_cpu_multi_thread_eigen=false"


def thread_env(threads, impl=None):
    env = dict(os.environ)
    for var in THREAD_ENV:
        env[var] = str(threads)
    # the fastnn worker needs the package even when it is not installed
    env["FASTNN_BENCH_ROOT"] = os.path.dirname(os.path.dirname(_HERE))
    if impl == "jax":
        env.setdefault("JAX_PLATFORMS", "cpu")
        if threads == 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + JAX_1T_FLAGS).strip()
    return env


def pin(impl, threads):
    """Called first thing in a worker: restrict a JAX worker to `threads` CPUs
    of its affinity mask, so XLA's pools are sized to it and cannot spill over."""
    if impl != "jax" or not PIN_JAX or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if threads < len(cpus):
        os.sched_setaffinity(0, cpus[:threads])


def _worker_cmd(*args):
    return [sys.executable, WORKER, *args]


def launch(spec, timeout=300, mode="--worker"):
    """One-shot worker in a fresh process (``--worker SPEC``, or ``--fresh SPEC``
    for a fresh-process inference run); returns its result dict."""
    try:
        proc = subprocess.run(_worker_cmd(mode, json.dumps(spec)),
                              env=thread_env(spec["threads"], spec.get("impl")), cwd=WORKER_CWD,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"ok": False, "error": f"worker exited with {proc.returncode}: "
                                      f"{(proc.stderr or proc.stdout)[-2000:]}"}
    return json.loads(lines[-1])


class Worker:
    """A persistent ``--serve`` process for one (implementation, threads)."""

    def __init__(self, impl, threads):
        import queue
        import tempfile
        import threading
        self.impl, self.threads = impl, threads
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(_worker_cmd("--serve", impl, str(threads)),
                                     env=thread_env(threads, impl), cwd=WORKER_CWD,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.info = None
        self.dead = None

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read(self, timeout):
        import queue
        hung = False
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line, hung = None, True
        if line is None:
            self.stderr.seek(0)
            tail = self.stderr.read()[-2000:]
            what = f"hung (no answer in {timeout} s)" if hung else "died"
            self.dead = f"worker {self.impl} {self.threads}T {what}: {tail}"
            if hung:
                self.close(kill=True)
            return {"ok": False, "error": self.dead}
        return json.loads(line)

    def wait_ready(self, timeout=300):
        self.info = self._read(timeout)
        if not self.info.get("ready"):
            self.dead = self.info.get("error", "worker failed to start")
        return self.info

    def request(self, msg, timeout=300):
        if self.dead:
            return {"ok": False, "error": self.dead}
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except OSError as e:
            self.dead = f"worker {self.impl} {self.threads}T: {e}"
            return {"ok": False, "error": self.dead}
        return self._read(timeout)

    def quit(self):
        """Ask the worker to exit (without waiting for it)."""
        if self.proc.poll() is None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
            except OSError:
                pass

    def close(self, kill=False):
        if not kill:
            self.quit()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def close_all(workers):
    for w in workers:
        w.quit()
    for w in workers:
        w.close()


def turns(reps, configs, thread_counts, peers):
    """(rep, cfg, threads, impl) in the order the workers take turns: for each
    repetition, configuration and thread count every implementation once, the
    order rotated from one repetition to the next, so that slow drift of the
    machine hits every column alike."""
    for rep in range(reps):
        for cfg in configs:
            for threads in thread_counts:
                impls = impls_for(cfg, peers)
                shift = rep % len(impls)
                for impl in impls[shift:] + impls[:shift]:
                    yield rep, cfg, threads, impl


def note(log, where, cfg, threads, impl, msg):
    """One line of progress on `log` (None: silent)."""
    if log:
        print(f"[{where}] {cfg['name']:<11} {threads}T {IMPL_LABELS[impl]:<13} {msg}", file=log,
              flush=True)


def failure(res):
    """What a worker's answer that is not a measurement says, in one line."""
    if "skipped" in res:
        return "skipped: " + res["skipped"]
    return "ERROR: " + (res.get("error", "?").strip().splitlines() or ["?"])[-1]
