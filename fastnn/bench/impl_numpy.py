"""The NumPy implementation: a careful NumPy user, built from
fastnn/_reference.py (loaded by path, so this worker never imports fastnn)."""
import os

# fastnn/_reference.py, beside this package
REFERENCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "_reference.py")


def load_reference():
    """fastnn/_reference.py as a standalone module (no fastnn import)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_fastnn_reference_standalone",
                                                  REFERENCE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(cfg, params, data, threads):
    """The careful NumPy user, from fastnn._reference: preallocated buffers,
    weights and gradients in one flat buffer each (one optimizer pass),
    fused bias+activation, in-place updates."""
    import numpy as np
    R = load_reference()
    act_code = {"relu": R.ACT_RELU, "tanh": R.ACT_TANH}[cfg["act"]]
    n, sizes, emb = cfg["batch"], cfg["sizes"], cfg.get("embed")
    total = sum(p.size for p in params)
    P = np.empty(total, np.float32)
    G = np.zeros(total, np.float32)
    views, gviews, off = [], [], 0
    for p in params:
        views.append(P[off:off + p.size].reshape(p.shape))
        gviews.append(G[off:off + p.size].reshape(p.shape))
        views[-1][...] = p
        off += p.size
    E = gE = None
    if emb:
        E, gE = views.pop(0), gviews.pop(0)
    Ws, bs, gWs, gbs = views[0::2], views[1::2], gviews[0::2], gviews[1::2]
    L = len(Ws)
    codes = [act_code] * (L - 1) + [R.ACT_NONE]
    ys = [np.empty((n, s), np.float32) for s in sizes[1:]]
    x0 = np.empty((n, sizes[0]), np.float32) if emb else None
    gys = [np.empty((n, s), np.float32) for s in sizes[1:]]  # grad w.r.t. layer outputs
    gzs = [np.empty((n, s), np.float32) for s in sizes[1:]]
    gx0 = np.empty((n, sizes[0]), np.float32) if emb else None
    xs = [x for x, _ in data]
    ys_t = [y for _, y in data]
    nb = len(data)

    def forward(x):
        if emb:
            R.embedding_forward(x.reshape(-1), E, x0.reshape(n * emb["context"], emb["dim"]))
            x = x0
        inp = [x]
        for i in range(L):
            R.linear_forward(inp[i], Ws[i], bs[i], codes[i], 0.0, None, ys[i])
            inp.append(ys[i])
        return inp

    if cfg["mode"] == "infer":
        def step(i):
            return forward(xs[i % nb])[-1]
        return step, step

    m = np.zeros(total, np.float32)
    v = np.zeros(total, np.float32)
    buf = np.zeros(total, np.float32)
    state = {"t": 0}

    def train_step(i):
        k = i % nb
        inp = forward(xs[k])
        out, gout = ys[-1], gys[-1]
        if cfg["loss"] == "ce":
            loss = R.cross_entropy_labels(out, ys_t[k], 0.0, gout)
        else:
            loss = R.bce_logits(out.reshape(-1), ys_t[k].reshape(-1), gout.reshape(-1))
        for j in range(L - 1, -1, -1):
            if j > 0:
                gx = gys[j - 1]
            else:
                gx = gx0  # None unless an embedding needs it
            R.linear_backward(inp[j], Ws[j], codes[j], 0.0, None, ys[j], gys[j], gzs[j], gx,
                              gWs[j], gbs[j])
        if emb:
            R.embedding_backward(xs[k].reshape(-1), gx0.reshape(n * emb["context"], emb["dim"]),
                                 gE)
        state["t"] += 1
        if cfg["opt"] == "adam":
            R.adam(P, G, m, v, cfg["lr"], 0.9, 0.999, 1e-8, 0.0, False, state["t"])
        else:
            R.sgd(P, G, buf, cfg["lr"], cfg["momentum"], 0.0, 0.0, False, state["t"] == 1)
        return loss

    return train_step, train_step
