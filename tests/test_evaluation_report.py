"""Comparison table and figures, from what the experiment produces: reports of trained models and
the n-gram baseline (training_assets.experiment), training results of the real trainer."""

import dataclasses
import math

import pandas as pd
import pytest

from evaluation.plots import family_colour, plot_all
from evaluation.report import COLUMNS, ModelReport, comparison_table, save_table
from model_architectures import family_names
from training_assets.experiment import FamilyRun, baseline_run, evaluate_family

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(trained_checkpoints) -> list[FamilyRun]:
    """Two families' checkpoints, evaluated as the experiment evaluates them."""
    return [evaluate_family(trained.training, trained.config, trained.data)
            for trained in (trained_checkpoints["lstm"], trained_checkpoints["transformer"])]


@pytest.fixture(scope="module")
def reports(runs, trained_checkpoints) -> list[ModelReport]:
    lstm = trained_checkpoints["lstm"]
    return [run.report for run in runs] + [baseline_run(lstm.config, lstm.data).report]


def by_bits_per_char(reports: list[ModelReport]) -> list[ModelReport]:
    return sorted(reports, key=lambda report: report.evaluation.bits_per_char)


def test_table_columns_and_order(reports):
    table = comparison_table(reports)
    ranked = by_bits_per_char(reports)
    assert tuple(table.columns) == COLUMNS
    assert table["model"].tolist() == [report.model for report in ranked]
    assert sorted(table["model"]) == ["kn_3gram", "lstm", "transformer"]
    assert table["test_bits_per_char"].is_monotonic_increasing
    best = ranked[0].evaluation
    assert table["test_perplexity"].iloc[0] == pytest.approx(math.exp(best.nll_nats / best.tokens))
    baseline = table.set_index("model").loc["kn_3gram"]
    assert baseline["train_tokens_per_second"] > 0 and pd.isna(baseline["trainable_parameters"])
    for report in reports:  # the n-gram model's samples are measured like the networks'
        share = table.set_index("model").loc[report.model, "known_word_share"]
        assert share == report.known_word_share and 0.0 <= share <= 1.0
        assert table.set_index("model").loc[report.model, "generation_ms_per_token"] > 0
    assert table.dtypes["generation_ms_per_token"] == float and table.dtypes["parameters"] == "Int64"
    assert table["parameters"].tolist() == [report.parameters for report in ranked]


def test_table_refuses_empty_and_duplicate_rows(reports):
    with pytest.raises(ValueError, match="at least one"):
        comparison_table([])
    with pytest.raises(ValueError, match="lstm"):
        comparison_table(reports + [reports[0]])


def test_save_table_writes_csv_and_markdown(reports, tmp_path):
    table = comparison_table(reports)
    csv_path, markdown_path = save_table(table, tmp_path / "plots")
    assert (csv_path.name, markdown_path.name) == ("comparison.csv", "comparison.md")
    reread = pd.read_csv(csv_path)
    assert tuple(reread.columns) == COLUMNS
    pd.testing.assert_series_equal(reread["test_bits_per_char"], table["test_bits_per_char"])
    markdown = markdown_path.read_text().splitlines()
    assert markdown[0].startswith("| model") and "test_bits_per_char" in markdown[0]
    assert len(markdown) == 2 + len(reports)
    lstm = next(report for report in reports if report.model == "lstm")
    assert lstm.parameters >= 1000  # so the next line checks the thousands separator
    assert any(line.startswith("| lstm") and f"{lstm.parameters:,}" in line for line in markdown)
    assert "nan" not in "".join(markdown)


def test_plots_are_written_as_png(runs, reports, tmp_path):
    paths = plot_all([run.training for run in runs], reports, tmp_path / "plots")
    assert [p.name for p in paths] == ["training_history.png", "training_time.png",
                                      "validation_perplexity_vs_time.png", "test_metrics.png",
                                      "loss_by_position.png"]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000


def test_plots_survive_missing_history_and_no_baseline(runs, tmp_path):
    trained = runs[0].training
    history = {key: values for key, values in trained.history.items() if key != "val_accuracy"}
    result = dataclasses.replace(trained, history=history,
                                 epoch_seconds=trained.epoch_seconds[:-1])  # a resumed run, one duration unknown
    paths = plot_all([result], [runs[0].report], tmp_path)
    assert all(path.exists() for path in paths)


def test_colours_are_fixed_per_family():
    assert family_colour("gru") == family_colour("gru") != family_colour("lstm")
    assert len({family_colour(family) for family in family_names()}) == len(family_names())
    assert family_colour("kn_5gram") == family_colour("kn_3gram")
    assert family_colour("my_model") == family_colour("my_model")
