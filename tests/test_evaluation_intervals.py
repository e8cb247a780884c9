"""Intervals, paired differences and Holm's correction (evaluation.intervals), on generated
per-document scores whose truth is known, and the conclusions drawn from them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import ConfigError
from evaluation.evaluate import DocumentScores, EvaluationResult
from evaluation.intervals import (DocumentBootstrap, RowScores, holm, mean_interval,
                                  ratio_interval)
from evaluation.report import ModelReport, comparison_table, markdown_table
from training_assets.experiment import FamilyRun, conclusions
from training_assets.trainer import TrainingResult

LN2 = math.log(2)


def documents(count: int, seed: int) -> np.ndarray:
    """Characters of `count` documents of varied length."""
    return np.random.default_rng(seed).integers(10, 300, size=count)


def scores(characters: np.ndarray, bits_per_char: float, noise: float, seed: int) -> np.ndarray:
    """NLL (nats) per document around `bits_per_char`, each document with its own difficulty."""
    rng = np.random.default_rng(seed)
    return characters * LN2 * bits_per_char * rng.lognormal(0.0, noise, size=len(characters))


def test_row_figure_is_a_ratio_of_sums_and_the_interval_holds_it():
    characters = documents(400, seed=1)
    nll = scores(characters, 2.0, 0.3, seed=2)
    bootstrap = DocumentBootstrap([RowScores("gru", nll, characters)], resamples=500, seed=0)
    interval = bootstrap.interval("gru")
    assert interval.value == pytest.approx(nll.sum() / characters.sum() / LN2)
    assert interval.low < interval.value < interval.high
    again = DocumentBootstrap([RowScores("gru", nll, characters)], resamples=500, seed=0)
    assert again.interval("gru") == interval  # seeded: the same intervals every time


def test_the_interval_covers_the_truth_about_95_percent_of_the_time():
    """Many test sets drawn from one population: the interval holds the population's bits/char
    in roughly 95% of them."""
    rng = np.random.default_rng(7)
    population_characters = rng.integers(10, 300, size=20_000)
    population_nll = scores(population_characters, 2.0, 0.4, seed=8)
    truth = population_nll.sum() / population_characters.sum() / LN2
    covered, trials = 0, 150
    for trial in range(trials):
        picked = rng.integers(0, len(population_nll), size=150)
        bootstrap = DocumentBootstrap([RowScores("m", population_nll[picked],
                                                 population_characters[picked])],
                                      resamples=400, seed=trial)
        interval = bootstrap.interval("m")
        covered += interval.low <= truth <= interval.high
    assert 0.88 <= covered / trials <= 0.99


def test_paired_difference_finds_a_small_consistent_gain_that_separate_intervals_miss():
    characters = documents(300, seed=3)
    hard = scores(characters, 2.0, 0.5, seed=4)  # documents differ a lot in difficulty
    better = hard * 0.99  # 1% better on every document
    bootstrap = DocumentBootstrap([RowScores("lstm", hard, characters),
                                   RowScores("gru", better, characters)], resamples=1000, seed=0)
    lstm, gru = bootstrap.interval("lstm"), bootstrap.interval("gru")
    assert gru.high > lstm.low  # the two intervals overlap...
    difference = bootstrap.difference("lstm", "gru")
    assert difference.value > 0 and difference.low > 0  # ...yet the paired difference is clear
    assert difference.p_value < 0.01 and difference.significant()


def test_identical_rows_are_tied_with_p_one():
    characters = documents(200, seed=5)
    nll = scores(characters, 2.0, 0.3, seed=6)
    bootstrap = DocumentBootstrap([RowScores("a", nll, characters),
                                   RowScores("b", nll.copy(), characters)], resamples=300, seed=0)
    difference = bootstrap.difference("a", "b")
    assert difference.value == 0 and difference.p_value == 1.0 and not difference.significant()


def test_holm_adjusts_in_step_down_order():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    assert holm([0.2, 0.9]) == pytest.approx([0.4, 0.9])


def test_seed_variance_widens_the_interval_and_is_reported():
    characters = documents(300, seed=9)
    base = scores(characters, 2.0, 0.3, seed=10)
    one = DocumentBootstrap([RowScores("gru", base, characters)], resamples=1000, seed=0)
    seeds = np.stack([base * factor for factor in (0.98, 1.0, 1.02)])  # seeds move it by ~2%
    three = DocumentBootstrap([RowScores("gru", seeds, characters)], resamples=1000, seed=0)
    row = three.rows["gru"]
    assert row.seeds == 3
    assert row.value == pytest.approx(one.rows["gru"].value)
    assert row.seed_sd == pytest.approx(np.std([0.98, 1.0, 1.02], ddof=1) * row.value, rel=1e-6)
    width = lambda b: b.interval("gru").high - b.interval("gru").low  # noqa: E731
    assert width(three) > 1.5 * width(one)
    assert math.isnan(one.rows["gru"].seed_sd)


def test_rows_on_other_documents_cannot_be_paired_and_few_resamples_are_refused():
    with pytest.raises(ValueError, match="not on the same test documents"):
        DocumentBootstrap([RowScores("a", np.ones(3), [5, 5, 5]),
                           RowScores("b", np.ones(3), [5, 5, 6])])
    with pytest.raises(ValueError, match="at least 200"):
        DocumentBootstrap([RowScores("a", np.ones(3), [5, 5, 5])], resamples=100)


@pytest.mark.parametrize("value", [0, -1, 1.5, "3", True])
def test_seeds_must_be_a_whole_positive_number(value):
    with pytest.raises(ConfigError, match=r"'seeds'\] = .*give a whole number of training seeds") as error:
        ExperimentConfig.from_dict({"seeds": value})
    assert "\n" not in str(error.value)


def test_sample_intervals_resample_samples():
    interval = mean_interval([0.1, 0.2, 0.3, 0.4] * 8, resamples=500, seed=0)
    assert interval.value == pytest.approx(0.25) and interval.low < 0.25 < interval.high
    share = ratio_interval([3, 4, 5, 0], [4, 4, 5, 2], resamples=500, seed=0)
    assert share.value == pytest.approx(12 / 15) and share.low <= share.value <= share.high
    assert math.isnan(mean_interval([], resamples=500).value)


# --- the table and the conclusions, from reports with known per-document scores ---------------

def report(model: str, nll: np.ndarray, characters: np.ndarray, seed: int | None = 42,
           baseline: bool = False) -> ModelReport:
    evaluation = EvaluationResult.from_totals(
        float(nll.sum()), int(characters.sum()), 0, int(characters.sum()),
        documents=DocumentScores(nll, np.ones_like(characters), characters))
    return ModelReport(model=model, evaluation=evaluation, parameters=1000, train_seconds=10.0,
                       generation_ms_per_token=1.0, baseline=baseline, seed=seed)


def family_run(model_report: ModelReport, validation_perplexity: float) -> FamilyRun:
    training = TrainingResult(
        family=model_report.model, hyperparameters={}, history={"val_perplexity": [validation_perplexity]},
        epoch_seconds=[10.0], train_seconds=10.0, train_tokens_per_second=1.0, parameters=1000,
        checkpoint_path=f"{model_report.model}.keras", diverged=False, stopped_reason="done",
        seed=model_report.seed or 0)
    return FamilyRun(family=model_report.model, training=training, report=model_report)


def test_table_shows_each_figure_with_its_interval_and_the_difference_from_the_best():
    characters = documents(300, seed=11)
    base = scores(characters, 2.0, 0.4, seed=12)
    reports = [report("gru", base * 0.97, characters), report("lstm", base, characters),
               report("kn_3gram", base * 1.10, characters, seed=None, baseline=True)]
    table = comparison_table(reports, resamples=500, seed=0).set_index("model")
    assert table.index.tolist() == ["gru", "lstm", "kn_3gram"]
    assert table.loc["gru", "difference_from_best"] == 0 and math.isnan(table.loc["gru", "p_value_holm"])
    for model in ("lstm", "kn_3gram"):
        row = table.loc[model]
        assert row["test_bits_per_char_low"] < row["test_bits_per_char"] < row["test_bits_per_char_high"]
        assert 0 < row["difference_low"] < row["difference_from_best"] < row["difference_high"]
        assert row["p_value_holm"] < 0.05
    markdown = markdown_table(comparison_table(reports, resamples=500, seed=0))
    gru = table.loc["gru"]
    assert (f"{gru['test_bits_per_char']:.4f} [{gru['test_bits_per_char_low']:.4f}, "
            f"{gru['test_bits_per_char_high']:.4f}]") in markdown
    assert "seeds" not in markdown.splitlines()[0]  # one seed each: no seed columns to read


def test_conclusions_name_a_winner_only_when_the_difference_is_significant():
    characters = documents(400, seed=13)
    base = scores(characters, 2.0, 0.4, seed=14)
    clear = [family_run(report("gru", base * 0.95, characters), 5.0),
             family_run(report("lstm", base, characters), 6.0)]
    text = conclusions(clear, None, resamples=500, seed=0)
    assert "**Best model: gru**" in text and "significantly below the runner-up lstm" in text

    rng = np.random.default_rng(15)
    noisy = base * rng.lognormal(0, 0.3, size=len(base))  # same level, document by document noise
    close = [family_run(report("gru", base, characters), 6.0),
             family_run(report("lstm", noisy * base.sum() / noisy.sum() * 1.001, characters), 5.0)]
    text = conclusions(close, None, resamples=500, seed=0, chosen=close[1])
    assert "No single winner" in text and "gru and lstm are tied: difference" in text
    assert "95% interval" in text and "Best model" not in text
    # samples and generation come from the model with the lowest *validation* figure
    assert "use **lstm** (seed 42)" in text


def test_seeds_pool_into_one_row_with_their_spread():
    characters = documents(300, seed=16)
    base = scores(characters, 2.0, 0.4, seed=17)
    reports = [report("gru", base * factor, characters, seed=42 + index)
               for index, factor in enumerate((0.99, 1.0, 1.01))]
    table = comparison_table(reports, resamples=500, seed=0).set_index("model")
    assert table.loc["gru", "seeds"] == 3
    per_seed = [r.evaluation.bits_per_char for r in reports]
    assert table.loc["gru", "test_bits_per_char"] == pytest.approx(np.mean(per_seed))
    assert table.loc["gru", "bits_per_char_seed_sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert "seeds" in markdown_table(comparison_table(reports, resamples=500)).splitlines()[0]
    with pytest.raises(ValueError, match="same seed"):
        comparison_table(reports + [reports[0]])
