"""Model families: shapes, search spaces with CONFIG overrides, tying, precision, cuDNN arguments."""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
import pytest

from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import ConfigError
from model_architectures import FAMILIES, build_model, family_names, hyperparameters_for

VOCAB, MAX_LEN = 50, 12


@pytest.mark.parametrize("family", family_names(brings_tokenizer=False))
def test_every_family_declares_a_valid_tiny_size_that_builds_small(family):
    spec = FAMILIES[family]
    config = ExperimentConfig.from_dict({"models_to_run": [family], "objective": spec.objectives[0],
                                         "hyperparameters": {family: dict(spec.tiny)}})
    model = build_model(family, None, VOCAB, MAX_LEN, config.hyperparameters[family])
    default = build_model(family, None, VOCAB, MAX_LEN)
    assert model.count_params() < default.count_params() / 4
    assert type(model).__module__ == spec.module  # the registry names where the family lives


@pytest.mark.parametrize("family", family_names(brings_tokenizer=False))
def test_logits_at_every_position(family):
    model = build_model(family, None, VOCAB, MAX_LEN, FAMILIES[family].tiny)
    tokens = np.random.default_rng(0).integers(0, VOCAB, size=(3, MAX_LEN)).astype("int32")
    logits = model(tokens)
    assert tuple(logits.shape) == (3, MAX_LEN, VOCAB)
    assert logits.dtype == "float32"
    assert np.isfinite(np.asarray(logits)).all()
    if "causal" not in FAMILIES[family].objectives:
        return  # its positions may read the whole window; only the last one is a prediction
    # Causal: changing the last token leaves every earlier position's logits unchanged.
    changed = tokens.copy()
    changed[:, -1] = (changed[:, -1] + 1) % VOCAB
    np.testing.assert_allclose(np.asarray(model(changed))[:, :-1], np.asarray(logits)[:, :-1],
                               atol=1e-5)


@pytest.mark.parametrize("family", family_names(brings_tokenizer=False))
def test_defaults_lie_inside_the_reference_ranges(family):
    hp = hyperparameters_for(family)
    space = FAMILIES[family].space
    assert hp.values == {name: dimension.default for name, dimension in space.items()}
    assert {"learning_rate", "dropout", "num_layers", "embedding_dim"} <= set(space)
    # The declared space is the reference one: every default is among the values it can take.
    for parameter in hp.space:
        if isinstance(parameter, kt.engine.hyperparameters.Choice):
            assert parameter.default in parameter.values
        elif hasattr(parameter, "min_value"):
            assert parameter.min_value <= parameter.default <= parameter.max_value


def test_overrides_fix_choose_and_narrow():
    hp = hyperparameters_for("gru", {
        "units": 128,                                # scalar -> Fixed
        "learning_rate": [3e-3, 1e-2],               # list -> Choice, default kept if listed
        "embedding_dim": {"min": 32, "max": 48, "step": 16},  # dict -> narrowed Int
        "dropout": {"min": 0.0, "max": 0.1},         # default 0.2 outside -> low end
    })
    space = {parameter.name: parameter for parameter in hp.space}
    assert isinstance(space["units"], kt.engine.hyperparameters.Fixed) and hp.get("units") == 128
    assert list(space["learning_rate"].values) == [3e-3, 1e-2] and hp.get("learning_rate") == 1e-2
    assert (space["embedding_dim"].min_value, space["embedding_dim"].max_value) == (32, 48)
    assert hp.get("embedding_dim") == 32
    assert hp.get("dropout") == 0.0
    model = build_model("gru", None, VOCAB, MAX_LEN, {"units": 20, "embedding_dim": 8})
    assert model.units == 20 and model.embedding_dim == 8


def test_learning_rate_range_from_a_dict():
    hp = hyperparameters_for("transformer", {"learning_rate": {"min": 1e-4, "max": 1e-2}})
    parameter = next(p for p in hp.space if p.name == "learning_rate")
    assert parameter.sampling == "log" and hp.get("learning_rate") == pytest.approx(1e-3)


@pytest.mark.parametrize("overrides, message", [
    ({"unit": 100}, r"'gru'.*unknown name\(s\) \['unit'\].*known names.*'units'"),
    ({"units": "many"}, r"\['units'\] = 'many': must be an integer"),
    ({"dropout": 1.0}, r"\['dropout'\] = 1.0: must be >= 0.0 and < 1.0"),
    ({"units": {"min": 300, "max": 100}}, r"min=300 is greater than max=100"),
    ({"units": {"low": 1}}, r"unknown range key\(s\) \['low'\]"),
    ({"tie_embeddings": {"min": 0}}, r"boolean takes true, false"),
    ({"num_layers": []}, r"give at least one value"),
])
def test_bad_overrides_fail_with_one_clear_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_model("gru", None, VOCAB, MAX_LEN, overrides)
    # CONFIG validation finds the same mistake, naming where it is, before anything is built.
    with pytest.raises(ConfigError, match=message) as error:
        ExperimentConfig.from_dict({"hyperparameters": {"gru": overrides}}, source="experiment.json")
    assert str(error.value).startswith("experiment.json['hyperparameters']['gru']")
    assert "\n" not in str(error.value)


def test_unknown_family_names_the_available_ones():
    with pytest.raises(ConfigError, match=r"unknown model family 'lstn' \(did you mean 'lstm'\?\)"):
        build_model("lstn", None, VOCAB, MAX_LEN)


def test_config_hyperparameters_flow_into_the_builder():
    config = ExperimentConfig.from_dict({"models_to_run": ["transformer"],
                                         "hyperparameters": {"transformer": {"num_heads": 2,
                                                                             "embedding_dim": 32}}})
    model = build_model("transformer", None, VOCAB, MAX_LEN, config.hyperparameters["transformer"])
    assert (model.num_heads, model.embedding_dim, model.head_dim) == (2, 32, 16)


def test_tuner_values_are_used_on_a_shared_hp():
    """keras-tuner calls the builder with a trial's hp: its values, not the defaults, win."""
    hp = kt.HyperParameters()
    build_model("lstm", hp, VOCAB, MAX_LEN)
    hp.values["units"] = 150
    assert build_model("lstm", hp, VOCAB, MAX_LEN).units == 150


def test_tied_embeddings_share_the_matrix_and_project_when_units_differ():
    tied = build_model("lstm", None, VOCAB, MAX_LEN, {"embedding_dim": 16, "units": 24,
                                                      "tie_embeddings": True})
    untied = build_model("lstm", None, VOCAB, MAX_LEN, {"embedding_dim": 16, "units": 24,
                                                        "tie_embeddings": False})
    assert tied.output_projection is not None  # 24 units -> 16 before the tied output
    names = [v.path for v in tied.weights]
    assert not any("logits" in name for name in names)
    # Untied adds a (units x V + V) output layer; tied adds a (units x E + E) projection instead.
    assert untied.count_params() - tied.count_params() == (24 * VOCAB + VOCAB) - (24 * 16 + 16)
    same = build_model("gru", None, VOCAB, MAX_LEN, {"embedding_dim": 16, "units": 16})
    assert same.output_projection is None


def test_recurrent_layers_keep_cudnn_compatible_arguments():
    for family in ("lstm", "gru"):
        model = build_model(family, None, VOCAB, MAX_LEN, {**FAMILIES[family].tiny, "num_layers": 2})
        for layer in model.recurrent_layers:
            cell = layer.cell
            assert cell.activation is keras.activations.tanh
            assert cell.recurrent_activation is keras.activations.sigmoid
            assert cell.recurrent_dropout == 0 and cell.use_bias and not layer.unroll
            if family == "gru":
                assert cell.reset_after


@pytest.mark.parametrize("family", ["lstm", "transformer"])
def test_logits_stay_float32_under_mixed_precision(family):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        tiny = FAMILIES[family].tiny
        model = build_model(family, None, VOCAB, MAX_LEN, {**tiny, "tie_embeddings": True})
        logits = model(np.ones((2, MAX_LEN), "int32"))
        untied = build_model(family, None, VOCAB, MAX_LEN, {**tiny, "tie_embeddings": False})
        untied_logits = untied(np.ones((2, MAX_LEN), "int32"))
        _, cache = model.call_with_cache(np.ones((2, 1), "int32"), model.build_cache(2, MAX_LEN), 0)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.compute_dtype == "float16"
    assert logits.dtype == "float32" and untied_logits.dtype == "float32"
    assert cache.dtype == "float16"
