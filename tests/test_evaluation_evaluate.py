"""evaluate_model: exact totals over a split with padded targets, equal to NumPy and the metric."""

import math
from dataclasses import dataclass

import keras
import numpy as np
import pytest
import tensorflow as tf

from data_pipeline.errors import DataError
from evaluation.evaluate import EvaluationResult, evaluate_model
from evaluation.metrics import MaskedAccuracy, Perplexity, masked_loss

VOCAB, LENGTH, BATCH = 11, 6, 4


@dataclass(frozen=True)
class Split:
    """The SplitData fields evaluate_model reads (dataset, tokens, characters)."""

    dataset: tf.data.Dataset
    tokens: int
    characters: int


def tiny_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((LENGTH,), dtype="int32"),
                              keras.layers.Embedding(VOCAB, 8),
                              keras.layers.Dense(VOCAB)])
    return model


def padded_split(rows: int = 10, seed: int = 1) -> tuple[Split, np.ndarray, np.ndarray]:
    """Rows of random tokens; the later rows end in [PAD] targets, the last rows are all [PAD]."""
    rng = np.random.default_rng(seed)
    inputs = rng.integers(1, VOCAB, size=(rows, LENGTH), dtype=np.int32)
    targets = rng.integers(1, VOCAB, size=(rows, LENGTH), dtype=np.int32)
    for row in range(rows):
        targets[row, LENGTH - row % (LENGTH + 1):] = 0  # 0..LENGTH padded positions per row
    targets[-2:] = 0
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(BATCH, drop_remainder=True)
    kept = (rows // BATCH) * BATCH
    inputs, targets = inputs[:kept], targets[:kept]
    return Split(dataset, int(np.sum(targets != 0)), characters=123), inputs, targets


def numpy_totals(model: keras.Model, inputs: np.ndarray, targets: np.ndarray):
    logits = np.asarray(model(inputs), np.float64)  # (N, T, V)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]  # (N, T)
    mask = targets != 0
    correct = (logits.argmax(-1) == targets) & mask
    return nll[mask].sum(), int(mask.sum()), int(correct.sum())


def test_matches_numpy_over_padded_batches():
    model = tiny_model()
    split, inputs, targets = padded_split()
    result = evaluate_model(model, split)
    nll, tokens, correct = numpy_totals(model, inputs, targets)
    assert result.tokens == tokens == split.tokens
    assert result.nll_nats == pytest.approx(nll, rel=1e-6)
    assert result.perplexity == pytest.approx(math.exp(nll / tokens), rel=1e-5)
    assert result.accuracy == pytest.approx(correct / tokens)
    assert result.bits_per_char == pytest.approx(result.nll_nats / math.log(2) / split.characters)
    assert result.characters == 123


def test_agrees_with_the_perplexity_metric():
    model = tiny_model(seed=3)
    model.compile(loss=masked_loss(), metrics=[Perplexity(), MaskedAccuracy()])
    split, _, _ = padded_split(rows=12, seed=4)
    metrics = model.evaluate(split.dataset, return_dict=True, verbose=0)
    result = evaluate_model(model, split)
    assert result.perplexity == pytest.approx(metrics["perplexity"], rel=1e-5)
    assert result.accuracy == pytest.approx(metrics["accuracy"], rel=1e-6)


def test_a_better_model_scores_lower():
    """Sanity of direction: a model trained a little on a fixed pattern beats its untrained self."""
    pattern = np.arange(1, VOCAB, dtype=np.int32)
    stream = np.tile(pattern, 20)
    rows = np.stack([stream[i:i + LENGTH + 1] for i in range(0, len(stream) - LENGTH - 1, LENGTH)])
    dataset = tf.data.Dataset.from_tensor_slices((rows[:, :-1], rows[:, 1:])).batch(BATCH, True)
    steps = len(rows) // BATCH
    split = Split(dataset, tokens=steps * BATCH * LENGTH, characters=steps * BATCH * LENGTH)
    model = tiny_model()
    before = evaluate_model(model, split)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=masked_loss())
    model.fit(dataset, epochs=15, verbose=0, shuffle=False)
    after = evaluate_model(model, split)
    assert after.perplexity < before.perplexity / 3
    assert after.accuracy > 0.9


def test_all_padding_is_a_clear_error():
    inputs = np.ones((4, LENGTH), np.int32)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, np.zeros_like(inputs))).batch(BATCH)
    with pytest.raises(DataError, match="no predicted tokens"):
        evaluate_model(tiny_model(), Split(dataset, tokens=0, characters=0))


def test_from_totals_formulas():
    result = EvaluationResult.from_totals(nll_nats=20.0, tokens=10, correct=4, characters=8)
    assert result.perplexity == pytest.approx(math.exp(2.0))
    assert result.bits_per_char == pytest.approx(20.0 / math.log(2) / 8)
    assert result.accuracy == 0.4
    assert result.to_dict()["tokens"] == 10


def test_model_built_under_mirrored_strategy():
    """Weights created by MirroredStrategy over 2 logical CPUs evaluate the same as copied weights."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = tiny_model(seed=5)
    plain = tiny_model(seed=6)
    plain.set_weights(mirrored.get_weights())
    split, _, _ = padded_split(rows=8, seed=7)
    with strategy.scope():
        inside = evaluate_model(mirrored, split)
    assert evaluate_model(mirrored, split).perplexity == pytest.approx(inside.perplexity, rel=1e-6)
    assert inside.perplexity == pytest.approx(evaluate_model(plain, split).perplexity, rel=1e-6)


def test_loss_by_position_is_each_positions_mean_nll_over_its_unpadded_targets():
    """The same pass that gives the totals: NumPy per position, [PAD] left out, empty positions NaN."""
    model = tiny_model()
    split, inputs, targets = padded_split()
    targets[:, -1] = 0  # no batch predicts the last position
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(BATCH, drop_remainder=True)
    result = evaluate_model(model, Split(dataset, int(np.sum(targets != 0)), characters=123))
    logits = np.asarray(model(inputs), np.float64)  # (N, T, V)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]  # (N, T)
    mask = targets != 0
    assert len(result.loss_by_position) == LENGTH
    for position in range(LENGTH - 1):
        expected = nll[:, position][mask[:, position]].mean()
        assert result.loss_by_position[position] == pytest.approx(expected, rel=1e-5)
    assert math.isnan(result.loss_by_position[-1])
    counts = mask.sum(0)[:-1]
    weighted = np.sum(np.array(result.loss_by_position[:-1]) * counts) / counts.sum()
    assert weighted == pytest.approx(result.nll_nats / result.tokens, rel=1e-9)
