"""Which documents are used, and which split each one lands in, decided before anything is fitted.

The split is by whole document, so no validation or test text can reach training through a window
that straddles a boundary. Exact duplicates across splits, and near-duplicates (a shared run of
near_duplicate_words words, e.g. one quote in two files), are counted and by default dropped from
validation/test, because a memorised training document would flatter held-out scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from data_pipeline.conditions import Conditions
from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import DataError
from data_pipeline.near_duplicates import ShingleIndex


@dataclass(frozen=True)
class NearDuplicates:
    """Held-out documents sharing a run of words with an earlier split (exact duplicates excluded)."""

    validation_documents: int
    validation_character_share: float  # of the validation split's characters, before dropping
    test_documents: int
    test_character_share: float
    dropped: int


@dataclass(frozen=True)
class Split:
    """Documents per split, and the duplicates found across splits."""

    train: list[str]
    validation: list[str]
    test: list[str]
    cross_split_duplicates_found: int  # val/test documents also present in an earlier split
    cross_split_duplicates_dropped: int
    near_duplicates: NearDuplicates
    # condition_columns' values per document of train, validation, test; None without conditions
    conditions: tuple[list[Conditions], list[Conditions], list[Conditions]] | None = None


def sample_indices(count: int, config: ExperimentConfig) -> np.ndarray:
    """Positions of the documents to use: all, the first sample_size, or a seeded random sample.

    A random sample keeps file order, so 'ordered' and 'chronological' splits still mean something.
    """
    size = config.sample_size
    if size is None or size >= count:
        return np.arange(count)
    if config.sample_strategy == "first":
        return np.arange(size)
    rng = np.random.default_rng(config.seed)
    return np.sort(rng.choice(count, size=size, replace=False))


def split_sizes(count: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Train/validation/test sizes; a split with a fraction > 0 gets at least one document."""
    held_out = [max(1, round(count * f)) if f > 0 else 0 for f in fractions[1:]]
    needed = 1 + sum(1 for f in fractions[1:] if f > 0)
    if count < needed or count - sum(held_out) < 1:
        raise DataError(f"only {count} documents to split with split_fractions={list(fractions)}, "
                        f"which needs at least {needed} (one per split): add documents, raise "
                        "sample_size, or set a validation/test fraction to 0")
    return count - sum(held_out), held_out[0], held_out[1]


def split_documents(texts: Sequence[str], dates: np.ndarray | None,
                    config: ExperimentConfig,
                    conditions: Sequence[Conditions] | None = None) -> Split:
    """Split by document per config.split ('random' seeded, 'ordered', 'chronological');
    `conditions` (one per text) follow their documents."""
    if config.split == "random":
        order = np.random.default_rng(config.seed).permutation(len(texts))
    elif config.split == "ordered":
        order = np.arange(len(texts))
    else:
        if dates is None:
            raise DataError("split='chronological' needs dates: set CONFIG['date_column'] to a "
                            "date column of a CSV data_file, or use split='random' or 'ordered'")
        order = np.argsort(dates, kind="stable")  # oldest first; ties keep file order
    n_train, n_validation, _ = split_sizes(len(texts), config.split_fractions)
    ordered = [texts[i] for i in order]
    train = ordered[:n_train]
    validation = ordered[n_train:n_train + n_validation]
    test = ordered[n_train + n_validation:]
    split_conditions = None
    if conditions is not None:
        ordered_conditions = [conditions[i] for i in order]
        split_conditions = (ordered_conditions[:n_train],
                    ordered_conditions[n_train:n_train + n_validation],
                    ordered_conditions[n_train + n_validation:])
    return _handle_duplicates(train, validation, test, config, split_conditions)


def _handle_duplicates(train: list[str], validation: list[str], test: list[str],
                       config: ExperimentConfig,
                       conditions: tuple[list[Conditions], ...] | None = None) -> Split:
    """Flag exact and near-duplicates in validation and test; drop them as CONFIG says.

    As for exact duplicates, test is checked against train and validation: a test document that
    repeats a validation document has been looked at while choosing the model. A document that is
    an exact duplicate is counted as one, not again as a near-duplicate.
    """
    seen_train = set(train)
    seen_before_test = seen_train | set(validation)
    exact_validation = np.array([text in seen_train for text in validation], dtype=bool)
    exact_test = np.array([text in seen_before_test for text in test], dtype=bool)

    near_validation, near_test = near_duplicate_flags(train, validation, test,
                                                      config.near_duplicate_words)
    near_validation &= ~exact_validation
    near_test &= ~exact_test

    drop_exact, drop_near = config.drop_cross_split_duplicates, config.drop_near_duplicates
    exact_found = int(exact_validation.sum() + exact_test.sum())
    near_found = int(near_validation.sum() + near_test.sum())
    near = NearDuplicates(
        validation_documents=int(near_validation.sum()),
        validation_character_share=_character_share(validation, near_validation),
        test_documents=int(near_test.sum()),
        test_character_share=_character_share(test, near_test),
        dropped=near_found if drop_near else 0)
    kept, kept_flags = [], []
    for name, documents, exact, near_flags in (("validation", validation, exact_validation, near_validation),
                                               ("test", test, exact_test, near_test)):
        dropped = exact & drop_exact | near_flags & drop_near
        if documents and dropped.all():
            raise DataError(_empty_split_message(name, config, exact_only=(exact & drop_exact).all()))
        kept.append([text for text, drop in zip(documents, dropped) if not drop])
        kept_flags.append(~dropped)
    if conditions is not None:  # the values follow their documents through the dropping
        conditions = (conditions[0],
                      *([c for c, keep in zip(values, flags) if keep]
                        for values, flags in zip(conditions[1:], kept_flags)))
    return Split(train, kept[0], kept[1], exact_found, exact_found if drop_exact else 0, near,
                 conditions)


def near_duplicate_flags(train: Sequence[str], validation: Sequence[str], test: Sequence[str],
                         run_words: int) -> tuple[np.ndarray, np.ndarray]:
    """Bool per validation document (shares a run of `run_words` words with train) and per test
    document (with train or validation)."""
    index = ShingleIndex(run_words)
    index.add(train)
    near_validation = index.matches(validation)
    index.add(validation)
    return near_validation, index.matches(test)


def _empty_split_message(name: str, config: ExperimentConfig, exact_only: bool) -> str:
    if exact_only:
        return (f"every {name} document also occurs in an earlier split, so dropping cross-split "
                "duplicates leaves it empty: add distinct documents or set "
                "drop_cross_split_duplicates=False")
    return (f"every {name} document repeats or shares a run of {config.near_duplicate_words} words "
            "with an earlier split, so dropping near-duplicates leaves it empty: add distinct "
            "documents, raise near_duplicate_words or set drop_near_duplicates=False")


def _character_share(documents: list[str], flags: np.ndarray) -> float:
    """Characters of the flagged documents / characters of all of them (0 for no documents)."""
    total = sum(len(text) for text in documents)
    return sum(len(text) for text, flag in zip(documents, flags) if flag) / total if total else 0.0
