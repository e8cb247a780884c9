"""Masked next-token metrics: perplexity and accuracy over predicted (non-[PAD]) targets only.

Perplexity is exp(total NLL / total predicted tokens), accumulated over the whole evaluation in
two sum-aggregated variables. Under a tf.distribute strategy each replica adds to its own copy and
Keras sums the copies when it reads the result at the end of an epoch/evaluation, so the value is
the same as on one device. The mean of per-batch exp(loss) is NOT perplexity (Jensen), and neither
is exp(mean of per-batch losses) when batches hold different numbers of padded targets.
"""

from __future__ import annotations

import keras
from keras import ops

PAD_ID = 0  # TextTokenizer.pad_id: targets equal to it are padding, never predicted


def _accumulator_dtype() -> str:
    """float64 sums stay exact far longer (a float32 count stops at 2**24 tokens); TPUs lack float64."""
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    return "float32" if isinstance(strategy, tf.distribute.TPUStrategy) else "float64"


class _MaskedSumMetric(keras.metrics.Metric):
    """Shared state of the masked metrics: a summed numerator and a summed count of real targets."""

    def __init__(self, name: str, pad_id: int = PAD_ID, dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.pad_id = int(pad_id)
        accumulator = _accumulator_dtype()
        self.total = self.add_variable(shape=(), initializer="zeros", dtype=accumulator,
                                       aggregation="sum", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype=accumulator,
                                       aggregation="sum", name="count")

    def _per_token(self, y_true, logits):  # (B, T) int, (B, T, V) float -> (B, T) float32
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")  # (B, T)
        logits = ops.cast(y_pred, "float32")  # (B, T, V); float32 even under mixed precision
        weight = ops.cast(ops.not_equal(y_true, self.pad_id), "float32")  # (B, T): 0 on [PAD]
        if sample_weight is not None:
            weight = weight * ops.cast(ops.broadcast_to(sample_weight, ops.shape(y_true)), "float32")
        values = self._per_token(y_true, logits)  # (B, T)
        # where(), not values * weight: a pad position's value may be inf and inf * 0 is NaN.
        values = ops.where(weight > 0, values * weight, ops.zeros_like(values))
        self.total.assign_add(ops.cast(ops.sum(values), self.total.dtype))
        self.count.assign_add(ops.cast(ops.sum(weight), self.count.dtype))

    def reset_state(self):
        self.total.assign(ops.zeros_like(self.total))
        self.count.assign(ops.zeros_like(self.count))

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}


@keras.saving.register_keras_serializable(package="text_synthesis")
class Perplexity(_MaskedSumMetric):
    """exp(sum of NLL / number of non-[PAD] targets); y_pred are logits (B, T, V)."""

    def __init__(self, name: str = "perplexity", pad_id: int = PAD_ID, dtype=None, **kwargs):
        super().__init__(name=name, pad_id=pad_id, dtype=dtype, **kwargs)

    def _per_token(self, y_true, logits):
        return ops.sparse_categorical_crossentropy(y_true, logits, from_logits=True)  # (B, T) nats

    def result(self):
        mean_nll = ops.divide_no_nan(self.total, self.count)
        return ops.cast(ops.exp(mean_nll), self.dtype)


@keras.saving.register_keras_serializable(package="text_synthesis")
class MaskedAccuracy(_MaskedSumMetric):
    """Share of non-[PAD] targets whose argmax prediction is right; y_pred are logits (B, T, V)."""

    def __init__(self, name: str = "accuracy", pad_id: int = PAD_ID, dtype=None, **kwargs):
        super().__init__(name=name, pad_id=pad_id, dtype=dtype, **kwargs)

    def _per_token(self, y_true, logits):
        predicted = ops.cast(ops.argmax(logits, axis=-1), "int32")  # (B, T)
        return ops.cast(ops.equal(predicted, y_true), "float32")

    def result(self):
        return ops.cast(ops.divide_no_nan(self.total, self.count), self.dtype)


def masked_loss() -> keras.losses.Loss:
    """Mean NLL over non-[PAD] targets of a batch (ignore_class drops [PAD]=0 from sum and count)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD_ID)
