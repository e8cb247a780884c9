"""The clock a time budget counts: CONFIG's budget_clock, its resolution, and the budget's stop on it."""

import time

import keras
import numpy as np
import pytest
from training_factories import make_config, make_data

from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import ConfigError
from model_architectures.registry import hyperparameters_for
from training_assets.budget_clock import clock_seconds, resolve_clock
from training_assets.callbacks import TimeBudget, time_budget_callbacks
from training_assets.strategy import select_strategy
from training_assets.trainer import read_history, train_model


def test_budget_clock_is_validated_in_one_line_naming_the_key():
    assert ExperimentConfig().budget_clock == "auto"
    with pytest.raises(ConfigError) as error:
        ExperimentConfig.from_dict({"budget_clock": "gpu"})
    message = str(error.value)
    assert "budget_clock" in message and "'cpu'" in message and "\n" not in message


def test_auto_counts_cpu_seconds_without_an_accelerator():
    strategy = select_strategy("default")
    assert resolve_clock("auto", strategy) == "cpu"  # the test machines have no GPU/TPU
    assert resolve_clock("wall", strategy) == "wall" and resolve_clock("cpu") == "cpu"
    assert clock_seconds("cpu") is time.process_time and clock_seconds("wall") is time.perf_counter
    budget, callbacks = time_budget_callbacks(10, 1e-3, steps_per_epoch=5, clock="cpu")
    assert budget.clock is time.process_time and callbacks == [budget]


class FakeClock(keras.callbacks.Callback):
    """A clock that reads 10 s more after every training step: the budget's stop is then exact."""

    def __init__(self):
        super().__init__()
        self.now, self.steps = 0.0, 0

    def __call__(self) -> float:
        return self.now

    def on_train_batch_end(self, batch, logs=None):  # runs before TimeBudget's: listed first
        self.now, self.steps = self.now + 10.0, self.steps + 1


def test_time_budget_stops_at_the_step_its_clock_passes_the_budget_and_names_the_clock():
    clock = FakeClock()
    budget = TimeBudget(35, clock, unit="CPU s")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.zeros((20, 2)), np.zeros((20, 1)), batch_size=1, epochs=3, verbose=0,
              callbacks=[clock, budget])
    assert clock.steps == 4  # 40 s >= 35 s after the fourth step; none after it
    assert budget.reason == "time budget of 35 CPU s reached after 40.0 CPU s (epoch 1, step 4)"


def test_training_on_the_cpu_clock_records_cpu_seconds_beside_wall_seconds(tmp_path):
    config = make_config(tmp_path, budget_clock="cpu", train_time_budget_seconds=1e-3,
                         final_training_epochs=2, steps_per_epoch=5)
    tokenizer, datasets = make_data(config)
    result = train_model("gru", hyperparameters_for("gru", config.hyperparameters["gru"]), datasets, config,
                         select_strategy("default"), tokenizer)
    assert result.stopped_reason.startswith("time budget of 0.001 CPU s reached after")
    rows = read_history(tmp_path / "models" / "gru.history.csv")
    assert len(rows) == 1 and rows[0]["epoch_steps"] == 1
    assert rows[0]["epoch_cpu_seconds"] > 0 and rows[0]["epoch_seconds"] > 0
