"""A fixed-context neural language model (Bengio et al., 2003), the other
architectures of the sequence table by name, training, sampling and saving
(the command line is lm_cli).

The model reads the previous ``context`` token ids, looks up an embedding for
each, concatenates them, runs an MLP and predicts a distribution over the
vocabulary for the next token.  Training minimizes the mean next-token
cross-entropy  L = -(1/T) sum_t log P(x_t | x_{t-context}, ..., x_{t-1});
exp(L) is the perplexity.

From Python::

    model, tok, hist = fastnn.apps.lm.train_lm(text, context=8)
    print(hist["val_ppl"][-1], "vs unigram", hist["unigram_ppl"])
    print(fastnn.apps.lm.sample_text(model, tok, "The ", n=200, seed=0))
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .. import _random
from .. import _validation as V
from . import text as T
from ..nn.activations import Tanh
from ..train.callbacks import Callback
from ..nn.layers import Dropout, Embedding, Flatten, Linear
from ..nn.losses import CrossEntropyLoss
from ..nn.sequential import Sequential
from ..optim.optimizers import Adam
from ..train.progress import bar_verbosity
from ..optim.schedulers import CosineAnnealingLR, LinearWarmup
from ..train.trainer import Trainer

__all__ = ["build_model", "train_lm", "sample_text", "model_context", "save_lm", "load_lm",
           "vocab_path_for"]

# Defaults of the CLI and of train_lm.  Measured on the 200k-character stdlib
# corpus (2 cores): ~2 s/epoch, validation perplexity ~5.9 against a unigram
# baseline of ~26.7.  Tanh beat ReLU and GELU here by a small margin, and a
# little dropout narrows the train/validation gap of this 180k-window corpus.
DEFAULTS = dict(context=8, embed=24, hidden=256, epochs=6, batch_size=128, lr=3e-3,
                dropout=0.1, val_fraction=0.1, seed=0)
DEFAULT_MAX_CHARS = 200_000
DEFAULT_SAVE = "lm_model.npz"


# --------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------

# --------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------

def build_model(vocab_size, context, embed=24, hidden=256, dtype="float32", dropout=0.0):
    """Embedding -> Flatten -> Linear(context*embed, hidden) -> Tanh [-> Dropout] -> Linear(hidden, V).

    Input: int ids of shape (batch, context); output: logits (batch, vocab_size).
    """
    vocab_size = V.integer(vocab_size, "vocab_size", 1)
    context = V.integer(context, "context", 1)
    embed = V.integer(embed, "embed", 1)
    hidden = V.integer(hidden, "hidden", 1)
    dropout = V.real(dropout, "dropout", 0.0, 1.0, high_open=True)
    layers = [Embedding(vocab_size, embed), Flatten(), Linear(context * embed, hidden), Tanh()]
    if dropout > 0:
        layers.append(Dropout(dropout))
    layers.append(Linear(hidden, vocab_size))
    return Sequential(*layers, dtype=dtype)


def _no_dropout(arch, dropout):
    if dropout:
        raise ValueError(f"arch {arch!r} has no dropout (dropout must be 0, got {dropout})")


def _transformer(vocab, context, embed, hidden, dtype, dropout):
    from .transformerlm import TransformerLM
    _no_dropout("transformer", dropout)
    nhead = 4 if embed % 4 == 0 else 1
    return TransformerLM(vocab, embed, nhead, 2, context, dim_feedforward=hidden, dtype=dtype,
                         per_position=True)


def _bow(vocab, context, embed, hidden, dtype, dropout):
    from .seqmodels import BagOfWordsLM
    _no_dropout("bow", dropout)
    return BagOfWordsLM(vocab, embed, dtype=dtype)


def _cnn(vocab, context, embed, hidden, dtype, dropout):
    from .seqmodels import CausalConvLM
    _no_dropout("cnn", dropout)
    layers = max(1, (context - 1).bit_length())  # dilations 1, 2, 4, ... cover the context
    return CausalConvLM(vocab, embed, hidden, 2, layers, dtype=dtype, per_position=True)


def _rnn(kind):
    def build(vocab, context, embed, hidden, dtype, dropout):
        from . import rnnlm
        _no_dropout(kind, dropout)
        return getattr(rnnlm, kind)(vocab, embed, hidden, dtype=dtype, per_position=True)
    return build


# The rows of the course's sequence table that fastnn builds: each takes
# (vocab, context, embed, hidden, dtype, dropout) and returns a model mapping
# (batch, context) ids to (batch, vocab) next-token logits.
ARCHITECTURES = {
    "mlp": lambda vocab, context, embed, hidden, dtype, dropout: build_model(
        vocab, context, embed, hidden, dtype=dtype, dropout=dropout),
    "transformer": _transformer,
    "bow": _bow,
    "cnn": _cnn,
    "gru": _rnn("GRULM"),
    "lstm": _rnn("LSTMLM"),
}


def model_context(model):
    """The context length a language model expects (None: any length)."""
    if not isinstance(model, Sequential):
        cfg = model.config() or {}
        return int(cfg["context"]) if "context" in cfg else None
    try:
        emb, linear = model[0], model[2]
    except (TypeError, IndexError):
        emb = linear = None
    if not isinstance(emb, Embedding) or not isinstance(linear, Linear):
        raise TypeError("model must be an LM built by fastnn.apps.lm.build_model "
                        "(Embedding, Flatten, Linear, ...)")
    context, rest = divmod(linear.in_features, emb.embedding_dim)
    if rest or context < 1:
        raise ValueError(f"model's first Linear has {linear.in_features} inputs, not a multiple "
                         f"of the embedding size {emb.embedding_dim}")
    return context


def _make_tokenizer(tokenizer):
    if isinstance(tokenizer, T._Tokenizer):
        return tokenizer
    if tokenizer == "char":
        return T.CharTokenizer()
    if tokenizer == "word":
        return T.WordTokenizer(lowercase=True)
    raise ValueError(f"tokenizer must be 'char', 'word' or a fastnn.text tokenizer, got {tokenizer!r}")


def _split(ids, context, val_fraction):
    """Windows over the whole stream, split by the position of the target:
    the last ``val_fraction`` of the tokens are validation targets (their
    contexts may reach back into the training text, their targets never do)."""
    n = int(ids.shape[0])
    if n <= context:
        raise ValueError(f"context ({context}) must be shorter than the text ({n} tokens)")
    n_val = max(1, int(round(n * val_fraction)))
    cut = n - n_val
    if cut <= context:
        raise ValueError(
            f"text is too short for context={context}: {n} tokens leave {cut} for training "
            f"after holding out {n_val} for validation; need more than {context} "
            f"(use a longer text or a smaller --context)")
    X, y = T.next_token_windows(ids, context)
    k = cut - context                     # window i predicts token i + context
    return (X[:k], y[:k]), (X[k:], y[k:]), cut


def _per_position(ids, cut, context, Xv, yv, ignore_index):
    """Targets for a model that predicts after every position of its window
    (``model.per_position``): training windows side by side (stride ``context``)
    with the next token of every position as targets, (n, context) each, so an
    epoch still sees every training token once as a target but runs 1/context
    of the windows; validation keeps the sliding windows and scores only their
    last position (the others are ``ignore_index``), the MLP's measure exactly."""
    n = (cut - 1) // context
    Xt = np.ascontiguousarray(ids[:n * context].reshape(n, context), dtype=np.int64)
    Yt = np.ascontiguousarray(ids[1:n * context + 1].reshape(n, context), dtype=np.int64)
    Yv = np.full(Xv.shape, ignore_index, np.int64)
    Yv[:, -1] = yv
    return (Xt, Yt), (Xv, Yv)


class _EpochReport(Callback):
    """Times each epoch and prints one line per epoch."""

    def __init__(self, epochs, unigram, log, budget=None):
        self.epochs, self.unigram, self.log, self.budget = epochs, unigram, log, budget
        self._t0 = None
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._t0
        self.times.append(seconds)
        if self.log is not None:
            self.log(f"epoch {epoch + 1:>{len(str(self.epochs))}}/{self.epochs}  "
                     f"train CE {logs['loss']:.4f} (ppl {T.perplexity(logs['loss']):.2f})  "
                     f"val CE {logs['val_loss']:.4f}  val ppl {T.perplexity(logs['val_loss']):.2f}  "
                     f"(unigram {self.unigram:.2f})  val acc {100 * logs['val_accuracy']:.1f}%  "
                     f"[{seconds:.1f}s]")
        if self.budget is not None and sum(self.times) >= self.budget:
            self.trainer.stop_training = True  # the wall-clock budget is spent


def train_lm(text, tokenizer="char", context=DEFAULTS["context"], embed=DEFAULTS["embed"],
             hidden=DEFAULTS["hidden"], epochs=DEFAULTS["epochs"],
             batch_size=DEFAULTS["batch_size"], lr=DEFAULTS["lr"], arch="mlp", budget=None,
             val_fraction=DEFAULTS["val_fraction"], seed=DEFAULTS["seed"], progress=True,
             dropout=DEFAULTS["dropout"], min_count=1, dtype="float32", log=None):
    """Train a next-token model on ``text``; returns ``(model, tokenizer, history)``.

    ``tokenizer`` is ``"char"``, ``"word"`` or a fastnn.text tokenizer (fitted
    on ``text`` here unless it already has a vocabulary).  The last
    ``val_fraction`` of the token stream is held out, unshuffled.  Adam with a
    linear warmup and a cosine decay; ``seed`` fixes initialization and
    shuffling (it calls ``fastnn.seed``).  ``progress`` shows a per-batch bar
    on a terminal; ``log`` (e.g. ``print``) receives one line per epoch.

    ``history`` is a dict: per-epoch lists ``loss``/``val_loss`` (mean
    cross-entropy in nats; ``loss`` is the running mean over the epoch's
    batches), ``ppl``/``val_ppl``, ``accuracy``/``val_accuracy``, ``time``,
    plus ``unigram_ppl`` (the add-one unigram baseline on the validation
    tokens), ``vocab_size``, ``context``, ``n_train`` and ``n_val``.

    ``arch`` picks the model (a key of ARCHITECTURES: "mlp", the fixed-window
    MLP; "bow", the mean of the context's embeddings; "cnn", "gru", "lstm";
    "transformer", two causal pre-LN blocks with ``embed`` as d_model and
    ``hidden`` as the feed-forward width). The cnn, gru, lstm and transformer
    rows predict after every position (``per_position``) and train on windows
    side by side with every next token as a target; all rows are validated on
    the token after the last position of the same windows. ``budget``
    (seconds) stops training after the first epoch that ends past it, for
    comparing architectures at equal wall-clock time.
    """
    text = T._check_text(text)
    if not text:
        raise ValueError("text is empty")
    context = V.integer(context, "context", 1)
    epochs = V.integer(epochs, "epochs", 1)
    batch_size = V.integer(batch_size, "batch_size", 1)
    lr = V.real(lr, "lr", 0.0, low_open=True)
    val_fraction = V.real(val_fraction, "val_fraction", 0.0, 1.0, low_open=True, high_open=True)
    seed = V.integer(seed, "seed", 0)
    tok = _make_tokenizer(tokenizer)
    if tok._itos is None:
        tok.fit(text, min_count=min_count)
    ids = tok.encode(text)
    (Xt, yt), (Xv, yv), cut = _split(ids, context, val_fraction)
    vocab = tok.vocab_size
    unigram = T.unigram_perplexity(ids[:cut], ids[cut:], vocab)

    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {arch!r}")
    _random.seed(seed)
    model = ARCHITECTURES[arch](vocab, context, embed, hidden, dtype, dropout)
    loss = CrossEntropyLoss()
    per_position = getattr(model, "per_position", False)
    if per_position:
        (Xt, yt), (Xv, yv) = _per_position(ids, cut, context, Xv, yv, loss.ignore_index)
    n_targets = Xt.size if per_position else len(Xt)
    opt = Adam(model.parameters(), lr=lr)
    steps = epochs * -(-len(Xt) // batch_size)
    warmup = max(1, min(200, steps // 10))
    # A cosine to 5% of lr: the last epochs settle instead of rattling at full lr.
    sched = LinearWarmup(opt, warmup, after=CosineAnnealingLR(opt, max(1, steps - warmup),
                                                              eta_min=0.05 * lr))
    trainer = Trainer(model, loss, opt, scheduler=sched)
    if log is not None:
        log(f"{len(ids):,} tokens, vocabulary {vocab}, {len(Xt):,} training / {len(Xv):,} "
            f"validation windows of {context}; {sum(p.data.size for p in model.parameters()):,} "
            f"parameters; unigram baseline perplexity {unigram:.2f}")
    report = _EpochReport(epochs, unigram, log, budget)
    hist = trainer.fit(Xt, yt, epochs=epochs, batch_size=batch_size, validation_data=(Xv, yv),
                       shuffle=True, seed=seed, callbacks=[report],
                       verbose=bar_verbosity(progress))  # the report prints each epoch
    history = {k: list(v) for k, v in hist.history.items()}
    # History records the logs before our report callback adds to them.
    history["ppl"] = [T.perplexity(v) for v in history["loss"]]
    history["val_ppl"] = [T.perplexity(v) for v in history["val_loss"]]
    history["time"] = list(report.times)
    history.update(unigram_ppl=unigram, vocab_size=vocab, context=context,
                   n_train=n_targets, n_val=len(Xv))
    model.eval()
    return model, tok, history


# --------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------

def _pad_id(tokenizer):
    """Filler for prompts shorter than the context: a line break for characters
    (what precedes a fresh line in the training text), else ``<unk>``."""
    if isinstance(tokenizer, T.CharTokenizer):
        ids = tokenizer.encode("\n")
        if ids.size and ids[0] != tokenizer.unk_id:
            return int(ids[0])
    return tokenizer.unk_id


def sample_text(model, tokenizer, prompt="", n=300, context=None, temperature=0.8,
                top_k=None, seed=None):
    """Continue ``prompt`` by ``n`` sampled tokens; returns the continuation only.

    A prompt shorter than the context is left-padded (with a line break for a
    character model, so an empty prompt means "start a new line").
    ``temperature`` < 1 is more conservative, > 1 more adventurous; ``top_k``
    limits each draw to the k likeliest tokens.  A fixed ``seed`` reproduces
    the sample.
    """
    if prompt is None:
        prompt = ""
    if context is None:
        context = model_context(model)
    if context is None:
        raise ValueError("this model reads any number of tokens: pass context=")
    context = V.integer(context, "context", 1)
    ids = tokenizer.encode(prompt)
    if ids.size < context:
        ids = np.concatenate([np.full(context - ids.size, _pad_id(tokenizer), np.int64), ids])

    def predict_logits(window):
        out = model.predict(window)
        return out[:, -1] if out.ndim == 3 else out  # a per-position model: the last one

    out = T.generate(predict_logits, ids, n, context, temperature=temperature, top_k=top_k,
                     seed=seed)
    return tokenizer.decode(out)


# --------------------------------------------------------------------------
# saving and loading
# --------------------------------------------------------------------------

def vocab_path_for(path):
    """``lm_model.npz`` -> ``lm_model.vocab.json`` (the tokenizer saved next to the model)."""
    path = os.fspath(path)
    root = path[:-4] if path.endswith(".npz") else path
    return root + ".vocab.json"


def save_lm(path, model, tokenizer):
    """Model via ``fastnn.save``; vocabulary as JSON next to it. Returns both paths."""
    from ..train import checkpoint  # lazily: training and sampling do not need it
    checkpoint.save(path, model)
    vpath = vocab_path_for(path)
    tokenizer.save(vpath)
    return os.fspath(path), vpath


def load_lm(path):
    """``(model, tokenizer)`` saved by :func:`save_lm` / the CLI's ``--save``."""
    from ..train import checkpoint
    from . import rnnlm, seqmodels, transformerlm  # noqa: F401 - the classes a checkpoint may name
    vpath = vocab_path_for(path)
    with open(vpath, "r", encoding="utf-8") as f:
        try:
            kind = json.load(f).get("format")
        except (json.JSONDecodeError, AttributeError):
            kind = None
    classes = {cls._kind: cls for cls in (T.CharTokenizer, T.WordTokenizer)}
    if kind not in classes:
        raise ValueError(f"{vpath!r} is not a fastnn tokenizer file")
    tokenizer = classes[kind].load(vpath)
    model = checkpoint.load(path)
    if isinstance(model, Sequential):
        emb = model[0] if len(model) else None
        vocab = emb.num_embeddings if isinstance(emb, Embedding) else None
    else:
        vocab = (model.config() or {}).get("vocab")
    if vocab != tokenizer.vocab_size:
        raise ValueError(f"{os.fspath(path)!r} and {vpath!r} do not belong together "
                         f"(vocabulary of {tokenizer.vocab_size} tokens)")
    model_context(model)
    model.eval()
    return model, tokenizer
