"""``python -m fastnn demo``: train an MLP on the bundled digits and report
test accuracy and throughput.

The recipe (64-256-128-10 ReLU MLP, dropout 0.2, AdamW, label smoothing 0.1,
linear warmup into a cosine schedule, 30 epochs of batch 32) reaches >= 0.98
test accuracy on a stratified 80/20 split for every seed we tried, in about
a second of training on one core.
"""
import socket
import sys
import time
import types

import numpy as np

import fastnn as fn
from fastnn.datasets import load_digits, train_test_split

SEED = 0
EPOCHS = 30
BATCH_SIZE = 32
LR = 3e-3
WARMUP_STEPS = 100


def build_model():
    return fn.Sequential(
        fn.Linear(64, 256), fn.ReLU(), fn.Dropout(0.2),
        fn.Linear(256, 128), fn.ReLU(), fn.Dropout(0.2),
        fn.Linear(128, 10),
    )


def _setup(epochs, seed):
    """The recipe: the split, the model, and (loss, optimizer, scheduler)."""
    fn.seed(seed)
    X, y = load_digits()
    split = train_test_split(X, y, test_size=0.2, seed=seed, stratify=True)
    model = build_model()
    optimizer = fn.AdamW(model.parameters(), lr=LR, weight_decay=1e-2)
    total_steps = epochs * -(-len(split[0]) // BATCH_SIZE)
    warmup = min(WARMUP_STEPS, max(1, total_steps // 4))
    cosine = fn.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup))
    scheduler = fn.LinearWarmup(optimizer, warmup, after=cosine)
    return split, model, (fn.CrossEntropyLoss(label_smoothing=0.1), optimizer, scheduler)


def train(epochs=EPOCHS, seed=SEED, progress=True, verbose=True):
    """Train the demo model; returns (model, trainer, history, results dict)."""
    say = print if verbose else (lambda *a, **k: None)
    (X_train, X_test, y_train, y_test), model, recipe = _setup(epochs, seed)
    trainer = fn.Trainer(model, *recipe)

    say(f"fastnn {fn.__version__} demo: MLP 64-256-128-10 on the digits "
        f"({len(X_train)} train / {len(X_test)} test), {epochs} epochs of batch {BATCH_SIZE}, "
        f"{fn.get_num_threads()} thread(s)")
    start = time.perf_counter()
    # The held-out split is only watched here (no callback acts on it).
    history = trainer.fit(X_train, y_train, epochs=epochs, batch_size=BATCH_SIZE,
                          validation_data=(X_test, y_test), shuffle=True, seed=seed,
                          progress=progress)
    train_time = time.perf_counter() - start

    start = time.perf_counter()
    predictions = model.predict(X_test).argmax(axis=1)
    infer_time = time.perf_counter() - start
    accuracy = float(np.mean(predictions == y_test))
    results = {
        "test_accuracy": accuracy,
        "train_time": train_time,
        "train_samples_per_s": epochs * len(X_train) / train_time,
        "inference_samples_per_s": len(X_test) / infer_time if infer_time > 0 else float("inf"),
        "final_loss": history.history["loss"][-1],
    }
    return model, trainer, history, results


def main(args=None):
    if args is None:
        args = types.SimpleNamespace(epochs=None, distributed=False)
    if getattr(args, "distributed", False):
        return run_distributed(args)
    epochs = EPOCHS if getattr(args, "epochs", None) is None else args.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise SystemExit(f"python -m fastnn demo: --epochs must be a positive int, got {epochs!r}")
    _, _, history, r = train(epochs=epochs)
    h = history.history
    print(f"final epoch: loss {h['loss'][-1]:.4f}, train accuracy {h['accuracy'][-1]:.4f}, "
          f"val loss {h['val_loss'][-1]:.4f}")
    print(f"test accuracy: {r['test_accuracy']:.4f}")
    print(f"train time: {r['train_time']:.2f} s ({r['train_samples_per_s']:,.0f} samples/s); "
          f"inference: {r['inference_samples_per_s']:,.0f} samples/s")
    return 0


def run_distributed(args):
    """``python -m fastnn demo --distributed``: the digits demo's recipe
    (this module), data-parallel over the ranks of MPI.COMM_WORLD, with the
    same global batch, so N ranks follow the single-process trajectory."""
    from ..distributed.trainer import DistributedTrainer, _mpi, install_excepthook
    try:
        MPI = _mpi()
    except ImportError as exc:
        print(f"python -m fastnn demo --distributed: {exc}", file=sys.stderr)
        return 2

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    install_excepthook(comm)
    say = print if rank == 0 else (lambda *a, **k: None)
    epochs = getattr(args, "epochs", None)
    epochs = EPOCHS if epochs is None else epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise SystemExit(f"python -m fastnn demo: --epochs must be a positive int, got {epochs!r}")
    seed, batch_size = SEED, BATCH_SIZE

    # train's data, model, optimizer and schedule, stepped once per global batch
    (X_train, X_test, y_train, y_test), model, recipe = _setup(epochs, seed)
    trainer = DistributedTrainer(model, *recipe[:2], comm=comm, scheduler=recipe[2])
    fn.seed(seed + 1 + rank)  # independent dropout masks per rank (weights came from rank 0)

    layout = comm.gather((socket.gethostname(), fn.get_num_threads()), root=0)
    if rank == 0:
        hosts = {}
        for host, threads in layout:
            hosts.setdefault(host, []).append(threads)
        where = ", ".join(f"{h}: {len(t)} rank(s) x {max(t)} thread(s)" for h, t in hosts.items())
        say(f"fastnn {fn.__version__} demo --distributed: {size} rank(s) [{where}]")
        say(f"MLP 64-256-128-10 on the digits ({len(X_train)} train / {len(X_test)} test), "
            f"{epochs} epochs of global batch {batch_size} (~{-(-batch_size // size)} rows per "
            f"rank), gradients averaged with one Allreduce per step")
        if size == 1:
            say("(one rank: start several with `mpirun -n 2 python -m fastnn demo --distributed`)")

    class _Report(fn.Callback):
        rank_zero_only = True

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0 or (epoch + 1) % 5 == 0 or epoch + 1 == epochs:
                say(f"epoch {epoch + 1:3d}/{epochs}  loss {logs['loss']:.4f}  "
                    f"accuracy {logs['accuracy']:.4f}  val_loss {logs['val_loss']:.4f}  "
                    f"val_accuracy {logs['val_accuracy']:.4f}", flush=True)

    comm.Barrier()
    t0 = time.perf_counter()
    trainer.fit(X_train, y_train, epochs=epochs, batch_size=batch_size,
                validation_data=(X_test, y_test), seed=seed, callbacks=[_Report()],
                progress=True)
    seconds = time.perf_counter() - t0
    result = trainer.evaluate(X_test, y_test)
    times = comm.gather((trainer.timings["step_s"], trainer.timings["allreduce_s"]), root=0)
    if rank == 0:
        share = sum(t[1] for t in times) / max(sum(t[0] for t in times), 1e-12)
        say(f"test accuracy: {result['accuracy']:.4f}")
        say(f"train time: {seconds:.2f} s ({epochs * len(X_train) / seconds:,.0f} samples/s over "
            f"{size} rank(s)); {100 * share:.0f}% of step time waiting in the gradient Allreduce")
    return 0
