"""The corpus stage: read, clean, sample and split documents, with a report of what was dropped."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import numpy as np

from data_pipeline.cleaning import clean_documents
from data_pipeline.conditions import BucketEdges, Conditions, bucket_numeric_conditions
from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import DataError
from data_pipeline.sources import read_documents
from data_pipeline.splitting import sample_indices, split_documents

log = logging.getLogger("data_pipeline")


@dataclass(frozen=True)
class Corpus:
    """Cleaned documents per split; nothing has been fitted on any of them yet."""

    train: list[str]
    validation: list[str]
    test: list[str]
    source: str
    report: dict[str, int | float | str]  # rows read, rows dropped and why, duplicates, split sizes
    # condition_columns' values per document of each split, beside its text; None without them
    conditions: dict[str, list[Conditions]] | None = None
    # numeric condition column ("price:quantiles5") -> its bucket edges, fitted on train
    condition_edges: BucketEdges = field(default_factory=dict)

    def conditions_of(self, split: str) -> list[Conditions] | None:
        """The values of `split`'s documents ("train", "validation" or "test"), or None."""
        return None if self.conditions is None else self.conditions[split]


def load_corpus(config: ExperimentConfig) -> Corpus:
    """Load CONFIG's data_file, clean each document, take the sample, split by document."""
    raw = read_documents(config)
    steps = config.cleaning_steps
    cleaned = clean_documents(raw.texts, steps)
    if config.sample_size is not None and config.sample_strategy == "first":
        # Clean only as far as needed: the first sample_size documents that survive cleaning.
        kept = list(itertools.islice(cleaned, config.sample_size))
        scanned = kept[-1][0] + 1 if len(kept) == config.sample_size else len(raw.texts)
    else:
        kept = list(cleaned)
        scanned = len(raw.texts)
    if not kept:
        raise DataError(f"all {len(raw.texts)} documents of {raw.source!r} are empty after "
                        f"cleaning={config.cleaning!r}: use cleaning='none' or another data_file")
    chosen = [kept[i] for i in sample_indices(len(kept), config)]
    texts = [text for _, text in chosen]
    dates = None if raw.dates is None else raw.dates[np.array([i for i, _ in chosen])]
    conditions = None if raw.conditions is None else [raw.conditions[i] for i, _ in chosen]
    split = split_documents(texts, dates, config, conditions)
    split_conditions, edges = (None, {}) if split.conditions is None else \
        bucket_numeric_conditions(config.condition_columns, split.conditions)
    near = split.near_duplicates
    report: dict[str, int | float | str] = {
        "source": raw.source,
        "rows_read": raw.rows_read,
        "empty_rows_dropped": raw.empty_rows_dropped,
        "empty_after_cleaning_dropped": scanned - len(kept),
        "not_sampled": len(kept) - len(chosen) + (len(raw.texts) - scanned),
        "documents": len(texts),
        "cleaning": ",".join(steps) or "none",
        "split": config.split,
        "train_documents": len(split.train),
        "validation_documents": len(split.validation),
        "test_documents": len(split.test),
        "cross_split_duplicates_found": split.cross_split_duplicates_found,
        "cross_split_duplicates_dropped": split.cross_split_duplicates_dropped,
        "near_duplicate_words": config.near_duplicate_words,
        "validation_near_duplicates": near.validation_documents,
        "validation_near_duplicate_character_share": round(near.validation_character_share, 4),
        "test_near_duplicates": near.test_documents,
        "test_near_duplicate_character_share": round(near.test_character_share, 4),
        "near_duplicates_dropped": near.dropped,
    }
    log.info("corpus %s", report)
    return Corpus(train=split.train, validation=split.validation, test=split.test,
                  source=raw.source, report=report,
                  conditions=None if split_conditions is None else
                  dict(zip(("train", "validation", "test"), split_conditions)),
                  condition_edges=edges)
