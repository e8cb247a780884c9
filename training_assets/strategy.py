"""Pick the tf.distribute strategy an experiment runs under: TPU, several machines, several GPUs, or one device.

Create the strategy first, before any other TensorFlow work: MultiWorkerMirroredStrategy and TPU
initialisation must run before the runtime has placed tensors. Multi-worker training also needs
per-worker output paths (training_assets/cluster.py) and Keras' fit fixed for it
(training_assets/multi_worker.py, installed by the trainer and the tuner).
"""

from __future__ import annotations

import itertools
import logging
import os

import tensorflow as tf

from data_pipeline.errors import ConfigError
from training_assets.cluster import cluster_role

logger = logging.getLogger("training_assets")

STRATEGY_NAMES = ("auto", "default", "mirrored", "multi_worker", "tpu")


def select_strategy(name: str = "auto", tpu_address: str | None = None) -> tf.distribute.Strategy:
    """Return the strategy named by CONFIG['strategy'], or for "auto" the biggest one this machine offers.

    "auto": TPUStrategy if a TPU resolves, MultiWorkerMirroredStrategy if TF_CONFIG lists more than
    one worker, MirroredStrategy if there is more than one GPU, else the default strategy.
    "mirrored" without GPUs mirrors over the logical CPU devices (how the tests get two replicas).
    """
    if name not in STRATEGY_NAMES:
        raise ConfigError(f"CONFIG['strategy'] = {name!r}: unknown strategy; use one of {list(STRATEGY_NAMES)}")
    if name == "tpu":
        resolver = _tpu_resolver(tpu_address)
        if resolver is None:
            raise ConfigError(f"CONFIG['strategy'] = 'tpu' but no TPU answered at tpu_address={tpu_address!r}: "
                              "set tpu_address (e.g. 'grpc://10.0.0.2:8470' or 'local'), or strategy='auto'")
        return _tpu_strategy(resolver)
    if name == "multi_worker":
        return _multi_worker_strategy()
    if name == "mirrored":
        return _mirrored_strategy()
    if name == "default":
        return _default_strategy()

    resolver = _tpu_resolver(tpu_address)
    if resolver is not None:
        return _tpu_strategy(resolver)
    if _tf_config_workers() > 1:
        return _multi_worker_strategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return _mirrored_strategy()
    return _default_strategy()


def is_default_strategy(strategy: tf.distribute.Strategy) -> bool:
    """True for the no-op default strategy: the only one where Keras allows XLA and multi-step execution
    with every optimizer (it asks the same question, `tf.distribute.has_strategy()`, when it builds a model)."""
    with strategy.scope():
        return not tf.distribute.has_strategy()


def is_tpu_strategy(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.TPUStrategy)


def _default_strategy() -> tf.distribute.Strategy:
    strategy = tf.distribute.get_strategy()
    logger.info("strategy: default (one device)")
    return strategy


_mirrored_created = itertools.count(1)
COLLECTIVE_KEY_SPACING = 10_000  # group keys one strategy may use before reaching the next one's


def _mirrored_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over the GPUs, or over the logical CPUs when there is no GPU.

    Every MirroredStrategy numbers its collectives from the same keys, and the runtime caches a
    collective's shape by key: a second strategy in one process (a re-run notebook cell, tests)
    then fails with "Shape mismatch in the collective instance 100". Each strategy made here gets
    its own key range (MirroredStrategy._collective_key_base, what TensorFlow's own tests set).
    """
    gpus = tf.config.list_logical_devices("GPU")
    devices = [device.name for device in (gpus or tf.config.list_logical_devices("CPU"))]
    previous = getattr(tf.distribute.MirroredStrategy, "_collective_key_base", None)
    if previous is not None:
        tf.distribute.MirroredStrategy._collective_key_base = next(_mirrored_created) * COLLECTIVE_KEY_SPACING
    try:
        strategy = tf.distribute.MirroredStrategy(devices)
    finally:
        if previous is not None:
            tf.distribute.MirroredStrategy._collective_key_base = previous
    logger.info("strategy: MirroredStrategy over %d replicas %s", strategy.num_replicas_in_sync, devices)
    return strategy


def _multi_worker_strategy() -> tf.distribute.Strategy:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    logger.info("strategy: MultiWorkerMirroredStrategy, %d workers in TF_CONFIG, %d replicas",
                _tf_config_workers(), strategy.num_replicas_in_sync)
    return strategy


def _tpu_strategy(resolver) -> tf.distribute.Strategy:
    if resolver.master() and not resolver.master().startswith("local"):
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    strategy = tf.distribute.TPUStrategy(resolver)
    logger.info("strategy: TPUStrategy with %d cores", strategy.num_replicas_in_sync)
    return strategy


def _tpu_resolver(tpu_address: str | None):
    """A TPUClusterResolver if a TPU is reachable, else None (it fails fast without TPU_NAME or an address)."""
    candidates = [tpu_address] if tpu_address else [None]
    if not tpu_address and (os.path.exists("/dev/accel0") or tf.config.list_physical_devices("TPU")):
        candidates.append("local")  # TPU VM: the chips are attached to this host
    for candidate in candidates:
        try:
            return tf.distribute.cluster_resolver.TPUClusterResolver(tpu=candidate)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            logger.debug("no TPU at %r: %s", candidate, error)
    return None


def _tf_config_workers() -> int:
    """Number of workers TF_CONFIG names (1 when unset); a malformed TF_CONFIG is a clear error."""
    return cluster_role().num_workers
