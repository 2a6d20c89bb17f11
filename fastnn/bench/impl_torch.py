"""PyTorch as people write it: zero_grad, forward, loss, backward, step."""
from .configs import Skip, layers


def build(cfg, params, data, threads, fused=False):
    """A plain PyTorch loop: zero_grad(set_to_none=True), forward, loss,
    backward, step; Adam/SGD with foreach=False, or fused=True."""
    import torch
    torch.set_num_threads(threads)
    nn = torch.nn
    model = nn.Sequential(*layers(cfg, nn))
    with torch.no_grad():
        for p, w in zip(model.parameters(), params):
            p.copy_(torch.from_numpy(w))
    xs = [torch.from_numpy(x) for x, _ in data]
    ys = [torch.from_numpy(y) for _, y in data]
    nb = len(data)
    if cfg["mode"] == "infer":
        if fused:
            raise Skip("no fused variant for inference")
        model.eval()
        inference_mode = torch.inference_mode

        def step(i):
            with inference_mode():
                return model(xs[i % nb])
        return step, lambda i: step(i).numpy()
    loss_fn = nn.CrossEntropyLoss() if cfg["loss"] == "ce" else nn.BCEWithLogitsLoss()
    kw = {"fused": True} if fused else {"foreach": False}
    try:
        if cfg["opt"] == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], **kw)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"], **kw)
    except (RuntimeError, TypeError, ValueError) as e:
        raise Skip(f"fused optimizer unsupported: {e}")

    def train_step(i):
        k = i % nb
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xs[k]), ys[k])
        loss.backward()
        opt.step()
        return loss

    return train_step, lambda i: train_step(i).item()
