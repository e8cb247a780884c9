"""A modern pre-norm causal decoder block: RMSNorm, rotary q/k, QK-norm, ReLU² MLP, zero-init outputs.

The recipe of recent small-GPT speedruns (modded-nanoGPT) and of Llama/Gemma, each part a switch so
an ablation can turn it off: `norm` "rms" | "layer"; `rotary` (False: the model adds learned
positions instead); `qk_norm`; `feed_forward` "relu2" | "swiglu" | "gelu"; `zero_init` (the
attention and MLP output projections start at zero, so every block starts as the identity; off
by default, as it measured worse here).
Every matmul weight is a 2-D Dense kernel without bias, so Muon (training_assets/compile.py)
orthogonalises each of them (keras_hub's attention keeps 3-D kernels, which Muon leaves to AdamW).
The key/value cache has keras_hub TransformerDecoder's layout, (B, 2, S, H, D), and `call` takes
its keyword arguments, so the model runs either block through one cache loop.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import keras_hub
from keras import ops

NORMS = ("rms", "layer")
FEED_FORWARDS = ("relu2", "swiglu", "gelu")


def normal(stddev: float) -> keras.initializers.Initializer:
    """GPT-2's initialisation: N(0, stddev)."""
    return keras.initializers.RandomNormal(stddev=stddev)


def norm_layer(kind: str, name: str) -> keras.layers.Layer:
    """RMSNorm (no mean, no offset: cheaper, as good) or LayerNorm over the last axis."""
    if kind == "rms":
        return keras.layers.RMSNormalization(epsilon=1e-6, name=name)
    return keras.layers.LayerNormalization(epsilon=1e-5, name=name)


def swiglu_width(ff_dim: int) -> int:
    """SwiGLU has three matrices instead of two: 2/3 of ff_dim keeps the parameter count."""
    return max(1, round(2 * ff_dim / 3))


def causal_attention(query, key, value, start):
    """Softmax attention of queries at positions start.. over keys at 0..S-1, causal.

    query (B, t, H, D), key/value (B, S, H, D) -> (B, t, H, D). Keys past a query's position
    (and a cache's unwritten zero rows) are masked out.
    """
    scale = 1.0 / math.sqrt(query.shape[-1])
    scores = ops.einsum("bthd,bshd->bhts", query, key)  # (B, H, t, S)
    scores = ops.cast(scores, "float32") * scale
    query_positions = ops.arange(ops.shape(query)[1]) + ops.cast(start, "int32")  # (t,)
    key_positions = ops.arange(ops.shape(key)[1])  # (S,)
    allowed = key_positions[None, :] <= query_positions[:, None]  # (t, S)
    scores = ops.where(allowed[None, None, :, :], scores, -1e9)
    weights = ops.cast(ops.softmax(scores, axis=-1), value.dtype)  # (B, H, t, S)
    return ops.einsum("bhts,bshd->bthd", weights, value)  # (B, t, H, D)


@keras.saving.register_keras_serializable(package="text_synthesis")
class ModernDecoderBlock(keras.layers.Layer):
    """x (B, t, E) -> x + attention(norm(x)) -> + MLP(norm(.)): a causal decoder block."""

    def __init__(self, hidden_dim: int, num_heads: int, ff_dim: int, dropout: float = 0.0,
                 norm: str = "rms", rotary: bool = True, qk_norm: bool = True,
                 feed_forward: str = "relu2", zero_init: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if norm not in NORMS or feed_forward not in FEED_FORWARDS:
            raise ValueError(f"norm={norm!r} (use {NORMS}), feed_forward={feed_forward!r} "
                             f"(use {FEED_FORWARDS})")
        self.hidden_dim, self.num_heads, self.ff_dim = int(hidden_dim), int(num_heads), int(ff_dim)
        self.dropout, self.norm, self.feed_forward = float(dropout), norm, feed_forward
        self.rotary, self.qk_norm, self.zero_init = bool(rotary), bool(qk_norm), bool(zero_init)
        self.head_dim = self.hidden_dim // self.num_heads
        if self.rotary and self.head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head size, got {self.head_dim} "
                             f"(hidden_dim={self.hidden_dim} / num_heads={self.num_heads})")
        width = self.num_heads * self.head_dim
        initial, output_initial = normal(0.02), ("zeros" if self.zero_init else normal(0.02))

        def dense(units: int, name: str, initializer: Any = initial) -> keras.layers.Dense:
            return keras.layers.Dense(units, use_bias=False, kernel_initializer=initializer, name=name)

        self.attention_norm = norm_layer(norm, "attention_norm")
        self.query, self.key, self.value = (dense(width, name) for name in ("query", "key", "value"))
        self.query_norm = keras.layers.RMSNormalization(epsilon=1e-6, name="query_norm") if qk_norm else None
        self.key_norm = keras.layers.RMSNormalization(epsilon=1e-6, name="key_norm") if qk_norm else None
        self.rotary_embedding = (keras_hub.layers.RotaryEmbedding(name="rotary_embedding")
                                 if self.rotary else None)
        self.attention_output = dense(self.hidden_dim, "attention_output", output_initial)
        self.attention_dropout = keras.layers.Dropout(self.dropout, name="attention_dropout")
        self.mlp_norm = norm_layer(norm, "mlp_norm")
        self.inner_dim = swiglu_width(self.ff_dim) if feed_forward == "swiglu" else self.ff_dim
        self.mlp_up = dense(self.inner_dim, "mlp_up")
        self.mlp_gate = dense(self.inner_dim, "mlp_gate") if feed_forward == "swiglu" else None
        self.mlp_down = dense(self.hidden_dim, "mlp_down", output_initial)
        self.mlp_dropout = keras.layers.Dropout(self.dropout, name="mlp_dropout")

    def build(self, input_shape: tuple) -> None:
        rows = tuple(input_shape[:-1])  # (B, T)
        self.attention_norm.build(input_shape)
        for projection in (self.query, self.key, self.value, self.mlp_up, self.mlp_gate):
            if projection is not None:
                projection.build(input_shape)
        for head_norm in (self.query_norm, self.key_norm):
            if head_norm is not None:
                head_norm.build((*rows, self.num_heads, self.head_dim))
        self.attention_output.build((*rows, self.num_heads * self.head_dim))
        self.mlp_norm.build(input_shape)
        self.mlp_down.build((*rows, self.inner_dim))
        self.built = True

    def _heads(self, x):
        return ops.reshape(x, (*ops.shape(x)[:-1], self.num_heads, self.head_dim))  # (B, t, H, D)

    def _attention(self, x, cache, index):
        """x (B, t, E) at positions index..; cache (B, 2, S, H, D) or None."""
        query = self._heads(self.query(x))  # (B, t, H, D)
        key = self._heads(self.key(x))
        value = self._heads(self.value(x))
        if self.qk_norm:
            query, key = self.query_norm(query), self.key_norm(key)
        if self.rotary:  # positions are absolute, so cached keys stay valid
            query = self.rotary_embedding(query, start_index=index)
            key = self.rotary_embedding(key, start_index=index)
        if cache is not None:
            start = [0, index, 0, 0]
            key = ops.slice_update(cache[:, 0, ...], start, key)  # (B, S, H, D)
            value = ops.slice_update(cache[:, 1, ...], start, value)
            cache = ops.stack((key, value), axis=1)  # (B, 2, S, H, D)
        mixed = causal_attention(query, key, value, index)  # (B, t, H, D)
        mixed = ops.reshape(mixed, (*ops.shape(mixed)[:-2], self.num_heads * self.head_dim))
        return self.attention_output(mixed), cache  # (B, t, E)

    def _mlp(self, x):
        up = self.mlp_up(x)  # (B, t, F)
        if self.feed_forward == "relu2":
            hidden = ops.square(ops.relu(up))
        elif self.feed_forward == "swiglu":
            hidden = ops.silu(self.mlp_gate(x)) * up
        else:
            hidden = ops.gelu(up)
        return self.mlp_down(hidden)  # (B, t, E)

    def call(self, x, self_attention_cache=None, self_attention_cache_update_index=0,
             training: bool = False):
        """x (B, t, E) -> (B, t, E); with a cache also the updated cache (B, 2, S, H, D)."""
        attended, cache = self._attention(self.attention_norm(x), self_attention_cache,
                                          self_attention_cache_update_index)
        x = x + self.attention_dropout(attended, training=training)
        x = x + self.mlp_dropout(self._mlp(self.mlp_norm(x)), training=training)
        return x if cache is None else (x, cache)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "hidden_dim": self.hidden_dim, "num_heads": self.num_heads,
                "ff_dim": self.ff_dim, "dropout": self.dropout, "norm": self.norm,
                "rotary": self.rotary, "qk_norm": self.qk_norm, "feed_forward": self.feed_forward,
                "zero_init": self.zero_init}
