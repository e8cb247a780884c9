"""Per-document test scores: every layout's targets add up, per document, to the evaluation's
totals, for the networks, the n-gram baseline and the mixture; and a run with several training
seeds reports them pooled, writes what it measured and reuses every seed on a rerun."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
from training_factories import make_conditional_corpus, make_config, make_corpus

from benchmarks.busy_demo import compare, family_figures
from data_pipeline.datasets import build_datasets
from data_pipeline.document_layout import stream_document_targets
from data_pipeline.tokenizer import fit_or_load_tokenizer
from evaluation.baselines import kneser_ney_report
from evaluation.evaluate import evaluate_model
from evaluation.report import DOCUMENT_SCORE_COLUMNS
from training_assets.experiment import run_experiment


def tiny_model(vocab_size: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.layers.Embedding(vocab_size, 8), keras.layers.Dense(vocab_size)])


LAYOUTS = {
    "packed": ({}, make_corpus),
    "document rows": ({"packing": False, "max_len": 8}, make_corpus),  # documents are truncated
    "last token": ({"objective": "last_token"}, make_corpus),
    "conditions": ({"condition_columns": ["category"]}, make_conditional_corpus),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_document_scores_add_up_to_the_evaluation_in_every_layout(tmp_path, layout):
    overrides, corpus_of = LAYOUTS[layout]
    config = make_config(tmp_path, **overrides)
    corpus = corpus_of(120)
    tokenizer = fit_or_load_tokenizer(corpus.train, config, corpus.conditions_of("train"))
    datasets = build_datasets(corpus, tokenizer, config)
    result = evaluate_model(tiny_model(datasets.vocab_size), datasets.test)
    documents = result.documents
    assert documents is not None and len(documents.nll_nats) == len(corpus.test)
    assert documents.nll_nats.sum() == pytest.approx(result.nll_nats, rel=1e-9)
    assert documents.tokens.sum() == result.tokens and documents.characters.sum() == result.characters
    assert (documents.nll_nats > 0).all()
    if layout == "packed":  # the n-gram baseline's scores are split by the same documents
        baseline = kneser_ney_report(datasets, order=3).evaluation
        assert baseline.documents.nll_nats.sum() == pytest.approx(baseline.nll_nats, rel=1e-9)
        np.testing.assert_array_equal(baseline.documents.characters, documents.characters)
        np.testing.assert_array_equal(baseline.documents.tokens, documents.tokens)


def test_stream_document_targets_leave_out_masked_condition_ids():
    eos, condition = 2, 7  # condition ids: [7, 9)
    stream = np.array([eos, 7, 10, 11, eos, 8, 12, eos, 13, 14, 15, eos])
    assert stream_document_targets(stream, (7, 9)).tolist() == [3, 2, 4]
    assert stream_document_targets(stream).tolist() == [4, 3, 4]
    assert condition in stream


@pytest.mark.slow
def test_a_run_with_two_seeds_pools_them_and_reuses_both_on_a_rerun(tmp_path):
    config = make_config(tmp_path, seeds=2, final_training_epochs=1, steps_per_epoch=10,
                         num_samples=2, measure_samples=6, max_new_tokens=8)
    corpus = make_corpus(160)
    first = run_experiment(config, corpus)
    assert sorted(run.training.seed for run in first.runs) == [42, 43]
    assert first.runs[0].training.checkpoint_path != first.runs[1].training.checkpoint_path
    table = first.table.set_index("model")
    gru = table.loc["gru"]
    per_seed = [run.report.evaluation.bits_per_char for run in first.runs]
    assert gru["seeds"] == 2 and gru["test_bits_per_char"] == pytest.approx(np.mean(per_seed))
    assert gru["bits_per_char_seed_sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert gru["test_bits_per_char_low"] < gru["test_bits_per_char"] < gru["test_bits_per_char_high"]
    assert table.loc["gru+kn_3gram", "seeds"] == 2  # one mixture per seed
    assert table.loc["kn_3gram", "seeds"] == 1
    for column in ("bleu_4", "self_bleu_4", "known_word_share"):
        low, value, high = gru[f"{column}_low"], gru[column], gru[f"{column}_high"]
        assert not np.isfinite(value) or low <= value <= high
    plots = tmp_path / "plots"
    scores = pd.read_csv(plots / "document_scores.csv")
    assert tuple(scores.columns) == DOCUMENT_SCORE_COLUMNS
    assert len(scores) == len(corpus.test) * (2 + 1 + 2)  # gru x2, kn_3gram, mixture x2
    sums = scores.groupby(["model", "seed"])["nll_nats"].sum()
    assert sums[("gru", 43)] == pytest.approx(first.runs[1].report.evaluation.nll_nats)
    assert len(pd.read_csv(plots / "comparison_by_seed.csv")) == 2
    samples = json.loads((plots / "samples.json").read_text(encoding="utf-8"))
    assert {"gru", "gru (seed 43)", "kn_3gram"} <= set(samples)
    assert "95% interval" in first.conclusions
    assert (plots / "differences_from_best.png").stat().st_size > 5_000
    # benchmarks.busy_demo reads what the run wrote: itself against itself is inside, steps 1.0
    figures = family_figures(plots, tmp_path / "models")
    assert set(figures) == {"gru"} and figures["gru"]["steps"] == 10
    [row] = compare(figures, figures)
    assert row["steps_busy_over_quiet"] == 1.0 and row["inside_quiet_interval"] and row["goal_met"]

    again = run_experiment(config, corpus)
    assert [run.training.reused for run in again.runs] == [True, True]
    timed = ["train_seconds", "train_tokens_per_second", "generation_ms_per_token"]  # the n-gram refits
    pd.testing.assert_frame_equal(again.table.drop(columns=timed), first.table.drop(columns=timed))
