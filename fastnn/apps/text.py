"""Text utilities for next-token language models (Bengio et al., 2003).

A fixed-context model sees the previous ``context`` token ids and predicts a
distribution over the vocabulary for the next one.  This module holds the
pieces around such a model that are not layers: tokenizers, the window
builder, a corpus that needs no download, perplexity baselines and sampling.
Everything here is pure Python + NumPy so it works before the compiled core
is built.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import math
import numbers
import os
import re
from typing import Callable, Iterable

import numpy as np

from .. import _validation as V
from .._atomic import atomic_write
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "CharTokenizer",
    "WordTokenizer",
    "next_token_windows",
    "stdlib_corpus",
    "perplexity",
    "unigram_perplexity",
    "sample_next",
    "generate",
]

UNK = "<unk>"
_FORMAT_VERSION = 1
_WORD_RE = re.compile(r"\w+|[^\w\s]")


# --------------------------------------------------------------------------
# small validators
# --------------------------------------------------------------------------

def _check_text(text) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return text


def _as_ids(name: str, ids, ndim: int = 1) -> np.ndarray:
    """Accept lists or integer arrays; floats are refused, not silently truncated."""
    arr = np.asarray(ids)
    if arr.size == 0 and arr.dtype.kind not in "iu":
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer token ids, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def _check_range(name: str, ids: np.ndarray, vocab_size: int) -> None:
    bad = (ids < 0) | (ids >= vocab_size)
    if bad.any():
        first = int(ids[np.argmax(bad)])
        raise ValueError(
            f"{name}: id {first} is out of range for a vocabulary of {vocab_size} tokens"
        )


def _atomic_write_text(path, data: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(data)


# --------------------------------------------------------------------------
# tokenizers
# --------------------------------------------------------------------------

class _Tokenizer:
    """Shared vocabulary machinery.

    Id 0 is always ``<unk>`` and the other tokens follow in sorted order, so a
    vocabulary depends only on the set of tokens seen, never on dict or set
    iteration order.  Lookup is a binary search over the sorted token array
    (``np.searchsorted``), which keeps encoding vectorised.
    """

    _kind = ""  # JSON tag, set by subclasses

    def __init__(self):
        self._itos: list[str] | None = None   # id -> token, index 0 is <unk>
        self._sorted: np.ndarray | None = None  # tokens 1.. as a NumPy array

    # -- to be provided by subclasses ------------------------------------
    def _split(self, text: str) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _join(self, tokens: list[str]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _config(self) -> dict:
        return {}

    # -- fitting -----------------------------------------------------------
    def fit(self, text: str, min_count: int = 1):
        """Build the vocabulary; tokens seen fewer than ``min_count`` times become ``<unk>``."""
        text = _check_text(text)
        min_count = V.integer(min_count, "min_count", 1)
        if not text:
            raise ValueError("text is empty")
        units = self._split(text)
        if units.size == 0:
            raise ValueError("text is empty (it has no tokens)")
        uniq, counts = np.unique(units, return_counts=True)  # sorted
        self._set_tokens(uniq[counts >= min_count].tolist())
        return self

    @classmethod
    def from_text(cls, text: str, min_count: int = 1, **kwargs):
        return cls(**kwargs).fit(text, min_count=min_count)

    def _set_tokens(self, tokens: list[str]) -> None:
        self._itos = [UNK] + list(tokens)
        self._sorted = self._to_array(tokens)

    def _to_array(self, tokens) -> np.ndarray:
        return np.array(tokens, dtype=str) if len(tokens) else np.array([], dtype="<U1")

    def _require_fitted(self) -> list[str]:
        if self._itos is None:
            raise RuntimeError(
                f"{type(self).__name__} has no vocabulary; call fit(text) or load(path) first"
            )
        return self._itos

    # -- public API --------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._require_fitted())

    @property
    def vocab(self) -> list[str]:
        """Id-ordered tokens (a copy); index 0 is ``<unk>``."""
        return list(self._require_fitted())

    unk_id = 0
    unk_token = UNK

    def encode(self, text: str) -> np.ndarray:
        """Token ids as int64; unseen tokens map to ``unk_id``. Empty text gives an empty array."""
        self._require_fitted()
        units = self._split(_check_text(text))
        if units.size == 0:
            return np.zeros(0, dtype=np.int64)
        keys = self._sorted
        if keys.size == 0:
            return np.zeros(units.shape, dtype=np.int64)
        pos = np.searchsorted(keys, units)
        found = keys[np.minimum(pos, keys.size - 1)] == units
        return np.where(found, pos + 1, 0).astype(np.int64)

    def decode(self, ids) -> str:
        itos = self._require_fitted()
        arr = _as_ids("ids", ids)
        _check_range("decode", arr, len(itos))
        table = np.array(itos, dtype=object)
        return self._join(table[arr].tolist())

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        size = "unfitted" if self._itos is None else f"vocab_size={len(self._itos)}"
        return f"{type(self).__name__}({size})"

    # -- persistence -------------------------------------------------------
    def save(self, path) -> None:
        """JSON (no pickle), written atomically."""
        itos = self._require_fitted()
        payload = {
            "format": self._kind,
            "version": _FORMAT_VERSION,
            "config": self._config(),
            "tokens": itos[1:],
        }
        # ensure_ascii keeps lone surrogates (legal in a Python str) round-trippable.
        _atomic_write_text(path, json.dumps(payload, ensure_ascii=True, indent=0))

    @classmethod
    def load(cls, path):
        path = os.fspath(path)
        with open(path, "r", encoding="utf-8") as f:
            try:
                payload = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path!r} is not a valid tokenizer file: {e}") from None
        if not isinstance(payload, dict) or payload.get("format") != cls._kind:
            got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
            raise ValueError(f"{path!r}: expected format {cls._kind!r}, got {got!r}")
        if payload.get("version") != _FORMAT_VERSION:
            raise ValueError(
                f"{path!r}: unsupported version {payload.get('version')!r} "
                f"(expected {_FORMAT_VERSION})"
            )
        tokens = payload.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"{path!r}: 'tokens' must be a list of strings")
        if tokens != sorted(set(tokens)):
            raise ValueError(f"{path!r}: 'tokens' must be sorted and unique")
        config = payload.get("config", {})
        try:
            tok = cls(**config)
        except TypeError as e:
            raise ValueError(f"{path!r}: bad 'config' {config!r}: {e}") from None
        tok._set_tokens(tokens)
        return tok


class CharTokenizer(_Tokenizer):
    """One token per Unicode code point; the right unit for small corpora."""

    _kind = "fastnn.text.CharTokenizer"

    def _split(self, text: str) -> np.ndarray:
        # A '<U1' array would drop '\x00' (NumPy strips trailing NULs), so work on
        # code points: the whole lookup stays integer and exact.
        return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")

    def _to_array(self, tokens) -> np.ndarray:
        return np.array([ord(t) for t in tokens], dtype="<u4")

    def fit(self, text: str, min_count: int = 1):
        text = _check_text(text)
        min_count = V.integer(min_count, "min_count", 1)
        if not text:
            raise ValueError("text is empty")
        codes, counts = np.unique(self._split(text), return_counts=True)
        codes = codes[counts >= min_count]
        self._set_tokens([chr(c) for c in codes.tolist()])
        return self

    def _set_tokens(self, tokens: list[str]) -> None:
        if any(len(t) != 1 for t in tokens):
            raise ValueError("CharTokenizer tokens must be single characters")
        super()._set_tokens(tokens)

    def _join(self, tokens: list[str]) -> str:
        return "".join(tokens)


class WordTokenizer(_Tokenizer):
    """Words (``\\w+``) and single punctuation marks (``[^\\w\\s]``).

    Whitespace is not kept, so ``decode`` rejoins with single spaces and only
    glues common punctuation back on; decoding is for reading, not for
    reconstructing the exact input.
    """

    _kind = "fastnn.text.WordTokenizer"
    _NO_SPACE_BEFORE = re.compile(r" ([.,;:!?%)\]}])")
    _NO_SPACE_AFTER = re.compile(r"([(\[{]) ")

    def __init__(self, lowercase: bool = False):
        super().__init__()
        if not isinstance(lowercase, bool):
            raise TypeError(f"lowercase must be a bool, got {type(lowercase).__name__}")
        self.lowercase = lowercase

    def _config(self) -> dict:
        return {"lowercase": self.lowercase}

    def _split(self, text: str) -> np.ndarray:
        if self.lowercase:
            text = text.lower()
        return self._to_array(_WORD_RE.findall(text))

    def _join(self, tokens: list[str]) -> str:
        s = " ".join(tokens)
        s = self._NO_SPACE_BEFORE.sub(r"\1", s)
        return self._NO_SPACE_AFTER.sub(r"\1", s)

    def __repr__(self) -> str:
        base = super().__repr__()[:-1]
        return f"{base}, lowercase={self.lowercase})"


# --------------------------------------------------------------------------
# training pairs
# --------------------------------------------------------------------------

def next_token_windows(ids, context: int) -> tuple[np.ndarray, np.ndarray]:
    """All (previous ``context`` tokens, next token) pairs of a token stream.

    Returns ``X`` int64 (n, context) and ``y`` int64 (n,), n = len(ids) - context.
    The sliding-window view is copied because a strided view aliases every
    token ``context`` times; shuffling or writing into it would be wrong.
    """
    context = V.integer(context, "context", 1)
    arr = _as_ids("ids", ids)
    if arr.shape[0] <= context:
        raise ValueError(
            f"context ({context}) must be shorter than the text ({arr.shape[0]} tokens)"
        )
    X = np.array(sliding_window_view(arr[:-1], context), dtype=np.int64, order="C", copy=True)
    y = np.array(arr[context:], dtype=np.int64, copy=True)
    return X, y


# --------------------------------------------------------------------------
# corpus
# --------------------------------------------------------------------------

# Modules whose docstrings make the corpus: present on every CPython, with no
# platform-specific members.  Sorted, so adding one is a one-line diff.
_CORPUS_MODULES = (
    "argparse", "ast", "bisect", "calendar", "collections", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "email.message", "enum", "fractions", "functools", "getopt",
    "heapq", "html", "http.client", "inspect", "ipaddress", "itertools",
    "json", "logging", "numbers", "operator", "optparse", "pathlib",
    "pickle", "pprint", "queue", "random", "re", "shlex", "statistics",
    "string", "textwrap", "threading", "unittest.case", "urllib.parse",
    "warnings", "zipfile",
)

# Generated docstrings (dataclasses, reprs of defaults) can embed addresses.
_ADDRESS_RE = re.compile(r"\bat 0x[0-9a-fA-F]+")


def _owned(modname: str, public: set | None, name: str, obj) -> bool:
    """Keep members defined by the module (or its C accelerator), not re-imports."""
    if name.startswith("_"):
        return False
    if not (inspect.isclass(obj) or inspect.isroutine(obj)):
        return False
    if public is not None and name in public:
        return True
    owner = getattr(obj, "__module__", None)
    return owner in (modname, "_" + modname.rsplit(".", 1)[-1])


def _class_docs(cls) -> Iterable:
    yield cls.__doc__
    for name in sorted(vars(cls)):
        if name.startswith("_") and name != "__init__":
            continue
        attr = vars(cls)[name]
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if isinstance(attr, property) or inspect.isroutine(attr) or inspect.isclass(attr):
            yield getattr(attr, "__doc__", None)


def _module_docs(modname: str) -> Iterable:
    mod = importlib.import_module(modname)
    yield mod.__doc__
    public = getattr(mod, "__all__", None)
    public = set(public) if isinstance(public, (list, tuple)) else None
    for name, obj in sorted(vars(mod).items()):  # vars(): no module __getattr__ side effects
        if _owned(modname, public, name, obj):
            if inspect.isclass(obj):
                yield from _class_docs(obj)
            else:
                yield obj.__doc__


@functools.lru_cache(maxsize=1)
def _full_corpus() -> str:
    seen: set[str] = set()
    parts: list[str] = []
    for modname in _CORPUS_MODULES:
        for doc in _module_docs(modname):
            if not isinstance(doc, str):
                continue
            # One docstring per line: collapse all whitespace so indentation
            # and line wrapping of the source do not become "tokens".
            doc = " ".join(doc.split())
            if len(doc) < 2 or doc in seen or _ADDRESS_RE.search(doc):
                continue
            seen.add(doc)
            parts.append(doc)
    return "\n".join(parts)


def stdlib_corpus(max_chars: int = 200_000) -> str:
    """English-ish text that every Python install already has: stdlib docstrings.

    The same Python version (and optimisation level: ``-OO`` strips the
    pure-Python docstrings) gives the same string on every run and machine,
    so experiments on it are reproducible without a download.  Each
    docstring is one line; the result is cut to at most ``max_chars``.
    """
    max_chars = V.integer(max_chars, "max_chars", 1)
    text = _full_corpus()
    if not text:
        raise RuntimeError("no standard-library docstrings available (running with -OO?)")
    return text[:max_chars]


# --------------------------------------------------------------------------
# perplexity
# --------------------------------------------------------------------------

def perplexity(loss) -> float:
    """exp(mean cross-entropy in nats): the effective number of equally likely choices.

    Accepts one mean loss or an array of per-token/per-batch losses (their
    mean is taken first, so pass per-token losses for an exact figure).
    """
    arr = np.asarray(loss, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("loss is empty")
    if np.isnan(arr).any():
        raise ValueError("loss contains NaN")
    if (arr < 0).any():
        raise ValueError(f"loss must be a non-negative cross-entropy, got min {arr.min()}")
    with np.errstate(over="ignore"):
        return float(np.exp(arr.mean()))


def unigram_perplexity(train_ids, eval_ids, vocab_size: int) -> float:
    """Perplexity of an add-one smoothed unigram model: the bar a context model must clear.

    Add-one smoothing gives every id a non-zero probability, so unseen eval
    tokens do not make the result infinite.
    """
    vocab_size = V.integer(vocab_size, "vocab_size", 1)
    train = _as_ids("train_ids", train_ids)
    ev = _as_ids("eval_ids", eval_ids)
    if ev.size == 0:
        raise ValueError("eval_ids is empty")
    _check_range("train_ids", train, vocab_size)
    _check_range("eval_ids", ev, vocab_size)
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64)
    log_p = np.log(counts + 1.0) - math.log(train.size + vocab_size)
    return float(np.exp(-log_p[ev].mean()))


# --------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------

def _check_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    t = float(temperature)
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return t


def _check_top_k(top_k) -> int | None:
    if top_k is None:
        return None
    return V.integer(top_k, "top_k", 1)


def _sample(z: np.ndarray, t: float, k: int | None, rng: np.random.Generator) -> int:
    V = z.shape[0]
    if k is not None and k < V:
        if k == 1:
            return int(np.argmax(z))  # greedy; the same tie-break as argmax
        keep = np.argpartition(z, V - k)[V - k:]
        masked = np.full(V, -np.inf)
        masked[keep] = z[keep]
        z = masked
    # Subtract the max before dividing by t: a tiny t then sends the others
    # to -inf instead of overflowing the max to +inf (inf - inf = NaN).
    with np.errstate(over="ignore"):
        p = np.exp((z - z.max()) / t)
    p /= p.sum()
    return int(rng.choice(V, p=p))


def sample_next(logits, temperature: float = 1.0, top_k: int | None = None, rng=None) -> int:
    """Draw one token id from a row of logits.

    ``temperature`` < 1 sharpens, > 1 flattens; ``top_k`` restricts the draw
    to the k largest logits (k larger than the vocabulary means no limit;
    ``top_k=1`` is greedy argmax).  ``rng`` is a ``numpy.random.Generator``,
    a seed, or None for fresh entropy.  ``-inf`` logits mark banned tokens.
    """
    t = _check_temperature(temperature)
    k = _check_top_k(top_k)
    z = np.asarray(logits)
    if z.dtype.kind not in "fiu":
        raise TypeError(f"logits must be real numbers, got dtype {z.dtype}")
    if z.ndim != 1:
        raise ValueError(f"logits must be 1-D (one row), got shape {z.shape}")
    if z.size == 0:
        raise ValueError("logits is empty")
    z = z.astype(np.float64)
    if np.isnan(z).any() or np.isposinf(z).any():
        raise ValueError("logits contain NaN or +inf")
    if np.isneginf(z).all():
        raise ValueError("all logits are -inf; nothing can be sampled")
    return _sample(z, t, k, np.random.default_rng(rng))


def generate(
    predict_logits: Callable[[np.ndarray], np.ndarray],
    prompt_ids,
    n: int,
    context: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed=None,
) -> np.ndarray:
    """Sample ``n`` tokens autoregressively from a fixed-context model.

    ``predict_logits`` maps an int64 (1, context) window to (1, V) logits.
    A prompt shorter than ``context`` is left-padded with id 0 (``<unk>`` for
    the tokenizers here), the same filler a model sees if it was trained on
    padded starts; a longer prompt keeps its last ``context`` ids.  Returns
    only the ``n`` new ids (int64); a fixed ``seed`` makes the draw reproducible.
    """
    if not callable(predict_logits):
        raise TypeError("predict_logits must be callable")
    n = V.integer(n, "n", 0)
    context = V.integer(context, "context", 1)
    t = _check_temperature(temperature)
    k = _check_top_k(top_k)
    prompt = _as_ids("prompt_ids", prompt_ids)
    if (prompt < 0).any():
        raise ValueError(f"prompt_ids must be non-negative, got {int(prompt.min())}")
    rng = np.random.default_rng(seed)

    window = np.zeros(context, dtype=np.int64)
    tail = prompt[-context:] if prompt.size else prompt
    if tail.size:
        window[context - tail.size:] = tail
    out = np.empty(n, dtype=np.int64)
    for i in range(n):  # inherently sequential: each step feeds the next
        logits = np.asarray(predict_logits(window[None, :].copy()))
        if logits.ndim != 2 or logits.shape[0] != 1 or logits.shape[1] == 0:
            raise ValueError(
                f"predict_logits must return shape (1, V), got {logits.shape}"
            )
        row = logits[0].astype(np.float64)
        if np.isnan(row).any() or np.isposinf(row).any() or np.isneginf(row).all():
            raise ValueError(f"predict_logits returned unusable logits at step {i}")
        tok = _sample(row, t, k, rng)
        out[i] = tok
        window[:-1] = window[1:]
        window[-1] = tok
    return out
