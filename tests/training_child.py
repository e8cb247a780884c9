"""A training or tuning run in its own process, for the kill-and-resume tests (tests/test_training_resume.py).

    python tests/training_child.py train TMP_DIR [pause]
    python tests/training_child.py tune TMP_DIR [pause]

With "pause" the run stops making progress at a known point (train: after epoch 1 is fully
recorded; tune: when the next trial starts after one has finished) and waits to be killed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import keras
from training_factories import TINY_HYPERPARAMETERS, make_config, make_data

from model_architectures.registry import hyperparameters_for
from training_assets.strategy import select_strategy
from training_assets.trainer import train_model
from training_assets.tuner import tune_model

PAUSE_SECONDS = 600  # the parent kills long before

# Tuning needs a space with more than a couple of points, or RandomSearch runs out early.
TUNING_SPACE = {**TINY_HYPERPARAMETERS["gru"], "units": [16, 24, 32, 40], "embedding_dim": [8, 16]}


def train_config(tmp: Path):
    return make_config(tmp, final_training_epochs=3)


def tune_config(tmp: Path):
    return make_config(tmp, tuner="random", tuning_trials=3, tuning_epochs=1, tuning_steps_per_epoch=3,
                       hyperparameters={"gru": TUNING_SPACE})


def completed_trials(project: Path) -> list[str]:
    """ids of trials whose trial.json says COMPLETED (a half-written file counts as not completed)."""
    done = []
    for path in sorted(project.glob("trial_*/trial.json")):
        try:
            if json.loads(path.read_text())["status"] == "COMPLETED":
                done.append(path.parent.name)
        except (OSError, ValueError, KeyError):
            pass
    return done


class PauseAfterFirstEpoch(keras.callbacks.Callback):
    """Runs after the trainer's own callbacks, so the backup and the CSV row of epoch 1 exist."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            time.sleep(PAUSE_SECONDS)


class PauseWhenATrialHasFinished(keras.callbacks.Callback):
    def __init__(self, project: str):
        super().__init__()
        self.project = project

    def on_train_begin(self, logs=None):
        if completed_trials(Path(self.project)):
            time.sleep(PAUSE_SECONDS)


def main(mode: str, tmp: str, pause: bool) -> None:
    tmp_path = Path(tmp)
    strategy = select_strategy("default")
    if mode == "train":
        config = train_config(tmp_path)
        tokenizer, datasets = make_data(config)
        train_model("gru", hyperparameters_for("gru", config.hyperparameters["gru"]), datasets, config, strategy,
                    tokenizer, callbacks=[PauseAfterFirstEpoch()] if pause else [])
    else:
        config = tune_config(tmp_path)
        _, datasets = make_data(config)
        project = str(Path(config.tuning_dir) / "gru")
        tune_model("gru", datasets, config, strategy,
                   callbacks=[PauseWhenATrialHasFinished(project)] if pause else [])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], pause="pause" in sys.argv[3:])
