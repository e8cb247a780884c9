"""The fast BPE encoder (tiktoken) gives Hugging Face's ids or is not used, and shards written
through it on worker processes are byte for byte those of the Hugging Face path."""

import json
import logging
import sys

import numpy as np
import pytest
import tokenizers
from data_factories import make_config
from tokenizers import decoders, models, pre_tokenizers

from data_pipeline import fast_bpe, parallel_encoding
from data_pipeline.datasets import build_split
from data_pipeline.fast_bpe import (CHECK_DOCUMENTS, MIN_FAST_DOCUMENTS, checked_fast_encoder,
                                    encode_documents, fast_bpe_problem)
from data_pipeline.streaming import prepare_streamed
from data_pipeline.tokenizer import SPECIAL_TOKENS, BpeTokenizer, CharTokenizer, byte_level_alphabet

pytest.importorskip("tiktoken")

PIECES = ("it's", "IT'S", "don’t", "we're", "they’ve", "I'm", "you'll", "she'd", "'quoted'",
          "‘curly’", "O'Neil", "12", "3.14159", "-42", "1,000,000", "٣٤", "½", "²", "naïve",
          "café", "Ωμέγα", "Привет", "日本語", "한국어", "עברית", "e\u0301", "😀", "👍🏽",
          "👨\u200d👩\u200d👧", "🇦🇺", "❤️", "[EOS]", "<|endoftext|>", "~", "…", "--", "!!!",
          "\\n", "word", "the", "and", "of", "tokenizer", "police", "x")
GAPS = (" ", " ", " ", "  ", "   ", "\t", " \t ", "\u00a0", "\u3000", "\x0b", "\x0c", "\x85",
        "\u2028", "")


def awkward_documents(count: int, seed: int = 0) -> list[str]:
    """Documents mixing apostrophes of both kinds, scripts, emoji, numbers and whitespace runs."""
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(count):
        words = rng.choice(PIECES, size=int(rng.integers(1, 14)))
        gaps = rng.choice(GAPS, size=len(words))
        texts.append("".join(f"{gap}{word}" for gap, word in zip(gaps, words)) + rng.choice(GAPS))
    return texts


def test_fast_encoder_gives_the_reference_ids_on_awkward_text():
    tokenizer = BpeTokenizer.fit(awkward_documents(3000), vocab_size=600)
    texts = awkward_documents(MIN_FAST_DOCUMENTS, seed=1)
    settings = checked_fast_encoder(tokenizer, texts)
    assert settings is not None
    encoder = settings.encoder()
    expected = tokenizer.encode_batch(texts)
    assert [encoder.encode_ordinary(text) for text in texts] == expected
    assert encode_documents(tokenizer, texts) == expected
    assert max(map(len, expected)) > 10  # merges happened: not one id per byte
    ids, lengths = fast_bpe.encode_arrays(encoder, texts[:50], np.dtype(np.uint16))
    assert ids.dtype == np.uint16 and lengths.tolist() == [len(ids) for ids in expected[:50]]
    np.testing.assert_array_equal(ids, np.concatenate(expected[:50]))


def conflicting_tokenizer() -> BpeTokenizer:
    """A byte-level BPE whose merge list and id order disagree: HF merges "b c" first and never
    joins "a" to "bc", while tiktoken merges by the id of the result and reaches "abc"."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({character: len(SPECIAL_TOKENS) + i for i, character in enumerate(byte_level_alphabet())})
    for token in ("bc", "ab", "abc"):
        vocab[token] = len(vocab)
    backend = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[("b", "c"), ("a", "b"), ("ab", "c")]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return BpeTokenizer(backend)


def test_a_tokenizer_tiktoken_cannot_reproduce_falls_back_to_the_reference(caplog):
    tokenizer = conflicting_tokenizer()
    texts = ["abc abd"] * MIN_FAST_DOCUMENTS
    assert tokenizer.encode("abc") != [tokenizer._backend.token_to_id("abc")]  # HF: a + bc
    with caplog.at_level(logging.INFO, logger="data_pipeline"):
        assert checked_fast_encoder(tokenizer, texts) is None
        assert encode_documents(tokenizer, texts) == tokenizer.encode_batch(texts)
    assert "tiktoken's ids differ" in caplog.text


def test_only_the_expected_tokenizer_shape_is_encoded_fast(monkeypatch, caplog):
    tokenizer = BpeTokenizer.fit(awkward_documents(500), vocab_size=400)
    content = json.loads(tokenizer.to_json())
    assert fast_bpe_problem(content) is None
    prefixed = {**content, "pre_tokenizer": {**content["pre_tokenizer"], "add_prefix_space": True}}
    assert "add_prefix_space=False" in fast_bpe_problem(prefixed)
    assert "normalizer" in fast_bpe_problem({**content, "normalizer": {"type": "NFC"}})
    assert "single bytes" in fast_bpe_problem(
        {**content, "model": {**content["model"], "vocab": {"a": 4}}})
    assert checked_fast_encoder(CharTokenizer(list("abc")), ["abc"] * 10) is None
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # as if it were not installed
    monkeypatch.setattr(fast_bpe, "_logged_problems", set())  # logged once per process
    with caplog.at_level(logging.INFO, logger="data_pipeline"):
        assert checked_fast_encoder(tokenizer, ["text"]) is None
    assert "tiktoken is not installed" in caplog.text


def test_in_memory_splits_encode_the_same_with_and_without_tiktoken(tmp_path, monkeypatch):
    documents = awkward_documents(MIN_FAST_DOCUMENTS + 10, seed=2)
    tokenizer = BpeTokenizer.fit(documents, vocab_size=500)
    config = make_config(tmp_path, vocab_size=500)
    fast = build_split(documents, tokenizer, config, global_batch=4, training=True)
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    reference = build_split(documents, tokenizer, config, global_batch=4, training=True)
    np.testing.assert_array_equal(fast.token_stream, reference.token_stream)
    assert (fast.tokens, fast.characters, fast.steps) == (reference.tokens, reference.characters,
                                                          reference.steps)


def test_worker_processes_write_the_same_shard_bytes_as_the_reference(tmp_path, monkeypatch):
    texts = awkward_documents(6000, seed=3)
    texts = [f"{text} n{i}" for i, text in enumerate(texts) if text.strip()]  # distinct documents
    data_file = tmp_path / "corpus.txt"
    data_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
    monkeypatch.setattr(parallel_encoding, "JOB_CHARACTERS", 5_000)  # many jobs, out of order if wrong
    monkeypatch.setattr("data_pipeline.streaming.worker_count", lambda: 2)

    def prepare(name):
        return prepare_streamed(make_config(
            tmp_path / name, data_file=str(data_file), data_preparation="streaming",
            shards_dir=str(tmp_path / name / "shards"), vocab_size=500, drop_near_duplicates=False))

    fast = prepare("fast")
    with monkeypatch.context() as blocked:
        blocked.setitem(sys.modules, "tiktoken", None)
        reference = prepare("reference")
    assert fast.corpus.report["encoder"] == "tiktoken, 2 process(es)"
    assert reference.corpus.report["encoder"] == "tokenizers"
    assert fast.tokenizer.fingerprint == reference.tokenizer.fingerprint
    assert fast.shards.split("train")["documents"] > CHECK_DOCUMENTS // 2
    for name in ("train", "validation", "test"):
        assert fast.shards.path(name).read_bytes() == reference.shards.path(name).read_bytes()
        assert fast.shards.split(name) == reference.shards.split(name)


def test_workers_that_do_not_answer_leave_encoding_to_this_process(monkeypatch, caplog):
    texts = awkward_documents(300, seed=4)
    tokenizer = BpeTokenizer.fit(texts, vocab_size=400)
    settings = fast_bpe.fast_bpe_settings(tokenizer)
    monkeypatch.setattr(parallel_encoding, "WORKER_START_SECONDS", 0)  # no worker answers at once
    seconds = {}
    with caplog.at_level(logging.INFO, logger="data_pipeline"):
        results = list(parallel_encoding.encode_in_order(
            [("a", texts[:100]), ("b", texts[100:])], tokenizer, settings, np.dtype(np.uint16),
            workers=2, seconds=seconds))
    assert "worker processes did not start" in caplog.text
    assert [key for key, _, _ in results] == ["a", "b"]
    np.testing.assert_array_equal(np.concatenate([ids for _, ids, _ in results]),
                                  np.concatenate(tokenizer.encode_batch(texts)))
    assert sum(len(lengths) for _, _, lengths in results) == len(texts) and seconds["encode"] > 0
