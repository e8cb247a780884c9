"""Keras 3's fit under MultiWorkerMirroredStrategy: the upstream failures, and our fix for them.

When `test_unpatched_keras_still_fails_in_the_known_ways` fails after a keras upgrade, upstream
(keras-team/keras#20585) has fixed fit: delete training_assets/multi_worker.py and its call.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as tf_trainer

from scaleout_harness import Namespace, read_result, tf_config
from training_assets import multi_worker


@pytest.mark.slow
def test_unpatched_keras_still_fails_in_the_known_ways(tmp_path):
    namespace = Namespace(tmp_path)
    try:
        workers = [namespace.start(f"worker{i}", ["compat", str(tmp_path / f"result{i}.json")],
                                   tf_config(i, 2)) for i in range(2)]
        namespace.wait(workers, timeout=120)
    finally:
        namespace.close()
    results = [read_result(tmp_path / f"result{i}.json") for i in range(2)]
    for result in results:
        assert result["replicas"] == 2
        # 1. the symbolic build reduces the (x, y) batch across workers
        assert result["unpatched"] and "Attempt to convert a value (PerReplica" in result["unpatched"]
        # 2. scalar logs reduced along axis 0
        assert result["build_fix_only"] and (
            "Invalid reduction dimension 0 for input with 0 dimensions" in result["build_fix_only"])
        assert result["installed"] is True
        assert np.isfinite(result["loss"]).all()
        assert result["any_worker"] == [True, False]  # worker 1's vote reaches worker 0
    assert results[0]["digest"] == results[1]["digest"], "workers ended with different weights"
    assert results[0]["loss"] == results[1]["loss"]


def test_layer_is_inert_without_a_multi_worker_cluster():
    """Default and MirroredStrategy need nothing: enabling is refused, and fit is unchanged when installed."""
    rows = np.random.default_rng(0).integers(1, 20, size=(32, 8)).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((rows, rows)).batch(8, drop_remainder=True)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert multi_worker.enable_multi_worker_fit(tf.distribute.get_strategy()) is False
    assert multi_worker.enable_multi_worker_fit(strategy) is False
    assert not multi_worker.multi_worker_fit_enabled()
    assert not multi_worker.in_multi_worker_mode(strategy)

    def fitted_loss() -> float:
        keras.utils.set_random_seed(1)
        with strategy.scope():
            model = keras.Sequential([keras.Input((8,), dtype="int32"),
                                      keras.layers.Embedding(20, 8), keras.layers.Dense(20)])
            model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model.fit(dataset, epochs=1, verbose=0).history["loss"][0]

    reference = fitted_loss()
    try:
        assert multi_worker.enable_multi_worker_fit() is True  # None: install unconditionally
        assert multi_worker.enable_multi_worker_fit() is True  # idempotent
        assert tf_trainer.reduce_per_replica is multi_worker._reduce_per_replica
        assert fitted_loss() == pytest.approx(reference, rel=1e-6)
    finally:
        multi_worker.disable_multi_worker_fit()
    assert tf_trainer.reduce_per_replica is multi_worker._ORIGINALS["reduce_per_replica"]
