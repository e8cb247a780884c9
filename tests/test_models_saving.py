"""Checkpoints the trainer writes reload in a fresh process with `register_model_classes()` alone:
without the optimizer (inference: same logits) and with it (same step and learning-rate schedule)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from trained_checkpoints import SAVING_CASES

from evaluation.evaluate import evaluate_model
from model_architectures import FAMILIES, build_model
from model_architectures.saving import load_trained_model

VOCAB, MAX_LEN = 40, 10

RELOAD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    from model_architectures import register_model_classes
    register_model_classes()  # nothing else is needed to load
    folder, paths = sys.argv[1], json.loads(sys.argv[2])
    tokens = np.load(f"{folder}/tokens.npy")
    found = {}
    for name, path in paths.items():
        model = keras.saving.load_model(path, compile=False)  # safe_mode on by default
        np.save(f"{folder}/{name}.after.npy", np.asarray(model(tokens)))
        if model.has_cache:
            logits, _ = model.call_with_cache(tokens[:, :3], model.build_cache(len(tokens), 10), 0)
        else:  # generation re-encodes the window instead
            logits = model.call_last(tokens)
        np.save(f"{folder}/{name}.cached.npy", np.asarray(logits))
        compiled = keras.saving.load_model(path)  # with the optimizer, its schedule and metrics
        optimizer = compiled.optimizer.get_config()
        found[name] = {"module": type(model).__module__, "learning_rate": optimizer["learning_rate"],
                       "use_ema": optimizer["use_ema"],
                       "iterations": int(keras.ops.convert_to_numpy(compiled.optimizer.iterations))}
    print(json.dumps(found))
""")


@pytest.fixture(scope="module")
def reloaded(trained_checkpoints, tmp_path_factory) -> tuple[dict, np.ndarray, Path]:
    """One fresh process loads every trained checkpoint, both ways."""
    folder = tmp_path_factory.mktemp("reloaded")
    vocab = next(iter(trained_checkpoints.values())).data.datasets.vocab_size
    tokens = np.random.default_rng(0).integers(1, vocab, size=(2, MAX_LEN)).astype("int32")
    np.save(folder / "tokens.npy", tokens)
    paths = {name: trained.training.checkpoint_path for name, trained in trained_checkpoints.items()}
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([sys.executable, "-c", RELOAD, str(folder), json.dumps(paths)],
                          capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), tokens, folder


@pytest.mark.parametrize("name", SAVING_CASES)
def test_every_trained_checkpoint_reloads_in_a_fresh_process(trained_checkpoints, reloaded, name):
    found, tokens, folder = reloaded
    trained, state = trained_checkpoints[name], found[name]
    family = trained.case.family
    assert state["module"] == FAMILIES[family].module

    # Without the optimizer: the weights training validated (averaged ones with ema_momentum) ...
    model = load_trained_model(trained.training.checkpoint_path)
    best = min(trained.training.history["val_perplexity"])
    assert evaluate_model(model, trained.data.datasets.validation).perplexity == pytest.approx(best, rel=1e-4)
    # ... give the same logits in the fresh process, and its cached decoding agrees with them.
    after = np.load(folder / f"{name}.after.npy")
    np.testing.assert_allclose(after, np.asarray(model(tokens)), atol=1e-5)
    cached = after[:, :3] if model.has_cache else after[:, -1:]
    np.testing.assert_allclose(np.load(folder / f"{name}.cached.npy"), cached, atol=1e-5)

    # With the optimizer: the step and the schedule (as the budget left it) of the best epoch.
    manifest = json.loads(Path(trained.training.checkpoint_path).with_suffix(".manifest.json").read_text())
    saved = trained.optimizer_states[manifest["training"]["best_epoch"] - 1]
    assert state["iterations"] == saved["iterations"] > 0
    assert state["learning_rate"] == saved["learning_rate"]
    assert state["use_ema"] == (trained.case.ema_momentum is not None)


@pytest.mark.parametrize("name", [name for name, case in SAVING_CASES.items() if case.schedule == "budget"])
def test_the_time_budget_resized_the_saved_schedule(trained_checkpoints, name):
    trained = trained_checkpoints[name]
    decay_lengths = [state["learning_rate"]["config"]["decay_steps"] for state in trained.optimizer_states]
    assert min(decay_lengths) < trained.planned_steps, decay_lengths  # checkpoints after the first resize


def test_config_round_trip_rebuilds_the_same_architecture():
    for case in SAVING_CASES.values():
        model = build_model(case.family, None, VOCAB, MAX_LEN, case.hyperparameters)
        clone = type(model).from_config(model.get_config())
        clone.build((None, MAX_LEN))
        assert clone.get_config() == model.get_config()
        assert clone.count_params() == model.count_params()
        assert keras.saving.get_registered_name(type(model)).startswith("text_synthesis>")
