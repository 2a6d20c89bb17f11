import json
import math
import os
import re

import numpy as np
import pytest

from fastnn.apps.text import (
    CharTokenizer,
    WordTokenizer,
    generate,
    next_token_windows,
    perplexity,
    sample_next,
    stdlib_corpus,
    unigram_perplexity,
)


# ---------------------------------------------------------------- tokenizers

def test_char_round_trip_and_sorted_vocab():
    text = "hello world\n\x00é€"
    tok = CharTokenizer.from_text(text)
    assert tok.vocab[0] == "<unk>"
    assert tok.vocab[1:] == sorted(set(text))
    assert tok.vocab_size == len(set(text)) + 1
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert tok.decode(ids) == text


def test_char_vocab_does_not_depend_on_order():
    a = CharTokenizer().fit("abcabc")
    b = CharTokenizer().fit("cbacba")
    assert a.vocab == b.vocab


def test_char_unknown_maps_to_unk():
    tok = CharTokenizer.from_text("abc")
    ids = tok.encode("abzc")
    assert ids.tolist() == [1, 2, 0, 3]
    assert tok.decode(ids) == "ab<unk>c"
    assert tok.encode("").shape == (0,)


def test_word_round_trip_unknown_and_lowercase():
    tok = WordTokenizer.from_text("The cat sat. The dog sat!")
    assert tok.vocab[1:] == sorted({"The", "cat", "sat", ".", "dog", "!"})
    ids = tok.encode("The cat sat.")
    assert ids.dtype == np.int64
    assert tok.decode(ids) == "The cat sat."
    unk = tok.encode("the bird sat")  # case-sensitive by default
    assert unk[0] == 0 and unk[1] == 0 and unk[2] == tok.vocab.index("sat")

    low = WordTokenizer.from_text("The THE the", lowercase=True)
    assert low.vocab == ["<unk>", "the"]
    assert low.encode("tHe").tolist() == [1]


def test_word_min_count():
    tok = WordTokenizer.from_text("a a a b", min_count=2)
    assert tok.vocab == ["<unk>", "a"]
    assert tok.encode("a b").tolist() == [1, 0]


@pytest.mark.parametrize("cls", [CharTokenizer, WordTokenizer])
def test_empty_text_raises(cls):
    with pytest.raises(ValueError, match="text is empty"):
        cls().fit("")
    with pytest.raises(ValueError, match="text is empty"):
        cls.from_text("")


def test_word_whitespace_only_text_raises():
    with pytest.raises(ValueError, match="text is empty"):
        WordTokenizer().fit("   \n\t ")


def test_non_str_text_is_type_error():
    with pytest.raises(TypeError, match="text"):
        CharTokenizer().fit(b"bytes")


def test_unfitted_tokenizer_raises():
    with pytest.raises(RuntimeError, match="fit"):
        CharTokenizer().encode("a")


@pytest.mark.parametrize("cls", [CharTokenizer, WordTokenizer])
def test_decode_out_of_range_names_id(cls):
    tok = cls.from_text("a b c")
    with pytest.raises(ValueError, match=r"\b99\b"):
        tok.decode([1, 99])
    with pytest.raises(ValueError, match=r"-1"):
        tok.decode(np.array([-1]))
    with pytest.raises(TypeError):
        tok.decode([1.0])


@pytest.mark.parametrize(
    "cls,kwargs,text",
    [(CharTokenizer, {}, "naïve text\twith\ttabs"),
     (WordTokenizer, {"lowercase": True}, "Some Words, some PUNCT!")],
)
def test_save_load_round_trip(tmp_path, cls, kwargs, text):
    tok = cls.from_text(text, **kwargs)
    path = tmp_path / "tok.json"
    tok.save(path)
    assert os.listdir(tmp_path) == ["tok.json"]  # no temp file left behind
    json.loads(path.read_text(encoding="utf-8"))  # plain JSON
    back = cls.load(path)
    assert back.vocab == tok.vocab
    assert np.array_equal(back.encode(text), tok.encode(text))
    if cls is WordTokenizer:
        assert back.lowercase is True
    tok.save(str(path))  # overwrite in place, str path
    assert cls.load(str(path)).vocab == tok.vocab


def test_load_rejects_wrong_kind_and_corrupt_file(tmp_path):
    path = tmp_path / "tok.json"
    CharTokenizer.from_text("abc").save(path)
    with pytest.raises(ValueError, match="format"):
        WordTokenizer.load(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not a valid"):
        CharTokenizer.load(path)
    with pytest.raises(FileNotFoundError):
        CharTokenizer.load(tmp_path / "missing.json")


# ---------------------------------------------------------------- windows

def test_next_token_windows_shapes_and_content():
    ids = np.array([10, 11, 12, 13, 14, 15])
    X, y = next_token_windows(ids, 3)
    assert X.dtype == np.int64 and y.dtype == np.int64
    assert X.shape == (3, 3) and y.shape == (3,)
    assert X.tolist() == [[10, 11, 12], [11, 12, 13], [12, 13, 14]]
    assert y.tolist() == [13, 14, 15]
    assert X.flags.c_contiguous and X.flags.owndata and y.flags.owndata
    X[0, 0] = -1  # a real copy: writing must not touch other rows or the input
    assert X[1].tolist() == [11, 12, 13] and ids[0] == 10


def test_next_token_windows_edge_and_errors():
    X, y = next_token_windows([1, 2], 1)
    assert X.tolist() == [[1]] and y.tolist() == [2]
    with pytest.raises(ValueError, match=r"context \(8\) must be shorter than the text \(5 tokens\)"):
        next_token_windows(np.arange(5), 8)
    with pytest.raises(ValueError, match=r"context \(5\) must be shorter"):
        next_token_windows(np.arange(5), 5)
    with pytest.raises(ValueError, match="context"):
        next_token_windows(np.arange(5), 0)
    with pytest.raises(TypeError):
        next_token_windows(np.arange(5.0), 2)


# ---------------------------------------------------------------- corpus

def test_stdlib_corpus_is_deterministic_and_nontrivial():
    a = stdlib_corpus()
    b = stdlib_corpus()
    assert isinstance(a, str)
    assert a == b
    assert 50_000 <= len(a) <= 200_000
    assert stdlib_corpus(1000) == a[:1000]
    assert re.search(r"\bat 0x[0-9a-f]+", a) is None  # no run-dependent addresses
    tok = WordTokenizer.from_text(a, lowercase=True)
    assert tok.vocab_size > 1000


def test_stdlib_corpus_validates_max_chars():
    with pytest.raises(ValueError):
        stdlib_corpus(0)


# ---------------------------------------------------------------- perplexity

def test_perplexity():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(7)) == pytest.approx(7.0)
    assert perplexity(np.array([math.log(2), math.log(8)])) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        perplexity([])
    with pytest.raises(ValueError):
        perplexity(float("nan"))


def test_unigram_perplexity_hand_example():
    # counts [2, 1, 0] + 1 over 3 + 3 -> p = [1/2, 1/3, 1/6]
    # eval [0, 2]: exp(-(log 1/2 + log 1/6) / 2) = sqrt(12)
    assert unigram_perplexity([0, 0, 1], [0, 2], 3) == pytest.approx(math.sqrt(12))
    # nothing seen: uniform over the vocabulary
    assert unigram_perplexity([], [1, 2, 3], 5) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="3"):
        unigram_perplexity([0, 1], [3], 3)
    with pytest.raises(ValueError, match="empty"):
        unigram_perplexity([0, 1], [], 3)


# ---------------------------------------------------------------- sampling

def test_sample_next_reproducible_with_seed():
    logits = np.random.default_rng(0).normal(size=50)
    a = [sample_next(logits, rng=np.random.default_rng(123)) for _ in range(5)]
    b = [sample_next(logits, rng=np.random.default_rng(123)) for _ in range(5)]
    assert a == b
    g1, g2 = np.random.default_rng(7), np.random.default_rng(7)
    assert [sample_next(logits, rng=g1) for _ in range(20)] == [
        sample_next(logits, rng=g2) for _ in range(20)
    ]
    assert all(isinstance(i, int) and 0 <= i < 50 for i in a)


def test_top_k_one_is_argmax():
    rng = np.random.default_rng(1)
    for _ in range(20):
        logits = rng.normal(size=30)
        assert sample_next(logits, top_k=1, rng=rng) == int(np.argmax(logits))
        assert sample_next(logits, temperature=5.0, top_k=1) == int(np.argmax(logits))


def test_top_k_restricts_support_and_tiny_temperature_is_greedy():
    logits = np.array([0.0, 3.0, 1.0, 2.5, -1.0])
    rng = np.random.default_rng(0)
    draws = {sample_next(logits, top_k=2, rng=rng) for _ in range(200)}
    assert draws == {1, 3}
    assert sample_next(np.array([1e300, 0.0, -1e300]), temperature=1e-300, rng=rng) == 0
    assert sample_next(logits, top_k=100, rng=rng) in range(5)  # k > V: no limit
    banned = np.array([-np.inf, 0.0, -np.inf])
    assert {sample_next(banned, rng=rng) for _ in range(20)} == {1}


def test_sample_distribution_matches_softmax():
    logits = np.log(np.array([0.1, 0.6, 0.3]))
    rng = np.random.default_rng(42)
    counts = np.bincount([sample_next(logits, rng=rng) for _ in range(6000)], minlength=3)
    assert np.allclose(counts / 6000, [0.1, 0.6, 0.3], atol=0.03)


@pytest.mark.parametrize("temperature", [0, 0.0, -1.0, float("nan"), float("inf")])
def test_temperature_validation(temperature):
    with pytest.raises(ValueError, match="temperature"):
        sample_next(np.zeros(3), temperature=temperature)
    with pytest.raises(ValueError, match="temperature"):
        generate(lambda X: np.zeros((1, 3)), [1], 2, 2, temperature=temperature)


def test_sample_next_bad_args():
    with pytest.raises(ValueError, match="top_k"):
        sample_next(np.zeros(3), top_k=0)
    with pytest.raises(ValueError, match="1-D"):
        sample_next(np.zeros((1, 3)))
    with pytest.raises(ValueError):
        sample_next(np.array([]))
    with pytest.raises(ValueError, match="NaN"):
        sample_next(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="-inf"):
        sample_next(np.array([-np.inf, -np.inf]))
    with pytest.raises(TypeError, match="temperature"):
        sample_next(np.zeros(3), temperature="hot")


def test_generate_reproducible_pads_and_slides():
    V, context = 7, 3
    seen = []

    def predict(X):
        assert X.shape == (1, context) and X.dtype == np.int64
        seen.append(X[0].tolist())
        return np.random.default_rng(int(X.sum())).normal(size=(1, V))

    a = generate(predict, [5], 10, context, seed=3)
    assert seen[0] == [0, 0, 5]  # short prompt left-padded with id 0
    assert seen[1] == [0, 5, int(a[0])]
    b = generate(predict, np.array([5]), 10, context, seed=3)
    assert a.dtype == np.int64 and a.shape == (10,)
    assert np.array_equal(a, b)
    assert ((a >= 0) & (a < V)).all()

    seen.clear()
    generate(predict, [1, 2, 3, 4, 5], 1, context, seed=0)
    assert seen[0] == [3, 4, 5]  # long prompt: last `context` ids
    assert generate(predict, [], 0, context).shape == (0,)


def test_generate_greedy_follows_model():
    # A model that always predicts "previous token + 1 (mod V)".
    V = 5

    def predict(X):
        out = np.full((1, V), -10.0)
        out[0, (X[0, -1] + 1) % V] = 10.0
        return out

    assert generate(predict, [2], 6, 2, top_k=1).tolist() == [3, 4, 0, 1, 2, 3]


def test_generate_checks_model_output_shape():
    with pytest.raises(ValueError, match=r"\(1, V\)"):
        generate(lambda X: np.zeros(4), [1], 1, 2)
