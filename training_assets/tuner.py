"""Hyperparameter search for one model family with keras-tuner, resumable after a kill.

Trials live in `<config.tuning_dir>/<family>/` (keras-tuner's project folder). With config.resume
an interrupted search is reloaded: finished trials are kept, the trial that was running when the
process died is run again, and the search stops when `tuning_trials` trials exist in total.
A folder left by a different experiment (other data, vocabulary, search settings: see
`tuning_manifest`) is moved aside, not reused and not deleted.

Tuning never loses to the defaults. The first trial of every search holds the family's default
values (training_assets.oracles; under Hyperband the first of every bracket), every trial gets the
same `tuning_time_budget_seconds` (its cosine decay fitted to it, as in final training), and
tune_model keeps the best trial's values only when the search can rank it against the defaults:
  1. Long enough: the defaults' trial and the best trial each ran at least MIN_RANKING_STEPS
     training steps (`trial_steps`, kept with each trial's metrics). Earlier, the seed decides
     as much as the setting: measured on the built-in corpus (BPE 2,000, batch 32 x 64, the
     GRU's defaults, one cosine trial of k steps, seeds 42 and 7), validation perplexity was
     292 vs 217 after 100 steps (35% apart), 126.1 vs 124.5 after 300 (1.3% apart).
  2. Clearly better: the best trial's validation perplexity is more than RANKING_MARGIN
     (relative) below the defaults', above the 1.3% the seed alone moved a 300-step trial.
Otherwise the defaults are kept, and the TuningOutcome says which rule decided.

Hyperband decides its own number of trials from its `max_epochs` (= config.tuning_epochs) and
factor 3, so `tuning_trials` does not apply to it; with tuning_epochs < 3 it degenerates into a
few full-length trials. RandomSearch and BayesianOptimization run exactly `tuning_trials` trials.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import keras
import keras_tuner as kt
import numpy as np
import tensorflow as tf

from data_pipeline.config import ExperimentConfig
from data_pipeline.datasets import Datasets
from data_pipeline.errors import ConfigError
from data_pipeline.manifests import read_json, write_json
from model_architectures.registry import FAMILIES, build_model, has_likelihood, hyperparameters_for
from training_assets.artifacts import mismatched_keys, move_aside
from training_assets.budget_clock import resolve_clock
from training_assets.callbacks import FailTrialOnNaN, TrialSteps, time_budget_callbacks
from training_assets.cluster import family_oracle
from training_assets.compile import WarmupCosineDecay, compile_model, configure_precision, weight_averaging
from training_assets.multi_worker import enable_multi_worker_fit
from training_assets.oracles import make_tuner
from training_assets.progress import live_progress
from training_assets.reproducibility import seed_everything
from training_assets.trainer import epoch_source, model_hyperparameters, tokens_per_step

logger = logging.getLogger("training_assets")

OBJECTIVE = kt.Objective("val_perplexity", "min")
MANIFEST_NAME = "tuning.manifest.json"
MIN_RANKING_STEPS = 300  # training steps a trial needs before its score can rank it (rule 1)
RANKING_MARGIN = 0.03  # relative validation-perplexity gain the best trial needs over the defaults (rule 2)
TRIAL_ORDER = "defaults first"  # recorded in the manifest: older searches did not run the defaults


@dataclass(frozen=True)
class TuningOutcome:
    """What a search found and what training will use: the defaults or the best trial, and why."""

    family: str
    hyperparameters: kt.HyperParameters  # the kept values: train with these
    kept: Literal["defaults", "best"]
    reason: str
    defaults: dict[str, Any]
    defaults_score: float | None = None  # validation perplexity of the defaults' trial
    defaults_steps: int | None = None  # the training steps it ran
    best: dict[str, Any] | None = None  # the best trial's values
    best_score: float | None = None
    best_steps: int | None = None
    trials: int = 0  # completed trials

    def summary(self) -> str:
        """One line for the log and the notebook: defaults vs best, and which was kept."""
        if self.defaults_score is None and self.best_score is None:
            return f"{self.family}: {self.reason} -> defaults"
        scores = ", ".join(part for part in (
            f"defaults val ppl {self.defaults_score:.1f}" if self.defaults_score is not None else "",
            f"best trial {self.best_score:.1f}" if self.best_score is not None else "") if part)
        if self.kept == "best":
            changed = ", ".join(f"{name} {_short(value)}" for name, value in (self.best or {}).items()
                                if self.defaults.get(name) != value)
            return f"{self.family}: {scores} -> keeping best ({changed}): {self.reason}"
        return f"{self.family}: {scores} -> keeping defaults: {self.reason}"


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class FamilyHyperModel(kt.HyperModel):
    """Builds and compiles one family's model for a trial (keras-tuner enters the strategy scope),
    and fits it with the trial's own callbacks: its step count and its time budget."""

    def __init__(self, family: str, datasets: Datasets, config: ExperimentConfig,
                 strategy: tf.distribute.Strategy, steps_per_epoch: int):
        super().__init__(name=family)
        self.family, self.datasets, self.config = family, datasets, config
        self.strategy, self.steps_per_epoch = strategy, steps_per_epoch
        self.schedule: float | WarmupCosineDecay | None = None  # of the model built last

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        seed_everything(self.config)  # every trial starts from the seed, whatever ran before it
        model = build_model(self.family, hp, self.datasets.vocab_size, self.datasets.max_len,
                            self.config.hyperparameters.get(self.family), self.config)
        self.schedule = compile_model(model, self.config, hp.get("learning_rate"),
                                      self.steps_per_epoch * self.config.tuning_epochs, self.strategy)
        return model

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any,
            callbacks: Sequence[keras.callbacks.Callback] = (), **kwargs: Any) -> dict[str, float]:
        """The best epoch's metrics, as keras-tuner would take them, with all the steps the trial ran."""
        # keras-tuner builds the trial's model right before fitting it: self.schedule is its schedule.
        clock = resolve_clock(self.config.budget_clock, self.strategy)
        _, budget = time_budget_callbacks(self.config.tuning_time_budget_seconds, self.schedule,
                                          self.steps_per_epoch, clock)
        counter = TrialSteps(self.steps_per_epoch)
        # a fresh training dataset, so a trial's batches do not depend on earlier trials
        history = model.fit(epoch_source(self.datasets, self.steps_per_epoch), *args,
                            callbacks=[*callbacks, counter, *budget], **kwargs).history
        scores = np.nan_to_num(np.asarray(history[OBJECTIVE.name], float), nan=np.inf)
        best_epoch = int(np.argmin(scores))
        return {**{name: values[best_epoch] for name, values in history.items()}, "trial_steps": float(counter.steps)}


def tuning_steps_per_epoch(datasets: Datasets, config: ExperimentConfig) -> int:
    """Training batches per tuning epoch: the whole split, or config.tuning_steps_per_epoch if fewer."""
    return min(config.tuning_steps_per_epoch or datasets.train.steps, datasets.train.steps)


def tuning_manifest(family: str, datasets: Datasets, config: ExperimentConfig,
                    strategy: tf.distribute.Strategy | None = None) -> dict[str, Any]:
    """What must be equal for finished trials to be comparable with the ones still to run."""
    manifest = {
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
        "time_budget_seconds": config.tuning_time_budget_seconds,
        # the clock the budget counts: 60 CPU s and 60 wall s buy different trials
        "budget_clock": (resolve_clock(config.budget_clock, strategy)
                         if config.tuning_time_budget_seconds else None),
        "trial_order": TRIAL_ORDER,
        "optimizer": [config.optimizer, config.learning_rate_schedule, config.warmup_steps,
                      config.weight_decay, config.clipnorm, config.gradient_accumulation_steps,
                      config.ema_momentum],
        "seed": config.seed,
    }
    settings = {key: getattr(config, key) for key in FAMILIES[family].config_keys}
    if settings:  # the CONFIG keys its builder reads (gpt2: its preset and LoRA rank)
        manifest["family_settings"] = settings
    return manifest


def tune_model(family: str, datasets: Datasets, config: ExperimentConfig, strategy: tf.distribute.Strategy,
               *, callbacks: Sequence[keras.callbacks.Callback] = ()) -> TuningOutcome:
    """Search `family`'s space; keep its best values only if they beat the defaults (module docstring).

    config.tuner "none" keeps the defaults without a search. `callbacks` are extra Keras callbacks
    for every trial's fit (keras-tuner copies them per trial). Distributed tuning
    (training_assets.cluster.tuning_role): the chief serves the oracle and decides; a worker runs
    trials until the oracle stops it and returns the defaults.
    """
    defaults = hyperparameters_for(family, config.hyperparameters.get(family))
    if config.tuner == "none":
        return TuningOutcome(family, defaults, "defaults", "no search (tuner='none')", dict(defaults.values))
    if not has_likelihood(family):
        return TuningOutcome(family, defaults, "defaults", "no search: the family has no validation "
                             "perplexity to rank trials by", dict(defaults.values))
    configure_precision(config, strategy)
    enable_multi_worker_fit(strategy)
    steps = tuning_steps_per_epoch(datasets, config)
    project = Path(config.tuning_dir) / family
    manifest = tuning_manifest(family, datasets, config, strategy)
    _prepare_project(project, manifest, config.resume)

    hypermodel = FamilyHyperModel(family, datasets, config, strategy, steps_per_epoch=steps)
    # keras-tuner's chief/worker mode (KERASTUNER_* variables): one oracle port per family.
    family_index = config.models_to_run.index(family) if family in config.models_to_run else 0
    with family_oracle(family_index) as role:
        tuner = make_tuner(hypermodel, config, family, strategy, OBJECTIVE)
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
                     callbacks=[FailTrialOnNaN(), *weight_averaging(config),
                                *live_progress(config, tokens_per_step(datasets), f"{family} trial"),
                                *callbacks],
                     shuffle=False, verbose=2)
    if role.is_worker:  # the chief may already be gone; it holds the trials and decides
        logger.info("tuning %s: worker %s finished its trials; the chief reports the result",
                    family, role.tuner_id)
        return TuningOutcome(family, defaults, "defaults", "tuning worker: the chief decides",
                             dict(defaults.values))

    outcome = judge_search(family, list(tuner.oracle.trials.values()), defaults, project)
    logger.info("tuning %s", outcome.summary())
    return outcome


def judge_search(family: str, trials: Sequence[kt.engine.trial.Trial], defaults: kt.HyperParameters,
                 project: Path | str = "") -> TuningOutcome:
    """Keep the best trial's values only if it ran long enough and beat the defaults' trial clearly."""
    # keras-tuner falls back to failed trials when none completed: only a completed one counts.
    completed = [trial for trial in trials if trial.status == "COMPLETED"
                 and trial.score is not None and math.isfinite(trial.score)]
    if not completed:
        raise RuntimeError(f"tuning {family}: no trial finished (see {project}); every trial failed, "
                           "usually from divergence: lower learning rates in CONFIG['hyperparameters']")
    default_values = dict(defaults.values)
    best = min(completed, key=lambda trial: trial.score)
    with_defaults = [trial for trial in completed if model_hyperparameters(trial.hyperparameters) == default_values]
    home = min(with_defaults, key=lambda trial: trial.score) if with_defaults else None

    def outcome(kept: Literal["defaults", "best"], reason: str) -> TuningOutcome:
        return TuningOutcome(
            family, best.hyperparameters if kept == "best" else defaults, kept, reason, default_values,
            defaults_score=home.score if home else None, defaults_steps=_trial_steps(home) if home else None,
            best=model_hyperparameters(best.hyperparameters), best_score=best.score,
            best_steps=_trial_steps(best), trials=len(completed))

    if home is None:
        ran_defaults = any(model_hyperparameters(trial.hyperparameters) == default_values for trial in trials)
        if ran_defaults:  # it failed (diverged): training with the defaults would fail the same way
            return outcome("best", "the defaults' trial failed")
        return outcome("defaults", "no finished trial with the defaults to compare against")
    shortest = min(_trial_steps(home), _trial_steps(best))
    if shortest < MIN_RANKING_STEPS:
        return outcome("defaults", f"search too short to rank: a compared trial ran {shortest} training "
                                   f"steps (< {MIN_RANKING_STEPS})")
    if best is home:
        return outcome("defaults", "the defaults scored best")
    gain = 1 - best.score / home.score
    if gain <= RANKING_MARGIN:
        return outcome("defaults", f"the best trial is only {gain:.1%} below the defaults "
                                   f"(needs > {RANKING_MARGIN:.0%})")
    return outcome("best", f"{gain:.1%} below the defaults")


def _trial_steps(trial: kt.engine.trial.Trial) -> int:
    """Training steps the trial ran (TrialSteps); 0 if it was not recorded."""
    if not trial.metrics.exists("trial_steps"):
        return 0
    return int(trial.metrics.get_last_value("trial_steps"))


def _prepare_project(project: Path, manifest: dict[str, Any], resume: bool) -> None:
    """Keep `project` only if its manifest matches this search; otherwise move it aside."""
    if project.exists() and resume:
        different = mismatched_keys(read_json(project / MANIFEST_NAME), manifest)
        if different:
            move_aside(project, f"its trials were run with different {different}")
    elif project.exists():
        logger.info("tuning: resume=False, starting over in %s (keras-tuner overwrites it)", project)
