"""The comparison table: one row per model, the baseline among them, best bits/char first.

A ModelReport is one trained model (one family at one training seed, the n-gram baseline, or a
mixture); the table gathers a model's seeds into one row: the mean over seeds, the between-seed
spread, and 95% intervals from the per-document scores (evaluation.intervals), with every row's
paired difference from the best row and its Holm-corrected p-value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from evaluation.evaluate import EvaluationResult
from evaluation.intervals import (DocumentBootstrap, Interval, RowScores, format_p, mean_interval,
                                  ratio_interval)

COLUMNS = ("model", "seeds", "parameters", "trainable_parameters", "test_perplexity",
           "test_bits_per_char", "test_bits_per_char_low", "test_bits_per_char_high",
           "bits_per_char_seed_sd",
           "difference_from_best", "difference_low", "difference_high", "p_value_holm",
           "test_accuracy",
           "train_seconds", "train_tokens_per_second", "generation_ms_per_token",
           "distinct_1", "distinct_2", "known_word_share", "known_word_share_low",
           "known_word_share_high", "memorised_share",
           "bleu_4", "bleu_4_low", "bleu_4_high", "self_bleu_4", "self_bleu_4_low",
           "self_bleu_4_high", "longest_copied_words",
           "condition_gain_bits_per_char", "condition_accuracy", "condition_accuracy_chance",
           "sample_condition_accuracy")
# Markdown number formats (the CSV keeps full precision); columns not named here: ".4g".
_MARKDOWN_FORMATS = {
    "seeds": "d", "parameters": ",.0f", "trainable_parameters": ",.0f", "test_perplexity": ".2f",
    "bits_per_char_seed_sd": ".4f", "test_accuracy": ".4f", "train_seconds": ".2f",
    "train_tokens_per_second": ",.0f", "generation_ms_per_token": ".2f", "distinct_1": ".3f",
    "distinct_2": ".3f", "memorised_share": ".3f", "longest_copied_words": ".1f",
    "condition_gain_bits_per_char": ".4f", "condition_accuracy": ".3f",
    "condition_accuracy_chance": ".3f", "sample_condition_accuracy": ".3f"}
# Shown in the markdown as "value [low, high]": column -> (format, low column, high column)
_WITH_INTERVAL = {
    "test_bits_per_char": (".4f", "test_bits_per_char_low", "test_bits_per_char_high"),
    "difference_from_best": ("+.4f", "difference_low", "difference_high"),
    "known_word_share": (".3f", "known_word_share_low", "known_word_share_high"),
    "bleu_4": (".3f", "bleu_4_low", "bleu_4_high"),
    "self_bleu_4": (".3f", "self_bleu_4_low", "self_bleu_4_high"),
}
_SAMPLE_INTERVALS = ("bleu_4", "self_bleu_4", "known_word_share")
DOCUMENT_SCORE_COLUMNS = ("model", "seed", "document", "tokens", "characters", "nll_nats")


@dataclass(frozen=True)
class SampleScores:
    """Per-sample values behind the sample columns, so their intervals can resample samples."""

    bleu_4: tuple[float, ...] = ()  # each sample's BLEU-4 against the test references
    self_bleu_4: tuple[float, ...] = ()  # each sample's BLEU-4 against the other samples
    known_words: tuple[int, ...] = ()  # each sample's words found in the training split
    words: tuple[int, ...] = ()  # each sample's words


@dataclass(frozen=True)
class ModelReport:
    """One trained model: test evaluation, training cost and generation quality.

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
    # balanced accuracy of the model as a classifier of test documents' condition values, its
    # chance level, and the same for samples generated under each value (condition_accuracy.py)
    condition_accuracy: float | None = None
    condition_accuracy_chance: float | None = None
    sample_condition_accuracy: float | None = None
    baseline: bool = False  # drawn as a reference line, not a bar, in the plots
    note: str | None = None  # printed under the table, e.g. why a cell is empty
    seed: int | None = None  # the training seed; reports of one model at several seeds make one row
    sample_scores: SampleScores | None = None

    def row(self) -> dict[str, object]:
        """This model's own figures, names as in COLUMNS (None as NaN), before seeds are pooled."""
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
            "condition_accuracy": value(self.condition_accuracy),
            "condition_accuracy_chance": value(self.condition_accuracy_chance),
            "sample_condition_accuracy": value(self.sample_condition_accuracy),
        }

    @property
    def condition_gain_bits_per_char(self) -> float | None:
        """Bits per character the conditions are worth: shuffled minus own conditions' bits/char."""
        if self.shuffled_condition_bits_per_char is None:
            return None
        return self.shuffled_condition_bits_per_char - self.evaluation.bits_per_char


def group_by_model(reports: Sequence[ModelReport]) -> dict[str, list[ModelReport]]:
    """Reports by model name, in first-seen order; a model at the same seed twice is an error."""
    groups: dict[str, list[ModelReport]] = {}
    for report in reports:
        groups.setdefault(report.model, []).append(report)
    repeated = sorted(name for name, group in groups.items()
                      if len({report.seed for report in group}) < len(group))
    if repeated:
        raise ValueError(f"comparison_table: models {repeated} appear more than once at the same "
                         "seed; give each row its own name or seed")
    return groups


def row_scores(group: Sequence[ModelReport]) -> RowScores | None:
    """A model's per-document scores over its seeds; None unless every seed has them."""
    documents = [report.evaluation.documents for report in group]
    if not documents or any(scores is None for scores in documents):
        return None
    return RowScores(group[0].model, np.stack([scores.nll_nats for scores in documents]),
                     documents[0].characters)


def document_bootstrap(reports: Sequence[ModelReport], resamples: int = 1000,
                       seed: int = 0) -> DocumentBootstrap | None:
    """One bootstrap over the test documents for every row that has per-document scores."""
    rows = [scores for group in group_by_model(reports).values()
            if (scores := row_scores(group)) is not None]
    return DocumentBootstrap(rows, resamples, seed) if rows else None


def comparison_table(reports: list[ModelReport], resamples: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """A DataFrame with COLUMNS, one row per model (its seeds pooled), best test bits/char first.

    `resamples` and `seed`: the bootstrap's (evaluation.intervals); the same seed gives the same
    intervals and p-values.
    """
    if not reports:
        raise ValueError("comparison_table needs at least one ModelReport (no model was evaluated)")
    groups = group_by_model(reports)
    bootstrap = document_bootstrap(reports, resamples, seed)
    rows = [_pooled_row(group, bootstrap, resamples, seed) for group in groups.values()]
    if bootstrap is not None:
        best = min(bootstrap.rows, key=lambda model: bootstrap.rows[model].value)
        differences = bootstrap.versus(list(bootstrap.rows), best)
        for row in rows:
            if row["model"] == best:
                row.update(difference_from_best=0.0, difference_low=0.0, difference_high=0.0)
            elif row["model"] in differences:
                found = differences[row["model"]]
                row.update(difference_from_best=found.value, difference_low=found.low,
                           difference_high=found.high, p_value_holm=found.p_holm)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in ("seeds", "parameters", "trainable_parameters"):
        table[column] = table[column].astype("Int64")  # integers, <NA> where unknown
    table = table.sort_values("test_bits_per_char", kind="stable", na_position="last",
                              ignore_index=True)
    table.attrs["notes"] = {group[0].model: group[0].note for group in groups.values()
                            if group[0].note}  # save_table prints them
    return table


def _pooled_row(group: Sequence[ModelReport], bootstrap: DocumentBootstrap | None,
                resamples: int, seed: int) -> dict[str, object]:
    """One model's row: the mean of each figure over its seeds, its spread and its intervals."""
    own = pd.DataFrame([report.row() for report in group])
    row: dict[str, object] = {"model": group[0].model, "seeds": len(group)}
    for column in own.columns.drop("model"):
        values = pd.to_numeric(own[column], errors="coerce")
        row[column] = values.mean() if values.notna().any() else math.nan
    row["parameters"], row["trainable_parameters"] = (group[0].parameters,
                                                      group[0].trainable_parameters)
    if bootstrap is not None and group[0].model in bootstrap.rows:
        scores = bootstrap.rows[group[0].model]
        interval = bootstrap.interval(group[0].model)
        row.update(test_bits_per_char=interval.value, test_bits_per_char_low=interval.low,
                   test_bits_per_char_high=interval.high, bits_per_char_seed_sd=scores.seed_sd)
    pooled = [report.sample_scores for report in group if report.sample_scores is not None]
    if pooled:
        for name, interval in _sample_intervals(pooled, resamples, seed).items():
            row.update({f"{name}_low": interval.low, f"{name}_high": interval.high})
    return row


def _sample_intervals(scores: Sequence[SampleScores], resamples: int,
                      seed: int) -> dict[str, Interval]:
    """The sample columns' intervals, resampling the samples of every seed together (the
    columns themselves stay the mean of each seed's figure)."""
    pooled = lambda name: [value for s in scores for value in getattr(s, name)]  # noqa: E731
    return {"bleu_4": mean_interval(pooled("bleu_4"), resamples, seed),
            "self_bleu_4": mean_interval(pooled("self_bleu_4"), resamples, seed),
            "known_word_share": ratio_interval(pooled("known_words"), pooled("words"),
                                               resamples, seed)}


def document_scores_frame(reports: Sequence[ModelReport]) -> pd.DataFrame:
    """Every model's per-document test scores, one line per (model, seed, document): the
    figures every interval in the table is computed from (DOCUMENT_SCORE_COLUMNS)."""
    frames = []
    for report in reports:
        scores = report.evaluation.documents
        if scores is None:
            continue
        frames.append(pd.DataFrame({
            "model": report.model, "seed": -1 if report.seed is None else report.seed,
            "document": np.arange(len(scores.nll_nats)), "tokens": scores.tokens,
            "characters": scores.characters, "nll_nats": scores.nll_nats}))
    if not frames:
        return pd.DataFrame(columns=list(DOCUMENT_SCORE_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(DOCUMENT_SCORE_COLUMNS)]


def markdown_table(df: pd.DataFrame) -> str:
    """The table for a reader: each figure with its interval in one cell, p-values as text, the
    seed columns only when some row has more than one seed."""
    shown = df.copy()
    for column, (number, low, high) in _WITH_INTERVAL.items():
        if column in shown:
            shown[column] = [_with_interval(value, lo, hi, number)
                             for value, lo, hi in zip(df[column], df.get(low, math.nan),
                                                      df.get(high, math.nan))]
    if "difference_from_best" in shown:  # the best row is the reference, not a difference
        shown["difference_from_best"] = ["best" if value == 0 and low == high == 0 else cell
                                         for cell, value, low, high in zip(
                                             shown["difference_from_best"], df["difference_from_best"],
                                             df["difference_low"], df["difference_high"])]
    if "p_value_holm" in shown:
        shown["p_value_holm"] = [format_p(p) if pd.notna(p) else "" for p in df["p_value_holm"]]
    hidden = [low for _, low, _ in _WITH_INTERVAL.values()] + [
        high for _, _, high in _WITH_INTERVAL.values()]
    if "seeds" in df and not (df["seeds"].fillna(1) > 1).any():
        hidden += ["seeds", "bits_per_char_seed_sd"]
    shown = shown.drop(columns=[column for column in hidden if column in shown])
    formats = [_MARKDOWN_FORMATS.get(column, ".4g") for column in shown.columns]
    # tabulate formats floats only: missing values become an empty cell, integers stay exact.
    printable = shown.astype(object).where(shown.notna(), None)
    return printable.to_markdown(index=False, floatfmt=formats, intfmt=",", missingval="",
                                 disable_numparse=False)


def _with_interval(value: float, low: float, high: float, number: str) -> str | None:
    if value is None or not np.isfinite(value):
        return None
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return format(value, number)
    return f"{value:{number}} [{low:{number}}, {high:{number}}]"


def save_table(df: pd.DataFrame, plots_dir: str | Path, notes: Sequence[str] = ()) -> list[Path]:
    """Write `comparison.csv` (full precision) and `comparison.md` (rounded, each figure with its
    interval, `notes` under it) into plots_dir."""
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    csv_path, markdown_path = plots_dir / "comparison.csv", plots_dir / "comparison.md"
    df.to_csv(csv_path, index=False)
    model_notes = [f"{model}: {note}" for model, note in df.attrs.get("notes", {}).items()]
    markdown_path.write_text(markdown_table(df) + "\n"
                             + "".join(f"\n{note}\n" for note in [*model_notes, *notes]),
                             encoding="utf-8")
    return [csv_path, markdown_path]
