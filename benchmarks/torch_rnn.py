"""PyTorch LSTM and GRU language models of the project's RecurrentLanguageModel layout, for the
Keras-vs-PyTorch throughput comparison only (benchmarks/throughput.py --recurrent).

Layout (model_architectures/recurrent.py): embedding E -> dropout -> [LSTM/GRU -> dropout] per
layer -> Linear(units -> E) when units != E -> logits through the tied embedding, no output bias.
`state_from_keras` maps the Keras model's weights in, so both frameworks start from the same
numbers; training uses benchmarks/torch_training.py's Trainer.

Gate layouts (both frameworks keep one (in, G*units) block per matrix):
- LSTM: Keras i, f, c, o == PyTorch i, f, g, o; Keras has one bias, PyTorch two (input and
  recurrent, summed), so the Keras bias goes to bias_ih and bias_hh stays zero and frozen (two
  trained copies would give the bias two Adam steps per step where Keras gives one).
- GRU (Keras reset_after=True, PyTorch's only form): Keras z, r, h against PyTorch r, z, n; the
  Keras bias (2, 3*units) holds the input bias then the recurrent one, PyTorch's bias_ih, bias_hh.
What differs: dropout masks come from each framework's own generator.

Needs the benchmark-only extra (requirements-bench.txt): `pip install torch==2.13.0`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch import nn

CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}
KERAS_TO_TORCH_GATES = {"lstm": [0, 1, 2, 3], "gru": [1, 0, 2]}  # torch gate k = Keras gate order[k]


@dataclass(frozen=True)
class RNNConfig:
    vocab_size: int
    cell: str = "lstm"
    embedding_dim: int = 128
    units: int = 200
    num_layers: int = 1
    dropout: float = 0.4


class RecurrentLM(nn.Module):
    """Token ids (B, T) -> logits (B, T, V)."""

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        widths = [config.embedding_dim] + [config.units] * config.num_layers
        # one module per layer, like the Keras stack, so dropout follows every layer (also the last)
        self.recurrent = nn.ModuleList(CELLS[config.cell](widths[i], config.units, batch_first=True)
                                       for i in range(config.num_layers))
        self.dropouts = nn.ModuleList(nn.Dropout(config.dropout) for _ in range(config.num_layers + 1))
        self.projection = (nn.Linear(config.units, config.embedding_dim)
                           if config.units != config.embedding_dim else None)
        if config.cell == "lstm":  # Keras' LSTM has one bias: bias_ih carries it (see above)
            for layer in self.recurrent:
                nn.init.zeros_(layer.bias_hh_l0)
                layer.bias_hh_l0.requires_grad_(False)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        x = self.dropouts[0](self.token_embedding(token_ids))  # (B, T, E)
        for layer, dropout in zip(self.recurrent, self.dropouts[1:]):
            x = dropout(layer(x)[0])  # (B, T, units)
        if self.projection is not None:
            x = self.projection(x)  # (B, T, E)
        return x @ self.token_embedding.weight.T  # (B, T, V), tied


def _torch_gates(matrix: np.ndarray, cell: str) -> np.ndarray:
    """Keras (..., G*units) gate blocks in PyTorch's gate order, still (..., G*units)."""
    blocks = np.split(matrix, len(KERAS_TO_TORCH_GATES[cell]), axis=-1)
    return np.concatenate([blocks[k] for k in KERAS_TO_TORCH_GATES[cell]], axis=-1)


def state_from_keras(arrays: Mapping[str, np.ndarray], config: RNNConfig) -> dict[str, torch.Tensor]:
    """RecurrentLM's state_dict from the Keras model's arrays (benchmarks.recurrent_reference's
    `keras_recurrent_variables` names: embedding, layer<i>.kernel/recurrent_kernel/bias, projection.*)."""
    state = {"token_embedding.weight": arrays["embedding"]}  # (V, E) in both
    for index in range(config.num_layers):
        prefix, keras = f"recurrent.{index}.", f"layer{index}."
        state[prefix + "weight_ih_l0"] = _torch_gates(arrays[keras + "kernel"], config.cell).T  # (G*u, in)
        state[prefix + "weight_hh_l0"] = _torch_gates(arrays[keras + "recurrent_kernel"], config.cell).T
        bias = arrays[keras + "bias"]  # LSTM (4u,), GRU (2, 3u): input row, recurrent row
        if config.cell == "gru":
            state[prefix + "bias_ih_l0"] = _torch_gates(bias[0], "gru")
            state[prefix + "bias_hh_l0"] = _torch_gates(bias[1], "gru")
        else:
            state[prefix + "bias_ih_l0"] = _torch_gates(bias, config.cell)
            state[prefix + "bias_hh_l0"] = np.zeros_like(bias)
    if config.units != config.embedding_dim:
        state["projection.weight"] = arrays["projection.kernel"].T  # (E, units)
        state["projection.bias"] = arrays["projection.bias"]
    return {key: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
            for key, value in state.items()}
