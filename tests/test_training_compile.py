"""compile_model and its settings: optimizer, schedule, XLA / steps_per_execution rules, precision."""

import keras
import numpy as np
import pytest
from training_factories import make_config

from data_pipeline.config import ConfigError
from evaluation.metrics import MaskedAccuracy, Perplexity
from model_architectures.registry import build_model, hyperparameters_for
from training_assets.compile import (compile_model, configure_precision, learning_rate_schedule,
                                     resolve_jit_compile, resolve_steps_per_execution)
from training_assets.strategy import select_strategy

VOCAB, LENGTH = 30, 8


@pytest.fixture
def mirrored():
    return select_strategy("mirrored")


def tiny_gru(config) -> keras.Model:
    return build_model("gru", hyperparameters_for("gru", config.hyperparameters["gru"]), VOCAB, LENGTH,
                       config.hyperparameters["gru"])


def test_compile_sets_adamw_clipping_accumulation_masked_loss_and_metrics(tmp_path):
    config = make_config(tmp_path, optimizer="adamw", weight_decay=0.05, clipnorm=0.5,
                         gradient_accumulation_steps=2, learning_rate_schedule="constant")
    strategy = select_strategy("default")
    model = tiny_gru(config)
    compile_model(model, config, learning_rate=3e-3, total_steps=10, strategy=strategy)

    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert optimizer.weight_decay == pytest.approx(0.05) and optimizer.clipnorm == pytest.approx(0.5)
    assert optimizer.gradient_accumulation_steps == 2
    assert float(optimizer.learning_rate) == pytest.approx(3e-3)
    rng = np.random.default_rng(0)
    x = rng.integers(1, VOCAB, size=(4, LENGTH)).astype("int32")
    y = x.copy()
    y[:, 5:] = 0
    logs = model.evaluate(x, y, return_dict=True, verbose=0)
    assert {"loss", "perplexity", "accuracy"} <= set(logs)
    assert logs["perplexity"] == pytest.approx(np.exp(logs["loss"]), rel=1e-4)  # one batch: same mask
    # AdamW decays weights but not biases or LayerNorm parameters.
    bias = next(v for v in model.trainable_variables if v.name == "bias")
    kernel = next(v for v in model.trainable_variables if v.name == "kernel")
    assert not optimizer._use_weight_decay(bias) and optimizer._use_weight_decay(kernel)

    config = make_config(tmp_path, optimizer="adam", clipnorm=None)
    compile_model(model, config, learning_rate=1e-3, total_steps=10, strategy=strategy)
    assert type(model.optimizer) is keras.optimizers.Adam and model.optimizer.clipnorm is None
    assert model.optimizer.gradient_accumulation_steps is None


def test_cosine_schedule_warms_up_linearly_then_decays(tmp_path):
    config = make_config(tmp_path, learning_rate_schedule="cosine", warmup_steps=10)
    schedule = learning_rate_schedule(config, 1e-2, total_steps=200)
    values = [float(schedule(step)) for step in (0, 5, 10, 105, 200, 400)]
    assert values[0] == pytest.approx(0.0) and values[1] == pytest.approx(5e-3)
    assert values[2] == pytest.approx(1e-2)  # peak after warmup
    assert values[2] > values[3] > values[4] and values[4] == pytest.approx(1e-3)  # ends at 10% of peak
    assert values[5] == pytest.approx(1e-3)
    # A short run caps warmup at 10% of its steps, so it does not spend the run warming up.
    short = learning_rate_schedule(config, 1e-2, total_steps=20)
    assert float(short(2)) == pytest.approx(1e-2)
    constant = learning_rate_schedule(make_config(tmp_path, learning_rate_schedule="constant"), 1e-2, 20)
    assert constant == pytest.approx(1e-2)


def test_xla_and_steps_per_execution_only_where_allowed(tmp_path, mirrored):
    default = select_strategy("default")
    auto = make_config(tmp_path)
    assert resolve_jit_compile(auto, default) is False  # CPU-only: XLA measured slower here
    xla = make_config(tmp_path, jit_compile=True, deterministic=False)
    assert resolve_jit_compile(xla, default) is True
    assert resolve_jit_compile(xla, mirrored) is False
    with pytest.raises(ConfigError, match="jit_compile=True cannot be honoured with deterministic=True"):
        make_config(tmp_path, jit_compile=True, deterministic=True)
    assert resolve_steps_per_execution(auto, default) == 1
    assert resolve_steps_per_execution(make_config(tmp_path, steps_per_execution=4), default) == 4
    assert resolve_steps_per_execution(make_config(tmp_path, steps_per_execution=4), mirrored) == 1

    config = make_config(tmp_path, jit_compile=True, deterministic=False, steps_per_execution=4)
    with mirrored.scope():
        model = tiny_gru(config)
    compile_model(model, config, learning_rate=1e-3, total_steps=4, strategy=mirrored)
    assert model.jit_compile is False and model.steps_per_execution == 1


def test_precision_auto_is_float32_on_cpu_and_mixed_keeps_float32_logits(tmp_path):
    strategy = select_strategy("default")
    try:
        assert configure_precision(make_config(tmp_path, mixed_precision="auto"), strategy) == "float32"
        assert keras.mixed_precision.dtype_policy().name == "float32"
        config = make_config(tmp_path, mixed_precision="mixed_bfloat16")
        assert configure_precision(config, strategy) == "mixed_bfloat16"
        model = tiny_gru(config)  # built after the policy is set: bfloat16 compute
        compile_model(model, config, learning_rate=1e-3, total_steps=2, strategy=strategy)
        x = np.ones((2, LENGTH), "int32")
        assert model(x).dtype == "float32"
        logs = model.evaluate(x, x, return_dict=True, verbose=0)
        assert np.isfinite(logs["perplexity"])
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_metric_classes_are_the_project_ones(tmp_path):
    config = make_config(tmp_path)
    model = tiny_gru(config)
    compile_model(model, config, 1e-3, 4, select_strategy("default"))
    metrics = model.get_compile_config()["metrics"]
    assert {entry["class_name"] for entry in metrics} == {Perplexity.__name__, MaskedAccuracy.__name__}
    assert model.get_compile_config()["loss"]["config"]["ignore_class"] == 0
