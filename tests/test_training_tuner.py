"""tune_model: no-search defaults, Bayesian and Hyperband searches, foreign folders moved aside, failed
trials; every search starts with the defaults and keeps its best trial only if it clearly beats them."""

import json

import keras
import numpy as np
import pytest
from training_child import TUNING_SPACE, completed_trials
from training_factories import TINY_HYPERPARAMETERS, make_config, make_data

from model_architectures.registry import hyperparameters_for
from training_assets.strategy import select_strategy
from training_assets.tuner import MIN_RANKING_STEPS, RANKING_MARGIN, tune_model


def search_config(tmp_path, **overrides):
    settings = dict(tuner="bayesian", tuning_trials=2, tuning_epochs=1, tuning_steps_per_epoch=3,
                    hyperparameters={"gru": TUNING_SPACE})
    return make_config(tmp_path, **{**settings, **overrides})


def trial_files(project):
    """Every trial.json of a search, in the order the oracle created them."""
    return [json.loads(path.read_text()) for path in sorted(project.glob("trial_*/trial.json"))]


def model_values(trial):
    return {k: v for k, v in trial["hyperparameters"]["values"].items() if not k.startswith("tuner/")}


def test_tuner_none_returns_the_defaults_with_overrides(tmp_path):
    config = make_config(tmp_path, tuner="none")
    _, datasets = make_data(config)
    outcome = tune_model("gru", datasets, config, select_strategy("default"))
    assert outcome.hyperparameters.values == hyperparameters_for("gru", config.hyperparameters["gru"]).values
    assert outcome.hyperparameters.get("units") == 32 and not (tmp_path / "tuning").exists()
    assert outcome.kept == "defaults" and outcome.summary() == "gru: no search (tuner='none') -> defaults"


def test_bayesian_search_then_a_changed_search_moves_the_old_trials_aside(tmp_path):
    config = search_config(tmp_path)
    _, datasets = make_data(config)
    outcome = tune_model("gru", datasets, config, select_strategy("default"))
    project = tmp_path / "tuning" / "gru"
    assert len(completed_trials(project)) == 2 and outcome.hyperparameters.get("units") in TUNING_SPACE["units"]
    oracle = json.loads((project / "oracle.json").read_text())
    assert oracle["end_order"]  # finished trials recorded by the oracle
    scores = [json.loads(p.read_text())["score"] for p in project.glob("trial_*/trial.json")]
    assert all(np.isfinite(scores))
    trials = trial_files(project)  # the first initial point is the defaults, the second a random one
    assert model_values(trials[0]) == hyperparameters_for("gru", TUNING_SPACE).values == outcome.defaults
    assert model_values(trials[1]) != outcome.defaults

    changed = search_config(tmp_path, tuning_steps_per_epoch=2)  # trials no longer comparable
    tune_model("gru", datasets, changed, select_strategy("default"))
    moved = [p.name for p in (tmp_path / "tuning").iterdir() if p.name.startswith("gru.moved-")]
    assert len(moved) == 1 and len(completed_trials(tmp_path / "tuning" / moved[0])) == 2
    manifest = json.loads((project / "tuning.manifest.json").read_text())
    assert manifest["steps_per_epoch"] == 2 and len(completed_trials(project)) == 2


def test_hyperband_starts_every_bracket_with_the_defaults(tmp_path):
    # 3 epochs, factor 3: two brackets (three 1-epoch trials, the best continued to 3; two 3-epoch trials).
    config = search_config(tmp_path, tuner="hyperband", tuning_epochs=3, tuning_steps_per_epoch=2)
    _, datasets = make_data(config)
    outcome = tune_model("gru", datasets, config, select_strategy("default"))
    assert outcome.hyperparameters.get("embedding_dim") in TUNING_SPACE["embedding_dim"]
    trials = trial_files(tmp_path / "tuning" / "gru")
    first_of_bracket = {}
    for trial in trials:
        values = trial["hyperparameters"]["values"]
        if values["tuner/round"] == 0:
            first_of_bracket.setdefault(values["tuner/bracket"], model_values(trial))
    assert len(first_of_bracket) == 2 and all(first == outcome.defaults for first in first_of_bracket.values())
    assert any(model_values(trial) != outcome.defaults for trial in trials)  # the others are searched
    assert outcome.trials == len(trials) == len(completed_trials(tmp_path / "tuning" / "gru"))


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


def lr_search(tmp_path, learning_rates, **overrides):
    """A search over the learning rate only: the first value listed is the defaults' unless it lists 1e-2."""
    space = {**TINY_HYPERPARAMETERS["gru"], "tie_embeddings": True, "learning_rate": learning_rates}
    settings = dict(tuner="random", tuning_trials=len(learning_rates), tuning_epochs=14,
                    hyperparameters={"gru": space})  # 14 epochs of the whole split: 308 steps per trial
    config = make_config(tmp_path, **{**settings, **overrides})
    _, datasets = make_data(config)
    return tune_model("gru", datasets, config, select_strategy("default")), config


def test_defaults_that_beat_every_trial_are_kept(tmp_path):
    # Default 1e-2 learns the alphabet; 1e-5 and 1e-6 barely move from the initialisation.
    outcome, _ = lr_search(tmp_path, [1e-2, 1e-5, 1e-6])
    trials = trial_files(tmp_path / "tuning" / "gru")
    assert model_values(trials[0]) == outcome.defaults  # the defaults ran first
    others = [trial["score"] for trial in trials if model_values(trial)["learning_rate"] != 1e-2]
    assert len(others) == 2 and min(others) > outcome.defaults_score  # the defaults beat every trial
    assert outcome.defaults_steps >= MIN_RANKING_STEPS
    assert outcome.kept == "defaults" and outcome.reason == "the defaults scored best"
    assert outcome.hyperparameters.get("learning_rate") == 1e-2 and outcome.best == outcome.defaults
    assert "-> keeping defaults: the defaults scored best" in outcome.summary()


def test_a_clearly_better_trial_replaces_the_defaults(tmp_path):
    # Without 1e-2 in the list the defaults take its first value, 1e-6, which barely learns.
    outcome, _ = lr_search(tmp_path, [1e-6, 3e-2])
    assert outcome.defaults["learning_rate"] == 1e-6 and outcome.kept == "best", outcome
    assert outcome.best_score < 0.5 * outcome.defaults_score and outcome.best_steps >= MIN_RANKING_STEPS
    assert outcome.hyperparameters.get("learning_rate") == 3e-2
    assert "-> keeping best (learning_rate 0.03)" in outcome.summary()


def test_a_trial_within_the_noise_margin_does_not_replace_the_defaults(tmp_path):
    # 1.05e-2 learns the alphabet as well as the default 1e-2: any gap between them is noise.
    outcome, _ = lr_search(tmp_path, [1e-2, 1.05e-2])
    assert abs(outcome.best_score / outcome.defaults_score - 1) < RANKING_MARGIN
    assert outcome.kept == "defaults" and outcome.hyperparameters.get("learning_rate") == 1e-2
    assert outcome.reason == "the defaults scored best" or outcome.reason.startswith("the best trial is only")


def test_a_search_too_short_to_rank_keeps_the_defaults_and_says_so(tmp_path):
    # 3 steps per trial: the 3e-2 trial scores better, but after 3 steps that ranks nothing.
    outcome, _ = lr_search(tmp_path, [1e-6, 3e-2], tuning_epochs=1, tuning_steps_per_epoch=3)
    assert outcome.best_score < outcome.defaults_score and outcome.best["learning_rate"] == 3e-2
    assert outcome.kept == "defaults" and outcome.hyperparameters.get("learning_rate") == 1e-6
    assert outcome.reason.startswith("search too short to rank") and outcome.defaults_steps == 3
    assert "-> keeping defaults: search too short to rank" in outcome.summary()


RATES: list[list[float]] = []  # per trial; module level: keras-tuner deep-copies callbacks per trial


class LearningRates(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        RATES.append([])

    def on_train_batch_end(self, batch, logs=None):
        RATES[-1].append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def test_every_trial_stops_at_its_time_budget_with_the_decay_fitted_to_it(tmp_path):
    # 5,000 planned steps per trial, stopped by a 4 s budget: the decay ends with the budget.
    config = search_config(tmp_path, tuner="random", tuning_epochs=1000, tuning_steps_per_epoch=5,
                           tuning_time_budget_seconds=4, learning_rate_schedule="cosine", warmup_steps=0)
    _, datasets = make_data(config)
    RATES.clear()
    tune_model("gru", datasets, config, select_strategy("default"), callbacks=[LearningRates()])
    project = tmp_path / "tuning" / "gru"
    trials = trial_files(project)
    steps = [trial["metrics"]["metrics"]["trial_steps"]["observations"][0]["value"][0] for trial in trials]
    assert len(RATES) == len(trials) == 2 and [len(rates) for rates in RATES] == steps
    peak = TUNING_SPACE["learning_rate"]
    for rates in RATES:
        assert 5 < len(rates) < 5000  # stopped by the budget, after enough steps to fit the decay
        assert rates[0] == pytest.approx(peak, rel=0.02) and rates[-1] < 0.5 * peak, rates[-5:]
    manifest = json.loads((project / "tuning.manifest.json").read_text())
    assert manifest["time_budget_seconds"] == 4 and manifest["budget_clock"] == "cpu"  # auto, no GPU here
