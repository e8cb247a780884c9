"""Cleaning, sampling and splitting by document, the corpus report, and the no-leak guarantee."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_factories import documents, make_config, write_csv
from data_pipeline.cleaning import clean_text
from data_pipeline.corpus import load_corpus
from data_pipeline.datasets import build_datasets
from data_pipeline.errors import DataError
from data_pipeline.splitting import split_documents, split_sizes
from data_pipeline.tokenizer import fit_or_load_tokenizer

REFERENCE = ("lowercase", "strip_punctuation", "strip_digits", "collapse_whitespace")


@pytest.mark.parametrize("steps, text, expected", [
    ((), "  Keep  It, as-is!\n ", "Keep  It, as-is!"),
    (REFERENCE, " Police: 3 men\tarrested (again)... ", "police men arrested again"),
    (("lowercase",), "ÉCOLE Ünïcode", "école ünïcode"),
    (("strip_punctuation",), "a_b «quote» $5 ¿qué?", "ab quote 5 qué"),
    (("strip_digits",), "route 66 ٣", "route"),
    (("collapse_whitespace",), "a \n\n b\t c", "a b c"),
])
def test_cleaning_steps(steps, text: str, expected: str) -> None:
    assert clean_text(text, steps) == expected


def test_corpus_report_counts_what_was_dropped(tmp_path: Path) -> None:
    rows = [["20030101", text] for text in documents(30)]
    rows += [["20030102", ""], ["20030103", "123 !!!"], ["20030104", "…"]]
    path = write_csv(tmp_path / "news.csv", rows, header=["publish_date", "headline_text"])
    corpus = load_corpus(make_config(tmp_path, data_file=str(path), cleaning="reference"))
    report = corpus.report
    assert report["rows_read"] == 33
    assert report["empty_rows_dropped"] == 1
    assert report["empty_after_cleaning_dropped"] == 2
    assert report["documents"] == 30
    assert (report["train_documents"], report["validation_documents"],
            report["test_documents"]) == (24, 3, 3)
    assert len(corpus.train) + len(corpus.validation) + len(corpus.test) == 30
    assert all(text == text.lower() and not any(c.isdigit() for c in text) for text in corpus.train)


def test_sample_first_and_random(tmp_path: Path) -> None:
    path = tmp_path / "docs.txt"
    texts = documents(50)
    path.write_text("\n".join(texts) + "\n")
    first = load_corpus(make_config(tmp_path, data_file=str(path), sample_size=10, split="ordered"))
    assert first.train + first.validation + first.test == texts[:10]
    random_a = load_corpus(make_config(tmp_path, data_file=str(path), sample_size=10,
                                       sample_strategy="random", split="ordered"))
    random_b = load_corpus(make_config(tmp_path, data_file=str(path), sample_size=10,
                                       sample_strategy="random", split="ordered"))
    chosen = random_a.train + random_a.validation + random_a.test
    assert chosen == random_b.train + random_b.validation + random_b.test  # seeded
    assert chosen != texts[:10] and set(chosen) <= set(texts)
    assert chosen == sorted(chosen, key=texts.index)  # file order kept for ordered splits
    assert random_a.report["not_sampled"] == 40


def test_split_modes(tmp_path: Path) -> None:
    texts = documents(20)
    ordered = split_documents(texts, None, make_config(tmp_path, split="ordered"))
    assert ordered.train == texts[:16] and ordered.validation == texts[16:18]
    assert ordered.test == texts[18:]
    random_a = split_documents(texts, None, make_config(tmp_path, split="random", seed=1))
    random_b = split_documents(texts, None, make_config(tmp_path, split="random", seed=1))
    random_c = split_documents(texts, None, make_config(tmp_path, split="random", seed=2))
    assert random_a == random_b and random_a.train != random_c.train
    assert sorted(random_a.train + random_a.validation + random_a.test) == sorted(texts)
    dates = np.arange(20)[::-1]  # newest first in the file
    chronological = split_documents(texts, dates, make_config(tmp_path, split="chronological"))
    assert chronological.train == texts[::-1][:16]  # oldest documents train
    assert chronological.test == texts[::-1][18:]  # newest documents test


def test_chronological_csv_dates(tmp_path: Path) -> None:
    rows = [["20030105", "e"], ["20030101", "a"], ["20030103", "c"], ["20030102", "b"],
            ["20030104", "d"]]
    path = write_csv(tmp_path / "news.csv", rows, header=["publish_date", "headline_text"])
    corpus = load_corpus(make_config(tmp_path, data_file=str(path), split="chronological",
                                     split_fractions=[0.6, 0.2, 0.2]))
    assert (corpus.train, corpus.validation, corpus.test) == (["a", "b", "c"], ["d"], ["e"])


def test_split_sizes() -> None:
    assert split_sizes(10, (0.8, 0.1, 0.1)) == (8, 1, 1)
    assert split_sizes(3, (0.8, 0.1, 0.1)) == (1, 1, 1)
    assert split_sizes(5, (1.0, 0.0, 0.0)) == (5, 0, 0)
    with pytest.raises(DataError, match="only 2 documents"):
        split_sizes(2, (0.8, 0.1, 0.1))


def test_cross_split_duplicates_reported_and_dropped(tmp_path: Path) -> None:
    texts = documents(10) + ["repeated"] * 10
    kept = split_documents(texts, None, make_config(tmp_path, drop_cross_split_duplicates=False))
    dropped = split_documents(texts, None, make_config(tmp_path))
    assert kept.cross_split_duplicates_found == dropped.cross_split_duplicates_found > 0
    assert kept.cross_split_duplicates_dropped == 0
    assert dropped.cross_split_duplicates_dropped == dropped.cross_split_duplicates_found
    assert dropped.train == kept.train
    assert not set(dropped.validation) & set(dropped.train)
    assert not set(dropped.test) & (set(dropped.train) | set(dropped.validation))
    with pytest.raises(DataError, match="drop_cross_split_duplicates"):
        split_documents(["same"] * 20, None, make_config(tmp_path))


def test_no_validation_or_test_document_reaches_training(tmp_path: Path) -> None:
    """Each held-out document has a character nothing in train has; the char tokenizer, fitted
    on train only, must not know it, and train batches must only hold train documents' tokens."""
    texts = documents(40, seed=3)
    path = tmp_path / "docs.txt"
    marked = [f"{text} {chr(0x4E00 + i)}" for i, text in enumerate(texts)]  # one CJK mark each
    path.write_text("\n".join(marked) + "\n", encoding="utf-8")
    config = make_config(tmp_path, data_file=str(path), tokenizer="char", vocab_size=500,
                         batch_size=2)
    corpus = load_corpus(config)
    held_out = corpus.validation + corpus.test
    assert held_out and not set(held_out) & set(corpus.train)
    tokenizer = fit_or_load_tokenizer(corpus.train, config)
    for text in held_out:
        assert tokenizer.encode(text[-1]) == [tokenizer.unk_id]  # never seen in fitting
    datasets = build_datasets(corpus, tokenizer, config)
    train_marks = {tokenizer.encode(text[-1])[0] for text in corpus.train}
    seen = set()
    for _ in range(2):  # two epochs: reshuffled, still only train tokens
        for inputs, targets in datasets.train.dataset:
            seen |= set(np.unique(inputs.numpy())) | set(np.unique(targets.numpy()))
    assert tokenizer.unk_id not in seen
    assert seen & train_marks  # the train marks do occur
