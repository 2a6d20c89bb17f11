"""Do row/column cuts of a GEMM give the bits of one BLAS call, on this BLAS?

    OPENBLAS_CORETYPE=Sandybridge python benchmarks/split_bits.py [seed] [n_random]

For the products of the benchmark models (forward X W^T, dW = dZ^T X, dX = dZ W)
and n_random random shapes, float32 and float64, compares one call with the cuts
fastnn may use (rows in blocks of multiples of 24, no one-row block; columns in
64-byte blocks; 2-4 parts; beta 0 on one thread and beta 1 on two). Prints each
differing case and a count per (dtype, dim). fastnn checks every cut at run time
anyway; this shows how often a BLAS would refuse one.
"""
import sys, numpy as np
from fastnn._kernels import _ops
from fastnn._threading import blas_info
rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 0)

def arr(shape, dt, off):
    buf = rng.standard_normal(shape[0] * shape[1] + 16).astype(dt)
    return buf[off:off + shape[0] * shape[1]].reshape(shape)

bench = []
for n in (1, 16, 64, 256, 1024):
    for i, o in ((784, 512), (512, 256), (256, 10)):
        bench += [(0, 1, n, o, i), (1, 0, o, i, n), (0, 0, n, i, o)]
for n, i, o in ((32, 32, 64), (32, 64, 64), (32, 64, 1), (128, 192, 256), (128, 256, 80)):
    bench += [(0, 1, n, o, i), (1, 0, o, i, n), (0, 0, n, i, o)]
rand = []
for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 150):
    ta, tb = [int(x) for x in rng.integers(0, 2, 2)]
    M, N, K = [int(x) for x in np.exp(rng.uniform(0, np.log(1200), 3)).astype(int) + 1]
    rand.append((ta, tb, M, N, K))
bad = 0; total = 0
import collections; cnt = collections.Counter()
for name, shapes in (("bench", bench), ("random", rand)):
    for (ta, tb, M, N, K) in shapes:
        for dt in (np.float32, np.float64):
            a = arr((K, M) if ta else (M, K), dt, int(rng.integers(0, 8)))
            b = arr((N, K) if tb else (K, N), dt, int(rng.integers(0, 8)))
            c0 = np.empty((M, N), dt); _ops.gemm(a, b, c0, bool(ta), bool(tb))
            cb = rng.standard_normal((M, N)).astype(dt)
            c0b = cb.copy(); _ops.gemm(a, b, c0b, bool(ta), bool(tb), 1.0, 1.0)
            for dim in (0, 1):
                for parts in (2, 3, 4):
                    if dim == 0:
                        cs = -(-M // parts); cs = -(-cs // 24) * 24
                        if M - cs * (parts - 1) < 2: continue
                    else:
                        cs = -(-N // parts); cs = -(-cs // 16) * 16
                        if N - cs * (parts - 1) < 1: continue
                    c1 = np.full((M, N), np.nan, dt)
                    _ops.gemm_split(a, b, c1, bool(ta), bool(tb), dim, parts, 1)
                    c1b = cb.copy()
                    _ops.gemm_split(a, b, c1b, bool(ta), bool(tb), dim, parts, 2, 1.0)
                    total += 1; cnt[(dt.__name__, dim, 'tot')] += 1
                    if not (np.array_equal(c0.view(np.uint8), c1.view(np.uint8)) and
                            np.array_equal(c0b.view(np.uint8), c1b.view(np.uint8))):
                        bad += 1; cnt[(dt.__name__, dim, 'diff')] += 1
                        d = np.abs(c0 - c1).max()
                        print("DIFF", name, dt.__name__, (ta, tb, M, N, K), "dim", dim, "parts", parts, "maxdiff", d, flush=True)
print(blas_info()[0]["architecture"], "cases", total, "differing", bad, "by (dtype, dim):", dict(sorted(cnt.items())))
