"""select_strategy: named strategies, "auto" on this CPU machine, and clear errors."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from data_pipeline.errors import ConfigError
from training_assets import strategy as strategy_module
from training_assets.strategy import is_default_strategy, select_strategy


def test_default_and_auto_on_a_cpu_machine_are_the_default_strategy(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for name in ("default", "auto"):
        strategy = select_strategy(name)
        assert is_default_strategy(strategy) and strategy.num_replicas_in_sync == 1


def test_mirrored_without_gpus_mirrors_the_logical_cpus():
    strategy = select_strategy("mirrored")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == 2  # conftest's two logical CPU devices
    assert not is_default_strategy(strategy)


def test_two_mirrored_strategies_in_one_process_both_train():
    """A second strategy (a re-run notebook cell) must not clash with the first one's collectives."""
    for width in (8, 24):  # different variable shapes under the same collective numbering
        strategy = select_strategy("mirrored")
        rows = np.random.default_rng(width).integers(1, 20, size=(16, 6)).astype("int32")
        with strategy.scope():
            model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(20, width),
                                      keras.layers.Dense(20)])
            model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(rows, rows, batch_size=8, epochs=1, verbose=0).history
        assert np.isfinite(history["loss"][0])


def test_auto_picks_multi_worker_when_tf_config_lists_two_workers(monkeypatch):
    cluster = {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    chosen = []
    # Creating a real MultiWorkerMirroredStrategy would wait for the other worker: record the choice.
    monkeypatch.setattr(strategy_module, "_multi_worker_strategy", lambda: chosen.append("multi_worker") or "mw")
    assert select_strategy("auto") == "mw" and chosen == ["multi_worker"]


def test_bad_names_and_missing_tpu_are_config_errors(monkeypatch):
    with pytest.raises(ConfigError, match="unknown strategy"):
        select_strategy("mirored")
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(ConfigError, match="no TPU"):
        select_strategy("tpu")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        select_strategy("auto")
