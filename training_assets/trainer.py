"""Final training of one model family with its best hyperparameters: checkpoints, resume, timings.

Files, for family `f` in config.models_dir (with CONFIG `seeds` > 1, the family's further
training seeds s write the same files named `f.seed<s>`: gru.seed43.keras, ...):
  f.keras               best epoch so far (ModelCheckpoint on val_perplexity)
  f.manifest.json       what the checkpoint is: family, hyperparameters, vocabulary, tokenizer, config
  f.history.csv         one row per epoch (CSVLogger, appended when a killed run resumes)
  .backup/f/            BackupAndRestore's last finished epoch; removed when training ends
A checkpoint whose manifest does not describe this run (other family, vocabulary, tokenizer,
hyperparameters or training settings) is moved aside with its history and backup, never
overwritten or deleted. One that does describe it and whose training finished is reused: the
family is not trained again (config.retrain forces it), and evaluation works on the checkpoint.

Throughput: train_tokens_per_second = predicted training tokens / seconds of the training part of
the epochs (validation excluded), over the epochs that did not start a process: the first epoch
of each process also pays for tracing and compiling. With a single epoch that epoch is used.
"""

from __future__ import annotations

import csv
import datetime
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import keras
import keras_tuner as kt
import tensorflow as tf

from data_pipeline.config import ExperimentConfig
from data_pipeline.datasets import Datasets
from data_pipeline.tokenizer import TextTokenizer
from model_architectures.registry import FAMILIES, build_model, has_likelihood
from data_pipeline.manifests import read_json, write_json
from training_assets.artifacts import mismatched_keys, move_aside
from training_assets.budget_clock import resolve_clock
from training_assets.callbacks import (TIMING_KEYS, DivergenceGuard, EpochClock, PrintSamples,
                                      ResumableEarlyStopping, time_budget_callbacks)
from training_assets.cluster import backup_dir
from training_assets.compile import compile_model, configure_precision, weight_averaging
from training_assets.multi_worker import enable_multi_worker_fit
from training_assets.progress import live_progress
from training_assets.reproducibility import seed_everything

logger = logging.getLogger("training_assets")

MONITOR = "val_perplexity"
# Manifest keys that must match for an existing checkpoint/backup to belong to this run
# (ema_momentum too: a backup holds, or lacks, the optimizer's averaged weights).
IDENTITY_KEYS = ("family", "hyperparameters", "vocab_size", "max_len", "tokenizer_fingerprint", "ema_momentum",
                 "training_settings")
# CONFIG keys that do not change what final training produces: tuning (its outcome is in
# "hyperparameters"), evaluation, generation and where results go. Every other key, present or
# future, is part of "training_settings", so a changed setting retrains instead of reusing.
NOT_TRAINING_KEYS = frozenset({
    "models_to_run", "hyperparameters", "tuner", "tuning_trials", "tuning_epochs",
    "tuning_steps_per_epoch", "tuning_time_budget_seconds", "resume", "retrain", "tensorboard",
    "kn_order", "kn_interpolation", "sampler", "temperature", "top_k", "top_p", "beam_width",
    "prompts", "num_samples", "max_new_tokens", "plots_dir", "models_dir", "tuning_dir",
    "repetition_penalty", "no_repeat_ngram_size", "stop_strings", "min_new_tokens",
    "tokenizer_path", "download_dir", "live_progress", "run_name", "sample_every_steps",
    "bleu_references", "decoding_sweep", "decoding_sweep_temperatures", "decoding_sweep_top_p",
    "decoding_sweep_samples", "measure_samples", "seeds", "bootstrap_resamples",
})


@dataclass
class TrainingResult:
    family: str
    hyperparameters: dict
    history: dict[str, list[float]]  # per epoch, all epochs incl. those before a resume
    epoch_seconds: list[float]  # wall time per epoch, training + validation
    train_seconds: float  # sum of epoch_seconds
    train_tokens_per_second: float
    parameters: int
    checkpoint_path: str
    diverged: bool
    stopped_reason: str
    reused: bool = False  # True: a finished checkpoint of the same run, not trained again
    trainable_parameters: int | None = None  # those the optimizer updates (LoRA: the adapters)
    seed: int = 0  # the training seed: initial weights, data order, dropout

    @property
    def best_validation_perplexity(self) -> float:
        """The lowest finite validation perplexity of any epoch (inf if none): how runs are
        chosen, never by a test figure."""
        finite = [v for v in self.history.get("val_perplexity", []) if math.isfinite(v)]
        return min(finite, default=math.inf)


@dataclass(frozen=True)
class TrainingPaths:
    checkpoint: Path
    manifest: Path
    history: Path
    backup: Path
    tensorboard: Path

    @classmethod
    def for_family(cls, models_dir: str | os.PathLike, family: str,
                   seed: int | None = None) -> "TrainingPaths":
        """The files of `family` (at a further training `seed`: `family.seed<seed>.*`)."""
        root, name = Path(models_dir), family if seed is None else f"{family}.seed{seed}"
        return cls(checkpoint=root / f"{name}.keras", manifest=root / f"{name}.manifest.json",
                   history=root / f"{name}.history.csv",
                   backup=Path(backup_dir(root / ".backup" / name)),
                   tensorboard=root / "tensorboard" / name)


def epoch_source(datasets: Datasets, steps: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """The training batches for one `fit`: a fresh dataset, repeated when an epoch is shorter than
    one pass.

    Fresh, so its shuffle starts from the seed whatever was trained before. Keras does not restart
    a dataset between epochs when steps_per_epoch is given, so without repeat() a capped epoch
    would run out of batches after one pass (each pass still reshuffles).
    """
    dataset = datasets.train.fresh_dataset(shuffle_seed)
    return dataset.repeat() if steps < datasets.train.steps else dataset


def tokens_per_step(datasets: Datasets) -> float:
    """Predicted training tokens per step, on average over one pass ([PAD] targets excluded)."""
    return datasets.train.tokens / datasets.train.steps


def training_steps_per_epoch(datasets: Datasets, config: ExperimentConfig) -> int:
    """Batches per epoch: a full pass over train, or config.steps_per_epoch if that is fewer."""
    return min(config.steps_per_epoch or datasets.train.steps, datasets.train.steps)


def train_model(family: str, hyperparameters: kt.HyperParameters, datasets: Datasets, config: ExperimentConfig,
                strategy: tf.distribute.Strategy, tokenizer: TextTokenizer, *,
                callbacks: Sequence[keras.callbacks.Callback] = (),
                seed_index: int = 0) -> TrainingResult:
    """Train `family` with `hyperparameters`, keep the best epoch in `<models_dir>/<family>.keras`.

    A run killed mid-way resumes from its last finished epoch when config.resume is set.
    `callbacks` are extra Keras callbacks (e.g. printing samples each epoch), run after ours.
    `seed_index` k > 0: the family's (k+1)-th training seed, config.seed + k, for its initial
    weights, data order and dropout (the split stays config.seed's), in its own files.
    """
    seed = config.seed + seed_index
    if seed_index:
        config = config.model_copy(update={"seed": seed})
    paths = TrainingPaths.for_family(config.models_dir, family, seed if seed_index else None)
    identity = run_identity(family, hyperparameters, datasets, tokenizer, config)
    if not config.retrain:
        finished = finished_training(paths, identity, datasets, seed)
        if finished is not None:
            return finished
    steps = training_steps_per_epoch(datasets, config)
    configure_precision(config, strategy)
    enable_multi_worker_fit(strategy)
    seed_everything(config)  # initial weights and dropout as if this family ran first
    with strategy.scope():
        model = build_model(family, hyperparameters, datasets.vocab_size, datasets.max_len,
                            config.hyperparameters.get(family), config)
        schedule = compile_model(model, config, hyperparameters.get("learning_rate"),
                                 total_steps=steps * config.final_training_epochs, strategy=strategy)

    manifest = run_manifest(identity, tokenizer, model.count_params(), config,
                            trainable_parameters(model))
    finished_epochs = _prepare_outputs(paths, manifest, config.resume)
    earlier = read_history(paths.history)[:finished_epochs]
    _rewrite_history(paths.history, earlier, resuming=finished_epochs > 0)
    write_json(paths.manifest, manifest)

    guard, clock = DivergenceGuard(), EpochClock()
    # a cosine decay ends with the budget, not with the epochs
    budget, budget_callbacks = time_budget_callbacks(config.train_time_budget_seconds, schedule, steps,
                                                     resolve_clock(config.budget_clock, strategy))
    best_so_far = [row.get(MONITOR, math.nan) for row in earlier]
    early = ResumableEarlyStopping(
        monitor=MONITOR, mode="min", patience=config.early_stopping_patience, restore_best_weights=True,
        resume_history=best_so_far, best_weights_loader=lambda: _checkpoint_weights(paths.checkpoint))
    finite_best = [value for value in best_so_far if math.isfinite(value)]
    likelihood = has_likelihood(family)
    # Without a likelihood (a GAN) there is no validation perplexity to pick or stop on: the
    # checkpoint is the last epoch.
    checkpoint = (keras.callbacks.ModelCheckpoint(
        str(paths.checkpoint), monitor=MONITOR, mode="min", save_best_only=True,
        initial_value_threshold=min(finite_best) if finite_best else None)
        if likelihood else keras.callbacks.ModelCheckpoint(str(paths.checkpoint)))
    all_callbacks = [
        keras.callbacks.BackupAndRestore(str(paths.backup)),  # first: restores weights and epoch
        clock,  # before CSVLogger: adds the epoch timings to the logs it writes
        keras.callbacks.CSVLogger(str(paths.history), append=finished_epochs > 0),
        guard,
        *weight_averaging(config),  # before the checkpoint: it saves the validated (averaged) weights
        checkpoint,
        *([early] if likelihood else []),
        *budget_callbacks,
        *([keras.callbacks.TensorBoard(str(paths.tensorboard))] if config.tensorboard else []),
        *live_progress(config, tokens_per_step(datasets), family),  # a notebook's per-step bar
        *([PrintSamples(family, tokenizer, config, steps)] if config.sample_every_steps else []),
        *callbacks,
    ]
    if finished_epochs:
        logger.info("%s: resuming after epoch %d of %d from %s", family, finished_epochs,
                    config.final_training_epochs, paths.backup)
    model.fit(epoch_source(datasets, steps, seed), validation_data=datasets.validation.dataset,
              epochs=config.final_training_epochs,
              steps_per_epoch=steps,
              callbacks=all_callbacks, shuffle=False, verbose=2)  # tf.data shuffles

    rows = read_history(paths.history)
    best_epoch = _best_epoch(rows) if likelihood else len(rows) or None
    reason = (guard.reason or (budget.reason if budget else None) or (early.reason if likelihood else None)
              or f"completed {len(rows)} of {config.final_training_epochs} epochs")
    if guard.diverged:
        logger.error("%s %s; the best checkpoint (epoch %s) is kept in %s", family, guard.reason,
                     best_epoch, paths.checkpoint)
    if not paths.checkpoint.exists():  # no finite validation result ever: keep the last state, say so
        logger.warning("%s: no epoch had a finite %s; saving the final weights to %s", family, MONITOR,
                       paths.checkpoint)
        model.save(paths.checkpoint)
    result = _result(family, hyperparameters, rows, datasets, model.count_params(), paths, guard.diverged, reason,
                     trainable_parameters(model), seed)
    write_json(paths.manifest, {**manifest, "training": {
        "stopped_reason": reason, "diverged": guard.diverged, "epochs": len(rows),
        "best_epoch": best_epoch, "train_seconds": result.train_seconds,
        "train_tokens_per_second": result.train_tokens_per_second}})
    if likelihood:
        logger.info("%s: %s; best %s %.3f (epoch %s); %.0f tokens/s", family, reason, MONITOR,
                    rows[best_epoch - 1][MONITOR] if best_epoch else math.nan, best_epoch,
                    result.train_tokens_per_second)
    else:
        logger.info("%s: %s; kept the last epoch (%s): no likelihood to select by; %.0f tokens/s",
                    family, reason, best_epoch, result.train_tokens_per_second)
    return result


def run_identity(family: str, hyperparameters: kt.HyperParameters, datasets: Datasets,
                 tokenizer: TextTokenizer, config: ExperimentConfig) -> dict[str, Any]:
    """What must be equal for a checkpoint to be this run's: the manifest's IDENTITY_KEYS."""
    return {
        "family": family,
        "hyperparameters": model_hyperparameters(hyperparameters),
        "vocab_size": datasets.vocab_size,
        "max_len": datasets.max_len,
        "tokenizer_fingerprint": tokenizer.fingerprint,
        "ema_momentum": config.ema_momentum,
        "training_settings": {key: value for key, value in config.to_dict().items()
                              if key not in NOT_TRAINING_KEYS and key not in _other_families_keys(family)},
    }


def _other_families_keys(family: str) -> set[str]:
    """CONFIG keys only other families' builders read (e.g. gpt2's preset): they do not retrain this one."""
    return ({key for spec in FAMILIES.values() for key in spec.config_keys}
            - set(FAMILIES[family].config_keys))


def trainable_parameters(model: keras.Model) -> int:
    """Weights the optimizer updates: all of them, or with LoRA only the adapters."""
    return int(sum(int(keras.ops.size(weight)) for weight in model.trainable_weights))


def finished_training(paths: TrainingPaths, identity: dict[str, Any],
                      datasets: Datasets, seed: int = 0) -> TrainingResult | None:
    """The result of this run's finished training, read back from its files; None if there is none.

    Finished means: the manifest matches `identity` and records how training ended, the checkpoint
    and history exist, and no backup of an interrupted epoch is left (that one resumes instead).
    """
    saved = read_json(paths.manifest)
    if (saved is None or "training" not in saved or not paths.checkpoint.exists()
            or paths.backup.exists() or mismatched_keys(saved, identity)):
        return None
    rows = read_history(paths.history)
    if not rows:
        return None
    training = saved["training"]
    logger.info("%s: reusing the finished training in %s (%s); set retrain=True to train again",
                identity["family"], paths.checkpoint, training.get("stopped_reason"))
    result = _result(identity["family"], saved["hyperparameters"], rows, datasets,
                     int(saved.get("parameters", 0)), paths, bool(training.get("diverged")),
                     str(training.get("stopped_reason")), saved.get("trainable_parameters"), seed)
    result.reused = True
    return result


def run_manifest(identity: dict[str, Any], tokenizer: TextTokenizer, parameters: int,
                 config: ExperimentConfig, trainable: int | None = None) -> dict[str, Any]:
    """What the checkpoint holds and how to use it (the generate CLI finds the tokenizer here)."""
    return {
        **identity,
        "tokenizer_path": tokenizer.path or config.tokenizer_path,
        "tokenizer_kind": tokenizer.kind,
        "parameters": int(parameters),
        "trainable_parameters": None if trainable is None else int(trainable),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "keras_version": keras.__version__,
        "config": config.to_dict(),
    }


def model_hyperparameters(hyperparameters: kt.HyperParameters | dict[str, Any]) -> dict[str, Any]:
    """The model's values, without Hyperband's bookkeeping entries ("tuner/epochs", ...)."""
    values = hyperparameters.values if isinstance(hyperparameters, kt.HyperParameters) else hyperparameters
    return {name: value for name, value in values.items() if not name.startswith("tuner/")}


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """CSVLogger rows as floats ("nan"/"inf" included), in file order; [] if there is no file."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [{key: _as_float(value) for key, value in row.items() if key is not None}
                for row in csv.DictReader(handle)]


def _as_float(value: str | None) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _prepare_outputs(paths: TrainingPaths, manifest: dict[str, Any], resume: bool) -> int:
    """Move aside another run's files; return the epochs already finished when resuming (else 0)."""
    existing = [p for p in (paths.checkpoint, paths.manifest, paths.history, paths.backup) if p.exists()]
    if not existing:
        return 0
    identity = {key: manifest[key] for key in IDENTITY_KEYS}
    different = mismatched_keys(read_json(paths.manifest), identity)
    if different:
        for path in existing:
            move_aside(path, f"it belongs to a run with different {different}")
        return 0
    metadata = read_json(paths.backup / "training_metadata.json") if paths.backup.exists() else None
    if metadata is not None and resume:
        return int(metadata.get("epoch", 0))
    if paths.backup.exists():
        move_aside(paths.backup, "resume=False: not continuing the interrupted run" if not resume
                   else "it has no readable training_metadata.json, so its epoch is unknown")
    if paths.checkpoint.exists():
        logger.info("retraining %s: the same run's checkpoint %s will be replaced by this run's best epoch",
                    manifest["family"], paths.checkpoint)
    return 0


def _rewrite_history(path: Path, rows: list[dict[str, float]], resuming: bool) -> None:
    """Keep only the finished epochs' rows when resuming (a kill can land between the backup and the CSV)."""
    if not path.exists():
        return
    if not resuming:
        path.unlink()  # same run, starting over: its old history no longer describes the checkpoint
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({key: (int(v) if key == "epoch" else v) for key, v in row.items()} for row in rows)


def _checkpoint_weights(path: Path) -> list | None:
    """Weights of the best checkpoint, for EarlyStopping's restore after a resume."""
    try:
        return keras.saving.load_model(path, compile=False).get_weights()
    except (OSError, ValueError) as error:
        logger.warning("could not read %s to restore the best weights later: %s", path, error)
        return None


def _best_epoch(rows: list[dict[str, float]]) -> int | None:
    finite = [(row[MONITOR], index + 1) for index, row in enumerate(rows) if math.isfinite(row.get(MONITOR, math.nan))]
    return min(finite)[1] if finite else None


def _result(family: str, hyperparameters: kt.HyperParameters | dict[str, Any], rows: list[dict[str, float]], datasets: Datasets,
            parameters: int, paths: TrainingPaths, diverged: bool, reason: str,
            trainable: int | None = None, seed: int = 0) -> TrainingResult:
    skip = {"epoch", *TIMING_KEYS}
    history = {key: [row[key] for row in rows] for key in (rows[0] if rows else {}) if key not in skip}
    epoch_seconds = [row.get("epoch_seconds", math.nan) for row in rows]
    return TrainingResult(
        family=family, hyperparameters=model_hyperparameters(hyperparameters), history=history,
        epoch_seconds=epoch_seconds, train_seconds=float(sum(epoch_seconds)),
        train_tokens_per_second=_tokens_per_second(rows, tokens_per_step(datasets)),
        parameters=int(parameters), checkpoint_path=str(paths.checkpoint), diverged=diverged,
        stopped_reason=reason, trainable_parameters=None if trainable is None else int(trainable),
        seed=int(seed))


def _tokens_per_second(rows: list[dict[str, float]], tokens_per_step: float) -> float:
    """Tokens over training seconds of the warm epochs (not the first of a process), else of all."""
    warm = [row for row in rows if row.get("epoch_cold_start", 1.0) == 0.0] or rows
    seconds = sum(row.get("epoch_train_seconds", math.nan) for row in warm)
    tokens = sum(row.get("epoch_steps", 0.0) for row in warm) * tokens_per_step
    return float(tokens / seconds) if seconds > 0 else math.nan
