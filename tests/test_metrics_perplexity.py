"""Perplexity and MaskedAccuracy: exact against NumPy over padded batches, on one device and two replicas."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from evaluation.metrics import MaskedAccuracy, Perplexity, masked_loss
from training_assets.strategy import select_strategy

VOCAB, LENGTH = 13, 7


def numpy_totals(logits: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """(perplexity, accuracy) over non-[PAD] targets, in float64."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]  # (N, T)
    real = targets != 0
    return float(np.exp(nll[real].sum() / real.sum())), float((logits.argmax(-1) == targets)[real].mean())


def padded_batches(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Three batches of (targets, logits) with 0, some and many [PAD] targets."""
    rng = np.random.default_rng(seed)
    batches = []
    for pads in (0, 9, 20):
        targets = rng.integers(1, VOCAB, size=(4, LENGTH)).astype(np.int32)
        flat = targets.reshape(-1)
        flat[rng.choice(flat.size, size=pads, replace=False)] = 0
        logits = rng.normal(scale=3.0, size=(4, LENGTH, VOCAB)).astype(np.float32)
        batches.append((targets, logits))
    return batches


def test_perplexity_and_accuracy_match_numpy_over_batches_with_different_padding():
    perplexity, accuracy = Perplexity(), MaskedAccuracy()
    for targets, logits in padded_batches():
        perplexity.update_state(targets, logits)
        accuracy.update_state(targets, logits)
    all_targets = np.concatenate([t for t, _ in padded_batches()])
    all_logits = np.concatenate([l for _, l in padded_batches()])
    expected_perplexity, expected_accuracy = numpy_totals(all_logits, all_targets)

    assert float(perplexity.result()) == pytest.approx(expected_perplexity, rel=1e-5)
    assert float(accuracy.result()) == pytest.approx(expected_accuracy, rel=1e-5)
    # The mean of per-batch perplexities is a different (wrong) number when padding differs.
    per_batch = [numpy_totals(l, t)[0] for t, l in padded_batches()]
    assert abs(np.mean(per_batch) - expected_perplexity) > 1e-3 * expected_perplexity


def test_pad_targets_do_not_count_even_with_extreme_logits():
    targets = np.array([[5, 0, 0]], np.int32)
    logits = np.zeros((1, 3, VOCAB), np.float32)
    logits[0, 1:, 0] = -np.inf  # [PAD] positions whose "true class" has NLL inf (inf * 0 = NaN)
    metric = Perplexity()
    metric.update_state(targets, logits)
    assert float(metric.result()) == pytest.approx(VOCAB, rel=1e-5)  # uniform over VOCAB on 1 token


def test_sample_weight_masks_further_and_reset_clears_state():
    targets, logits = padded_batches()[0]
    weights = np.zeros_like(targets, np.float32)
    weights[:2] = 1.0
    metric = Perplexity()
    metric.update_state(targets, logits, sample_weight=weights)
    assert float(metric.result()) == pytest.approx(numpy_totals(logits[:2], targets[:2])[0], rel=1e-5)
    metric.reset_state()
    assert float(metric.count.numpy()) == 0.0 and float(metric.result()) == 1.0  # exp(0): nothing seen


def test_metrics_serialise_with_their_pad_id():
    restored = keras.metrics.deserialize(keras.metrics.serialize(Perplexity(pad_id=3)))
    assert isinstance(restored, Perplexity) and restored.pad_id == 3 and restored.name == "perplexity"
    assert MaskedAccuracy().name == "accuracy"


def test_masked_loss_is_mean_nll_over_real_targets():
    targets, logits = padded_batches()[2]
    expected_perplexity, _ = numpy_totals(logits, targets)
    assert float(masked_loss()(targets, logits)) == pytest.approx(np.log(expected_perplexity), rel=1e-5)


def test_model_evaluate_under_mirrored_strategy_matches_numpy():
    """Two replicas each see half of every batch, with different numbers of [PAD] targets."""
    strategy = select_strategy("mirrored")  # its own collective keys, whatever other tests created
    assert strategy.num_replicas_in_sync == 2
    rng = np.random.default_rng(3)
    inputs = rng.integers(1, VOCAB, size=(16, LENGTH)).astype(np.int32)
    targets = rng.integers(1, VOCAB, size=(16, LENGTH)).astype(np.int32)
    targets[1, 2:] = 0  # first replica of batch 1 gets pads
    targets[6:8] = 0  # second replica of batch 1: all pads
    targets[12:, 4:] = 0  # batch 2: pads on both replicas

    def tiny_model() -> keras.Model:
        keras.utils.set_random_seed(7)
        return keras.Sequential([keras.Input((LENGTH,), dtype="int32"), keras.layers.Embedding(VOCAB, 8),
                                 keras.layers.Dense(VOCAB)])

    with strategy.scope():
        model = tiny_model()
        model.compile(loss=masked_loss(), metrics=[Perplexity(), MaskedAccuracy()])
    reference = tiny_model()
    reference.set_weights(model.get_weights())  # same fixed weights, one device
    expected_perplexity, expected_accuracy = numpy_totals(np.asarray(reference(inputs)), targets)

    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(8, drop_remainder=True)
    logs = model.evaluate(dataset, return_dict=True, verbose=0)
    assert logs["perplexity"] == pytest.approx(expected_perplexity, rel=1e-5)
    assert logs["accuracy"] == pytest.approx(expected_accuracy, rel=1e-5)
