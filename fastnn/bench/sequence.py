"""The sequence LMs' rows: fastnn.apps' GRULM, LSTMLM, TransformerLM and
CausalConvLM trained with Trainer.step, against the same models written in
PyTorch (plain loop, Adam). The PyTorch models name their parameters like
fastnn's (which use torch's names) and both take their start by name
(configs.named_param), so the same-start check holds here too: names or
shapes that drift apart show there as disagreeing losses."""


def _fastnn_lm(seq):
    arch = seq["arch"]
    if arch in ("gru", "lstm"):
        from fastnn.apps.rnnlm import GRULM, LSTMLM
        return (GRULM if arch == "gru" else LSTMLM)(seq["vocab"], seq["dim"], seq["hidden"])
    if arch == "transformer":
        from fastnn.apps.transformerlm import TransformerLM
        return TransformerLM(seq["vocab"], seq["d_model"], seq["nhead"], seq["layers"],
                             seq["context"], dim_feedforward=seq["dim_feedforward"])
    from fastnn.apps.seqmodels import CausalConvLM
    return CausalConvLM(seq["vocab"], seq["dim"], seq["channels"], seq["kernel_size"],
                        seq["layers"])


def _load(state, weights):
    """Every entry of a state dict, by name, from weights(name, shape)."""
    return {name: weights(name, tuple(value.shape)) for name, value in state.items()}


def build_fastnn(cfg, weights, data, threads):
    """The fastnn model from fastnn.apps, Adam, ``Trainer.step(x, y)``."""
    import fastnn as fn
    fn.set_num_threads(threads)
    model = _fastnn_lm(cfg["seq"])
    model.load_state_dict(_load(model.state_dict(), weights))
    step = fn.Trainer(model, fn.CrossEntropyLoss(),
                      fn.Adam(model.parameters(), lr=cfg["lr"])).step

    def train_step(i):
        x, y = data[i % len(data)]
        return step(x, y)
    train_step.method = "Trainer.step(x, y)"
    return train_step, train_step


def _torch_lm(seq):
    """The same architectures in PyTorch, parameters named like fastnn's."""
    import torch
    from torch import nn
    V, T = seq["vocab"], seq["context"]

    class RNNLM(nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.embedding = nn.Embedding(V, seq["dim"])
            self.rnn = cell(seq["dim"], seq["hidden"], batch_first=True)
            self.head = nn.Linear(seq["hidden"], V)

        def forward(self, x):
            out, _ = self.rnn(self.embedding(x))
            return self.head(out[:, -1])

    class TransformerLM(nn.Module):
        def __init__(self):
            super().__init__()
            d = seq["d_model"]
            self.embed = nn.Embedding(V, d)
            self.pos = nn.Embedding(T, d)
            self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(
                d, seq["nhead"], seq["dim_feedforward"], dropout=0.0, activation="gelu",
                batch_first=True, norm_first=True) for _ in range(seq["layers"]))
            self.norm = nn.LayerNorm(d)
            self.head = nn.Linear(d, V)
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(T))

        def forward(self, x):
            h = self.embed(x) + self.pos.weight[:x.shape[1]]
            for b in self.blocks:
                h = b(h, src_mask=self.mask, is_causal=True)
            return self.head(self.norm(h[:, -1]))

    class ConvLM(nn.Module):
        def __init__(self):
            super().__init__()
            c, k = seq["channels"], seq["kernel_size"]
            self.embed = nn.Embedding(V, seq["dim"])
            self.pads = [2 ** i * (k - 1) for i in range(seq["layers"])]
            for i in range(seq["layers"]):
                setattr(self, f"conv{i}", nn.Conv1d(seq["dim"] if i == 0 else c, c, k,
                                                    dilation=2 ** i))
            self.head = nn.Linear(c, V)

        def forward(self, x):
            h = self.embed(x).transpose(1, 2)
            for i, pad in enumerate(self.pads):
                h = torch.relu(getattr(self, f"conv{i}")(nn.functional.pad(h, (pad, 0))))
            return self.head(h[:, :, -1])

    if seq["arch"] in ("gru", "lstm"):
        return RNNLM(nn.GRU if seq["arch"] == "gru" else nn.LSTM)
    return TransformerLM() if seq["arch"] == "transformer" else ConvLM()


def build_torch(cfg, weights, data, threads):
    """The PyTorch model, ``torch.optim.Adam`` with its defaults, the plain
    loop: zero_grad, forward, cross-entropy, backward, step."""
    import torch
    torch.set_num_threads(threads)
    model = _torch_lm(cfg["seq"])
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, w in _load(params, weights).items():
            params[name].copy_(torch.from_numpy(w))
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    cross_entropy = torch.nn.functional.cross_entropy
    batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]

    def train_step(i):
        x, y = batches[i % len(batches)]
        opt.zero_grad()
        loss = cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    train_step.method = "zero_grad(); cross_entropy(model(x), y).backward(); Adam.step()"
    return train_step, lambda i: train_step(i).item()
