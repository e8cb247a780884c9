"""One CONFIG, one set of figures: seeding and TensorFlow's deterministic ops (CONFIG['deterministic']).

What `seed` reaches, always: Python's, NumPy's and TensorFlow's global random state
and Keras' global seed generator, hence every model's initial weights and dropout masks (their
seeds are drawn from Python's state when the layers are built), the tf.data shuffles (seeded by
`seed` themselves, see data_pipeline.datasets), keras-tuner's choices (seeded by `seed`) and the
samplers (given `seed`). On CPUs that already repeats a run bit for bit
(`python -m benchmarks.determinism`). Op determinism (`deterministic: true`) makes TensorFlow pick
kernels without races in reductions and scatters, which GPUs need for the same; Keras then refuses
XLA, so it is off by default.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from data_pipeline.config import ExperimentConfig


def seed_everything(config: ExperimentConfig) -> None:
    """Reset every random state to config.seed and turn on op determinism (if config.deterministic).

    Called at the start of the experiment and again right before each model is built (the final
    training of a family at each of its seeds, every tuning trial), so a model's initial weights
    and dropout follow its seed, not what ran before it in the process. Without op determinism
    the seed still sets them; kernels may then sum in another order from run to run. Op
    determinism stays on for the rest of the process.
    """
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
