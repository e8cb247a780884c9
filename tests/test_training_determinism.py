"""One CONFIG gives the same histories, test figures and samples, run after run, whatever else ran
before in the process: by default (seeds, no op determinism, XLA where "auto" picks it) on CPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from training_factories import TINY_HYPERPARAMETERS, make_config, make_data

from data_pipeline.config import ExperimentConfig
from model_architectures.registry import hyperparameters_for
from training_assets.callbacks import TIMING_KEYS
from training_assets.experiment import sample_prompts
from training_assets.strategy import select_strategy
from training_assets.trainer import read_history, train_model

# Columns measured with a clock: they differ between any two runs.
TIMED_COLUMNS = ("train_seconds", "train_tokens_per_second", "generation_ms_per_token")
WITH_DROPOUT = {**TINY_HYPERPARAMETERS, "gru": {**TINY_HYPERPARAMETERS["gru"], "dropout": 0.3}}


def figures(history_csv: Path) -> list[dict[str, float]]:
    """The history's learned figures per epoch (losses, perplexities), without its timings."""
    return [{key: value for key, value in row.items() if key not in TIMING_KEYS}
            for row in read_history(history_csv)]


def test_a_familys_figures_do_not_depend_on_what_trained_before(tmp_path):
    # steps_per_epoch below one pass: the repeated, reshuffled stream is covered too
    settings = dict(hyperparameters=WITH_DROPOUT, models_to_run=["gru", "lstm"], steps_per_epoch=8)
    tokenizer, datasets = make_data(make_config(tmp_path, **settings))  # shared by every run below
    strategy = select_strategy("default")

    def train(directory: str, family: str, seed: int = 42) -> list[dict[str, float]]:
        config = make_config(tmp_path / directory, seed=seed, **settings)
        hyperparameters = hyperparameters_for(family, WITH_DROPOUT[family])
        train_model(family, hyperparameters, datasets, config, strategy, tokenizer)
        return figures(tmp_path / directory / "models" / f"{family}.history.csv")

    alone = train("alone", "gru")
    train("after_lstm", "lstm")
    after_lstm = train("after_lstm", "gru")
    assert len(alone) == 2 and alone == after_lstm
    assert train("other_seed", "gru", seed=7) != alone  # the seed does reach the weights and batches


@pytest.mark.slow
def test_two_runs_of_one_config_give_identical_histories_table_and_samples(tmp_path):
    from test_notebook import tiny_config

    runs = {}
    for name in ("first", "second"):  # two fresh processes at the same time, each with its own folders
        (tmp_path / name).mkdir()
        config = tiny_config(tmp_path / name)
        config["hyperparameters"]["gru"]["dropout"] = [0.2, 0.4]  # tuned: trials' dropout masks matter
        # the defaults: no op determinism, so the Transformer compiles with XLA
        config.update(models_to_run=["gru", "transformer"], sampler="top_p", tuner="random")
        path = tmp_path / name / "experiment.json"
        path.write_text(json.dumps(config))
        runs[name] = subprocess.Popen([sys.executable, "-m", "training_assets.run", "--config", str(path)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=os.environ.copy())
    for name, process in runs.items():
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, f"{name} run failed:\n{stderr[-3000:]}"

    first, second = tmp_path / "first", tmp_path / "second"
    for family in ("gru", "transformer"):
        history = figures(first / "models" / f"{family}.history.csv")
        assert len(history) == 2 and history == figures(second / "models" / f"{family}.history.csv")
    table = pd.read_csv(first / "plots" / "comparison.csv").drop(columns=list(TIMED_COLUMNS))
    pd.testing.assert_frame_equal(table, pd.read_csv(second / "plots" / "comparison.csv")
                                  .drop(columns=list(TIMED_COLUMNS)), check_exact=True)
    assert {"gru", "transformer", "kn_3gram"} <= set(table["model"])
    samples = json.loads((first / "plots" / "samples.json").read_text())
    assert samples == json.loads((second / "plots" / "samples.json").read_text())
    assert len(samples["gru"]) == len(sample_prompts(ExperimentConfig.from_dict(config))) and samples["gru"][0] != samples["gru"][1]  # sampled
