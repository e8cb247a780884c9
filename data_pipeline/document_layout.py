"""Where each document's targets lie in a packed token stream (NumPy only, no TensorFlow).

Evaluation sums a model's per-target NLL by document with these counts, so the intervals can
resample documents (evaluation.intervals); the n-gram baseline, which reads the stream itself,
uses them too.
"""

from __future__ import annotations

import numpy as np


def stream_document_targets(stream: np.ndarray, masked: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Targets of each document of a token stream [EOS] d1 [EOS] ... dn [EOS]: its ids and the
    closing [EOS], minus masked (condition) ids; (D,) int64. The stream's first token is [EOS]."""
    stream = np.asarray(stream)
    ends = np.flatnonzero(stream[1:] == stream[0]) + 1  # (D,) position of each closing [EOS]
    bounds = np.concatenate([[0], ends])
    first, end = masked
    flags = (stream[1:] >= first) & (stream[1:] < end)  # (L-1,) masked targets
    masked_before = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])  # (L,)
    return (np.diff(bounds) - np.diff(masked_before[bounds])).astype(np.int64)
