"""The Transformer decoder's search space (model_architectures/transformer.py builds the model).

A module of its own, without keras, so CONFIG validation checks `hyperparameters` for this family
before TensorFlow loads.
"""

from __future__ import annotations

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
    "tie_embeddings": TIE_EMBEDDINGS,
}

# The sizes tests build this family at: small enough for tests of seconds, large enough to
# learn the tests' generated text.
TRANSFORMER_TINY: Mapping[str, Any] = {"embedding_dim": 32, "num_heads": 2, "ff_dim": 32,
                                       "num_layers": 1}
