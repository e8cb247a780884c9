"""A pre-norm causal Transformer decoder: the GPT-2 block from keras-hub, or a modern one.

`block="gpt2"` (the default, and what checkpoints saved without a `block` key hold): learned
positions, N `TransformerDecoder(normalize_first=True)` blocks with GELU feed-forward and a
key/value cache, a final LayerNorm. `block="modern"`: model_architectures/modern_block.py
(RMSNorm, rotary q/k, QK-norm, ReLU² MLP, zero-initialised output projections, each a switch),
with learned positions only when rotary is off. Either way a `ReversibleEmbedding` output (tied
by default) and optional logit soft-capping. Token and position embeddings are separate layers,
as in keras_hub's GPT2Backbone, so the reversed (output) matmul can run in float32 under mixed
precision.
"""

from __future__ import annotations

from typing import Any, Mapping

import keras
import keras_hub
import keras_tuner as kt
from keras import ops

from model_architectures.contract import LanguageModel, matmul_weights
from model_architectures.modern_block import ModernDecoderBlock, norm_layer, normal
from model_architectures.saving import RestoresTrainingState
from model_architectures.search_space import declare
from model_architectures.transformer_space import TRANSFORMER_SPACE

BLOCKS = ("gpt2", "modern")
# the recipe switches of transformer_space, passed to the model as they are
RECIPE_KEYS = ("block", "norm", "rotary", "qk_norm", "feed_forward", "zero_init", "logit_softcap")


def gpt_blocks(count: int, ff_dim: int, num_heads: int, dropout: float) -> list:
    """`count` GPT-2 style causal decoder blocks (pre-norm, GELU), named block_0.. as checkpoints
    expect."""
    return [keras_hub.layers.TransformerDecoder(
        intermediate_dim=ff_dim, num_heads=num_heads, dropout=dropout, activation="gelu",
        normalize_first=True, layer_norm_epsilon=1e-5, kernel_initializer=normal(0.02),
        name=f"block_{index}") for index in range(count)]


def blocks_with_cache(blocks: list, x, cache, cache_update_index):
    """Run decoder blocks on x (B, t, E) at positions index.., reading and writing their
    key/value caches (B, L, 2, S, H, D); returns the hidden states and the new cache."""
    caches = []
    for index, block in enumerate(blocks):
        x, layer_cache = block(x, self_attention_cache=cache[:, index, ...],
                               self_attention_cache_update_index=cache_update_index)
        caches.append(layer_cache)  # (B, 2, S, H, D)
    return x, ops.stack(caches, axis=1)


@keras.saving.register_keras_serializable(package="text_synthesis")
class TransformerLanguageModel(RestoresTrainingState, LanguageModel):
    """Token ids (B, T<=max_len) -> next-token logits (B, T, V), causal self-attention."""

    def __init__(self, vocab_size: int, max_len: int, embedding_dim: int = 128, num_layers: int = 2,
                 num_heads: int = 4, ff_dim: int = 256, dropout: float = 0.2,
                 tie_embeddings: bool = True, block: str = "gpt2", norm: str = "rms",
                 rotary: bool = True, qk_norm: bool = True, feed_forward: str = "relu2",
                 zero_init: bool = False, logit_softcap: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if block not in BLOCKS:
            raise ValueError(f"block={block!r}: use one of {BLOCKS}")
        self.vocab_size, self.max_len = int(vocab_size), int(max_len)
        self.embedding_dim, self.num_layers = int(embedding_dim), int(num_layers)
        self.num_heads, self.ff_dim = int(num_heads), int(ff_dim)
        self.dropout, self.tie_embeddings = float(dropout), bool(tie_embeddings)
        if self.embedding_dim < self.num_heads:
            raise ValueError(f"embedding_dim={self.embedding_dim} must be >= num_heads={self.num_heads}")
        self.head_dim = self.embedding_dim // self.num_heads
        self.block, self.logit_softcap = block, float(logit_softcap)
        # the modern block's switches (stored for get_config; a gpt2 block ignores them)
        self.modern = {"norm": norm, "rotary": bool(rotary), "qk_norm": bool(qk_norm),
                       "feed_forward": feed_forward, "zero_init": bool(zero_init)}
        learned_positions = block == "gpt2" or not self.modern["rotary"]

        self.token_embedding = keras.layers.ReversibleEmbedding(
            self.vocab_size, self.embedding_dim, tie_weights=self.tie_embeddings,
            embeddings_initializer=normal(0.02), reverse_dtype="float32", name="token_embedding")
        self.position_embedding = keras_hub.layers.PositionEmbedding(
            sequence_length=self.max_len, initializer=normal(0.02),
            name="position_embedding") if learned_positions else None
        self.embedding_dropout = keras.layers.Dropout(self.dropout, name="embedding_dropout")
        if block == "gpt2":
            self.blocks = gpt_blocks(self.num_layers, self.ff_dim, self.num_heads, self.dropout)
            self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")
        else:
            self.blocks = [ModernDecoderBlock(self.embedding_dim, self.num_heads, self.ff_dim,
                                              self.dropout, **self.modern, name=f"block_{index}")
                           for index in range(self.num_layers)]
            self.final_norm = norm_layer(norm, "final_norm")

    @property
    def max_sequence_length(self) -> int | None:
        """Learned positions exist only for 0..max_len-1; rotary ones are kept to the trained
        window too (longer contexts were never seen in training)."""
        return self.max_len

    def build(self, input_shape: tuple) -> None:
        batch, length = input_shape[0], input_shape[1]
        hidden_shape = (batch, length, self.embedding_dim)
        self.token_embedding.build((batch, length))
        if self.position_embedding is not None:
            self.position_embedding.build(hidden_shape)
        for block in self.blocks:
            block.build(hidden_shape)
        self.final_norm.build(hidden_shape)
        self.built = True

    def _embed(self, token_ids, start_index=0, training: bool = False):
        tokens = self.token_embedding(token_ids)  # (B, T, E)
        if self.position_embedding is not None:  # rotary blocks rotate q and k instead
            tokens = tokens + self.position_embedding(tokens, start_index=start_index)  # (B, T, E)
        return self.embedding_dropout(tokens, training=training)

    def output_logits(self, hidden):
        x = self.final_norm(hidden)  # (B, t, E)
        logits = ops.cast(self.token_embedding(x, reverse=True), "float32")  # (B, t, V)
        if self.logit_softcap > 0:  # smooth bound |logit| < cap (Gemma 2): no runaway logits
            logits = self.logit_softcap * ops.tanh(logits / self.logit_softcap)
        return logits

    def hidden_states(self, token_ids, training: bool = False):
        x = self._embed(token_ids, training=training)
        for block in self.blocks:
            x = block(x, training=training)  # causal mask applied by the decoder block
        return x  # (B, T, E), before the final LayerNorm (part of the head)

    def forward_flops_per_token(self) -> float:
        """Block and output matmuls, plus attention scores and mixing over the full window
        (QK^T and AV: 2 x 2 x T x E per layer, as PaLM's MFU counts them)."""
        weights = sum(matmul_weights(block) for block in self.blocks)
        output = self.vocab_size * self.embedding_dim  # the reversed (or untied) embedding
        attention = 4.0 * self.num_layers * self.max_len * self.embedding_dim
        return 2.0 * (weights + output) + attention

    def build_cache(self, batch_size: int, max_length: int):
        """Empty key/value cache: (B, num_layers, 2, max_length, num_heads, head_dim)."""
        # A traced (tensor) length cannot be checked here: its caller clips it to max_len.
        if isinstance(max_length, int) and max_length > self.max_len:
            raise ValueError(f"max_length={max_length} exceeds the model's learned positions "
                             f"(max_len={self.max_len})")
        shape = (batch_size, self.num_layers, 2, max_length, self.num_heads, self.head_dim)
        return ops.zeros(shape, dtype=self.compute_dtype)

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """Process token_ids (B, t) at positions index.., writing their keys/values into the cache."""
        x = self._embed(token_ids, start_index=cache_update_index)  # (B, t, E)
        x, cache = blocks_with_cache(self.blocks, x, cache, cache_update_index)
        return self.output_logits(x), cache  # (B, t, V), (B, L, 2, S, H, D)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "vocab_size": self.vocab_size, "max_len": self.max_len,
            "embedding_dim": self.embedding_dim, "num_layers": self.num_layers,
            "num_heads": self.num_heads, "ff_dim": self.ff_dim, "dropout": self.dropout,
            "tie_embeddings": self.tie_embeddings, "block": self.block,
            "logit_softcap": self.logit_softcap, **self.modern,
        })
        return config


def build_transformer(hp: kt.HyperParameters, vocab_size: int, max_len: int,
                      overrides: Mapping[str, Any] | None = None) -> keras.Model:
    """Declare the Transformer search space on `hp` and return an uncompiled model."""
    values = declare(hp, "transformer", TRANSFORMER_SPACE, overrides)
    return TransformerLanguageModel(
        vocab_size=vocab_size, max_len=max_len, embedding_dim=values["embedding_dim"],
        num_layers=values["num_layers"], num_heads=values["num_heads"], ff_dim=values["ff_dim"],
        dropout=values["dropout"], tie_embeddings=values["tie_embeddings"],
        **{name: values[name] for name in RECIPE_KEYS}, name="transformer_language_model")
