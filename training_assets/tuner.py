"""Hyperparameter search for one model family with keras-tuner, resumable after a kill.

Trials live in `<config.tuning_dir>/<family>/` (keras-tuner's project folder). With config.resume
an interrupted search is reloaded: finished trials are kept, the trial that was running when the
process died is run again, and the search stops when `tuning_trials` trials exist in total.
A folder left by a different experiment (other data, vocabulary, search settings: see
`tuning_manifest`) is moved aside, not reused and not deleted.

Hyperband decides its own number of trials from its `max_epochs` (= config.tuning_epochs) and
factor 3, so `tuning_trials` does not apply to it; with tuning_epochs < 3 it degenerates into a
few full-length trials. RandomSearch and BayesianOptimization run exactly `tuning_trials` trials.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import keras
import keras_tuner as kt
import tensorflow as tf

from data_pipeline.config import ConfigError, ExperimentConfig
from data_pipeline.datasets import Datasets
from model_architectures.registry import build_model, hyperparameters_for
from data_pipeline.manifests import read_json, write_json
from training_assets.artifacts import mismatched_keys, move_aside
from training_assets.callbacks import FailTrialOnNaN
from training_assets.cluster import family_oracle
from training_assets.compile import compile_model, configure_precision, weight_averaging
from training_assets.multi_worker import enable_multi_worker_fit
from training_assets.reproducibility import seed_everything
from training_assets.trainer import epoch_source

logger = logging.getLogger("training_assets")

OBJECTIVE = kt.Objective("val_perplexity", "min")
MANIFEST_NAME = "tuning.manifest.json"


class FamilyHyperModel(kt.HyperModel):
    """Builds and compiles one family's model for a trial (keras-tuner enters the strategy scope)."""

    def __init__(self, family: str, datasets: Datasets, config: ExperimentConfig,
                 strategy: tf.distribute.Strategy, steps_per_epoch: int):
        super().__init__(name=family)
        self.family, self.datasets, self.config = family, datasets, config
        self.strategy, self.steps_per_epoch = strategy, steps_per_epoch
        self.total_steps = steps_per_epoch * config.tuning_epochs

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        seed_everything(self.config)  # every trial starts from the seed, whatever ran before it
        model = build_model(self.family, hp, self.datasets.vocab_size, self.datasets.max_len,
                            self.config.hyperparameters.get(self.family))
        compile_model(model, self.config, hp.get("learning_rate"), self.total_steps, self.strategy)
        return model

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args, **kwargs):
        """Fit on a fresh training dataset, so a trial's batches do not depend on earlier trials."""
        return model.fit(epoch_source(self.datasets, self.steps_per_epoch), *args, **kwargs)


def tuning_steps_per_epoch(datasets: Datasets, config: ExperimentConfig) -> int:
    """Training batches per tuning epoch: the whole split, or config.tuning_steps_per_epoch if fewer."""
    return min(config.tuning_steps_per_epoch or datasets.train.steps, datasets.train.steps)


def tuning_manifest(family: str, datasets: Datasets, config: ExperimentConfig) -> dict[str, Any]:
    """What must be equal for finished trials to be comparable with the ones still to run."""
    return {
        "family": family,
        "tuner": config.tuner,
        "search_space_overrides": config.hyperparameters.get(family, {}),
        "vocab_size": datasets.vocab_size,
        "max_len": datasets.max_len,
        "global_batch_size": datasets.global_batch_size,
        "train_tokens": datasets.train.tokens,
        "validation_tokens": datasets.validation.tokens,
        "tuning_epochs": config.tuning_epochs,
        "steps_per_epoch": tuning_steps_per_epoch(datasets, config),
        "optimizer": [config.optimizer, config.learning_rate_schedule, config.warmup_steps,
                      config.weight_decay, config.clipnorm, config.gradient_accumulation_steps,
                      config.ema_momentum],
        "seed": config.seed,
    }


def tune_model(family: str, datasets: Datasets, config: ExperimentConfig, strategy: tf.distribute.Strategy,
               *, callbacks: Sequence[keras.callbacks.Callback] = ()) -> kt.HyperParameters:
    """Search `family`'s space and return the best hyperparameters (the defaults if config.tuner is "none").

    `callbacks` are extra Keras callbacks for every trial's fit (keras-tuner copies them per trial).
    Distributed tuning (training_assets.cluster.tuning_role): the chief serves the oracle and
    returns the best values; a worker runs trials until the oracle stops it and returns the defaults.
    """
    if config.tuner == "none":
        return hyperparameters_for(family, config.hyperparameters.get(family))
    configure_precision(config, strategy)
    enable_multi_worker_fit(strategy)
    steps = tuning_steps_per_epoch(datasets, config)
    project = Path(config.tuning_dir) / family
    manifest = tuning_manifest(family, datasets, config)
    _prepare_project(project, manifest, config.resume)

    hypermodel = FamilyHyperModel(family, datasets, config, strategy, steps_per_epoch=steps)
    # keras-tuner's chief/worker mode (KERASTUNER_* variables): one oracle port per family.
    family_index = config.models_to_run.index(family) if family in config.models_to_run else 0
    with family_oracle(family_index) as role:
        tuner = _make_tuner(hypermodel, config, family, strategy)
        write_json(project / MANIFEST_NAME, manifest)  # after the tuner: overwrite=True empties the folder
        if config.tuner != "hyperband" and not role.is_worker:  # a worker's oracle is the chief's
            done = sum(trial.status == "COMPLETED" for trial in tuner.oracle.trials.values())
            if done:
                logger.info("tuning %s: resuming, %d of %d trials already finished in %s",
                            family, done, config.tuning_trials, project)
        # no training data here: FamilyHyperModel.fit brings a fresh dataset to every trial
        tuner.search(validation_data=datasets.validation.dataset,
                     epochs=config.tuning_epochs,
                     steps_per_epoch=steps,
                     callbacks=[FailTrialOnNaN(), *weight_averaging(config), *callbacks],
                     shuffle=False, verbose=2)
    if role.is_worker:  # the chief may already be gone; it holds and reports the best values
        logger.info("tuning %s: worker %s finished its trials; the chief reports the best "
                    "hyperparameters", family, role.tuner_id)
        return hyperparameters_for(family, config.hyperparameters.get(family))

    # keras-tuner falls back to failed trials when none completed: only a completed one counts.
    best = [trial for trial in tuner.oracle.get_best_trials(num_trials=1) if trial.status == "COMPLETED"]
    if not best:
        raise RuntimeError(f"tuning {family}: no trial finished (see {project}); every trial failed, "
                           "usually from divergence: lower learning rates in CONFIG['hyperparameters']")
    logger.info("tuning %s: best %s = %.4g with %s", family, OBJECTIVE.name, best[0].score,
                best[0].hyperparameters.values)
    return best[0].hyperparameters


def _make_tuner(hypermodel: FamilyHyperModel, config: ExperimentConfig, family: str,
                strategy: tf.distribute.Strategy) -> kt.Tuner:
    common = dict(objective=OBJECTIVE, seed=config.seed, directory=config.tuning_dir, project_name=family,
                  overwrite=not config.resume, distribution_strategy=strategy)
    if config.tuner == "random":
        return kt.RandomSearch(hypermodel, max_trials=config.tuning_trials, **common)
    if config.tuner == "bayesian":
        try:
            return kt.BayesianOptimization(hypermodel, max_trials=config.tuning_trials, **common)
        except ImportError as error:  # scipy / scikit-learn: keras-tuner's optional "bayesian" extra
            raise ConfigError(f"CONFIG['tuner'] = 'bayesian' needs {error}; "
                              "run `pip install scipy scikit-learn` or use tuner='random'") from None
    return kt.Hyperband(hypermodel, max_epochs=config.tuning_epochs, factor=3, **common)


def _prepare_project(project: Path, manifest: dict[str, Any], resume: bool) -> None:
    """Keep `project` only if its manifest matches this search; otherwise move it aside."""
    if project.exists() and resume:
        different = mismatched_keys(read_json(project / MANIFEST_NAME), manifest)
        if different:
            move_aside(project, f"its trials were run with different {different}")
    elif project.exists():
        logger.info("tuning: resume=False, starting over in %s (keras-tuner overwrites it)", project)
