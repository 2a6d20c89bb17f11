"""The fixed-context language model: training beats the unigram baseline,
sampling is reproducible, the CLI runs and rejects bad input cleanly."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fn
from fastnn.apps import lm, lm_cli
from fastnn.apps import text as T



@pytest.fixture(scope="module")
def trained():
    # 20k characters of argparse docstrings: ~3 s on 2 cores.  (At 30k the
    # held-out tail is collections.Counter's doctests, a different language.)
    text = T.stdlib_corpus(max_chars=20_000)
    model, tok, hist = lm.train_lm(text, context=8, embed=24, hidden=128, epochs=3,
                                   batch_size=128, lr=3e-3, seed=0, progress=False)
    return text, model, tok, hist


# ------------------------------------------------------------------ training

def test_lm_beats_unigram_baseline(trained):
    text, model, tok, hist = trained
    uni = hist["unigram_ppl"]
    assert 15 < uni < 60                                     # characters of English
    assert hist["val_ppl"][-1] < 0.5 * uni, (hist["val_ppl"], uni)
    assert hist["val_ppl"][-1] < hist["val_ppl"][0]
    for key in ("loss", "val_loss", "ppl", "val_ppl", "accuracy", "val_accuracy", "time"):
        assert len(hist[key]) == 3, key
    assert hist["val_ppl"] == pytest.approx([math.exp(v) for v in hist["val_loss"]])
    assert hist["unigram_ppl"] == pytest.approx(
        T.unigram_perplexity(tok.encode(text)[:18_000], tok.encode(text)[18_000:], tok.vocab_size))
    assert hist["n_val"] == 2_000 and hist["n_train"] == 18_000 - 8
    assert not model.training


def test_validation_loss_matches_an_independent_computation(trained):
    """val_loss is the mean next-token CE over the last 10% of the stream,
    the contexts of the first targets reaching back into the training text."""
    text, model, tok, hist = trained
    ids = tok.encode(text)
    X, y = T.next_token_windows(ids, 8)
    X, y = X[-2000:], y[-2000:]
    z = model.predict(X).astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    ce = -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1)))
    assert fn.perplexity(ce) == pytest.approx(hist["val_ppl"][-1], rel=1e-4)


def test_per_position_model_trains_on_every_position_and_is_scored_like_the_mlp(monkeypatch):
    """A model with ``per_position`` (logits after every position) trains on
    side-by-side windows with every next token as a target, and its validation
    loss is the CE of the last position of the same sliding windows the MLP has."""
    def bigram(vocab, context, embed, hidden, dtype, dropout):
        model = fn.Sequential(fn.Embedding(vocab, embed), fn.Linear(embed, vocab), dtype=dtype)
        model.per_position = True
        return model
    monkeypatch.setitem(lm.ARCHITECTURES, "bigram", bigram)
    text = T.stdlib_corpus(max_chars=20_000)
    model, tok, hist = lm.train_lm(text, context=8, embed=16, epochs=3, batch_size=16, lr=1e-2,
                                   seed=0, progress=False, arch="bigram")
    assert hist["n_train"] == (18_000 - 1) // 8 * 8 and hist["n_val"] == 2_000
    assert hist["val_ppl"][-1] < 0.6 * hist["unigram_ppl"]
    X, y = T.next_token_windows(tok.encode(text), 8)
    z = model.predict(X[-2000:])[:, -1].astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    ce = -(z[np.arange(2000), y[-2000:]] - np.log(np.exp(z).sum(axis=1)))
    assert fn.perplexity(ce) == pytest.approx(hist["val_ppl"][-1], rel=1e-4)
    assert len(lm.sample_text(model, tok, "The ", n=20, context=8, seed=0)) == 20


def test_build_model_structure():
    fn.seed(0)
    m = lm.build_model(30, context=5, embed=4, hidden=16)
    assert [type(x).__name__ for x in m] == ["Embedding", "Flatten", "Linear", "Tanh", "Linear"]
    assert m[2].in_features == 20 and m[4].out_features == 30
    assert lm.model_context(m) == 5
    assert m(np.zeros((3, 5), np.int64)).shape == (3, 30)
    assert sorted(m.state_dict()) == ["0.weight", "2.bias", "2.weight", "4.bias", "4.weight"]
    m2 = lm.build_model(30, context=5, embed=4, hidden=16, dropout=0.2, dtype="float64")
    assert type(m2[4]).__name__ == "Dropout" and m2.dtype == np.float64
    with pytest.raises(ValueError, match="context"):
        lm.build_model(30, context=0)
    with pytest.raises(TypeError):
        lm.model_context(fn.Sequential(fn.Linear(2, 2)))


def test_training_is_reproducible():
    text = T.stdlib_corpus(max_chars=4_000)
    kw = dict(context=4, embed=8, hidden=32, epochs=1, batch_size=64, seed=5, progress=False)
    m1, _, h1 = lm.train_lm(text, **kw)
    m2, _, h2 = lm.train_lm(text, **kw)
    assert h1["loss"] == h2["loss"] and h1["val_loss"] == h2["val_loss"]
    for k, v in m1.state_dict().items():
        np.testing.assert_array_equal(v, m2.state_dict()[k])


def test_word_tokenizer_model():
    text = " ".join(["the cat sat on the mat .", "a dog ran to the park ."] * 60)
    model, tok, hist = lm.train_lm(text, tokenizer="word", context=3, embed=8, hidden=32,
                                   epochs=5, batch_size=32, progress=False)
    assert isinstance(tok, T.WordTokenizer)
    assert hist["val_ppl"][-1] < 0.5 * hist["unigram_ppl"]
    out = lm.sample_text(model, tok, "the cat", n=6, seed=0)
    ids = tok.encode(out)
    assert len(ids) == 6 and (ids != tok.unk_id).all()


# ------------------------------------------------------------------ bad input

def test_empty_text_is_rejected():
    with pytest.raises(ValueError, match="text is empty"):
        lm.train_lm("", progress=False)
    with pytest.raises(TypeError, match="text must be a str"):
        lm.train_lm(b"bytes", progress=False)
    with pytest.raises(ValueError, match="empty"):
        lm.train_lm("   \n ", tokenizer="word", progress=False)


def test_context_longer_than_text_is_rejected():
    with pytest.raises(ValueError, match=r"context \(8\) must be shorter than the text \(5 tokens\)"):
        lm.train_lm("hello", context=8, progress=False)
    # long enough for one window, but nothing left to train on after the split
    with pytest.raises(ValueError, match="too short for context=8"):
        lm.train_lm("abcdefghi", context=8, progress=False)


@pytest.mark.parametrize("kw, match", [
    ({"context": 0}, "context must be an int >= 1"),
    ({"epochs": 0}, "epochs must be an int >= 1"),
    ({"lr": -1.0}, "lr must be a finite number > 0"),
    ({"val_fraction": 1.0}, r"val_fraction must be a finite number in \(0.0, 1.0\)"),
    ({"tokenizer": "bpe"}, "tokenizer must be"),
    ({"dropout": 1.0}, r"dropout must be a finite number in \[0.0, 1.0\)"),
])
def test_bad_hyperparameters_are_rejected(kw, match):
    with pytest.raises(ValueError, match=match):
        lm.train_lm("some text to train on " * 10, progress=False, **kw)


# ------------------------------------------------------------------ sampling

def test_sampling_is_reproducible(trained):
    _, model, tok, _ = trained
    a = lm.sample_text(model, tok, "The ", n=60, temperature=0.8, seed=123)
    b = lm.sample_text(model, tok, "The ", n=60, temperature=0.8, seed=123)
    c = lm.sample_text(model, tok, "The ", n=60, temperature=0.8, seed=124)
    assert a == b and len(a) == 60
    assert a != c
    # top_k=1 is greedy: the seed does not matter
    g1 = lm.sample_text(model, tok, "The ", n=30, top_k=1, seed=1)
    g2 = lm.sample_text(model, tok, "The ", n=30, top_k=1, seed=2)
    assert g1 == g2
    # top-k draws stay within the k likeliest characters at each step
    ids = tok.encode("the parser ")
    window = ids[-8:][None, :]
    top3 = set(np.argsort(model.predict(window)[0])[-3:].tolist())
    firsts = {tok.encode(lm.sample_text(model, tok, "the parser ", n=1, top_k=3, seed=s))[0]
              for s in range(20)}
    assert firsts <= top3


def test_sampling_is_readable(trained):
    """Low temperature on a character model gives mostly real words."""
    _, model, tok, _ = trained
    text = lm.sample_text(model, tok, "", n=300, temperature=0.5, seed=0)
    words = [w for w in text.replace("\n", " ").split(" ") if w.isalpha()]
    assert len(words) > 20
    assert sum(w.lower() in {"the", "a", "of", "to", "and", "is", "in", "be", "if", "for",
                             "an", "or", "are", "that", "this", "with", "as", "by", "it",
                             "not", "on", "to", "argument", "arguments"}
               for w in words) >= 3, text


def test_sampling_rejects_bad_arguments(trained):
    _, model, tok, _ = trained
    with pytest.raises(ValueError, match="temperature"):
        lm.sample_text(model, tok, "a", n=5, temperature=0)
    with pytest.raises(ValueError, match="top_k"):
        lm.sample_text(model, tok, "a", n=5, top_k=0)
    assert lm.sample_text(model, tok, "a", n=0) == ""
    # unseen prompt characters become <unk>, not an error
    assert len(lm.sample_text(model, tok, "\u2603\u2603", n=5, seed=0)) == 5


# ------------------------------------------------------------------ perplexity

def test_perplexity_helper():
    assert fn.perplexity(0.0) == 1.0
    assert fn.perplexity(math.log(26.7)) == pytest.approx(26.7)
    assert fn.perplexity([math.log(2), math.log(8)]) == pytest.approx(4.0)  # exp of the mean
    assert fn.text is T and fn.perplexity is T.perplexity
    with pytest.raises(ValueError, match="empty"):
        fn.perplexity([])
    with pytest.raises(ValueError, match="non-negative"):
        fn.perplexity(-0.1)
    with pytest.raises(ValueError, match="NaN"):
        fn.perplexity(float("nan"))


# ------------------------------------------------------------------ save / load

def test_save_and_load_roundtrip(trained, tmp_path):
    _, model, tok, _ = trained
    path = tmp_path / "m.npz"
    mpath, vpath = lm.save_lm(path, model, tok)
    assert os.path.exists(mpath) and vpath == str(tmp_path / "m.vocab.json")
    model2, tok2 = lm.load_lm(path)
    assert tok2.vocab == tok.vocab and not model2.training
    assert lm.sample_text(model2, tok2, "The ", n=40, seed=7) == \
        lm.sample_text(model, tok, "The ", n=40, seed=7)
    with pytest.raises(FileNotFoundError):
        lm.load_lm(tmp_path / "missing.npz")


# ------------------------------------------------------------------ CLI

def _cli(*args, cwd):
    env = dict(os.environ, FASTNN_PROGRESS="0")
    return subprocess.run([sys.executable, "-m", "fastnn", "lm", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_trains_reports_saves_and_samples(tmp_path):
    r = _cli("--max-chars", "20000", "--epochs", "1", "--hidden", "64", "--sample", "50",
             "--seed", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "standard-library docstrings" in out
    assert "epoch 1/1" in out and "val ppl" in out and "unigram" in out
    assert "validation perplexity" in out
    assert "--- sample (50 characters, temperature 0.8) ---" in out
    assert "Traceback" not in r.stderr
    assert (tmp_path / "lm_model.npz").exists() and (tmp_path / "lm_model.vocab.json").exists()
    val_ppl = float(out.split("validation perplexity ")[1].split()[0])
    uni = float(out.split("vs unigram baseline ")[1].split()[0])
    assert val_ppl < uni
    model, tok = lm.load_lm(tmp_path / "lm_model.npz")
    assert lm.model_context(model) == 8 and tok.vocab_size > 50


def test_cli_text_file_prompt_and_no_save(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "corpus.txt"
    f.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    code = lm_cli.main(["--text", str(f), "--epochs", "2", "--context", "4", "--hidden", "32",
                    "--sample", "20", "--prompt", "the q", "--top-k", "3", "--no-save",
                    "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"training on {f.stat().st_size:,} characters of {f}" in out
    assert "temperature 0.8, top-k 3) ---\nthe q" in out
    assert sorted(os.listdir(tmp_path)) == ["corpus.txt"]      # --no-save


def test_cli_max_chars_truncates_a_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "corpus.txt"
    f.write_text("abcdefghij" * 100, encoding="utf-8")
    assert lm_cli.main(["--text", str(f), "--max-chars", "300", "--epochs", "1", "--context", "3",
                    "--hidden", "8", "--sample", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "training on 300 characters" in out and "see --max-chars" in out
    assert "--- sample" not in out
    assert sorted(os.listdir(tmp_path)) == ["corpus.txt", "lm_model.npz", "lm_model.vocab.json"]


def _error(capsys, argv):
    code = lm_cli.main(argv)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("error: ")
    assert "Traceback" not in captured.err
    return captured.err


def test_cli_bad_inputs(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    assert "is empty" in _error(capsys, ["--text", str(empty), "--no-save"])
    short = tmp_path / "short.txt"
    short.write_text("hello", encoding="utf-8")
    err = _error(capsys, ["--text", str(short), "--no-save"])
    assert "context (8) must be shorter than the text (5 tokens)" in err
    err = _error(capsys, ["--text", str(tmp_path / "nope.txt"), "--no-save"])
    assert "cannot read --text" in err and "nope.txt" in err
    assert "--temperature" in _error(capsys, ["--temperature", "0", "--no-save"])
    assert "--context" in _error(capsys, ["--context", "0", "--no-save"])
    assert "--max-chars" in _error(capsys, ["--max-chars", "0", "--no-save"])


def test_cli_subprocess_error_exit_code(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    r = _cli("--text", str(empty), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and "empty" in r.stderr and "Traceback" not in r.stderr
    r = _cli("--bogus", cwd=tmp_path)
    assert r.returncode == 2 and "unrecognized arguments" in r.stderr


@pytest.mark.parametrize("arch", ["transformer", "bow", "cnn", "gru", "lstm"])
def test_each_arch_trains_saves_loads_and_samples(tmp_path, arch):
    text = "the cat sat on the mat. the dog sat on the log. " * 30
    model, tok, hist = lm.train_lm(text, context=6, embed=16, hidden=32, epochs=3,
                                   batch_size=64, lr=3e-3, dropout=0.0, progress=False,
                                   arch=arch)
    assert hist["loss"][-1] < hist["loss"][0]  # it learns (how well is the table's question)
    path = tmp_path / "t.npz"
    lm.save_lm(path, model, tok)
    model2, tok2 = lm.load_lm(path)
    x = tok.encode("the ca")[None, :]
    np.testing.assert_array_equal(model2.predict(x), model.predict(x))
    sample = lm.sample_text(model2, tok2, "the ", 20, context=6, seed=0)
    assert sample == lm.sample_text(model, tok, "the ", 20, context=6, seed=0)
    assert len(sample) >= 20  # 20 tokens (<unk> prints as five characters)


def test_compare_prints_one_row_per_architecture(tmp_path, capsys):
    path = tmp_path / "t.txt"
    path.write_text("abcabd abcabd " * 40)
    assert lm_cli.main(["--text", str(path), "--compare", "--budget", "0.01", "--context", "4",
                    "--embed", "8", "--hidden", "16", "--no-progress"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| architecture")
    assert sorted(r.split("|")[1].strip() for r in rows[1:]) == sorted(lm.ARCHITECTURES)


def test_bad_arch_and_budget_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="arch must be one of"):
        lm.train_lm("abcabc" * 50, context=3, arch="rnn?", progress=False)
    path = tmp_path / "t.txt"
    path.write_text("abcabd " * 40)
    assert lm_cli.main(["--text", str(path), "--budget", "-1", "--no-save"]) == 2
