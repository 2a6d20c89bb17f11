"""A jax.jit-compiled whole training step with optax; a jitted forward."""


def build(cfg, params, data, threads):
    """A ``jax.jit``-compiled whole step with optax (Adam, or SGD with momentum;
    softmax CE or sigmoid BCE on logits), parameters and optimizer state
    donated; for inference a jitted forward. At 1 thread asynchronous dispatch
    is off and every step is waited for; otherwise the timer waits at the end."""
    import functools
    import numpy as np
    import jax
    if threads == 1:
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    import jax.numpy as jnp
    emb = cfg.get("embed")
    act = {"relu": jax.nn.relu, "tanh": jnp.tanh}[cfg["act"]]

    def forward(p, x):
        if emb:
            h, lin = jnp.take(p[0], x, axis=0).reshape(x.shape[0], -1), p[1:]
        else:
            h, lin = x, p
        L = len(lin) // 2
        for j in range(L):
            h = h @ lin[2 * j].T + lin[2 * j + 1]
            if j < L - 1:
                h = act(h)
        return h

    # jax's default integers are 32-bit: hand it int32 ids and labels up front
    xs = [jax.device_put(x.astype(np.int32) if emb else x) for x, _ in data]
    nb = len(data)
    if cfg["mode"] == "infer":
        fwd = jax.jit(forward)
        p = [jax.device_put(w) for w in params]

        def step(i):
            return fwd(p, xs[i % nb]).block_until_ready()
        step.method = "jax.jit(forward)"
        return step, lambda i: np.asarray(step(i))
    import optax
    ce = cfg["loss"] == "ce"
    ys = [jax.device_put(y.astype(np.int32) if ce else y) for _, y in data]

    def loss_fn(p, x, y):
        z = forward(p, x)
        if ce:
            return optax.softmax_cross_entropy_with_integer_labels(z, y).mean()
        return optax.sigmoid_binary_cross_entropy(z, y).mean()

    if cfg["opt"] == "adam":
        tx = optax.adam(cfg["lr"], b1=0.9, b2=0.999, eps=1e-8)
    else:
        tx = optax.sgd(cfg["lr"], momentum=cfg["momentum"])

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def update(p, s, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    p = [jnp.array(w) for w in params]
    state = [p, tx.init(p)]
    block = threads == 1

    def train_step(i):
        k = i % nb
        state[0], state[1], loss = update(state[0], state[1], xs[k], ys[k])
        if block:
            loss.block_until_ready()
        return loss
    if not block:
        train_step.sync = lambda: jax.block_until_ready(state)
    train_step.method = "jax.jit(value_and_grad + optax update, donate_argnums=(0, 1))"
    return train_step, train_step
