"""optimizer="muon": which variables Muon updates, and that it trains, saves and resumes with the
project's schedule, clipping and weight averaging."""

import keras
import numpy as np
import pytest
from training_factories import TINY_HYPERPARAMETERS, make_config

from model_architectures.registry import build_model
from training_assets.compile import compile_model
from training_assets.strategy import select_strategy

VOCAB, LENGTH, STEPS = 30, 8, 6


def compiled(tmp_path, family: str, **hyperparameters) -> keras.Model:
    config = make_config(tmp_path, optimizer="muon", learning_rate_schedule="cosine", warmup_steps=2,
                         clipnorm=1.0, ema_momentum=0.9)
    model = build_model(family, None, VOCAB, LENGTH,
                        {**TINY_HYPERPARAMETERS[family], "tie_embeddings": False, **hyperparameters})
    compile_model(model, config, learning_rate=1e-2, total_steps=4 * STEPS,
                  strategy=select_strategy("default"))
    model(np.ones((1, LENGTH), "int32"))  # built, so the optimizer can be
    model.optimizer.build(model.trainable_variables)
    return model


def muon_variables(model: keras.Model) -> set[str]:
    return {v.path.split("/", 1)[1] for v in model.trainable_variables
            if not model.optimizer._should_use_adamw(v)}


def test_muon_takes_hidden_matrices_and_leaves_embeddings_output_norms_and_biases_to_adamw(tmp_path):
    transformer = compiled(tmp_path, "transformer", block="modern")
    assert isinstance(transformer.optimizer, keras.optimizers.Muon)
    assert muon_variables(transformer) == {f"block_0/{name}/kernel" for name in
                                           ("query", "key", "value", "attention_output", "mlp_up", "mlp_down")}
    gru = compiled(tmp_path, "gru")
    assert muon_variables(gru) == {"gru_0/gru_cell/kernel", "gru_0/gru_cell/recurrent_kernel"}
    norm = next(v for v in transformer.trainable_variables if v.name == "scale")
    assert not transformer.optimizer._use_weight_decay(norm)


def test_muon_trains_and_its_checkpoint_reloads_and_resumes(tmp_path):
    model = compiled(tmp_path, "transformer", block="modern")
    rng = np.random.default_rng(0)
    x = rng.integers(1, VOCAB, size=(8, LENGTH)).astype("int32")
    x[:, 1::2] = x[:, ::2]  # every second token repeats the one before it: learnable
    y = np.roll(x, -1, axis=1)
    first = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    model.fit(x, y, batch_size=4, epochs=STEPS // 2, verbose=0)
    assert model.evaluate(x, y, verbose=0, return_dict=True)["loss"] < first
    path = tmp_path / "muon.keras"
    model.save(path)

    restored = keras.saving.load_model(path)
    assert isinstance(restored.optimizer, keras.optimizers.Muon)
    assert int(restored.optimizer.iterations) == STEPS
    assert restored.optimizer.use_ema and restored.optimizer.get_config()["exclude_layers"]
    for saved, loaded in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_allclose(np.asarray(saved), np.asarray(loaded))
    np.testing.assert_allclose(np.asarray(restored(x)), np.asarray(model(x)), atol=1e-6)
    restored.fit(x, y, batch_size=4, epochs=1, verbose=0)  # resumes where it stopped
    assert int(restored.optimizer.iterations) == STEPS + 2
