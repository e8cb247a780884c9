"""One process of a scale-out test cluster (run by tests/test_scaleout_*.py through nsenter).

    python tests/scaleout_worker.py compat RESULT.json
        keras' own fit under MultiWorkerMirroredStrategy: records the two known upstream failures,
        then fits with training_assets.multi_worker installed.
    python tests/scaleout_worker.py train CONFIG.json RESULT.json
        the runner's training path: strategy from TF_CONFIG, data, tokenizer, datasets, train_model.
    python tests/scaleout_worker.py tune CONFIG.json RESULT.json
        the runner's tuning path under keras-tuner's chief/worker environment variables.

Each writes a JSON result (TensorFlow's own logs go to stdout/stderr).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import keras
import numpy as np


def weights_digest(model) -> str:
    """A hash of every trainable weight: equal on two workers only if they hold identical models."""
    digest = hashlib.sha256()
    for weight in model.trainable_weights:
        digest.update(np.asarray(weight.numpy()).tobytes())
    return digest.hexdigest()


def run_compat(result_path: str) -> None:
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    from training_assets import multi_worker

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    rows = np.random.default_rng(0).integers(1, 20, size=(64, 8)).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((rows, rows)).batch(16, drop_remainder=True)
    with strategy.scope():
        model = keras.Sequential([keras.Input((8,), dtype="int32"), keras.layers.Embedding(20, 8),
                                  keras.layers.Dense(20)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])

    def fit_error() -> str | None:
        try:
            model.fit(dataset, epochs=1, verbose=0)
        except Exception as error:  # noqa: BLE001 - the message is what the test checks
            return f"{type(error).__name__}: {error}"[:2000]
        return None

    multi_worker.disable_multi_worker_fit()
    result = {"unpatched": fit_error()}
    # Only the first fix: the second upstream failure shows up once the first one is out of the way.
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = multi_worker._maybe_symbolic_build
    result["build_fix_only"] = fit_error()
    multi_worker.disable_multi_worker_fit()
    result["installed"] = multi_worker.enable_multi_worker_fit(strategy)
    history = model.fit(dataset, epochs=1, verbose=0)
    result.update(loss=history.history["loss"], digest=weights_digest(model),
                  replicas=strategy.num_replicas_in_sync)
    task_index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    result["any_worker"] = [multi_worker.any_worker(task_index == 1, strategy),
                            multi_worker.any_worker(False, strategy)]
    write(result_path, result)


def prepare(config_path: str):
    """The runner's first stages (training_assets.experiment), as `run_experiment` calls them."""
    from data_pipeline.config import ExperimentConfig
    from training_assets.cluster import config_for_this_process
    from training_assets.experiment import prepare_data, setup_environment

    config = config_for_this_process(ExperimentConfig.from_file(config_path))
    environment = setup_environment(config)
    data = prepare_data(config, environment)
    return config, environment.strategy, data.tokenizer, data.datasets


def run_tune(config_path: str, result_path: str) -> None:
    from pathlib import Path

    from training_assets.cluster import tuning_role
    from training_assets.tuner import tune_model

    config, strategy, _, datasets = prepare(config_path)
    family = config.models_to_run[0]
    outcome = tune_model(family, datasets, config, strategy)
    project = Path(config.tuning_dir) / family
    write(result_path, {"role": tuning_role().kind, "best": outcome.best, "kept": outcome.kept,
                        "hyperparameters": outcome.hyperparameters.values, "defaults": outcome.defaults,
                        "tuning_dir": config.tuning_dir,
                        "trial_dirs": sorted(p.name for p in project.glob("trial_*"))})


class EpochRecorder(keras.callbacks.Callback):
    """Records the epochs this process runs; after `mark_after` batches of an epoch >= 1 it writes
    `marker`, so a test knows the process is mid-way through its second (or later) epoch."""

    def __init__(self, marker: str | None, mark_after: int = 2):
        super().__init__()
        self.marker, self.mark_after = marker, mark_after
        self.epochs: list[int] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_train_batch_end(self, batch, logs=None):
        if self.marker and self.epochs[-1] >= 1 and batch + 1 == self.mark_after:
            with open(self.marker, "w", encoding="utf-8") as handle:
                handle.write(f"epoch {self.epochs[-1]} batch {batch}")


def run_train(config_path: str, result_path: str, marker: str | None = None) -> None:
    from model_architectures.registry import hyperparameters_for
    from training_assets.cluster import cluster_role
    from training_assets.multi_worker import in_multi_worker_mode
    from training_assets.trainer import train_model

    config, strategy, tokenizer, datasets = prepare(config_path)
    family = config.models_to_run[0]
    # What this worker is fed: its own shard, per-replica batches of the global batch.
    local_inputs, _ = next(iter(strategy.experimental_distribute_dataset(datasets.train.dataset)))
    recorder = EpochRecorder(marker)
    hyperparameters = hyperparameters_for(family, config.hyperparameters.get(family))
    result = train_model(family, hyperparameters, datasets, config, strategy, tokenizer,
                         callbacks=[recorder])
    checkpoint = keras.saving.load_model(result.checkpoint_path)
    write(result_path, {"role": cluster_role().name, "multi_worker": in_multi_worker_mode(strategy),
                        "replicas": strategy.num_replicas_in_sync,
                        "global_batch": datasets.global_batch_size, "train_steps": datasets.train.steps,
                        "first_batch": np.asarray(strategy.experimental_local_results(local_inputs)[0]).tolist(),
                        "checkpoint": result.checkpoint_path, "digest": weights_digest(checkpoint),
                        "history": result.history, "epochs_run_here": recorder.epochs,
                        "stopped_reason": result.stopped_reason, "models_dir": config.models_dir})


def write(path: str, result: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    mode, *arguments = sys.argv[1:]
    {"compat": run_compat, "tune": run_tune, "train": run_train}[mode](*arguments)
