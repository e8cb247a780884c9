"""Gradient accumulation: every family trains with it, and it equals one step on the larger batch."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from training_factories import make_config, make_data, unigram_perplexity

from model_architectures import FAMILIES, build_model, family_names, hyperparameters_for
from training_assets.compile import compile_model
from training_assets.strategy import select_strategy
from training_assets.trainer import train_model


@pytest.mark.parametrize("family", family_names(brings_tokenizer=False, likelihood=True))  # by validation perplexity
def test_every_family_trains_with_accumulated_gradients(tmp_path, family):
    config = make_config(tmp_path, models_to_run=[family], objective=FAMILIES[family].objectives[0],
                         gradient_accumulation_steps=2, steps_per_epoch=60, final_training_epochs=2)
    tokenizer, datasets = make_data(config)
    hp = hyperparameters_for(family, config.hyperparameters[family])
    result = train_model(family, hp, datasets, config, select_strategy("default"), tokenizer)
    losses, validation = result.history["loss"], result.history["val_perplexity"]
    assert losses[-1] < 0.95 * losses[0], losses  # 30 optimizer updates per epoch
    assert validation[-1] < validation[0], validation
    assert validation[-1] < unigram_perplexity(datasets.validation.token_stream), validation


def test_two_accumulated_steps_equal_one_step_on_the_double_batch(tmp_path):
    vocab, length, batch = 20, 8, 4
    tokens = np.random.default_rng(0).integers(1, vocab, size=(2 * batch, length + 1)).astype("int32")
    inputs, targets = tokens[:, :-1], tokens[:, 1:]  # no [PAD]: every micro-batch weighs the same
    strategy = select_strategy("default")
    trained = {}
    for steps, batch_size in ((2, batch), (1, 2 * batch)):
        config = make_config(tmp_path, gradient_accumulation_steps=steps, learning_rate_schedule="constant")
        keras.utils.set_random_seed(1)
        model = build_model("gru", None, vocab, length, config.hyperparameters["gru"])
        initial = [np.array(w) for w in model.get_weights()]
        compile_model(model, config, learning_rate=1e-2, total_steps=1, strategy=strategy)
        if steps == 2:  # the first micro-batch only accumulates
            model.fit(inputs[:batch], targets[:batch], batch_size=batch, shuffle=False, verbose=0)
            assert all(np.array_equal(a, np.array(b)) for a, b in zip(initial, model.get_weights()))
            model.fit(inputs[batch:], targets[batch:], batch_size=batch, shuffle=False, verbose=0)
        else:
            model.fit(inputs, targets, batch_size=batch_size, shuffle=False, verbose=0)
        trained[steps] = [np.array(w) for w in model.get_weights()]
        assert any(not np.allclose(a, b) for a, b in zip(initial, trained[steps]))
    for accumulated, single in zip(trained[2], trained[1]):
        np.testing.assert_allclose(accumulated, single, rtol=1e-4, atol=1e-6)
