"""Near-duplicate lookup: which documents share a run of N consecutive words with a reference set.

Words are a document's whitespace tokens after lowercasing and stripping punctuation (the
cleaning module's own steps), so the same quote with other case or punctuation still matches.
Every run of N words (a shingle) is hashed to 64 bits; the reference shingles are one sorted numpy
array and a held-out shingle is found by binary search, so the audit is linear in the text and
costs 8 bytes per reference shingle. Two different shingles share a hash with probability ~2^-64,
far below anything the audit reports.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from data_pipeline.cleaning import clean_text

WORD_STEPS = ("lowercase", "strip_punctuation")
# Odd 64-bit constants: splitmix64's mixer for word codes, and the base of the polynomial hash.
_MIX_1, _MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_BASE = np.uint64(0x100000001B3)
UNSEEN_WORD = 2**64 - 1  # the id of a looked-up word the index never saw (no indexed word has it)


def document_words(text: str) -> list[str]:
    """Lowercase, punctuation-stripped whitespace tokens: what a near-duplicate run is made of."""
    return clean_text(text, WORD_STEPS).split()


class ShingleIndex:
    """The hashed N-word runs of the documents added so far, and lookups against them.

    Word ids are shared by every call (one vocabulary), so equal words hash equally across splits.
    """

    def __init__(self, run_words: int):
        if run_words < 1:
            raise ValueError(f"run_words={run_words}: a run has at least one word")
        self.run_words = run_words
        self._vocabulary: dict[str, int] = {}
        self._parts: list[np.ndarray] = []
        self._sorted: np.ndarray | None = np.zeros(0, np.uint64)

    def add(self, documents: Sequence[str]) -> None:
        """Index every N-word run of `documents`."""
        hashes, _ = self._shingles(documents, grow=True)
        self._parts.append(hashes)
        self._sorted = None

    def matches(self, documents: Sequence[str]) -> np.ndarray:
        """Bool per document: does it share at least one N-word run with the indexed documents?"""
        if self._sorted is None:
            self._sorted = np.unique(np.concatenate(self._parts))  # sorted, (S,)
        found = np.zeros(len(documents), dtype=bool)
        hashes, owners = self._shingles(documents, grow=False)
        if len(hashes) and len(self._sorted):
            slots = np.minimum(np.searchsorted(self._sorted, hashes), len(self._sorted) - 1)
            found[owners[self._sorted[slots] == hashes]] = True
        return found

    def _shingles(self, documents: Sequence[str], grow: bool) -> tuple[np.ndarray, np.ndarray]:
        """(hash of every N-word run (S,), index of its document (S,)).

        A document shorter than N words has no run, so it can never match (nor be matched).
        Only `add` grows the vocabulary: a looked-up word never indexed gets UNSEEN_WORD, so its
        runs cannot match, and lookups of any amount of held-out text cost no lasting memory.
        """
        words = [document_words(text) for text in documents]
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))  # (D,)
        vocabulary = self._vocabulary
        word_id = ((lambda word: vocabulary.setdefault(word, len(vocabulary))) if grow
                   else (lambda word: vocabulary.get(word, UNSEEN_WORD)))
        ids = np.fromiter((word_id(word) for doc in words for word in doc),
                          dtype=np.uint64, count=int(lengths.sum()))  # (W,) all documents, in order
        codes = _mix(ids)
        count = len(codes) - self.run_words + 1  # runs starting at each word of the flat stream
        if count <= 0:
            return np.zeros(0, np.uint64), np.zeros(0, np.int64)
        hashes = np.zeros(count, np.uint64)
        for offset in range(self.run_words):  # polynomial hash mod 2^64 (uint64 wraps)
            hashes = hashes * _BASE + codes[offset:offset + count]
        owner = np.repeat(np.arange(len(words)), lengths)  # (W,) document of each word
        position = np.arange(len(codes)) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # (W,)
        inside = position[:count] + self.run_words <= lengths[owner[:count]]  # run ends in its document
        return hashes[inside], owner[:count][inside]


def _mix(ids: np.ndarray) -> np.ndarray:
    """splitmix64 of the word ids: distinct ids give distinct, well-spread 64-bit codes."""
    z = ids * _GOLDEN + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))
