"""Test set-up: two logical CPU devices so MirroredStrategy runs on one machine without a GPU, and
the checkpoints the real trainer writes, shared by the tests of their consumers."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

# Must happen before TensorFlow initialises its devices, so it lives at import time of conftest.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


@pytest.fixture(scope="session")
def trained_checkpoints(tmp_path_factory):
    """Every tests/trained_checkpoints.py case trained once by the real trainer, for its consumers."""
    from trained_checkpoints import train_checkpoints

    return train_checkpoints(tmp_path_factory.mktemp("trained_checkpoints"))
