"""Training speed of the sequence architectures, fastnn against PyTorch, same
sizes and hyperparameters, in one run (issue: the sequence table, compiled).

    python benchmarks/sequence.py [--rounds 3] [--steps 20] [--threads 1,2]

Each (implementation, architecture, threads) runs in its own fresh process
with its thread count fixed through the environment before import; rounds
interleave the implementations and the table shows medians. Models read
(batch, context) token ids and predict the next token from the last position
(cross-entropy, Adam lr 1e-3): GRU and LSTM (embedding 64, hidden 256), a
transformer (2 pre-LN causal blocks, d=128, 4 heads, feed-forward 512, learned
positions), a causal Conv1d LM (embedding 64, 3 layers of 128 channels, kernel
3, dilations 1, 2, 4); context 64, batch 32, vocabulary 100.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

VOCAB, CONTEXT, BATCH = 100, 64, 32
ARCHS = ("gru", "lstm", "transformer", "conv")


def _fastnn_model(arch):
    if arch in ("gru", "lstm"):
        from fastnn.apps.rnnlm import GRULM, LSTMLM
        return (GRULM if arch == "gru" else LSTMLM)(VOCAB, 64, 256)
    if arch == "transformer":
        from fastnn.apps.transformerlm import TransformerLM
        return TransformerLM(VOCAB, 128, 4, 2, CONTEXT, dim_feedforward=512)
    from fastnn.apps.seqmodels import CausalConvLM
    return CausalConvLM(VOCAB, 64, 128, 3, 3)


def _torch_model(arch):
    import torch
    from torch import nn

    class RNNLM(nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, 64)
            self.rnn = cell(64, 256, batch_first=True)
            self.head = nn.Linear(256, VOCAB)

        def forward(self, x):
            out, _ = self.rnn(self.embed(x))
            return self.head(out[:, -1])

    class TransformerLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, 128)
            self.pos = nn.Parameter(torch.randn(CONTEXT, 128))
            self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(
                128, 4, 512, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
                for _ in range(2))
            self.norm = nn.LayerNorm(128)
            self.head = nn.Linear(128, VOCAB)
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(CONTEXT))

        def forward(self, x):
            h = self.embed(x) + self.pos[: x.shape[1]]
            for b in self.blocks:
                h = b(h, src_mask=self.mask, is_causal=True)
            return self.head(self.norm(h)[:, -1])

    class ConvLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, 64)
            self.convs = nn.ModuleList(nn.Conv1d(64 if i == 0 else 128, 128, 3, dilation=2 ** i)
                                       for i in range(3))
            self.head = nn.Linear(128, VOCAB)

        def forward(self, x):
            h = self.embed(x).transpose(1, 2)
            for i, c in enumerate(self.convs):
                h = torch.relu(c(nn.functional.pad(h, (2 * 2 ** i, 0))))
            return self.head(h[:, :, -1])

    if arch == "gru":
        return RNNLM(nn.GRU)
    if arch == "lstm":
        return RNNLM(nn.LSTM)
    return TransformerLM() if arch == "transformer" else ConvLM()


def worker(impl, arch, steps):
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCAB, (BATCH, CONTEXT))
    y = rng.integers(0, VOCAB, BATCH)
    if impl == "fastnn":
        import fastnn as fn
        fn.seed(0)
        model = _fastnn_model(arch)
        trainer = fn.Trainer(model, fn.CrossEntropyLoss(), fn.Adam(model.parameters(), lr=1e-3))
        step = lambda: trainer.step(x, y)  # noqa: E731
    else:
        import torch
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        torch.manual_seed(0)
        model = _torch_model(arch)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def step():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(tx), ty)
            loss.backward()
            opt.step()
    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return BATCH * CONTEXT * steps / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--worker", nargs=2)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.steps)))
        return
    rates = {}
    for rnd in range(args.rounds):
        for threads in [int(t) for t in args.threads.split(",")]:
            env = {**os.environ, "OMP_NUM_THREADS": str(threads),
                   "FASTNN_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": "1"}
            for arch in ARCHS:
                for impl in (("fastnn", "torch") if rnd % 2 == 0 else ("torch", "fastnn")):
                    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--steps",
                                          str(args.steps), "--worker", impl, arch], env=env,
                                         capture_output=True, text=True, cwd="/")
                    if out.returncode:
                        sys.exit(out.stderr)
                    rates.setdefault((arch, threads, impl), []).append(json.loads(out.stdout))
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print("| architecture | threads | fastnn tokens/s | PyTorch tokens/s | fastnn / PyTorch |")
    print("|---|---|---|---|---|")
    for arch in ARCHS:
        for threads in [int(t) for t in args.threads.split(",")]:
            f = statistics.median(rates[(arch, threads, "fastnn")])
            t = statistics.median(rates[(arch, threads, "torch")])
            print(f"| {arch} | {threads} | {f:,.0f} | {t:,.0f} | {f / t:.2f}× |")


if __name__ == "__main__":
    main()
