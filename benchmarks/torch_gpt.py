"""A PyTorch GPT of the project Transformer's exact shape, for the throughput comparison only.

nanoGPT's model.py, reduced to what TransformerLanguageModel has: learned positions, pre-LayerNorm
blocks (fused q/k/v projection with bias, causal scaled-dot-product attention, exact-GELU MLP),
a final LayerNorm and logits through the tied token embedding (no bias). benchmarks/throughput.py
loads a Keras model's weights into it, so both frameworks start from the same numbers and their losses
after equal steps on equal batches can be compared directly. The training step mirrors
training_assets/compile.py: AdamW (no decay on biases and LayerNorm), each gradient clipped to
norm 1 on its own (Keras `clipnorm`), linear warmup then cosine decay to 10% of the peak.

Needs the benchmark-only extra (requirements-bench.txt): `pip install torch==2.13.0`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

PAD_ID = 0  # [PAD] targets are ignored by the loss, as in the Keras masked loss


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


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean NLL over non-[PAD] targets."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=PAD_ID)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, final_fraction: float = 0.1) -> float:
    """Multiplier of the peak rate: Keras CosineDecay(warmup_target=peak, alpha=final_fraction)."""
    if step < warmup_steps:
        return step / warmup_steps
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress)) + final_fraction


class Trainer:
    """AdamW + per-tensor clipping + warmup-cosine, one `step(inputs, targets)` per batch."""

    def __init__(self, model: GPT, learning_rate: float, total_steps: int, warmup_steps: int,
                 weight_decay: float = 0.01, clipnorm: float = 1.0, epsilon: float = 1e-7) -> None:
        self.model, self.clipnorm = model, clipnorm
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=learning_rate, betas=(0.9, 0.999), eps=epsilon, foreach=True)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_cosine(step, warmup_steps, total_steps))
        self.parameters = list(model.parameters())

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.model.train()
        loss = masked_cross_entropy(self.model(inputs), targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self.parameters]
        norms = torch._foreach_norm(grads)  # each gradient on its own, like Keras clipnorm
        torch._foreach_mul_(grads, [torch.clamp(self.clipnorm / (n + 1e-12), max=1.0) for n in norms])
        self.optimizer.step()
        self.schedule.step()
        return loss.detach()

    @torch.no_grad()
    def mean_loss(self, rows: np.ndarray, batch_size: int) -> float:
        """Mean NLL per non-[PAD] target over (R, T+1) rows."""
        self.model.eval()
        total, count = 0.0, 0
        for start in range(0, len(rows), batch_size):
            batch = torch.from_numpy(rows[start:start + batch_size].astype(np.int64))
            logits = self.model(batch[:, :-1])
            targets = batch[:, 1:]
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                     ignore_index=PAD_ID, reduction="sum").item()
            count += int((targets != PAD_ID).sum())
        return total / max(count, 1)
