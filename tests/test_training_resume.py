"""Kill and resume: a SIGKILLed training run continues from its last epoch, a SIGKILLed search keeps
its finished trials. The first run is a real subprocess killed with SIGKILL; the rerun is in-process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest
from training_child import completed_trials, train_config, tune_config
from training_factories import RecordEpochs, make_data

from model_architectures.registry import hyperparameters_for
from training_assets.strategy import select_strategy
from training_assets.trainer import read_history, train_model
from training_assets.tuner import tune_model

CHILD = Path(__file__).with_name("training_child.py")
pytestmark = pytest.mark.slow


def run_until(tmp_path: Path, mode: str, ready, timeout: float = 120.0) -> None:
    """Start the child with "pause", wait until ready() holds, then SIGKILL it."""
    log = (tmp_path / f"{mode}.log").open("w")
    child = subprocess.Popen([sys.executable, str(CHILD), mode, str(tmp_path), "pause"],
                             stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if child.poll() is not None:
                pytest.fail(f"{mode} child exited early ({child.returncode}):\n"
                            + (tmp_path / f"{mode}.log").read_text()[-3000:])
            if time.monotonic() > deadline:
                pytest.fail(f"{mode} child not ready after {timeout} s")
            time.sleep(0.1)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        log.close()
    assert child.returncode == -signal.SIGKILL


def test_killed_training_resumes_at_the_next_epoch_and_finishes(tmp_path):
    models = tmp_path / "models"
    backup = models / ".backup" / "gru" / "training_metadata.json"
    run_until(tmp_path, "train", lambda: backup.exists() and len(read_history(models / "gru.history.csv")) == 1)
    assert json.loads(backup.read_text())["epoch"] == 1

    config = train_config(tmp_path)
    tokenizer, datasets = make_data(config)
    recorder = RecordEpochs()
    result = train_model("gru", hyperparameters_for("gru", config.hyperparameters["gru"]), datasets, config,
                         select_strategy("default"), tokenizer, callbacks=[recorder])

    assert recorder.epochs == [1, 2]  # started at epoch 2 (index 1), not from scratch
    rows = read_history(models / "gru.history.csv")
    assert [row["epoch"] for row in rows] == [0, 1, 2]  # appended, no duplicate epoch
    assert [row["epoch_cold_start"] for row in rows] == [1, 1, 0]  # two processes
    assert len(result.history["val_perplexity"]) == 3 and len(result.epoch_seconds) == 3
    assert result.stopped_reason == "completed 3 of 3 epochs"
    assert not backup.parent.exists() and Path(result.checkpoint_path).exists()
    # The resumed run continued from trained weights: its first epoch beats the first run's first epoch.
    assert result.history["val_perplexity"][1] < result.history["val_perplexity"][0]


FITS: list[int] = []  # module level: keras-tuner deep-copies callbacks per trial


class CountFits(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        FITS.append(1)


def test_killed_search_keeps_finished_trials_and_reaches_the_requested_total(tmp_path):
    project = tmp_path / "tuning" / "gru"
    # Kill once a trial has finished and the next one is running (its folder exists).
    run_until(tmp_path, "tune", lambda: len(completed_trials(project)) >= 1
              and len(list(project.glob("trial_*"))) > len(completed_trials(project)))
    finished = completed_trials(project)
    before = {name: json.loads((project / name / "trial.json").read_text()) for name in finished}

    config = tune_config(tmp_path)
    _, datasets = make_data(config)
    FITS.clear()
    outcome = tune_model("gru", datasets, config, select_strategy("default"), callbacks=[CountFits()])

    assert len(FITS) == config.tuning_trials - len(finished)  # finished trials were not rerun
    assert len(completed_trials(project)) == config.tuning_trials
    for name, trial in before.items():
        after = json.loads((project / name / "trial.json").read_text())
        assert after["hyperparameters"]["values"] == trial["hyperparameters"]["values"]
        assert after["metrics"] == trial["metrics"]
    assert outcome.trials == config.tuning_trials and outcome.best["units"] in (16, 24, 32, 40)
