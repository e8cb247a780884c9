"""The pretrained GPT-2 family's search space and settings (model_architectures/gpt2.py builds it).

A module of its own, without keras, so CONFIG validation checks `hyperparameters` for this family
before TensorFlow loads. Its size comes from the preset (CONFIG `pretrained_preset`), so the
space holds only what fine-tuning chooses.
"""

from __future__ import annotations

from typing import Any, Mapping

from model_architectures.search_space import Dimension, SearchSpace

GPT2_SPACE: SearchSpace = {
    # Fine-tuning rates: a pretrained model forgets what it knew at the from-scratch 1e-2.
    "learning_rate": Dimension("choice", 3e-4, values=(1e-4, 3e-4, 1e-3), sampling="log",
                               lowest=1e-7, highest=1.0),
    # GPT-2 was pretrained with 0.1.
    "dropout": Dimension("float", 0.1, min=0.0, max=0.2, step=0.1, lowest=0.0, highest=1.0,
                         below_highest=True),
}

# The CONFIG keys its builder takes: which preset, and LoRA's rank (None: full fine-tuning).
GPT2_CONFIG_KEYS = ("pretrained_preset", "lora_rank")

# Tests build it from a tiny preset they save themselves; nothing to shrink in the space.
GPT2_TINY: Mapping[str, Any] = {}
