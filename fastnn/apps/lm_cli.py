"""The ``fastnn lm`` command: train a language model on a text, print its
validation perplexity against the unigram baseline, sample from it, save it;
``--compare`` trains every architecture of the course's sequence table under
one time budget.

    python -m fastnn lm                      # demo on stdlib docstrings
    python -m fastnn lm --text book.txt --epochs 10 --sample 500
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

from . import text as T
from .lm import (ARCHITECTURES, DEFAULT_MAX_CHARS, DEFAULT_SAVE, DEFAULTS, sample_text, save_lm,
                 train_lm, vocab_path_for)

__all__ = ["add_arguments", "main", "run"]


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def add_arguments(p):
    """The ``lm`` subcommand's options (shared by ``python -m fastnn lm``)."""
    d = DEFAULTS
    p.add_argument("--text", metavar="FILE",
                   help="UTF-8 text file to train on (default: Python standard-library "
                        "docstrings, which every install has)")
    p.add_argument("--word", action="store_true",
                   help="model words and punctuation instead of characters")
    p.add_argument("--context", type=int, default=d["context"],
                   help=f"tokens of context the model reads (default {d['context']})")
    p.add_argument("--embed", type=int, default=d["embed"],
                   help=f"embedding size per token (default {d['embed']})")
    p.add_argument("--hidden", type=int, default=d["hidden"],
                   help=f"hidden units (default {d['hidden']})")
    p.add_argument("--dropout", type=float, default=None,
                   help=f"dropout after the MLP's hidden layer (default {d['dropout']}; the "
                        "other architectures have none)")
    p.add_argument("--epochs", type=int, default=d["epochs"], help=f"default {d['epochs']}")
    p.add_argument("--batch-size", type=int, default=d["batch_size"],
                   help=f"default {d['batch_size']}")
    p.add_argument("--lr", type=float, default=d["lr"], help=f"Adam learning rate (default {d['lr']})")
    p.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS,
                   help=f"use at most this many characters of the text (default {DEFAULT_MAX_CHARS:,})")
    p.add_argument("--min-count", type=int, default=None,
                   help="rarer tokens become <unk> (default 1 for characters, 2 for words)")
    p.add_argument("--sample", type=int, default=300, metavar="N",
                   help="tokens to generate after training (default 300; 0 for none)")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="sampling temperature (default 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="sample from the k likeliest tokens only")
    p.add_argument("--prompt", default="", help="text to continue (default: a new line)")
    p.add_argument("--save", default=DEFAULT_SAVE, metavar="PATH",
                   help=f"where to save the model (default {DEFAULT_SAVE}; the vocabulary "
                        "goes next to it as .vocab.json)")
    p.add_argument("--no-save", action="store_true", help="do not save the model")
    p.add_argument("--seed", type=int, default=d["seed"], help=f"default {d['seed']}")
    p.add_argument("--no-progress", action="store_true", help="no per-batch progress bar")
    p.add_argument("--arch", default="mlp", choices=sorted(ARCHITECTURES),
                   help="the model: a row of the sequence table (default mlp)")
    p.add_argument("--compare", action="store_true",
                   help="train every architecture for the same --budget and print one table")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="stop after the epoch that ends past this much training time "
                        "(default: none; 120 with --compare)")
    return p


def _read_text(args):
    if args.max_chars < 1:
        raise ValueError(f"--max-chars must be >= 1, got {args.max_chars}")
    if args.text is None:
        try:
            text = T.stdlib_corpus(max_chars=args.max_chars)
        except RuntimeError as e:  # python -OO strips the docstrings
            raise ValueError(f"{e}; pass --text FILE") from None
        return text, (f"no --text given: training on {len(text):,} characters of Python "
                      "standard-library docstrings (fastnn.text.stdlib_corpus)")
    try:
        with open(args.text, "r", encoding="utf-8", errors="replace") as f:
            text = f.read(args.max_chars + 1)
    except OSError as e:
        raise ValueError(f"cannot read --text {args.text!r}: {e.strerror or e}") from None
    if not text:
        raise ValueError(f"--text {args.text!r} is empty")
    note = ""
    if len(text) > args.max_chars:
        text = text[:args.max_chars]
        note = f" (the first {args.max_chars:,}; see --max-chars)"
    return text, f"training on {len(text):,} characters of {args.text}{note}"


def _check_args(args):
    for name in ("context", "embed", "hidden", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise ValueError(f"--lr must be a finite number > 0, got {args.lr}")
    if args.dropout is not None and not 0.0 <= args.dropout < 1.0:
        raise ValueError(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.sample < 0:
        raise ValueError(f"--sample must be >= 0, got {args.sample}")
    if not (args.temperature > 0 and math.isfinite(args.temperature)):
        raise ValueError(f"--temperature must be a finite number > 0, got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    if args.min_count is not None and args.min_count < 1:
        raise ValueError(f"--min-count must be >= 1, got {args.min_count}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if not args.no_save:  # before training, not after it
        for path in (args.save, vocab_path_for(args.save)):
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise ValueError(f"--save {args.save!r}: the folder {folder!r} does not exist")
            if not os.access(folder, os.W_OK):
                raise ValueError(f"--save {args.save!r}: the folder {folder!r} is not writable")
            if os.path.isdir(path):
                raise ValueError(f"--save {args.save!r}: {path!r} is a folder")


def versus_baseline(val_ppl, unigram_ppl):
    """How the model's perplexity compares with the unigram baseline, in words
    that stay true when the model is the worse of the two."""
    ratio = unigram_ppl / val_ppl
    if ratio >= 1:
        return f"{ratio:.2f}x lower than the baseline"
    return f"{1 / ratio:.2f}x HIGHER than the baseline: worse than predicting token frequencies"


def compare(args, text):
    """Every architecture on the same text, split and tokenizer for the same
    wall-clock budget; one row each: parameters, tokens/s, best validation
    perplexity, a sample line."""
    budget = 120.0 if args.budget is None else args.budget
    kind = "word" if args.word else "char"
    rows = []
    for arch in sorted(ARCHITECTURES):
        dropout = _dropout_for(arch, args.dropout)
        model, tok, hist = train_lm(
            text, tokenizer=kind, context=args.context, embed=args.embed, hidden=args.hidden,
            epochs=10**6, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
            dropout=dropout, progress=False, log=None, arch=arch, budget=budget)
        seconds = sum(hist["time"])
        sample = sample_text(model, tok, "", 80, context=args.context,
                             temperature=args.temperature, seed=args.seed)
        rows.append((arch, sum(p.data.size for p in model.parameters()),
                     hist["n_train"] * len(hist["time"]) / seconds, min(hist["val_ppl"]),
                     len(hist["time"]), sample.strip().split("\n")[0][:48]))
        print(f"{arch}: {len(hist['time'])} epochs in {seconds:.1f}s, best validation "
              f"perplexity {min(hist['val_ppl']):.2f}", flush=True)
    print(f"\nunigram baseline perplexity {hist['unigram_ppl']:.2f}; budget {budget:g}s each, "
          f"context {args.context}, {fn_threads()} thread(s)")
    print("| architecture | parameters | tokens/s | epochs | best val ppl | sample |")
    print("|---|---|---|---|---|---|")
    for arch, params, tps, ppl, epochs, sample in rows:
        print(f"| {arch} | {params:,} | {tps:,.0f} | {epochs} | {ppl:.2f} | `{sample}` |")
    return 0


def _dropout_for(arch, given):
    """--dropout's default: the MLP's 0.1; the other architectures have none."""
    if given is None:
        return DEFAULTS["dropout"] if arch == "mlp" else 0.0
    return given


def fn_threads():
    from .._threading import get_num_threads
    return get_num_threads()


def run(args):
    """The CLI's work; raises ValueError on bad input."""
    _check_args(args)
    if args.budget is not None and not (args.budget > 0 and math.isfinite(args.budget)):
        raise ValueError(f"--budget must be a number of seconds > 0, got {args.budget}")
    if args.compare:
        text, note = _read_text(args)
        print(note, flush=True)
        return compare(args, text)
    t0 = time.perf_counter()
    text, note = _read_text(args)
    print(note, flush=True)
    kind = "word" if args.word else "char"
    min_count = args.min_count if args.min_count is not None else (2 if args.word else 1)
    log = lambda line: print(line, flush=True)  # noqa: E731
    model, tok, hist = train_lm(
        text, tokenizer=kind, context=args.context, embed=args.embed, hidden=args.hidden,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        dropout=_dropout_for(args.arch, args.dropout), min_count=min_count,
        progress=not args.no_progress, log=log,
        arch=args.arch, budget=args.budget)
    val_ppl, uni = hist["val_ppl"][-1], hist["unigram_ppl"]
    print(f"validation perplexity {val_ppl:.2f} vs unigram baseline {uni:.2f} "
          f"({versus_baseline(val_ppl, uni)}); trained in {time.perf_counter() - t0:.1f}s",
          flush=True)
    if not args.no_save:
        try:
            mpath, vpath = save_lm(args.save, model, tok)
        except OSError as e:
            raise ValueError(f"cannot save the model to {args.save!r}: {e.strerror or e}") from None
        else:
            print(f"saved the model to {mpath} and its vocabulary to {vpath}", flush=True)
    if args.sample:
        sample = sample_text(model, tok, args.prompt, args.sample, context=args.context,
                             temperature=args.temperature,
                             top_k=args.top_k, seed=args.seed)
        sep = " " if args.word and args.prompt else ""
        k = f", top-k {args.top_k}" if args.top_k else ""
        print(f"\n--- sample ({args.sample} {'words' if args.word else 'characters'}, "
              f"temperature {args.temperature}{k}) ---")
        print(args.prompt + sep + sample)
    return 0


def main(args=None):
    """Entry point of ``python -m fastnn lm``: ``args`` is the parsed namespace
    (or an argv list / None to parse here).  Bad input prints ``error: ...``
    and returns 2, without a traceback."""
    if args is None or isinstance(args, (list, tuple)):
        parser = add_arguments(argparse.ArgumentParser(prog="python -m fastnn lm",
                                                       description=__doc__.split("\n")[0]))
        args = parser.parse_args(args)
    try:
        return run(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
