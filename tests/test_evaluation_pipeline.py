"""Evaluation on real Datasets from the data pipeline: the counts line up across models."""

import json
import math
from pathlib import Path

import keras
import pandas as pd
import pytest
from training_factories import make_config as training_config
from training_factories import unigram_perplexity

from data_pipeline.corpus import Corpus
from data_pipeline.datasets import build_datasets
from data_pipeline.tokenizer import fit_or_load_tokenizer
from evaluation.baselines import kneser_ney_report
from evaluation.evaluate import evaluate_model
from data_factories import documents, make_config
from data_pipeline.config import ExperimentConfig
from evaluation.bleu import bleu_4, reference_sample, self_bleu_4
from evaluation.decoding_sweep import SweepPoint
from evaluation.generation import document_start_id, generate
from evaluation.plots import quality_frontier
from evaluation.quality import longest_copied_words
from model_architectures import hyperparameters_for
from model_architectures.saving import load_trained_model
from training_assets.experiment import (PreparedData, baseline_run, evaluate_family, sample_prompts,
                                        write_results)
from training_assets.strategy import select_strategy
from training_assets.trainer import TrainingResult, train_model


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("pipeline")
    config = make_config(tmp_path, tokenizer="char", vocab_size=64, max_len=16, batch_size=4,
                         kn_order=3)
    texts = documents(120, seed=3)
    corpus = Corpus(train=texts[:90], validation=texts[90:105], test=texts[105:], source="test",
                    report={})
    tokenizer = fit_or_load_tokenizer(corpus.train, config)
    return build_datasets(corpus, tokenizer, config)


def test_baseline_predicts_the_same_test_tokens_as_the_neural_models(datasets):
    report = kneser_ney_report(datasets, order=3)
    assert report.model == "kn_3gram" and report.baseline
    assert report.evaluation.tokens == datasets.test.tokens == len(datasets.test.token_stream) - 1
    assert report.evaluation.characters == datasets.test.characters
    assert report.parameters > 0 and report.train_seconds >= 0
    assert 1 < report.evaluation.perplexity < datasets.vocab_size


def test_evaluate_model_covers_every_test_token(datasets):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Embedding(datasets.vocab_size, 8),
                              keras.layers.Dense(datasets.vocab_size)])
    result = evaluate_model(model, datasets.test)
    assert result.tokens == datasets.test.tokens
    assert result.characters == datasets.test.characters
    # an untrained model is close to uniform over the vocabulary
    assert result.perplexity == pytest.approx(datasets.vocab_size, rel=0.2)


def test_the_experiment_evaluates_a_trained_checkpoint_on_every_test_token(trained_checkpoints):
    """evaluate_family reads the checkpoint train_model wrote (as the generate CLI does)."""
    trained = trained_checkpoints["gru_constant"]
    run = evaluate_family(trained.training, trained.config, trained.data)
    test = trained.data.datasets.test
    assert run.report.evaluation.tokens == test.tokens
    assert run.report.evaluation.characters == test.characters
    assert run.report.evaluation.perplexity < 0.5 * unigram_perplexity(test.token_stream)  # it learnt
    assert len(run.samples) == len(sample_prompts(trained.config)) >= trained.config.measure_samples
    assert run.report.generation_ms_per_token > 0 and run.report.parameters == trained.training.parameters


@pytest.fixture(scope="module")
def word_model(tmp_path_factory) -> tuple[ExperimentConfig, PreparedData, TrainingResult]:
    """A tiny GRU trained by train_model on headline-like word documents (BPE: a token per word),
    so its samples have words for the word-level measures to find."""
    config = training_config(tmp_path_factory.mktemp("words"), tokenizer="bpe", vocab_size=400,
                             steps_per_epoch=60, final_training_epochs=1, num_samples=4,
                             max_new_tokens=10, jit_compile=False, decoding_sweep=True,
                             decoding_sweep_samples=5,
                             decoding_sweep_temperatures=[0.5, 1.5], decoding_sweep_top_p=[0.5, 1.0])
    texts = documents(300, seed=5)
    corpus = Corpus(train=texts[:240], validation=texts[240:270], test=texts[270:], source="test",
                    report={})
    tokenizer = fit_or_load_tokenizer(corpus.train, config)
    data = PreparedData(corpus, tokenizer, build_datasets(corpus, tokenizer, config))
    keras.utils.set_random_seed(config.seed)
    training = train_model("gru", hyperparameters_for("gru", config.hyperparameters["gru"]),
                           data.datasets, config, select_strategy("default"), tokenizer)
    return config, data, training


def test_the_experiment_measures_samples_sweeps_decoding_and_draws_both_figures(word_model):
    """evaluate_family on a checkpoint train_model wrote: the new sample measures, the loss per
    position from the evaluation pass, a 2 x 2 decoding sweep, and what write_results makes of them."""
    config, data, training = word_model
    run = evaluate_family(training, config, data)
    report = run.report
    # the table's samples, against the test split (bleu_4) and the training split (copies)
    references = reference_sample(data.corpus.test, config.bleu_references, config.seed)
    assert 0 < report.bleu_4 == bleu_4(run.samples, references)
    assert 0 < report.self_bleu_4 == self_bleu_4(run.samples)
    assert 1 <= report.longest_copied_words == longest_copied_words(run.samples, data.corpus.train)
    losses = report.evaluation.loss_by_position
    assert len(losses) == config.max_len and all(math.isfinite(loss) for loss in losses)
    assert [(p.temperature, p.top_p) for p in run.sweep] == [(0.5, 0.5), (0.5, 1.0), (1.5, 0.5),
                                                             (1.5, 1.0)]
    hot = generate(load_trained_model(training.checkpoint_path), data.tokenizer, [""] * 5,
                   config.max_new_tokens, "top_p", temperature=1.5, top_p=1.0, seed=config.seed,
                   start_id=document_start_id(config))
    assert run.sweep[-1].bleu_4 == bleu_4(hot, references)  # each point scores its own samples
    assert run.sweep[-1].self_bleu_4 == self_bleu_4(hot)
    assert len({(p.bleu_4, p.self_bleu_4) for p in run.sweep}) > 1  # the settings change the samples

    table, paths = write_results([run], None, config)
    names = {path.name for path in paths}
    assert {"loss_by_position.png", "quality_diversity.png", "decoding_sweep.csv"} <= names
    assert table.loc[0, "bleu_4"] == report.bleu_4
    sweep = pd.read_csv(Path(config.plots_dir) / "decoding_sweep.csv")
    assert sweep["model"].tolist() == ["gru"] * 4
    assert sweep["self_bleu_4"].tolist() == pytest.approx([p.self_bleu_4 for p in run.sweep])


def test_the_ngram_baseline_samples_and_sweeps_like_the_networks(word_model):
    """Its row gets the sample measures of its own seeded samples, its samples and sweep are
    written beside the networks'."""
    config, data, training = word_model
    baseline = baseline_run(config, data)
    report, samples = baseline.report, baseline.samples
    assert len(samples) == len(sample_prompts(config))
    assert len(set(samples)) > 1  # the repeated prompts draw one stream, not one seed each
    assert baseline_run(config, data).samples == samples  # seeded
    references = reference_sample(data.corpus.test, config.bleu_references, config.seed)
    assert 0 < report.bleu_4 == bleu_4(samples, references)
    assert 0 < report.self_bleu_4 == self_bleu_4(samples)
    assert report.longest_copied_words == longest_copied_words(samples, data.corpus.train)
    assert report.known_word_share > 0.5 and 0 < report.distinct_1 <= 1
    assert report.generation_ms_per_token > 0
    assert [(p.temperature, p.top_p) for p in baseline.sweep] == [(0.5, 0.5), (0.5, 1.0),
                                                                  (1.5, 0.5), (1.5, 1.0)]

    run = evaluate_family(training, config, data)
    table, _ = write_results([run], baseline, config)
    assert table.set_index("model").loc["kn_3gram", "bleu_4"] == report.bleu_4
    written = json.loads((Path(config.plots_dir) / "samples.json").read_text())
    assert written["kn_3gram"] == samples and written["gru"] == run.samples
    sweep = pd.read_csv(Path(config.plots_dir) / "decoding_sweep.csv")
    assert sweep["model"].tolist() == ["gru"] * 4 + ["kn_3gram"] * 4


def test_sweep_and_bleu_settings_reuse_the_finished_checkpoint(word_model):
    """Turning the sweep on (or changing its grid) must not train the models again."""
    config, data, training = word_model
    changed = ExperimentConfig.from_dict({
        **config.to_dict(), "decoding_sweep": False, "decoding_sweep_temperatures": [0.9],
        "decoding_sweep_top_p": [0.7], "decoding_sweep_samples": 9, "bleu_references": 50})
    again = train_model("gru", hyperparameters_for("gru", config.hyperparameters["gru"]),
                        data.datasets, changed, select_strategy("default"), data.tokenizer)
    assert again.reused and again.checkpoint_path == training.checkpoint_path


def test_quality_frontier_keeps_the_points_no_other_beats_on_both_measures():
    points = [SweepPoint(1.0, 1.0, bleu_4=0.30, self_bleu_4=0.10),
              SweepPoint(0.7, 1.0, bleu_4=0.25, self_bleu_4=0.20),  # beaten by the first
              SweepPoint(0.5, 0.8, bleu_4=0.40, self_bleu_4=0.50),
              SweepPoint(1.3, 1.0, bleu_4=math.nan, self_bleu_4=0.05)]
    assert quality_frontier(points) == [points[0], points[2]]


def test_the_table_measures_the_shown_samples_then_more_up_to_measure_samples(tmp_path):
    config = make_config(tmp_path, prompts=["a", "b"], num_samples=2, measure_samples=5)
    assert sample_prompts(config) == ["a", "b", "a", "b", "a"]
    many = make_config(tmp_path, prompts=["a", "b"], num_samples=3, measure_samples=4)
    assert sample_prompts(many) == ["a", "b"] * 3  # never fewer than num_samples per prompt
