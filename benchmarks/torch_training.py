"""The PyTorch references' training step, shared by benchmarks/torch_gpt.py and torch_rnn.py.

It mirrors training_assets/compile.py: AdamW (no decay on biases and norms, i.e. on tensors of
fewer than two dimensions; epsilon where Keras adds it, which matters for tiny gradients), each
gradient clipped to norm 1 on its own (Keras `clipnorm`), linear
warmup then cosine decay to 10% of the peak, whose end can move like WarmupCosineDecay.fit_to_steps;
and `train_for_seconds` fits that end to a wall-clock budget as training_assets.callbacks'
ScheduleToTimeBudget does, so both frameworks decay over the steps their own speed allows.

Needs the benchmark-only extra (requirements-bench.txt): `pip install torch==2.13.0`.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

PAD_ID = 0  # [PAD] targets are ignored by the loss, as in the Keras masked loss
BETA_2 = 0.999  # Adam's second-moment decay, Keras' default
SCHEDULE_EVERY = 16  # steps between two budget estimates (ScheduleToTimeBudget's `every`)


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean NLL over non-[PAD] targets: logits (B, T, V), targets (B, T)."""
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

    def __init__(self, model: nn.Module, learning_rate: float, total_steps: int, warmup_steps: int,
                 weight_decay: float = 0.01, clipnorm: float = 1.0, epsilon: float = 1e-7) -> None:
        self.model, self.clipnorm, self.epsilon = model, clipnorm, epsilon
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)
        self.planned_steps = self.total_steps  # fit_to_steps never ends the decay later
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in self.parameters if p.dim() >= 2]
        no_decay = [p for p in self.parameters if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=learning_rate, betas=(0.9, BETA_2), eps=epsilon, foreach=True)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(   # reads total_steps at every step
            self.optimizer, lambda step: warmup_cosine(step, self.warmup_steps, self.total_steps))
        self.steps_done = 0

    def fit_to_steps(self, total_steps: int) -> None:
        """End the decay at `total_steps` (warmup unchanged), like WarmupCosineDecay.fit_to_steps."""
        self.total_steps = max(int(total_steps), self.warmup_steps + 1)

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One optimizer step on inputs and targets (B, T); returns the batch loss."""
        self.model.train()
        loss = masked_cross_entropy(self.model(inputs), targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self.parameters]
        norms = torch._foreach_norm(grads)  # each gradient on its own, like Keras clipnorm
        torch._foreach_mul_(grads, [torch.clamp(self.clipnorm / (n + 1e-12), max=1.0) for n in norms])
        for group in self.optimizer.param_groups:  # Keras adds epsilon before the bias correction
            group["eps"] = self.epsilon / math.sqrt(1 - BETA_2 ** (self.steps_done + 1))
        self.optimizer.step()
        self.schedule.step()
        self.steps_done += 1
        return loss.detach()

    @torch.no_grad()
    def mean_loss(self, rows: np.ndarray, batch_size: int) -> float:
        """Mean NLL per non-[PAD] target over (R, T+1) rows."""
        self.model.eval()
        total, count = 0.0, 0
        for start in range(0, len(rows), batch_size):
            batch = torch.from_numpy(rows[start:start + batch_size].astype(np.int64))
            logits = self.model(batch[:, :-1])  # (b, T, V)
            targets = batch[:, 1:]
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                     ignore_index=PAD_ID, reduction="sum").item()
            count += int((targets != PAD_ID).sum())
        return total / max(count, 1)


def train_for_seconds(trainer: Trainer, batch_at: Callable[[int], torch.Tensor], seconds: float,
                      max_steps: int) -> tuple[list[float], list[float]]:
    """Train on batch_at(0), batch_at(1), ... (rows (B, T+1)) until `seconds` of wall time pass.

    As ScheduleToTimeBudget: every SCHEDULE_EVERY steps the steps left in the budget are estimated
    from the seconds per step after the first one, and the decay is moved to end there. Returns
    the wall and CPU clock after every step.
    """
    start = time.perf_counter()
    wall: list[float] = []
    cpu: list[float] = []
    for step in range(max_steps):
        rows = batch_at(step)
        trainer.step(rows[:, :-1], rows[:, 1:])
        wall.append(time.perf_counter())
        cpu.append(time.process_time())
        elapsed = wall[-1] - start
        if elapsed >= seconds:
            break
        if step >= 1 and step % SCHEDULE_EVERY == 0:
            step_seconds = (wall[-1] - wall[0]) / step
            steps_left = max(int((seconds - elapsed) / step_seconds), 1)
            trainer.fit_to_steps(min(trainer.steps_done + steps_left, trainer.planned_steps))
    return wall, cpu
