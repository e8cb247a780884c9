"""Keras 3 `fit`/`evaluate` under MultiWorkerMirroredStrategy: a small compatibility layer.

Why it exists. keras 3.15's TensorFlowTrainer (keras/src/backend/tensorflow/trainer.py) fails
under a MultiWorkerMirroredStrategy in multi-worker mode, in two places (upstream:
keras-team/keras#20585, open):

1. `TensorFlowTrainer._maybe_symbolic_build` builds the model from the first batch, which it first
   averages across replicas with `strategy.reduce("MEAN", batch, axis=None)`. With several
   workers that reduce becomes a collective on the whole (x, y) structure and fails with
   "Attempt to convert a value (PerReplica ...) to a Tensor". The build needs only shapes and
   dtypes, so we take this worker's first local replica's batch instead (every worker builds the
   same shapes; no cross-worker traffic).
2. `reduce_per_replica(logs, strategy, "auto")` turns "auto" into "mean" and, in multi-worker mode,
   calls `strategy.reduce("MEAN", value, axis=0)` on every log value; the logs are scalars (loss,
   metric results), so it fails with "Invalid reduction dimension 0 for input with 0 dimensions".
   We reduce scalars with `axis=None`, an all-reduce mean across replicas: the per-step value
   MirroredStrategy shows, and the same on every worker, so callbacks that stop on it
   (TerminateOnNaN) decide alike everywhere. Epoch logs do not depend on it: Keras re-reads the metrics at the end
   of an epoch, and metric variables are sum-aggregated on read across all workers.

How. `enable_multi_worker_fit()` replaces exactly these two keras functions for the process
(the step functions look `reduce_per_replica` up in their module when they are traced, so it must
run before the first `fit`). Both replacements fall through to the original code unless the
strategy is a MultiWorkerMirroredStrategy in multi-worker mode, so default and MirroredStrategy
training is unchanged. It is idempotent; `disable_multi_worker_fit()` restores keras.

When to delete. tests/test_scaleout_compat.py asserts that unpatched keras still fails in the two
known ways. When that test fails after a keras upgrade, upstream has fixed it: delete the two
replacements and `enable_multi_worker_fit` with its calls (trainer.py, tuner.py). `any_worker`
(a stop decision all workers share, used by the time budget) is not a keras fix and stays.
"""

from __future__ import annotations

import logging

import tensorflow as tf
from keras import tree
from keras.src.backend.tensorflow import trainer as tf_trainer

logger = logging.getLogger("training_assets")

_ORIGINALS = {
    "reduce_per_replica": tf_trainer.reduce_per_replica,
    "_maybe_symbolic_build": tf_trainer.TensorFlowTrainer._maybe_symbolic_build,
}


def in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    """True for a MultiWorkerMirroredStrategy whose cluster has more than one worker."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        strategy.extended._in_multi_worker_mode()
    )


def _reduce_per_replica(values, strategy, reduction):
    """keras' reduce_per_replica, with scalar logs reduced over replicas only (axis=None)."""
    original = _ORIGINALS["reduce_per_replica"]
    if not in_multi_worker_mode(strategy) or reduction not in ("auto", "mean"):
        return original(values, strategy, reduction)

    def reduce_one(value):
        if value.shape.rank == 0:  # () per replica -> () mean over all replicas of all workers
            return strategy.reduce("MEAN", value, axis=None)
        return original(value, strategy, reduction)

    return tree.map_structure(reduce_one, values)


def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    """keras' _maybe_symbolic_build, building from this worker's own first batch."""
    if iterator is None or not in_multi_worker_mode(self.distribute_strategy):
        return _ORIGINALS["_maybe_symbolic_build"](self, iterator=iterator, data_batch=data_batch)
    for _, _, batches in iterator:
        batch = next(batches)  # PerReplica (x (B/R,T), y (B/R,T)) over this worker's replicas
        data_batch = tree.map_structure(
            lambda value: self.distribute_strategy.experimental_local_results(value)[0]
            if isinstance(value, tf.distribute.DistributedValues) else value,
            batch,
        )
        break
    with self.distribute_strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def any_worker(flag: bool, strategy: tf.distribute.Strategy) -> bool:
    """True if `flag` is True on any worker: for decisions every worker must take at the same step.

    Workers run in lock-step; a callback that stops training on one worker's own clock (a time
    budget) would leave the others waiting in a collective forever. Outside a multi-worker cluster
    it returns `flag` and costs nothing; inside, one all-reduce of a scalar.
    """
    if not in_multi_worker_mode(strategy):
        return bool(flag)
    votes = strategy.reduce("SUM", tf.constant(1.0 if flag else 0.0), axis=None)  # () summed over workers
    return bool(votes > 0)


def mean_over_workers(value: float, strategy: tf.distribute.Strategy) -> float:
    """The mean of `value` over workers, for estimates every worker must act on identically
    (the steps left in a time budget sets the learning rate: workers must agree on it)."""
    if not in_multi_worker_mode(strategy):
        return float(value)
    return float(strategy.reduce("MEAN", tf.constant(float(value)), axis=None))


def enable_multi_worker_fit(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Install the compatibility layer (idempotent); True when `strategy` needs it.

    Pass the strategy you train with: it is installed only for a multi-worker strategy (other
    strategies need nothing), or always when `strategy` is None.
    """
    if strategy is not None and not in_multi_worker_mode(strategy):
        return False
    if tf_trainer.reduce_per_replica is not _reduce_per_replica:
        tf_trainer.reduce_per_replica = _reduce_per_replica
        tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
        logger.info("multi-worker: keras fit compatibility layer installed "
                    "(training_assets.multi_worker, keras-team/keras#20585)")
    return True


def disable_multi_worker_fit() -> None:
    """Restore keras' own functions (for tests that check upstream behaviour)."""
    tf_trainer.reduce_per_replica = _ORIGINALS["reduce_per_replica"]
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _ORIGINALS["_maybe_symbolic_build"]


def multi_worker_fit_enabled() -> bool:
    return tf_trainer.reduce_per_replica is _reduce_per_replica
