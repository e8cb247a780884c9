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
class DocumentScores:
    """A model's summed NLL on each test document, with the document's predicted tokens and
    characters (+1 separator): what the bootstrap resamples (evaluation.intervals). (D,) each,
    in the split's document order."""

    nll_nats: np.ndarray
    tokens: np.ndarray
    characters: np.ndarray

    @classmethod
    def summed(cls, token_nll: np.ndarray, document_targets: np.ndarray,
               document_characters: np.ndarray) -> "DocumentScores | None":
        """Per-target NLL (dataset order, [PAD] excluded) summed by document; None, logged, when
        the targets do not add up to the documents' (their layout is unknown)."""
        targets = np.asarray(document_targets, np.int64)
        if len(targets) == 0 or len(targets) != len(document_characters) \
                or int(targets.sum()) != len(token_nll):
            if len(targets):
                logger.warning("per-document scores left out: %d scored targets, %d in the "
                               "split's %d documents", len(token_nll), int(targets.sum()),
                               len(targets))
            return None
        owner = np.repeat(np.arange(len(targets)), targets)  # (N,) document of each target
        return cls(nll_nats=np.bincount(owner, weights=token_nll, minlength=len(targets)),
                   tokens=targets, characters=np.asarray(document_characters, np.int64))


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
    # per test document, for intervals; None where not measured (a model without a likelihood)
    documents: DocumentScores | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_totals(cls, nll_nats: float, tokens: int, correct: int | float,
                    characters: int, position_nll: np.ndarray | None = None,
                    position_tokens: np.ndarray | None = None,
                    documents: DocumentScores | None = None) -> "EvaluationResult":
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
            documents=documents,
        )

    @classmethod
    def undefined(cls, split: "SplitData") -> "EvaluationResult":
        """For a model without a likelihood (a GAN): NaN figures, never a number that means nothing."""
        return cls(perplexity=math.nan, bits_per_char=math.nan, accuracy=math.nan, nll_nats=math.nan,
                   tokens=int(split.tokens), characters=int(split.characters))

    def to_dict(self) -> dict[str, float | int]:
        """The totals (per-document scores are written on their own: document_scores.csv)."""
        return {key: value for key, value in asdict(self).items() if key != "documents"}


def _evaluation_step(model: "keras.Model") -> tf.types.experimental.GenericFunction:
    """A compiled forward pass returning (sum NLL float64, predicted tokens, correct argmax,
    NLL summed per position (T,) float64, targets per position (T,), the NLL of every
    non-[PAD] target in row-major order (n,))."""

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
                tf.reduce_sum(nll, axis=0), count(mask, axis=0),  # ..., (T,), (T,)
                tf.boolean_mask(nll, mask))  # (n,)

    return step


def evaluate_model(model: "keras.Model", split: "SplitData") -> EvaluationResult:
    """Iterate `split.dataset` once and return exact perplexity, bits/char and accuracy.

    Sums are taken per batch on the device (NLL in float64) and accumulated on the host in
    float64, so the result equals exp(sum NLL / count) over the whole split — the same quantity
    the Perplexity metric accumulates during training. The same pass sums the NLL per row
    position, for the loss-by-position plot: where recurrent and attention models differ, and
    keeps each target's NLL, summed per document for the intervals (DocumentScores).
    """
    step = _evaluation_step(model)
    nll_nats, tokens, correct = 0.0, 0, 0
    position_nll, position_tokens = 0.0, 0  # become (T,) arrays after the first batch
    token_nll = []
    for inputs, targets in split.dataset:
        (batch_nll, batch_tokens, batch_correct, batch_position_nll, batch_position_tokens,
         batch_token_nll) = step(inputs, targets)
        token_nll.append(batch_token_nll.numpy())
        nll_nats += float(batch_nll)
        tokens += int(batch_tokens)
        correct += int(batch_correct)
        position_nll = position_nll + batch_position_nll.numpy()
        position_tokens = position_tokens + batch_position_tokens.numpy()
    if tokens != split.tokens:
        logger.warning("evaluation counted %d predicted tokens but the split reports %d: "
                       "bits/char uses the counted tokens' NLL and the split's %d characters",
                       tokens, split.tokens, split.characters)
    documents = DocumentScores.summed(
        np.concatenate(token_nll) if token_nll else np.zeros(0),
        getattr(split, "document_targets", ()), getattr(split, "document_characters", ()))
    return EvaluationResult.from_totals(nll_nats, tokens, correct, split.characters,
                                        np.atleast_1d(position_nll), np.atleast_1d(position_tokens),
                                        documents)


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

