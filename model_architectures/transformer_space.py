"""The Transformer decoder's search space (model_architectures/transformer.py builds the model).

A module of its own, without keras, so CONFIG validation checks `hyperparameters` for this family
before TensorFlow loads.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from model_architectures.search_space import (DROPOUT, EMBEDDING_DIM, LEARNING_RATE,
                                              TIE_EMBEDDINGS, Dimension, SearchSpace)

TRANSFORMER_SPACE: SearchSpace = {
    "learning_rate": LEARNING_RATE,
    "dropout": DROPOUT,
    # Two blocks by default: one block cannot compose attention patterns (induction heads).
    "num_layers": Dimension("int", 2, min=1, max=2, step=1, lowest=1, highest=64),
    "embedding_dim": EMBEDDING_DIM,
    "num_heads": Dimension("choice", 4, values=(2, 4), lowest=1, highest=256),
    "ff_dim": Dimension("int", 256, min=128, max=256, step=64, lowest=1, highest=262144),
    # Untied by default: with the modern block an output matrix of its own lowered validation
    # bits/char by 0.108 at the demo's settings (benchmarks/transformer_recipe.py, docs/recipes.md)
    "tie_embeddings": replace(TIE_EMBEDDINGS, default=False),
    # The block: "gpt2" (learned positions, LayerNorm, GELU; what checkpoints without this key
    # hold) or "modern" (model_architectures/modern_block.py), whose parts the switches below
    # turn on and off one at a time for ablations. They are recipe switches, not sizes: the tuner
    # keeps them unless CONFIG lists values. The modern-only switches do nothing in a gpt2 block.
    # Default "modern": 0.13 bits/char below the gpt2 block at the demo's settings and 0.10 on the
    # ABC sample at equal CPU seconds (docs/recipes.md).
    "block": Dimension("choice", "modern", values=("gpt2", "modern"), tuned=False),
    "norm": Dimension("choice", "rms", values=("rms", "layer"), tuned=False),  # modern: RMSNorm
    "rotary": Dimension("boolean", True, tuned=False),  # modern: rotary q/k; False: learned positions
    # modern: RMSNorm on each head's q and k; off by default: a tie (-0.021, within one seed's
    # noise) for ~12% more time per step
    "qk_norm": Dimension("boolean", False, tuned=False),
    "feed_forward": Dimension("choice", "relu2", values=("relu2", "swiglu", "gelu"), tuned=False),
    # modern: attention/MLP output projections start at 0; off by default: at the demo's settings
    # it raised validation bits/char by 0.04 (benchmarks/transformer_recipe.py)
    "zero_init": Dimension("boolean", False, tuned=False),
    # either block: logits -> cap * tanh(logits / cap); 0 turns it off
    "logit_softcap": Dimension("float", 0.0, min=0.0, max=30.0, lowest=0.0, highest=1000.0,
                               tuned=False),
}

# The sizes tests build this family at: small enough for tests of seconds, large enough to
# learn the tests' generated text.
TRANSFORMER_TINY: Mapping[str, Any] = {"embedding_dim": 32, "num_heads": 2, "ff_dim": 32,
                                       "num_layers": 1}
