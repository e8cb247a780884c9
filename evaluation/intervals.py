"""How sure the comparison is: bootstrap intervals, paired differences, Holm-corrected p-values.

Every figure here comes from per-document scores (evaluation.evaluate.DocumentScores), never
from a second pass over a model:

- A row's test bits/char is a ratio of sums, sum NLL / sum characters / ln 2. Each bootstrap
  resample draws the test documents with replacement and recomputes that ratio (not a mean of
  per-document ratios, which would weigh a short document like a long one). The 95% interval is
  the 2.5th and 97.5th percentile of the resamples.
- Every row is resampled with the same documents in each resample, so the difference between
  two rows is paired: a document that is hard for both cancels out (sacrebleu's paired
  bootstrap). Its p-value is two-sided and null-centred: the share of resampled differences at
  least as far from their mean as the observed difference is from zero.
- With several training seeds a row's figure is the mean over its seeds. Its interval then adds,
  to each resample, the uncertainty of a mean of S seeds: s / sqrt(S) x a Student-t draw with
  S - 1 degrees of freedom (s: the between-seed standard deviation of the row's bits/char).
  Resampling 2 or 3 seeds with replacement instead (rliable's approach for many runs) would see
  only a handful of distinct means and understate that spread; the t draw widens the interval
  honestly when there are few seeds (docs/verdict.md).
- Comparing several rows to the best is several tests: Holm's step-down correction keeps the
  chance of any false "different" at 5%.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

MINIMUM_RESAMPLES = 200  # fewer cannot place a 2.5th percentile with any accuracy
CONFIDENCE = 0.95
_CELLS_PER_CHUNK = 4_000_000  # resamples x documents held at once


@dataclass(frozen=True)
class RowScores:
    """One table row's per-document scores: NLL (nats) per seed and document, characters per
    document (the same documents, in the same order, for every row)."""

    model: str
    nll_nats: np.ndarray  # (S, D)
    characters: np.ndarray  # (D,)

    def __post_init__(self):
        nll = np.atleast_2d(np.asarray(self.nll_nats, np.float64))
        object.__setattr__(self, "nll_nats", nll)
        object.__setattr__(self, "characters", np.asarray(self.characters, np.float64))
        if nll.shape[1] != len(self.characters):
            raise ValueError(f"{self.model}: {nll.shape[1]} document scores for "
                             f"{len(self.characters)} documents")

    @property
    def seeds(self) -> int:
        return self.nll_nats.shape[0]

    def bits_per_char(self) -> np.ndarray:
        """Each seed's test bits/char over all documents (S,)."""
        return self.nll_nats.sum(axis=1) / self.characters.sum() / math.log(2)

    @property
    def value(self) -> float:
        """The row's figure: the mean over seeds of test bits/char."""
        return float(self.bits_per_char().mean())

    @property
    def seed_sd(self) -> float:
        """Between-seed standard deviation of test bits/char; NaN with one seed."""
        return float(self.bits_per_char().std(ddof=1)) if self.seeds > 1 else math.nan


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Difference:
    """A row minus a reference row (bits/char: negative is better), paired over documents."""

    value: float
    low: float
    high: float
    p_value: float  # two-sided, uncorrected
    p_holm: float = math.nan  # after Holm's correction over the comparisons made together

    def significant(self, level: float = 1 - CONFIDENCE) -> bool:
        corrected = self.p_holm if math.isfinite(self.p_holm) else self.p_value
        return corrected < level

    def describe(self, unit: str = "bits/char") -> str:
        """'0.011 bits/char, 95% interval -0.018 to 0.040, p = 0.42'."""
        p = self.p_holm if math.isfinite(self.p_holm) else self.p_value
        return (f"{self.value:+.3f} {unit}, 95% interval {self.low:+.3f} to {self.high:+.3f}, "
                f"{p_phrase(p)}")


def format_p(p: float) -> str:
    """p as a reader takes it in: '0.003', '< 0.001'."""
    if not math.isfinite(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_phrase(p: float) -> str:
    """'p = 0.003', 'p < 0.001'; '' for no p-value."""
    text = format_p(p)
    return "" if not text else f"p {text}" if text.startswith("<") else f"p = {text}"


def check_resamples(resamples: int) -> None:
    if resamples < MINIMUM_RESAMPLES:
        raise ValueError(f"bootstrap_resamples={resamples}: use at least {MINIMUM_RESAMPLES} "
                         "(1,000 or more for a 95% interval)")


class DocumentBootstrap:
    """Bootstrap draws of every row's bits/char from one seeded set of document resamples."""

    def __init__(self, rows: Sequence[RowScores], resamples: int = 1000, seed: int = 0):
        check_resamples(resamples)
        if not rows:
            raise ValueError("DocumentBootstrap needs at least one row of document scores")
        documents = len(rows[0].characters)
        for row in rows:
            if len(row.characters) != documents or not np.array_equal(row.characters,
                                                                      rows[0].characters):
                raise ValueError(f"{row.model}: its document scores are not on the same test "
                                 f"documents as {rows[0].model}'s: rows cannot be paired")
        self.rows = {row.model: row for row in rows}
        self.resamples = int(resamples)
        self.draws = self._draw(rows, documents, seed)  # model -> (B,)

    def _draw(self, rows: Sequence[RowScores], documents: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        chunk = max(1, _CELLS_PER_CHUNK // max(documents, 1))
        characters = rows[0].characters  # (D,)
        per_row: dict[str, list[np.ndarray]] = {row.model: [] for row in rows}
        for start in range(0, self.resamples, chunk):
            size = min(chunk, self.resamples - start)
            picks = rng.integers(0, documents, size=(size, documents))  # (b, D)
            offsets = (np.arange(size) * documents)[:, None]
            weights = np.bincount((picks + offsets).ravel(),
                                  minlength=size * documents).reshape(size, documents)  # (b, D)
            resampled_characters = weights @ characters  # (b,)
            for row in rows:
                nll = weights @ row.nll_nats.T  # (b, S)
                per_row[row.model].append(
                    (nll / resampled_characters[:, None]).mean(axis=1) / math.log(2))
        draws = {}
        for row in rows:
            values = np.concatenate(per_row[row.model])  # (B,)
            if row.seeds > 1:  # the uncertainty of a mean of S seeds (module docstring)
                seed_rng = np.random.default_rng([seed, zlib.crc32(row.model.encode())])
                values = values + (row.seed_sd / math.sqrt(row.seeds)
                                   * seed_rng.standard_t(row.seeds - 1, size=len(values)))
            draws[row.model] = values
        return draws

    def interval(self, model: str) -> Interval:
        low, high = _percentiles(self.draws[model])
        return Interval(self.rows[model].value, low, high)

    def difference(self, model: str, reference: str) -> Difference:
        """`model` minus `reference`, paired: interval and two-sided p-value (uncorrected)."""
        observed = self.rows[model].value - self.rows[reference].value
        return _difference(observed, self.draws[model] - self.draws[reference])

    def versus(self, models: Sequence[str], reference: str) -> dict[str, Difference]:
        """Each of `models` against `reference`, with Holm's correction over these comparisons."""
        found = {model: self.difference(model, reference) for model in models if model != reference}
        corrected = holm([difference.p_value for difference in found.values()])
        return {model: _with_holm(difference, p)
                for (model, difference), p in zip(found.items(), corrected)}


def _difference(observed: float, draws: np.ndarray) -> Difference:
    low, high = _percentiles(draws)
    extreme = np.abs(draws - draws.mean()) >= abs(observed)
    p_value = (1 + int(np.count_nonzero(extreme))) / (len(draws) + 1)
    return Difference(float(observed), low, high, float(min(1.0, p_value)))


def _with_holm(difference: Difference, p_holm: float) -> Difference:
    return Difference(difference.value, difference.low, difference.high, difference.p_value, p_holm)


def _percentiles(draws: np.ndarray) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the given order (Holm 1979)."""
    p = np.asarray(p_values, np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def mean_interval(values: Sequence[float], resamples: int = 1000, seed: int = 0) -> Interval:
    """The mean of per-sample values with its bootstrap interval (resampling samples)."""
    values = np.asarray([v for v in values if math.isfinite(v)], np.float64)
    return ratio_interval(values, np.ones_like(values), resamples, seed)


def ratio_interval(numerators: Sequence[float], denominators: Sequence[float],
                   resamples: int = 1000, seed: int = 0) -> Interval:
    """sum(numerators) / sum(denominators) with its bootstrap interval (resampling items)."""
    check_resamples(resamples)
    top, bottom = np.asarray(numerators, np.float64), np.asarray(denominators, np.float64)
    if len(top) == 0 or bottom.sum() <= 0:
        return Interval(math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(top), size=(resamples, len(top)))  # (B, N)
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = top[picks].sum(axis=1) / bottom[picks].sum(axis=1)
    low, high = _percentiles(draws[np.isfinite(draws)]) if np.isfinite(draws).any() else (
        math.nan, math.nan)
    return Interval(float(top.sum() / bottom.sum()), low, high)
