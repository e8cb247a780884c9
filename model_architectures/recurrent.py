"""LSTM, GRU and SimpleRNN language models: one builder, stacked layers, optional tied embeddings.

Recurrent layers keep Keras' cuDNN-compatible arguments (tanh/sigmoid, no recurrent dropout, no
unroll, bias, reset_after for GRU) so GPUs use cuDNN; dropout sits between layers instead. Off
GPUs the LSTM and GRU run fused_recurrent's loop (one matmul per step each way; the weights are
Keras' own, so checkpoints are the same either way).
"""

from __future__ import annotations

from typing import Any, Mapping

import keras
import keras_tuner as kt
from keras import ops

from model_architectures.contract import LanguageModel, matmul_weights
from model_architectures.fused_recurrent import FusedGRU, FusedLSTM
from model_architectures.recurrent_space import RECURRENT_SPACE
from model_architectures.saving import RestoresTrainingState
from model_architectures.search_space import declare

RECURRENT_CELLS: dict[str, type[keras.layers.Layer]] = {
    "lstm": FusedLSTM,
    "gru": FusedGRU,
    "simple_rnn": keras.layers.SimpleRNN,
}
STATES_PER_LAYER = {"lstm": 2, "gru": 1, "simple_rnn": 1}  # LSTM carries (h, c)


@keras.saving.register_keras_serializable(package="text_synthesis")
class RecurrentLanguageModel(RestoresTrainingState, LanguageModel):
    """Token ids (B, T) -> next-token logits (B, T, V) through stacked LSTM/GRU/SimpleRNN layers."""

    def __init__(self, vocab_size: int, max_len: int, cell: str = "lstm", embedding_dim: int = 128,
                 units: int = 200, num_layers: int = 1, dropout: float = 0.2,
                 tie_embeddings: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if cell not in RECURRENT_CELLS:
            raise ValueError(f"cell={cell!r}: use one of {sorted(RECURRENT_CELLS)}")
        self.vocab_size, self.max_len, self.cell = int(vocab_size), int(max_len), cell
        self.embedding_dim, self.units, self.num_layers = int(embedding_dim), int(units), int(num_layers)
        self.dropout, self.tie_embeddings = float(dropout), bool(tie_embeddings)
        self.states_per_layer = STATES_PER_LAYER[cell]

        # reverse_dtype float32: tied logits stay float32 under mixed precision (stable loss).
        self.token_embedding = keras.layers.ReversibleEmbedding(
            self.vocab_size, self.embedding_dim, tie_weights=True, reverse_dtype="float32",
            name="token_embedding")
        self.recurrent_layers = [
            RECURRENT_CELLS[cell](self.units, return_sequences=True, return_state=True,
                                  name=f"{cell}_{index}")
            for index in range(self.num_layers)
        ]
        self.dropouts = [keras.layers.Dropout(self.dropout, name=f"dropout_{index}")
                         for index in range(self.num_layers + 1)]
        if self.tie_embeddings:
            # Tied output reads the embedding matrix, so hidden states must have embedding_dim.
            self.output_projection = (keras.layers.Dense(self.embedding_dim, name="output_projection")
                                      if self.units != self.embedding_dim else None)
            self.output_layer = None
        else:
            self.output_projection = None
            self.output_layer = keras.layers.Dense(self.vocab_size, dtype="float32", name="logits")

    @property
    def max_sequence_length(self) -> int | None:
        """No positional limit: carried state lets a recurrent model generate past max_len."""
        return None

    def build(self, input_shape: tuple) -> None:
        batch, length = input_shape[0], input_shape[1]
        self.token_embedding.build((batch, length))
        width = self.embedding_dim
        for layer in self.recurrent_layers:
            layer.build((batch, length, width))
            width = self.units
        if self.output_projection is not None:
            self.output_projection.build((batch, length, self.units))
        if self.output_layer is not None:
            self.output_layer.build((batch, length, self.units))
        self.built = True

    def hidden_states(self, token_ids, training: bool = False):
        x = self.token_embedding(token_ids)  # (B, T, E)
        x = self.dropouts[0](x, training=training)
        for layer, dropout in zip(self.recurrent_layers, self.dropouts[1:]):
            x = layer(x, training=training)[0]  # (B, T, units); states unused here
            x = dropout(x, training=training)
        return x  # (B, T, units)

    def output_logits(self, hidden):
        return head_logits(self, hidden)

    def forward_flops_per_token(self) -> float:
        """Each token runs every recurrent layer once, then the head."""
        per_token = sum(matmul_weights(layer) for layer in self.recurrent_layers)
        return 2.0 * (per_token + head_weights(self))

    def build_cache(self, batch_size: int, max_length: int):
        """Zero states for every layer: (B, num_layers, states_per_layer, units).

        `max_length` is unused (state size does not grow), kept for a common signature.
        """
        shape = (batch_size, self.num_layers, self.states_per_layer, self.units)
        return ops.zeros(shape, dtype=self.compute_dtype)

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """Advance the carried state over token_ids (B, t): -> (logits (B, t, V), new cache).

        `cache_update_index` is unused: the state already summarises every earlier token.
        """
        x = self.token_embedding(token_ids)  # (B, t, E)
        new_states = []
        for index, layer in enumerate(self.recurrent_layers):
            states = [cache[:, index, slot] for slot in range(self.states_per_layer)]  # each (B, units)
            outputs = layer(x, initial_state=states)
            x = outputs[0]  # (B, t, units)
            new_states.append(ops.stack(list(outputs[1:]), axis=1))  # (B, S, units)
        cache = ops.cast(ops.stack(new_states, axis=1), cache.dtype)  # (B, L, S, units)
        return self.output_logits(x), cache

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "vocab_size": self.vocab_size, "max_len": self.max_len, "cell": self.cell,
            "embedding_dim": self.embedding_dim, "units": self.units,
            "num_layers": self.num_layers, "dropout": self.dropout,
            "tie_embeddings": self.tie_embeddings,
        })
        return config


def head_logits(model: keras.Model, hidden):
    """The recurrent encoders' head: an untied Dense, or the tied embedding matrix (after a
    projection when the hidden width differs from the embedding's). Logits stay float32."""
    if model.output_layer is not None:
        return model.output_layer(hidden)  # (B, t, V)
    if model.output_projection is not None:
        hidden = model.output_projection(hidden)  # (B, t, E)
    return ops.cast(model.token_embedding(hidden, reverse=True), "float32")  # (B, t, V)


def head_weights(model: keras.Model) -> int:
    """Weights of the output head: the vocabulary matrix (tied or not) and any projection."""
    head = model.output_layer if model.output_layer is not None else model.token_embedding
    projection = model.output_projection
    return matmul_weights(head) + (matmul_weights(projection) if projection is not None else 0)


def build_recurrent(hp: kt.HyperParameters, vocab_size: int, max_len: int,
                    overrides: Mapping[str, Any] | None = None, *, cell: str) -> keras.Model:
    """Declare the recurrent search space on `hp` and return an uncompiled model for `cell`."""
    values = declare(hp, cell, RECURRENT_SPACE, overrides)
    return RecurrentLanguageModel(
        vocab_size=vocab_size, max_len=max_len, cell=cell,
        embedding_dim=values["embedding_dim"], units=values["units"],
        num_layers=values["num_layers"], dropout=values["dropout"],
        tie_embeddings=values["tie_embeddings"], name=f"{cell}_language_model")
