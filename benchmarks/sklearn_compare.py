"""fastnn.sklearn vs sklearn.neural_network on scikit-learn's bundled data sets.

    python benchmarks/sklearn_compare.py [--threads N] [--repeats R] [--max-iter M]
                                         [--hidden 100] [--solver adam|sgd] [--alpha A]
                                         [--json out.json]

Both sides get the same pipeline: a fixed stratified 75/25 train/test split
(random_state=0), StandardScaler on X, the same MLP hyperparameters
(hidden_layer_sizes, solver, max_iter, scikit-learn's defaults otherwise) and
the same random_state per repeat (0, 1, ..., R-1). The regression target
(diabetes) is standardized too (TransformedTargetRegressor), for both. The
table shows medians over the repeats of the test accuracy (R^2 for diabetes),
of the epochs run (n_iter_) and of the wall-clock fit time, fastnn and
scikit-learn alternating repeat by repeat in one process.

Threads: the count is fixed before NumPy is imported (OMP/OPENBLAS/MKL and
FASTNN_NUM_THREADS), so scikit-learn's NumPy BLAS and fastnn's kernels get the
same number (default 1, the fair setting on a shared machine).
"""
import argparse
import glob
import io
import os
import sys

# Run from a source checkout built in place (`python setup.py build_ext --inplace`),
# use that tree; otherwise the installed fastnn.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if glob.glob(os.path.join(ROOT, "fastnn", "_kernels", "_ops*")):
    sys.path.insert(0, ROOT)


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--hidden", default="100", help="comma-separated hidden layer sizes")
    p.add_argument("--solver", default="adam", choices=["adam", "sgd"])
    p.add_argument("--alpha", type=float, default=1e-4, help="L2 penalty (scikit-learn's default)")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args()


def main():
    args = _parse()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "FASTNN_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import json
    import platform
    import statistics
    import time
    import warnings

    import numpy as np
    import sklearn
    from sklearn import datasets
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SkClassifier
    from sklearn.neural_network import MLPRegressor as SkRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import fastnn as fn
    from fastnn.sklearn import MLPClassifier, MLPRegressor

    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    except ImportError:
        pass
    fn.set_num_threads(args.threads)

    hidden = tuple(int(h) for h in args.hidden.split(","))
    params = dict(hidden_layer_sizes=hidden, solver=args.solver, max_iter=args.max_iter,
                  alpha=args.alpha)
    tasks = [("iris", datasets.load_iris, True), ("wine", datasets.load_wine, True),
             ("breast_cancer", datasets.load_breast_cancer, True),
             ("digits", datasets.load_digits, True), ("diabetes", datasets.load_diabetes, False)]

    def model(impl, classify, seed):
        if classify:
            est = (MLPClassifier if impl == "fastnn" else SkClassifier)(random_state=seed, **params)
            return make_pipeline(StandardScaler(), est)
        est = (MLPRegressor if impl == "fastnn" else SkRegressor)(random_state=seed, **params)
        return TransformedTargetRegressor(make_pipeline(StandardScaler(), est),
                                          transformer=StandardScaler())

    def n_iter(pipe):
        pipe = getattr(pipe, "regressor_", pipe)
        return pipe[-1].n_iter_

    rows = []
    for name, load, classify in tasks:
        X, y = load(return_X_y=True)
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0,
                                              stratify=y if classify else None)
        res = {impl: {"score": [], "time": [], "n_iter": []} for impl in ("fastnn", "sklearn")}
        for seed in range(args.repeats):
            order = ("fastnn", "sklearn") if seed % 2 == 0 else ("sklearn", "fastnn")
            for impl in order:
                pipe = model(impl, classify, seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    t0 = time.perf_counter()
                    pipe.fit(Xtr, ytr)
                    elapsed = time.perf_counter() - t0
                res[impl]["time"].append(elapsed)
                res[impl]["score"].append(float(pipe.score(Xte, yte)))
                res[impl]["n_iter"].append(n_iter(pipe))
        row = {"dataset": name, "n_train": len(Xtr), "n_features": X.shape[1],
               "metric": "accuracy" if classify else "R^2", "raw": res}
        for impl in res:
            for key in ("score", "time", "n_iter"):
                row[f"{impl}_{key}"] = statistics.median(res[impl][key])
        rows.append(row)
        print(f"  {name}: done", file=sys.stderr, flush=True)

    title = (f"MLP{hidden} solver={args.solver} alpha={args.alpha:g} max_iter={args.max_iter}, "
             f"{args.threads} "
             f"thread(s), median of {args.repeats}; fastnn {fn.__version__}, scikit-learn "
             f"{sklearn.__version__}, numpy {np.__version__}")
    print(title)
    header = (f"| {'data set':<13} | {'train':>5} | {'metric':<8} | {'fastnn':>7} | {'sklearn':>7} "
              f"| {'epochs fn/sk':>12} | {'fit fastnn':>10} | {'fit sklearn':>11} | {'speed-up':>8} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        epochs = f"{r['fastnn_n_iter']:g}/{r['sklearn_n_iter']:g}"
        print(f"| {r['dataset']:<13} | {r['n_train']:>5} | {r['metric']:<8} "
              f"| {r['fastnn_score']:>7.4f} | {r['sklearn_score']:>7.4f} | {epochs:>12} "
              f"| {r['fastnn_time']:>8.3f} s | {r['sklearn_time']:>9.3f} s "
              f"| {r['sklearn_time'] / r['fastnn_time']:>7.1f}x |")
    if args.json:
        meta = {"title": title, "python": platform.python_version(),
                "machine": platform.machine(), "load_avg": os.getloadavg(),
                "fastnn_info": fn.info(file=io.StringIO())}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
