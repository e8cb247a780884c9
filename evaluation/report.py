"""The comparison table: one row per model, the baseline among them, best bits/char first."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from evaluation.evaluate import EvaluationResult

COLUMNS = ("model", "parameters", "trainable_parameters", "test_perplexity", "test_bits_per_char",
           "test_accuracy",
           "train_seconds", "train_tokens_per_second", "generation_ms_per_token",
           "distinct_1", "distinct_2", "known_word_share", "memorised_share",
           "bleu_4", "self_bleu_4", "longest_copied_words",
           "condition_gain_bits_per_char")
# Markdown number formats, one per column above (the CSV keeps full precision).
_MARKDOWN_FORMATS = ("", ",.0f", ",.0f", ".2f", ".4f", ".4f", ".2f", ",.0f", ".2f", ".3f", ".3f", ".3f", ".3f",
                     ".3f", ".3f", ".1f",  # bleu_4, self_bleu_4, longest_copied_words
                     ".4f")


@dataclass(frozen=True)
class ModelReport:
    """One row of the table: test evaluation, training cost and generation quality of a model.

    Fields a model does not have stay None (the n-gram baseline does not train by gradient
    descent: its `parameters` are its stored n-grams, `train_seconds` its fit time; an
    interpolated row has no training, speed or samples of its own, and no accuracy).
    """

    model: str
    evaluation: EvaluationResult
    parameters: int | None = None
    # updated by training (LoRA: the adapters only); None for the n-gram, whose counts are fitted
    trainable_parameters: int | None = None
    train_seconds: float | None = None
    train_tokens_per_second: float | None = None
    generation_ms_per_token: float | None = None
    distinct_1: float | None = None
    distinct_2: float | None = None
    known_word_share: float | None = None  # share of sampled words found in the training split
    memorised_share: float | None = None
    bleu_4: float | None = None  # samples against the test documents (Texygen's BLEU-4)
    self_bleu_4: float | None = None  # each sample against the other samples: lower is more diverse
    longest_copied_words: float | None = None  # median over samples of the longest run from a training text
    # test bits/char of the same model with the condition values shuffled across test documents
    shuffled_condition_bits_per_char: float | None = None
    baseline: bool = False  # drawn as a reference line, not a bar, in the plots
    note: str | None = None  # printed under the table, e.g. why a cell is empty

    def row(self) -> dict[str, object]:
        """The table row: names as in COLUMNS, None as NaN."""
        value = lambda x: math.nan if x is None else x  # noqa: E731
        return {
            "model": self.model,
            "parameters": self.parameters,
            "trainable_parameters": self.trainable_parameters,
            "test_perplexity": self.evaluation.perplexity,
            "test_bits_per_char": self.evaluation.bits_per_char,
            "test_accuracy": self.evaluation.accuracy,
            "train_seconds": value(self.train_seconds),
            "train_tokens_per_second": value(self.train_tokens_per_second),
            "generation_ms_per_token": value(self.generation_ms_per_token),
            "distinct_1": value(self.distinct_1),
            "distinct_2": value(self.distinct_2),
            "known_word_share": value(self.known_word_share),
            "memorised_share": value(self.memorised_share),
            "bleu_4": value(self.bleu_4),
            "self_bleu_4": value(self.self_bleu_4),
            "longest_copied_words": value(self.longest_copied_words),
            "condition_gain_bits_per_char": value(self.condition_gain_bits_per_char),
        }

    @property
    def condition_gain_bits_per_char(self) -> float | None:
        """Bits per character the conditions are worth: shuffled minus own conditions' bits/char."""
        if self.shuffled_condition_bits_per_char is None:
            return None
        return self.shuffled_condition_bits_per_char - self.evaluation.bits_per_char


def comparison_table(rows: list[ModelReport]) -> pd.DataFrame:
    """A DataFrame with COLUMNS, one row per model, sorted by test bits/char (best first)."""
    if not rows:
        raise ValueError("comparison_table needs at least one ModelReport (no model was evaluated)")
    names = [row.model for row in rows]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"comparison_table: model names {duplicates} appear more than once; "
                         "give each row its own name")
    table = pd.DataFrame([row.row() for row in rows], columns=list(COLUMNS))
    for column in ("parameters", "trainable_parameters"):
        table[column] = table[column].astype("Int64")  # integers, <NA> where unknown
    table = table.sort_values("test_bits_per_char", kind="stable", na_position="last",
                              ignore_index=True)
    table.attrs["notes"] = {row.model: row.note for row in rows if row.note}  # save_table prints them
    return table


def save_table(df: pd.DataFrame, plots_dir: str | Path, notes: Sequence[str] = ()) -> list[Path]:
    """Write `comparison.csv` (full precision) and `comparison.md` (rounded, `notes` under it)
    into plots_dir."""
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    csv_path, markdown_path = plots_dir / "comparison.csv", plots_dir / "comparison.md"
    df.to_csv(csv_path, index=False)
    formats = [dict(zip(COLUMNS, _MARKDOWN_FORMATS)).get(column, ".4g") for column in df.columns]
    # tabulate formats floats only: missing values become an empty cell, integers stay exact.
    printable = df.astype(object).where(df.notna(), None)
    model_notes = [f"{model}: {note}" for model, note in df.attrs.get("notes", {}).items()]
    markdown_path.write_text(printable.to_markdown(index=False, floatfmt=formats,
                                                         intfmt=",", missingval="")
                             + "\n" + "".join(f"\n{note}\n" for note in [*model_notes, *notes]),
                             encoding="utf-8")
    return [csv_path, markdown_path]
