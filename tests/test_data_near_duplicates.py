"""Near-duplicate audit of the split: a shared run of near_duplicate_words words is found, counted
in the corpus report and dropped from validation/test; one word fewer is not a near-duplicate."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_factories import documents, make_config
from data_pipeline.corpus import load_corpus
from data_pipeline.errors import DataError
from data_pipeline.near_duplicates import ShingleIndex
from data_pipeline.splitting import split_documents

QUOTE = "The quick brown fox jumps over the lazy dog, said nobody ever"
# 8 words in a row with the quote ("the quick brown fox jumps over the lazy"), in other case
# and punctuation; then the run breaks.
SHARES_8 = "Overheard: THE Quick -- brown fox; jumps over the LAZY cat at noon"
SHARES_7 = "Then the quick brown fox jumps over the sleepy dog, said everyone"
ALSO_SHARES_7 = "Lo, the quick brown fox jumps over the tired cat"  # with the quote and with SHARES_7
VALIDATION_QUOTE = "a validation sentence with ten words that nobody else says"
SHARES_8_WITH_VALIDATION = "Indeed, A validation sentence with ten words that nobody heard"


def corpus_file(tmp_path: Path) -> Path:
    """6 train documents (the quote among them), 3 validation, 3 test, in file order."""
    train = documents(5, seed=1) + [QUOTE]  # documents(): 7 words each, too short to match
    validation = [SHARES_8, SHARES_7, VALIDATION_QUOTE]
    test = [ALSO_SHARES_7, SHARES_8_WITH_VALIDATION, "a short distinct test line"]
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(train + validation + test) + "\n", encoding="utf-8")
    return path


def ordered_corpus(tmp_path: Path, **overrides):
    return load_corpus(make_config(tmp_path, data_file=str(corpus_file(tmp_path)), split="ordered",
                                   split_fractions=[0.5, 0.25, 0.25], **overrides))


def share(flagged: list[str], split: list[str]) -> float:
    return round(sum(map(len, flagged)) / sum(map(len, split)), 4)


def test_eight_shared_words_are_found_counted_and_dropped(tmp_path: Path) -> None:
    corpus = ordered_corpus(tmp_path)
    validation = [SHARES_8, SHARES_7, VALIDATION_QUOTE]
    test = [ALSO_SHARES_7, SHARES_8_WITH_VALIDATION, "a short distinct test line"]
    assert corpus.validation == [SHARES_7, VALIDATION_QUOTE]  # 8 shared words: dropped; 7: kept
    assert corpus.test == [test[0], test[2]]  # shares 8 words with a validation document: dropped
    report = corpus.report
    assert report["validation_near_duplicates"] == 1
    assert report["validation_near_duplicate_character_share"] == share([SHARES_8], validation)
    assert report["test_near_duplicates"] == 1
    assert report["test_near_duplicate_character_share"] == share([SHARES_8_WITH_VALIDATION], test)
    assert report["near_duplicates_dropped"] == 2
    assert (report["validation_documents"], report["test_documents"]) == (2, 2)


def test_kept_but_counted_when_dropping_is_off(tmp_path: Path) -> None:
    dropping = ordered_corpus(tmp_path).report
    corpus = ordered_corpus(tmp_path, drop_near_duplicates=False)
    assert corpus.validation == [SHARES_8, SHARES_7, VALIDATION_QUOTE]
    assert len(corpus.test) == 3
    counts = ("validation_near_duplicates", "validation_near_duplicate_character_share",
              "test_near_duplicates", "test_near_duplicate_character_share")
    assert [corpus.report[key] for key in counts] == [dropping[key] for key in counts]
    assert corpus.report["near_duplicates_dropped"] == 0


def test_run_length_is_configurable(tmp_path: Path) -> None:
    corpus = ordered_corpus(tmp_path, near_duplicate_words=7)
    assert corpus.validation == [VALIDATION_QUOTE]  # now the 7-word run counts too
    assert corpus.report["validation_near_duplicates"] == 2


def test_exact_duplicate_is_counted_once_as_exact(tmp_path: Path) -> None:
    train = documents(6, seed=2) + [QUOTE, QUOTE.upper()]
    texts = train + [QUOTE, SHARES_7] + [QUOTE.lower() + "!", "short test line"]
    split = split_documents(texts, None, make_config(tmp_path, split="ordered",
                                                     split_fractions=[0.6, 0.2, 0.2]))
    assert (split.cross_split_duplicates_found, split.near_duplicates.validation_documents) == (1, 0)
    assert split.near_duplicates.test_documents == 1  # other case and punctuation: near, not exact
    assert split.validation == [SHARES_7] and split.test == ["short test line"]


def test_dropping_every_held_out_document_fails_naming_the_key(tmp_path: Path) -> None:
    texts = [f"{QUOTE} {i}" for i in range(10)]
    with pytest.raises(DataError, match="validation document .* drop_near_duplicates=False"):
        split_documents(texts, None, make_config(tmp_path, split="ordered"))


def test_documents_shorter_than_the_run_never_match() -> None:
    index = ShingleIndex(8)
    index.add(["one two three four five six seven", QUOTE])
    found = index.matches(["one two three four five six seven", "brown fox jumps over the lazy dog said nobody",
                           ""])
    assert found.tolist() == [False, True, False]
