"""keras-tuner searches whose first trial is the family's defaults, so tuning can be judged
against them (training_assets.tuner keeps a search's result only if it beats that trial).

keras-tuner 1.4.8 declares the whole space before the first trial, so each of its oracles starts
with random values; none tries the declared defaults. Here:
- RandomSearch and BayesianOptimization: `populate_space` returns the defaults while no trial
  holds them yet (a resumed search does not run them twice). For Bayesian optimisation the
  defaults' trial is one of its random initial points.
- Hyperband: the first trial of every bracket is the defaults (`_random_trial`, the one place all
  of its brackets draw new values), so they compete at every bracket's epoch budget, including
  the last bracket's full `max_epochs`: the defaults are never judged on fewer epochs than the
  best trial. Hyperband's own bookkeeping (rounds, epochs, promotions) is kept as it is.
"""

from __future__ import annotations

from typing import Any

import keras_tuner as kt
import tensorflow as tf

from data_pipeline.config import ConfigError, ExperimentConfig
from training_assets.trainer import model_hyperparameters

HYPERBAND_FACTOR = 3


def default_values(space: kt.HyperParameters) -> dict[str, Any]:
    """Each declared hyperparameter's default (a Fixed one's value): the untuned model."""
    defaults = kt.HyperParameters()
    for hyperparameter in space.space:
        defaults.merge([hyperparameter])  # registers it with its default value
    return dict(defaults.values)


class _DefaultsFirst:
    """Oracle mixin: the first trial of the search holds the defaults."""

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        defaults = default_values(self.hyperparameters)
        if not any(model_hyperparameters(trial.hyperparameters) == defaults for trial in self.trials.values()):
            return {"status": "RUNNING", "values": defaults}
        return super().populate_space(trial_id)


class DefaultsFirstRandomSearch(_DefaultsFirst, kt.oracles.RandomSearchOracle):
    """Random search that tries the defaults first."""


class DefaultsFirstBayesian(_DefaultsFirst, kt.oracles.BayesianOptimizationOracle):
    """Bayesian optimisation whose first initial point is the defaults."""


class DefaultsFirstHyperband(kt.oracles.HyperbandOracle):
    """Hyperband whose every bracket starts with the defaults."""

    def _random_trial(self, trial_id: str, bracket: dict[str, Any]) -> dict[str, Any]:
        first_of_bracket = not bracket["rounds"][0]
        response = super()._random_trial(trial_id, bracket)  # records the trial in the bracket
        if first_of_bracket and response.get("values"):
            response["values"].update(default_values(self.hyperparameters))  # tuner/ entries stay
        return response


class _HyperbandTuner(kt.Hyperband):
    """kt.Hyperband's trials (epochs per round, promoted weights) run by an oracle of our own."""

    def __init__(self, oracle: kt.Oracle, hypermodel: kt.HyperModel, **kwargs: Any):
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)  # kt.Hyperband makes its own


def make_tuner(hypermodel: kt.HyperModel, config: ExperimentConfig, family: str,
               strategy: tf.distribute.Strategy, objective: kt.Objective) -> kt.Tuner:
    """The tuner for config.tuner, trials in `<config.tuning_dir>/<family>/`, defaults first."""
    common = dict(directory=config.tuning_dir, project_name=family, overwrite=not config.resume,
                  distribution_strategy=strategy)
    if config.tuner == "random":
        oracle = DefaultsFirstRandomSearch(objective=objective, max_trials=config.tuning_trials,
                                           seed=config.seed)
        return kt.Tuner(oracle=oracle, hypermodel=hypermodel, **common)
    if config.tuner == "bayesian":
        try:
            oracle = DefaultsFirstBayesian(objective=objective, max_trials=config.tuning_trials,
                                           seed=config.seed)
        except ImportError as error:  # scipy / scikit-learn: keras-tuner's optional "bayesian" extra
            raise ConfigError(f"CONFIG['tuner'] = 'bayesian' needs {error}; "
                              "run `pip install scipy scikit-learn` or use tuner='random'") from None
        return kt.Tuner(oracle=oracle, hypermodel=hypermodel, **common)
    if config.tuner == "hyperband":
        oracle = DefaultsFirstHyperband(objective=objective, max_epochs=config.tuning_epochs,
                                        factor=HYPERBAND_FACTOR, seed=config.seed)
        return _HyperbandTuner(oracle=oracle, hypermodel=hypermodel, **common)
    raise ValueError(f"no search for tuner={config.tuner!r}")
