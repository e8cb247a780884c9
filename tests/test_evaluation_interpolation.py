"""A tiny trained GRU interpolated with the Kneser-Ney model: a proper distribution over the same
tokens, a weight fitted on validation that never loses to either part, and a row in a real run."""

import math

import keras
import numpy as np
import pandas as pd
import pytest
from data_factories import documents
from training_factories import make_config, make_data

from data_pipeline.datasets import build_datasets
from evaluation.baselines import KneserNeyLM, fit_kneser_ney
from evaluation.evaluate import evaluate_model, token_log_probs
from evaluation.interpolation import fit_mixture_weight, interpolate, mixture_log_probs, pairing_problem
from model_architectures.registry import build_model, hyperparameters_for
from training_assets.experiment import interpolate_best, run_experiment
from training_assets.strategy import select_strategy
from training_assets.trainer import train_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model, tokenizer, datasets, config) of a GRU trained with the real trainer on alphabet runs."""
    config = make_config(tmp_path_factory.mktemp("interpolation"), final_training_epochs=2)
    tokenizer, datasets = make_data(config)
    result = train_model("gru", hyperparameters_for("gru", config.hyperparameters["gru"]), datasets, config,
                         select_strategy("default"), tokenizer)
    return keras.saving.load_model(result.checkpoint_path), tokenizer, datasets, config


def test_the_mixture_is_a_distribution_over_the_tokens_both_parts_score(trained):
    model, _, datasets, config = trained
    language_model = fit_kneser_ney(datasets, order=3)
    stream = datasets.validation.token_stream
    neural, targets = token_log_probs(model, datasets.validation)
    assert np.array_equal(targets, stream[1:])  # the n-gram model's targets, in its order
    weight = 0.3
    per_token = mixture_log_probs(weight, neural, language_model.log_probs(stream))
    row = config.max_len
    for index in (0, 5, row - 1, row + 2):  # target stream[index + 1]; the neural context is its row
        row_start = index // row * row
        logits = model(stream[None, row_start:index + 1], training=False)[0, -1]  # (V,)
        neural_full = np.asarray(keras.ops.log_softmax(logits), np.float64)
        kn_full = np.log(language_model.distribution(stream[:index + 1]))  # (V,)
        mixture = mixture_log_probs(weight, neural_full, kn_full)  # (V,)
        assert np.exp(mixture).sum() == pytest.approx(1.0, abs=1e-5)
        assert mixture[stream[index + 1]] == pytest.approx(per_token[index], abs=1e-4)


def test_the_fitted_mixture_is_never_worse_on_validation_than_either_part(trained):
    model, _, datasets, _ = trained
    for order in (1, 2, 3):  # a unigram, a bigram and a trigram partner
        language_model = fit_kneser_ney(datasets, order=order)
        mixture = interpolate("gru", model, 1000, language_model, datasets.validation, datasets.test)
        neural = evaluate_model(model, datasets.validation)
        kn = language_model.evaluate(datasets.validation.token_stream, datasets.validation.characters)
        assert mixture.validation.tokens == neural.tokens == kn.tokens == datasets.validation.tokens
        assert mixture.validation.nll_nats <= min(neural.nll_nats, kn.nll_nats) + 1e-6
        assert mixture.neural_validation_perplexity == pytest.approx(neural.perplexity, rel=1e-5)
        assert mixture.kn_validation_perplexity == pytest.approx(kn.perplexity, rel=1e-9)
        assert mixture.test.tokens == datasets.test.tokens and math.isnan(mixture.test.accuracy)
        assert mixture.model == f"gru+kn_{order}gram" and mixture.parameters == 1000 + language_model.num_ngrams
        assert f"lam {mixture.weight:.3f} fitted on validation" in mixture.summary()


def test_the_weight_goes_to_the_much_better_part(trained):
    model, _, datasets, _ = trained
    untrained = build_model("gru", hyperparameters_for("gru", {"embedding_dim": 16, "units": 32}),
                            datasets.vocab_size, datasets.max_len)
    unigram, trigram = fit_kneser_ney(datasets, order=1), fit_kneser_ney(datasets, order=3)
    validation = datasets.validation
    trained_scores = token_log_probs(model, validation)[0]
    # The trained GRU knows the next letter; a unigram model does not: lam near 1.
    assert fit_mixture_weight(trained_scores, unigram.log_probs(validation.token_stream)) > 0.9
    # An untrained GRU is close to uniform; the trigram knows the next letter: lam near 0.
    assert fit_mixture_weight(token_log_probs(untrained, validation)[0],
                              trigram.log_probs(validation.token_stream)) < 0.1
    assert fit_mixture_weight(trained_scores, trained_scores) in (0.0, 1.0)  # equal parts: any lam; an end


def test_the_fitted_weight_is_the_maximum_of_the_log_likelihood_over_a_fine_grid():
    rng = np.random.default_rng(0)
    neural, kn = np.log(rng.uniform(1e-3, 1, (2, 5000)))
    neural[:5] = -800.0  # a few targets the neural part gives ~0: no overflow, no NaN
    grid = np.linspace(0, 1, 2001)
    likelihood = [mixture_log_probs(weight, neural, kn).sum() for weight in grid]
    assert fit_mixture_weight(neural, kn) == pytest.approx(grid[int(np.argmax(likelihood))], abs=1e-3)


def test_unpaired_layouts_are_named_and_refused(trained, tmp_path):
    model, tokenizer, datasets, config = trained
    assert pairing_problem(config) is None
    assert "objective='causal'" in pairing_problem(make_config(tmp_path, objective="last_token"))
    unpacked = make_config(tmp_path, packing=False, max_len=8)
    assert "packing=True" in pairing_problem(unpacked)
    _, rows = make_data(unpacked)  # one [BOS] row per document, cut at 8 of its 14 letters: other targets
    with pytest.raises(ValueError, match="cannot be mixed token by token"):
        interpolate("gru", model, 0, KneserNeyLM(3, datasets.vocab_size).fit(rows.train.token_stream),
                    rows.validation, rows.test)


@pytest.mark.slow
def test_a_real_run_reports_the_interpolated_row(tmp_path):
    data_file = tmp_path / "headlines.txt"
    data_file.write_text("\n".join(documents(300, seed=5)) + "\n", encoding="utf-8")
    config = make_config(tmp_path, data_file=str(data_file), final_training_epochs=1, steps_per_epoch=20,
                         num_samples=2, max_new_tokens=12)
    result = run_experiment(config)
    table = result.table.set_index("model")
    assert set(table.index) == {"gru", "kn_3gram", "gru+kn_3gram"}
    [mixture] = result.interpolations  # one training seed: one mixture
    assert table.loc["gru+kn_3gram", "test_perplexity"] == pytest.approx(mixture.test.perplexity)
    assert table.loc["gru+kn_3gram", "test_bits_per_char"] == pytest.approx(mixture.test.bits_per_char)
    assert math.isfinite(mixture.test.bits_per_char) and 0.0 <= mixture.weight <= 1.0
    assert pd.isna(table.loc["gru+kn_3gram", "test_accuracy"])  # no cheap argmax of the mixture
    assert 0.0 <= table.loc["gru", "known_word_share"] <= 1.0
    assert 0.0 <= table.loc["kn_3gram", "known_word_share"] <= 1.0  # its samples are measured too
    assert math.isnan(table.loc["gru+kn_3gram", "known_word_share"])  # the mixture is not sampled
    assert "gru+kn_3gram" in (tmp_path / "plots" / "comparison.csv").read_text()
    off = make_config(tmp_path, data_file=str(data_file), kn_interpolation=False)
    assert interpolate_best(result.runs, off, result.data) == []
