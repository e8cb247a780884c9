"""The bidirectional LSTM's search space and objectives (model_architectures/bilstm.py builds it).

A module of its own, without keras, so CONFIG validation checks `hyperparameters` and the
objective for this family before TensorFlow loads.
"""

from __future__ import annotations

from typing import Any, Mapping

from model_architectures.recurrent_space import RECURRENT_SPACE
from model_architectures.search_space import SearchSpace

# The recurrent families' ranges; `units` is per direction, so a layer is twice as wide.
BILSTM_SPACE: SearchSpace = dict(RECURRENT_SPACE)

# Its backward direction reads the window from the end: under the causal objective the
# prediction at a position would read the very tokens it predicts.
BILSTM_OBJECTIVES = ("last_token",)
BILSTM_OBJECTIVE_REASON = "it reads its window in both directions, so under 'causal' it would see the future"

BILSTM_TINY: Mapping[str, Any] = {"embedding_dim": 16, "units": 16, "num_layers": 1}
