"""Evaluation on real Datasets from the data pipeline: the counts line up across models."""

import keras
import pytest
from training_factories import unigram_perplexity

from data_pipeline.corpus import Corpus
from data_pipeline.datasets import build_datasets
from data_pipeline.tokenizer import fit_or_load_tokenizer
from evaluation.baselines import kneser_ney_report
from evaluation.evaluate import evaluate_model
from data_factories import documents, make_config
from training_assets.experiment import evaluate_family


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
    assert len(run.samples) == trained.config.num_samples * len(trained.config.prompts)
    assert run.report.generation_ms_per_token > 0 and run.report.parameters == trained.training.parameters
