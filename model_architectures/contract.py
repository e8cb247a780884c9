"""The contract every model family implements, so no caller asks "which family is this?".

Shaped like KerasHub's Backbone/CausalLM split: `hidden_states` is the backbone (token ids ->
features before the output head), `output_logits` the head, and `call` / `call_last` compose
them. Generation uses `build_cache` / `call_with_cache` when `has_cache` is True and re-encodes
the last `max_len` tokens per new token otherwise. `objectives` says which training layouts
(data_pipeline/datasets.py) the family is valid under; the registry declares the same tuple
without TensorFlow, so CONFIG validation can refuse a mismatch before anything slow.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras

from model_architectures.registry import OBJECTIVES

REQUIRED_METHODS = ("hidden_states", "output_logits", "forward_flops_per_token")


class LanguageModel(keras.Model):
    """Token ids (B, T) -> next-token logits; subclasses provide the backbone and the head.

    Subclasses set `vocab_size` and `max_len` (the training window) in `__init__`.
    """

    objectives: ClassVar[tuple[str, ...]] = OBJECTIVES
    has_cache: ClassVar[bool] = True  # False: generation re-encodes the window per token
    # False: no likelihood of text (a GAN): evaluation leaves perplexity and bits/char empty
    has_likelihood: ClassVar[bool] = True
    vocab_size: int
    max_len: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        missing = [name for name in REQUIRED_METHODS if getattr(cls, name) is getattr(LanguageModel, name)]
        if missing:
            raise TypeError(f"{cls.__name__} implements LanguageModel but not {missing}")
        unknown = sorted(set(cls.objectives) - set(OBJECTIVES))
        if unknown or not cls.objectives:
            raise TypeError(f"{cls.__name__}.objectives = {cls.objectives!r}: use some of {OBJECTIVES}")

    @property
    def max_sequence_length(self) -> int | None:
        """Longest sequence the model can process (prompt + generated); None: no limit."""
        return None

    def hidden_states(self, token_ids, training: bool = False):
        """(B, T) -> (B, T, H): features before the output head, at every position."""
        raise NotImplementedError

    def last_hidden_state(self, token_ids, training: bool = False):
        """(B, T) -> (B, 1, H): the features the last position's prediction reads."""
        return self.hidden_states(token_ids, training=training)[:, -1:, :]

    def output_logits(self, hidden):
        """(B, t, H) -> (B, t, V) float32 logits: the output head."""
        raise NotImplementedError

    def call(self, token_ids, training: bool = False):
        """(B, T) -> (B, T, V): next-token logits at every position."""
        return self.output_logits(self.hidden_states(token_ids, training=training))

    def call_last(self, token_ids, training: bool = False):
        """(B, T) -> (B, 1, V): logits of the last position only (last-token training, prefill).

        The head, the largest matmul at a large vocabulary, runs on one position instead of T.
        """
        return self.output_logits(self.last_hidden_state(token_ids, training=training))

    def build_cache(self, batch_size: int, max_length: int):
        """The state `call_with_cache` starts from (zeros); only when `has_cache`."""
        raise NotImplementedError(f"{type(self).__name__} has no cache (has_cache=False): "
                                  "re-encode the last max_len tokens with call_last instead")

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """Process token_ids (B, t) at positions index..: -> (logits (B, t, V), new cache)."""
        raise NotImplementedError(f"{type(self).__name__} has no cache (has_cache=False): "
                                  "re-encode the last max_len tokens with call_last instead")

    def seed_generation(self, seed: int | None) -> None:
        """Seed randomness the model draws itself during generation (a GAN's noise vector per
        sample, drawn in `build_cache`); the sampler's own seed is separate. Most families draw none."""

    def forward_flops_per_token(self) -> float:
        """Forward-pass FLOPs per predicted token under the family's first objective.

        Counts multiply-adds as 2 FLOPs on weights that multiply activations (lookups are free)
        and attention scores over the full window; training costs about 3x this.
        """
        raise NotImplementedError


def matmul_weights(layer: keras.layers.Layer) -> int:
    """Weights of `layer` that multiply activations (its kernels and matrices, not its biases)."""
    return sum(int(keras.ops.size(weight)) for weight in layer.weights
               if len(weight.shape) >= 2 and weight.name != "bias")
