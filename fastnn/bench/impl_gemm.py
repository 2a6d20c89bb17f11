"""The GEMM floor: only the matrix products of one step."""


def build(cfg, params, data, threads):
    """The GEMM floor: only the matrix products of one step, NumPy matmul(out=)
    on preallocated float32 arrays (forward; dW and, where needed, dX)."""
    import numpy as np
    rng = np.random.default_rng(0)
    n, sizes, emb = cfg["batch"], cfg["sizes"], cfg.get("embed")
    Ws = [p for p in params if p.ndim == 2][1 if emb else 0:]
    acts = [rng.standard_normal((n, s)).astype(np.float32) for s in sizes]
    grads = [rng.standard_normal((n, s)).astype(np.float32) for s in sizes]
    gWs = [np.empty_like(w) for w in Ws]
    L = len(Ws)
    train = cfg["mode"] == "train"

    def step(i):
        for j in range(L):
            np.matmul(acts[j], Ws[j].T, out=acts[j + 1])
        if train:
            for j in range(L - 1, -1, -1):
                np.matmul(grads[j + 1].T, acts[j], out=gWs[j])
                if j > 0 or emb:
                    np.matmul(grads[j + 1], Ws[j], out=grads[j])
    return step, None
