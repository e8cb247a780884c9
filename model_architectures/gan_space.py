"""The experimental GAN's search space and what it declares without keras (model_architectures/gan.py
builds it).

A module of its own, without keras, so CONFIG validation checks `hyperparameters` and the
objective for this family before TensorFlow loads.
"""

from __future__ import annotations

from typing import Any, Mapping

from model_architectures.search_space import DROPOUT, EMBEDDING_DIM, LEARNING_RATE, Dimension, SearchSpace

GAN_SPACE: SearchSpace = {
    "learning_rate": LEARNING_RATE,  # both optimisers (generator and discriminator)
    "dropout": DROPOUT,
    "num_layers": Dimension("int", 2, min=1, max=2, step=1, lowest=1, highest=64),  # generator blocks
    "embedding_dim": EMBEDDING_DIM,
    "num_heads": Dimension("choice", 4, values=(2, 4), lowest=1, highest=256),
    "ff_dim": Dimension("int", 256, min=128, max=256, step=64, lowest=1, highest=262144),
    # the global noise vector and the memory slots the noise block turns it into (cross-attended)
    "noise_dim": Dimension("int", 32, min=16, max=64, step=16, lowest=1, highest=4096),
    "noise_slots": Dimension("int", 4, min=2, max=8, step=2, lowest=1, highest=256),
    "discriminator_layers": Dimension("int", 1, min=1, max=2, step=1, lowest=1, highest=64),
    # Gumbel-softmax temperature of the soft tokens the discriminator reads: low is close to
    # one-hot (real text is one-hot) but gives high-variance gradients
    "gumbel_temperature": Dimension("float", 0.5, min=0.1, max=1.0, step=None, sampling="log",
                                    lowest=1e-3, highest=100.0),
    # tokens the generator rolls out per training window and the discriminator compares with the
    # real window's first as many: the differentiable rollout costs this many passes over this
    # many positions (capped at max_len)
    "adversarial_length": Dimension("int", 16, min=8, max=32, step=8, lowest=2, highest=8192),
    # generator steps of maximum-likelihood pre-training (teacher forcing) before the adversarial
    # loss takes over, as SeqGAN and RelGAN do: from scratch the discriminator wins at once
    "pretrain_steps": Dimension("int", 200, min=0, max=1000, step=100, lowest=0, highest=10**9),
}

# Adversarial training compares whole generated windows with whole real ones.
GAN_OBJECTIVES = ("causal",)
GAN_OBJECTIVE_REASON = "adversarial training compares whole generated windows with real ones"

GAN_TINY: Mapping[str, Any] = {"embedding_dim": 16, "num_heads": 2, "ff_dim": 16, "num_layers": 1,
                               "noise_dim": 8, "noise_slots": 2, "discriminator_layers": 1,
                               "adversarial_length": 6, "pretrain_steps": 4}
