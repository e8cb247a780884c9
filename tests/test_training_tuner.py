"""tune_model: no-search defaults, Bayesian and Hyperband searches, foreign folders moved aside, failed trials."""

import json

import keras
import numpy as np
import pytest
from training_child import TUNING_SPACE, completed_trials
from training_factories import make_config, make_data

from model_architectures.registry import hyperparameters_for
from training_assets.strategy import select_strategy
from training_assets.tuner import tune_model


def search_config(tmp_path, **overrides):
    settings = dict(tuner="bayesian", tuning_trials=2, tuning_epochs=1, tuning_steps_per_epoch=3,
                    hyperparameters={"gru": TUNING_SPACE})
    return make_config(tmp_path, **{**settings, **overrides})


def test_tuner_none_returns_the_defaults_with_overrides(tmp_path):
    config = make_config(tmp_path, tuner="none")
    _, datasets = make_data(config)
    hp = tune_model("gru", datasets, config, select_strategy("default"))
    assert hp.values == hyperparameters_for("gru", config.hyperparameters["gru"]).values
    assert hp.get("units") == 32 and not (tmp_path / "tuning").exists()


def test_bayesian_search_then_a_changed_search_moves_the_old_trials_aside(tmp_path):
    config = search_config(tmp_path)
    _, datasets = make_data(config)
    best = tune_model("gru", datasets, config, select_strategy("default"))
    project = tmp_path / "tuning" / "gru"
    assert len(completed_trials(project)) == 2 and best.get("units") in TUNING_SPACE["units"]
    oracle = json.loads((project / "oracle.json").read_text())
    assert oracle["end_order"]  # finished trials recorded by the oracle
    scores = [json.loads(p.read_text())["score"] for p in project.glob("trial_*/trial.json")]
    assert all(np.isfinite(scores))

    changed = search_config(tmp_path, tuning_steps_per_epoch=2)  # trials no longer comparable
    tune_model("gru", datasets, changed, select_strategy("default"))
    moved = [p.name for p in (tmp_path / "tuning").iterdir() if p.name.startswith("gru.moved-")]
    assert len(moved) == 1 and len(completed_trials(tmp_path / "tuning" / moved[0])) == 2
    manifest = json.loads((project / "tuning.manifest.json").read_text())
    assert manifest["steps_per_epoch"] == 2 and len(completed_trials(project)) == 2


def test_hyperband_search_returns_hyperparameters(tmp_path):
    config = search_config(tmp_path, tuner="hyperband", tuning_epochs=2, tuning_steps_per_epoch=2)
    _, datasets = make_data(config)
    best = tune_model("gru", datasets, config, select_strategy("default"))
    assert best.get("embedding_dim") in TUNING_SPACE["embedding_dim"]
    assert completed_trials(tmp_path / "tuning" / "gru")


class PoisonWeights(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        for variable in self.model.trainable_variables[:1]:
            variable.assign(np.full(variable.shape, np.nan, variable.dtype))


def test_diverging_trials_fail_and_a_search_without_results_says_why(tmp_path):
    config = search_config(tmp_path, tuner="random")
    _, datasets = make_data(config)
    with pytest.raises(RuntimeError, match="no trial finished|failed"):
        tune_model("gru", datasets, config, select_strategy("default"), callbacks=[PoisonWeights()])
    statuses = {json.loads(p.read_text())["status"] for p in (tmp_path / "tuning" / "gru").glob("trial_*/trial.json")}
    assert statuses == {"FAILED"}
