"""The LSTM, GRU and SimpleRNN search space (model_architectures/recurrent.py builds the models).

A module of its own, without keras, so CONFIG validation checks `hyperparameters` for these
families before TensorFlow loads.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from model_architectures.search_space import (DROPOUT, EMBEDDING_DIM, LEARNING_RATE, NUM_LAYERS,
                                              TIE_EMBEDDINGS, Dimension, SearchSpace)

# Default 1e-2, not the shared 1e-3: on the ABC headlines benchmark (10k BPE, GRU, 300 s on 2
# shared cores) validation bits/char reached 1.963 at 1e-2 against 2.196 at 1e-3, and gradient
# clipping keeps the larger step stable (benchmarks/time_to_quality.py).
RECURRENT_LEARNING_RATE = replace(LEARNING_RATE, default=1e-2)
# Default dropout 0.4, not the shared 0.2: same benchmark, with the cosine decay ending with the
# time budget, the GRU's best validation bits/char was 1.950 at 0.4 against 1.960 at 0.2 (which
# overfits the 143k training tokens after ~100 s).
RECURRENT_DROPOUT = replace(DROPOUT, default=0.4)

RECURRENT_SPACE: SearchSpace = {
    "learning_rate": RECURRENT_LEARNING_RATE,
    "dropout": RECURRENT_DROPOUT,
    "num_layers": NUM_LAYERS,
    "embedding_dim": EMBEDDING_DIM,
    "units": Dimension("int", 200, min=100, max=300, step=50, lowest=1, highest=65536),
    "tie_embeddings": TIE_EMBEDDINGS,
}

# The sizes tests build this family at: small enough for tests of seconds, large enough to
# learn the tests' generated text.
RECURRENT_TINY: Mapping[str, Any] = {"embedding_dim": 16, "units": 32, "num_layers": 1}
