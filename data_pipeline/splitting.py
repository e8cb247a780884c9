"""Which documents are used, and which split each one lands in, decided before anything is fitted.

The split is by whole document, so no validation or test text can reach training through a window
that straddles a boundary; exact duplicates across splits are counted (and, by default, dropped
from validation/test), because a memorised training document would flatter held-out scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import DataError


@dataclass(frozen=True)
class Split:
    """Documents per split, and the duplicates found across splits."""

    train: list[str]
    validation: list[str]
    test: list[str]
    cross_split_duplicates_found: int  # val/test documents also present in an earlier split
    cross_split_duplicates_dropped: int


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
                    config: ExperimentConfig) -> Split:
    """Split by document per config.split ('random' seeded, 'ordered', 'chronological')."""
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
    return _handle_duplicates(train, validation, test, config.drop_cross_split_duplicates)


def _handle_duplicates(train: list[str], validation: list[str], test: list[str],
                       drop: bool) -> Split:
    """Count val documents seen in train and test documents seen in train or val; maybe drop."""
    seen_train = set(train)
    seen_before_test = seen_train | set(validation)
    validation_kept = [text for text in validation if text not in seen_train]
    test_kept = [text for text in test if text not in seen_before_test]
    found = (len(validation) - len(validation_kept)) + (len(test) - len(test_kept))
    if not drop:
        return Split(train, validation, test, found, 0)
    for name, before, after in (("validation", validation, validation_kept),
                                ("test", test, test_kept)):
        if before and not after:
            raise DataError(f"every {name} document also occurs in an earlier split, so dropping "
                            "cross-split duplicates leaves it empty: add distinct documents or "
                            "set drop_cross_split_duplicates=False")
    return Split(train, validation_kept, test_kept, found, found)
