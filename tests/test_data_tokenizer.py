"""Tokenizers: exact round trips, fixed special ids, fingerprinted reuse, never clobbering files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from data_factories import documents, make_config
from data_pipeline.errors import DataError
from data_pipeline.tokenizer import (TextTokenizer, fit_or_load_tokenizer, manifest_path,
                                     training_fingerprint)

HARD_TEXTS = [
    "plain words",
    "two  spaces   three    four",
    "lines\nand\n\nblank lines\r\nand tabs\tend",
    " leading and trailing ",
    "punctuation: ;,.!?()[]{}<>\"'`~@#$%^&*-_=+|\\/",
    "unicode: café naïve Ærø ß 日本語 한국어 emoji 🙂👍🏽 ∑∫",
    "special-looking text [EOS] [PAD] [BOS] [UNK] stays text",
    "",
]


@pytest.fixture(scope="module")
def bpe(tmp_path_factory) -> TextTokenizer:
    tmp_path = tmp_path_factory.mktemp("bpe")
    return fit_or_load_tokenizer(documents(200) + HARD_TEXTS[:3], make_config(tmp_path))


def test_special_ids_are_fixed(bpe: TextTokenizer, tmp_path: Path) -> None:
    char = fit_or_load_tokenizer(["abc"], make_config(tmp_path, tokenizer="char"))
    for tokenizer in (bpe, char):
        ids = (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id)
        assert ids == (0, 1, 2, 3)
        assert tokenizer.decode([0, 1, 2, 3], skip_special_tokens=False) == "[PAD][UNK][BOS][EOS]"
        assert tokenizer.decode([2, 3, 0]) == ""
    assert (bpe.kind, char.kind) == ("bpe", "char")


@pytest.mark.parametrize("text", HARD_TEXTS)
def test_bpe_round_trip(bpe: TextTokenizer, text: str) -> None:
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert all(0 < i < bpe.vocab_size for i in ids) and bpe.unk_id not in ids


def test_bpe_learns_merges_and_batches(bpe: TextTokenizer) -> None:
    texts = documents(20, seed=9)
    assert 260 < bpe.vocab_size <= 300
    assert len(bpe.encode(texts[0])) < len(texts[0].encode())  # merges shorten the text
    assert bpe.encode_batch(texts) == [bpe.encode(text) for text in texts]
    assert bpe.decode_batch(bpe.encode_batch(texts)) == texts


def test_vocab_the_text_cannot_fill_is_fine(tmp_path: Path) -> None:
    tokenizer = fit_or_load_tokenizer(["ab ab ab"], make_config(tmp_path, vocab_size=5000))
    assert 260 <= tokenizer.vocab_size < 5000
    assert tokenizer.decode(tokenizer.encode("ab zz")) == "ab zz"


def test_char_tokenizer(tmp_path: Path) -> None:
    train = ["hello world", "héllo\nthere"]
    tokenizer = fit_or_load_tokenizer(train, make_config(tmp_path, tokenizer="char"))
    assert tokenizer.vocab_size == 4 + len(set("".join(train)))
    for text in train + [" hello  "]:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    ids = tokenizer.encode("hex!")  # "x" and "!" were never seen in training
    assert ids[2:] == [tokenizer.unk_id, tokenizer.unk_id]
    assert tokenizer.decode(ids) == "he"
    assert tokenizer.decode(ids, skip_special_tokens=False) == "he[UNK][UNK]"
    assert tokenizer.encode_batch(train) == [tokenizer.encode(text) for text in train]


def test_char_vocab_keeps_most_frequent(tmp_path: Path) -> None:
    tokenizer = fit_or_load_tokenizer(["aaaa bbb cc d"], make_config(tmp_path, tokenizer="char",
                                                                      vocab_size=64))
    assert tokenizer.vocab_size == 9
    small = TextTokenizer.load(tokenizer.path)
    assert small.encode("abcd ") == tokenizer.encode("abcd ")


def test_save_load_and_manifest(bpe: TextTokenizer, tmp_path: Path) -> None:
    path = tmp_path / "copy" / "tok.json"
    bpe.save(path)
    manifest = json.loads(manifest_path(path).read_text())
    assert manifest["kind"] == "bpe" and manifest["vocab_size"] == bpe.vocab_size
    assert manifest["fingerprint"] == bpe.fingerprint and "tokenizers" in manifest["library"]
    loaded = TextTokenizer.load(path)
    assert (loaded.vocab_size, loaded.fingerprint, loaded.path) == (bpe.vocab_size, bpe.fingerprint,
                                                                    str(path))
    assert loaded.encode_batch(HARD_TEXTS) == bpe.encode_batch(HARD_TEXTS)


def test_reused_when_fingerprint_matches_refit_otherwise(tmp_path: Path, caplog) -> None:
    config = make_config(tmp_path)
    train = documents(50)
    caplog.set_level(logging.INFO, logger="data_pipeline")
    first = fit_or_load_tokenizer(train, config)
    assert "fitted" in caplog.text
    caplog.clear()
    again = fit_or_load_tokenizer(train, config)
    assert "reused" in caplog.text and again.fingerprint == first.fingerprint
    caplog.clear()
    changed = fit_or_load_tokenizer(train[:-1], config)
    assert "refitted" in caplog.text and changed.fingerprint != first.fingerprint
    assert json.loads(manifest_path(config.tokenizer_path).read_text())["fingerprint"] == \
        changed.fingerprint
    caplog.clear()
    fit_or_load_tokenizer(train[:-1], make_config(tmp_path, vocab_size=290))
    assert "refitted" in caplog.text  # settings are part of the fingerprint


def test_fingerprint_is_unambiguous() -> None:
    assert training_fingerprint(["ab", "c"], "bpe", 300) != \
        training_fingerprint(["a", "bc"], "bpe", 300)
    assert training_fingerprint(["a"], "bpe", 300) != training_fingerprint(["a"], "char", 300)


def test_foreign_tokenizer_file_is_never_overwritten(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    path = Path(config.tokenizer_path)
    path.parent.mkdir(parents=True)
    path.write_text('{"someone": "else"}')
    with pytest.raises(DataError, match="without the manifest.*delete it or set another"):
        fit_or_load_tokenizer(documents(10), config)
    assert path.read_text() == '{"someone": "else"}'


def test_missing_and_damaged_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        TextTokenizer.load(tmp_path / "nope.json")
    config = make_config(tmp_path)
    fit_or_load_tokenizer(documents(10), config)
    Path(config.tokenizer_path).write_text("{broken")
    with pytest.raises(DataError, match="cannot be read"):
        TextTokenizer.load(config.tokenizer_path)
