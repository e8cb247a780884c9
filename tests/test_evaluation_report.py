"""Comparison table and figures: columns, order, files."""

import math

import pandas as pd
import pytest

from evaluation.evaluate import EvaluationResult
from evaluation.plots import family_colour, plot_all
from evaluation.report import COLUMNS, ModelReport, comparison_table, save_table
from training_assets.trainer import TrainingResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def evaluation(nll: float, tokens: int = 100, characters: int = 400) -> EvaluationResult:
    return EvaluationResult.from_totals(nll, tokens, correct=tokens // 3, characters=characters)


def model_report(name: str, nll: float, seconds: float) -> ModelReport:
    return ModelReport(model=name, evaluation=evaluation(nll), parameters=12_345,
                       train_seconds=seconds, train_tokens_per_second=1000 / seconds,
                       generation_ms_per_token=1.5, distinct_1=0.4, distinct_2=0.7,
                       known_word_share=0.95, memorised_share=0.0)


def training(family: str, epochs: int, start: float) -> TrainingResult:
    decay = [start * 0.8 ** e for e in range(epochs)]
    history = {"loss": [math.log(p) for p in decay], "val_loss": [math.log(p * 1.1) for p in decay],
               "perplexity": decay, "val_perplexity": [p * 1.1 for p in decay],
               "accuracy": [0.1 + 0.05 * e for e in range(epochs)],
               "val_accuracy": [0.1 + 0.04 * e for e in range(epochs)]}
    return TrainingResult(family=family, hyperparameters={"units": 16}, history=history,
                          epoch_seconds=[2.0 + e for e in range(epochs)],
                          train_seconds=sum(2.0 + e for e in range(epochs)),
                          train_tokens_per_second=500.0, parameters=12_345,
                          checkpoint_path=f"{family}.keras", diverged=False,
                          stopped_reason="completed")


@pytest.fixture
def reports() -> list[ModelReport]:
    baseline = ModelReport(model="kn_3gram", evaluation=evaluation(250.0), parameters=900,
                           train_seconds=0.05, train_tokens_per_second=2e6, baseline=True)
    return [model_report("lstm", 300.0, 20.0), model_report("transformer", 200.0, 40.0), baseline]


def test_table_columns_and_order(reports):
    table = comparison_table(reports)
    assert tuple(table.columns) == COLUMNS
    assert table["model"].tolist() == ["transformer", "kn_3gram", "lstm"]  # by bits/char
    assert table["test_bits_per_char"].is_monotonic_increasing
    assert table["test_perplexity"].iloc[0] == pytest.approx(math.exp(2.0))
    baseline = table.set_index("model").loc["kn_3gram"]
    assert pd.isna(baseline["generation_ms_per_token"]) and pd.isna(baseline["distinct_1"])
    assert pd.isna(baseline["known_word_share"]) and table["known_word_share"].iloc[0] == 0.95
    assert table.dtypes["generation_ms_per_token"] == float and table.dtypes["parameters"] == "Int64"
    assert table["parameters"].tolist() == [12_345, 900, 12_345]


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
    assert "12,345" in markdown[2] and "0.950" in markdown[2] and "nan" not in "".join(markdown)


def test_plots_are_written_as_png(reports, tmp_path):
    results = [training("lstm", 3, 80.0), training("transformer", 4, 60.0)]
    paths = plot_all(results, reports, tmp_path / "plots")
    assert [p.name for p in paths] == ["training_history.png", "training_time.png",
                                      "validation_perplexity_vs_time.png", "test_metrics.png"]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000


def test_plots_survive_missing_history_and_no_baseline(tmp_path):
    result = training("gru", 2, 50.0)
    result.history.pop("val_accuracy")
    result.epoch_seconds.pop()  # a resumed run with one unknown duration
    paths = plot_all([result], [model_report("gru", 250.0, 5.0)], tmp_path)
    assert all(path.exists() for path in paths)


def test_colours_are_fixed_per_family():
    assert family_colour("gru") == family_colour("gru") != family_colour("lstm")
    assert family_colour("kn_5gram") == family_colour("kn_3gram")
    assert family_colour("my_model") == family_colour("my_model")
