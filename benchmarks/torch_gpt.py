"""A PyTorch GPT of the project Transformer's exact shape, for the throughput comparison only.

nanoGPT's model.py, reduced to what TransformerLanguageModel has: learned positions, pre-LayerNorm
blocks (fused q/k/v projection with bias, causal scaled-dot-product attention, exact-GELU MLP),
a final LayerNorm and logits through the tied token embedding (no bias). benchmarks/throughput.py
loads a Keras model's weights into it, so both frameworks start from the same numbers and their losses
after equal steps on equal batches can be compared directly. The training step is
benchmarks/torch_training.py's Trainer, which mirrors training_assets/compile.py.

Needs the benchmark-only extra (requirements-bench.txt): `pip install torch==2.13.0`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F



@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    max_len: int = 64
    num_layers: int = 4
    num_heads: int = 4
    embedding_dim: int = 128
    ff_dim: int = 512
    dropout: float = 0.0
    layer_norm_epsilon: float = 1e-5


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.num_heads, self.dropout = config.num_heads, config.dropout
        self.qkv = nn.Linear(config.embedding_dim, 3 * config.embedding_dim)  # fused q, k, v
        self.projection = nn.Linear(config.embedding_dim, config.embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)  # each (B, T, E)
        heads = lambda t: t.view(batch, length, self.num_heads, -1).transpose(1, 2)  # noqa: E731
        y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, T, D)
        return self.projection(y.transpose(1, 2).reshape(batch, length, width))  # (B, T, E)


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.embedding_dim, eps=config.layer_norm_epsilon)
        self.attention = CausalSelfAttention(config)
        self.feedforward_norm = nn.LayerNorm(config.embedding_dim, eps=config.layer_norm_epsilon)
        self.intermediate = nn.Linear(config.embedding_dim, config.ff_dim)
        self.output = nn.Linear(config.ff_dim, config.embedding_dim)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x)))
        hidden = F.gelu(self.intermediate(self.feedforward_norm(x)))  # (B, T, F) exact GELU
        return x + self.dropout(self.output(hidden))


class GPT(nn.Module):
    """Token ids (B, T) -> logits (B, T, V)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.position_embedding = nn.Embedding(config.max_len, config.embedding_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.embedding_dim, eps=config.layer_norm_epsilon)
        for name, parameter in self.named_parameters():  # the Keras model's initialisers
            if parameter.dim() >= 2:
                nn.init.normal_(parameter, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(parameter)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(token_ids.shape[1], device=token_ids.device)
        x = self.dropout(self.token_embedding(token_ids) + self.position_embedding(positions))  # (B, T, E)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x) @ self.token_embedding.weight.T  # (B, T, V), tied
