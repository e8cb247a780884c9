"""A bidirectional LSTM encoder over the context window, predicting the token after the window.

Stacked `Bidirectional(LSTM)` layers read the window both ways; the window's summary is the
forward state after its last token joined with the backward state after its first token (what
`Bidirectional(LSTM(return_sequences=False))` returns), then the output head. At earlier positions
the features join the forward state there with the same backward summary, which has read the
whole window: only the last position is a valid prediction, so the family trains under
objective "last_token" only. It has no cache: generation re-encodes the last max_len tokens.
"""

from __future__ import annotations

from typing import Any, Mapping

import keras
import keras_tuner as kt
from keras import ops

from model_architectures.bilstm_space import BILSTM_OBJECTIVES, BILSTM_SPACE
from model_architectures.contract import LanguageModel, matmul_weights
from model_architectures.recurrent import head_logits, head_weights
from model_architectures.saving import RestoresTrainingState
from model_architectures.search_space import declare


@keras.saving.register_keras_serializable(package="text_synthesis")
class BidirectionalLSTMLanguageModel(RestoresTrainingState, LanguageModel):
    """Token ids (B, T) -> logits (B, T, V), only the last position predicting the next token."""

    objectives = BILSTM_OBJECTIVES
    has_cache = False

    def __init__(self, vocab_size: int, max_len: int, embedding_dim: int = 128, units: int = 200,
                 num_layers: int = 1, dropout: float = 0.2, tie_embeddings: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size, self.max_len = int(vocab_size), int(max_len)
        self.embedding_dim, self.units, self.num_layers = int(embedding_dim), int(units), int(num_layers)
        self.dropout, self.tie_embeddings = float(dropout), bool(tie_embeddings)

        self.token_embedding = keras.layers.ReversibleEmbedding(
            self.vocab_size, self.embedding_dim, tie_weights=True, reverse_dtype="float32",
            name="token_embedding")
        self.encoder_layers = [
            keras.layers.Bidirectional(keras.layers.LSTM(self.units, return_sequences=True),
                                       merge_mode="concat", name=f"bilstm_{index}")
            for index in range(self.num_layers)
        ]
        self.dropouts = [keras.layers.Dropout(self.dropout, name=f"dropout_{index}")
                         for index in range(self.num_layers + 1)]
        width = 2 * self.units
        if self.tie_embeddings:
            self.output_projection = (keras.layers.Dense(self.embedding_dim, name="output_projection")
                                      if width != self.embedding_dim else None)
            self.output_layer = None
        else:
            self.output_projection = None
            self.output_layer = keras.layers.Dense(self.vocab_size, dtype="float32", name="logits")

    def build(self, input_shape: tuple) -> None:
        batch, length = input_shape[0], input_shape[1]
        self.token_embedding.build((batch, length))
        width = self.embedding_dim
        for layer in self.encoder_layers:
            layer.build((batch, length, width))
            width = 2 * self.units
        if self.output_projection is not None:
            self.output_projection.build((batch, length, width))
        if self.output_layer is not None:
            self.output_layer.build((batch, length, width))
        self.built = True

    def _encode(self, token_ids, training: bool):
        x = self.dropouts[0](self.token_embedding(token_ids), training=training)  # (B, T, E)
        for layer, dropout in zip(self.encoder_layers, self.dropouts[1:]):
            x = dropout(layer(x, training=training), training=training)  # (B, T, 2U)
        return x  # [..., :U] forward states, [..., U:] backward states (aligned to positions)

    def hidden_states(self, token_ids, training: bool = False):
        x = self._encode(token_ids, training)
        backward_summary = ops.broadcast_to(x[:, :1, self.units:], ops.shape(x[:, :, self.units:]))
        return ops.concatenate([x[:, :, : self.units], backward_summary], axis=-1)  # (B, T, 2U)

    def last_hidden_state(self, token_ids, training: bool = False):
        x = self._encode(token_ids, training)
        return ops.concatenate([x[:, -1:, : self.units], x[:, :1, self.units:]], axis=-1)  # (B, 1, 2U)

    def output_logits(self, hidden):
        return head_logits(self, hidden)

    def forward_flops_per_token(self) -> float:
        """One prediction encodes the whole window (both directions, every layer), then the head."""
        encoder = sum(matmul_weights(layer) for layer in self.encoder_layers)
        return 2.0 * (self.max_len * encoder + head_weights(self))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "vocab_size": self.vocab_size, "max_len": self.max_len,
            "embedding_dim": self.embedding_dim, "units": self.units,
            "num_layers": self.num_layers, "dropout": self.dropout,
            "tie_embeddings": self.tie_embeddings,
        })
        return config


def build_bilstm(hp: kt.HyperParameters, vocab_size: int, max_len: int,
                 overrides: Mapping[str, Any] | None = None) -> keras.Model:
    """Declare the bidirectional LSTM's search space on `hp` and return an uncompiled model."""
    values = declare(hp, "bilstm", BILSTM_SPACE, overrides)
    return BidirectionalLSTMLanguageModel(
        vocab_size=vocab_size, max_len=max_len, embedding_dim=values["embedding_dim"],
        units=values["units"], num_layers=values["num_layers"], dropout=values["dropout"],
        tie_embeddings=values["tie_embeddings"], name="bilstm_language_model")
