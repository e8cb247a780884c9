"""Held-out evaluation: one pass over a split, exact totals, no per-batch averaging.

Perplexity is exp(total NLL / predicted tokens) over the whole split, and bits per character is
the same total NLL in bits divided by the characters of the split's documents, so models with a
character tokenizer and models with BPE land on one scale. [PAD] targets (id 0) are excluded
everywhere, which makes the padded last batch of the validation/test splits harmless.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from data_pipeline.errors import DataError

if TYPE_CHECKING:  # type hints only
    import keras

    from data_pipeline.datasets import SplitData

PAD_ID = 0  # [PAD]: never a target (see TextTokenizer.pad_id)
logger = logging.getLogger("evaluation")


@dataclass(frozen=True)
class EvaluationResult:
    """Totals of one evaluation; every figure is derived from nll_nats, tokens and characters."""

    perplexity: float  # exp(nll_nats / tokens)
    bits_per_char: float  # nll_nats / ln 2 / characters
    accuracy: float  # share of predicted tokens whose argmax is the target
    nll_nats: float  # total negative log-likelihood over all predicted tokens, in nats
    tokens: int  # predicted (non-pad) target tokens
    characters: int  # characters of the documents covered (+1 separator each)
    # mean NLL (nats) of the targets at each row position 1..T: position p predicts from p tokens
    # of context; empty when not measured (the n-gram baseline, an interpolated row)
    loss_by_position: tuple[float, ...] = field(default=())

    @classmethod
    def from_totals(cls, nll_nats: float, tokens: int, correct: int | float,
                    characters: int, position_nll: np.ndarray | None = None,
                    position_tokens: np.ndarray | None = None) -> "EvaluationResult":
        """Build a result from summed NLL, token and correct-prediction counts (and, optionally,
        per-position NLL sums and target counts, (T,) each)."""
        if tokens <= 0:
            raise DataError("evaluation saw no predicted tokens (every target is [PAD]=0): the "
                            "split is empty; give validation/test a non-zero split fraction")
        return cls(
            perplexity=math.exp(nll_nats / tokens),
            bits_per_char=nll_nats / math.log(2) / characters if characters > 0 else math.nan,
            accuracy=float(correct) / tokens,
            nll_nats=float(nll_nats),
            tokens=int(tokens),
            characters=int(characters),
            loss_by_position=() if position_nll is None else tuple(
                float(total / count) if count else math.nan
                for total, count in zip(position_nll, position_tokens)),
        )

    @classmethod
    def undefined(cls, split: "SplitData") -> "EvaluationResult":
        """For a model without a likelihood (a GAN): NaN figures, never a number that means nothing."""
        return cls(perplexity=math.nan, bits_per_char=math.nan, accuracy=math.nan, nll_nats=math.nan,
                   tokens=int(split.tokens), characters=int(split.characters))

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _evaluation_step(model: "keras.Model") -> tf.types.experimental.GenericFunction:
    """A compiled forward pass returning (sum NLL float64, predicted tokens, correct argmax,
    NLL summed per position (T,) float64, targets per position (T,))."""

    @tf.function(reduce_retracing=True)
    def step(inputs: tf.Tensor, targets: tf.Tensor) -> tuple[tf.Tensor, ...]:
        targets = tf.cast(targets, tf.int32)  # (B, T)
        logits = tf.cast(model(inputs, training=False), tf.float32)  # (B, T, V)
        mask = tf.not_equal(targets, PAD_ID)  # (B, T)
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets,
                                                             logits=logits)  # (B, T)
        nll = tf.where(mask, tf.cast(nll, tf.float64), tf.zeros_like(nll, tf.float64))
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)  # (B, T)
        correct = tf.logical_and(mask, tf.equal(predicted, targets))
        count = lambda flags, axis=None: tf.reduce_sum(tf.cast(flags, tf.int64), axis)  # noqa: E731
        return (tf.reduce_sum(nll), count(mask), count(correct),
                tf.reduce_sum(nll, axis=0), count(mask, axis=0))  # ..., (T,), (T,)

    return step


def evaluate_model(model: "keras.Model", split: "SplitData") -> EvaluationResult:
    """Iterate `split.dataset` once and return exact perplexity, bits/char and accuracy.

    Sums are taken per batch on the device (NLL in float64) and accumulated on the host in
    float64, so the result equals exp(sum NLL / count) over the whole split — the same quantity
    the Perplexity metric accumulates during training. The same pass sums the NLL per row
    position, for the loss-by-position plot: where recurrent and attention models differ.
    """
    step = _evaluation_step(model)
    nll_nats, tokens, correct = 0.0, 0, 0
    position_nll, position_tokens = 0.0, 0  # become (T,) arrays after the first batch
    for inputs, targets in split.dataset:
        batch_nll, batch_tokens, batch_correct, batch_position_nll, batch_position_tokens = step(
            inputs, targets)
        nll_nats += float(batch_nll)
        tokens += int(batch_tokens)
        correct += int(batch_correct)
        position_nll = position_nll + batch_position_nll.numpy()
        position_tokens = position_tokens + batch_position_tokens.numpy()
    if tokens != split.tokens:
        logger.warning("evaluation counted %d predicted tokens but the split reports %d: "
                       "bits/char uses the counted tokens' NLL and the split's %d characters",
                       tokens, split.tokens, split.characters)
    return EvaluationResult.from_totals(nll_nats, tokens, correct, split.characters,
                                        np.atleast_1d(position_nll), np.atleast_1d(position_tokens))


def token_log_probs(model: "keras.Model", split: "SplitData") -> tuple[np.ndarray, np.ndarray]:
    """ln p(target) of every predicted (non-[PAD]) target of one pass over `split.dataset`, and
    the targets, in dataset order: row after row, position after position (float64 (N,), int (N,)).

    For packed causal splits that order is the split's token stream after its first token, which
    is what lets evaluation.interpolation pair these with an n-gram model's scores token by token.
    """

    @tf.function(reduce_retracing=True)
    def step(inputs: tf.Tensor, targets: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        targets = tf.cast(targets, tf.int32)  # (B, T)
        logits = tf.cast(model(inputs, training=False), tf.float32)  # (B, T, V)
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)  # (B, T)
        mask = tf.not_equal(targets, PAD_ID)  # (B, T)
        return -tf.boolean_mask(nll, mask), tf.boolean_mask(targets, mask)  # (n,), (n,) row-major

    log_probs, targets = [], []
    for inputs, batch_targets in split.dataset:
        batch_log_probs, kept = step(inputs, batch_targets)
        log_probs.append(batch_log_probs.numpy().astype(np.float64))
        targets.append(kept.numpy())
    if not log_probs:
        return np.zeros(0, np.float64), np.zeros(0, np.int32)
    return np.concatenate(log_probs), np.concatenate(targets)

