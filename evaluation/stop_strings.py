"""Stop strings as a byte automaton the compiled sampling loop advances with one lookup per token.

A stop string may start or end inside a token (byte-level BPE merges "." into ".." or " the"
into " there"), so matching token-id sequences would miss it. Instead each stop string is a
Knuth-Morris-Pratt automaton over its UTF-8 bytes: its state is the length of the longest end of
the text so far that begins the stop string, and reaching the full length means the text
contains it. Feeding a whole token's bytes is precomputed for every (state, token), so in the
loop a sequence's state moves with one gather per step, whatever the token's length.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

NO_BYTE = 256  # padding of shorter tokens' byte rows: leaves the state unchanged


def byte_automaton(pattern: bytes) -> np.ndarray:
    """(len+1, 257) next state per (state, byte); the full length is absorbing (matched)."""
    length = len(pattern)
    table = np.zeros((length + 1, NO_BYTE + 1), dtype=np.int32)
    table[:, NO_BYTE] = np.arange(length + 1)
    table[0, pattern[0]] = 1
    fallback = 0  # state reached by the pattern without its first byte: where a mismatch resumes
    for state in range(1, length):
        table[state, :NO_BYTE] = table[fallback, :NO_BYTE]
        table[state, pattern[state]] = state + 1
        fallback = table[fallback, pattern[state]]
    table[length, :] = length
    return table


def stop_string_tables(token_bytes: Sequence[bytes],
                       stop_strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(K, L+1, V) state after each token from each state, and (K,) each string's matched state.

    K stop strings, L the longest one's bytes, V tokens. Rows past a shorter string's length
    repeat its matched state; tokens without bytes (special tokens) leave states unchanged.
    """
    longest_token = max((len(b) for b in token_bytes), default=0)
    token_rows = np.full((len(token_bytes), max(longest_token, 1)), NO_BYTE, dtype=np.int32)
    for token, data in enumerate(token_bytes):
        token_rows[token, : len(data)] = list(data)
    patterns = [text.encode("utf-8") for text in stop_strings]
    longest = max(len(p) for p in patterns)
    tables = np.empty((len(patterns), longest + 1, len(token_bytes)), dtype=np.int32)
    for k, pattern in enumerate(patterns):
        automaton = byte_automaton(pattern)
        states = np.broadcast_to(np.arange(len(pattern) + 1)[:, None],
                                 (len(pattern) + 1, len(token_bytes)))  # (states, V)
        for column in token_rows.T:  # the tokens' i-th bytes, all at once
            states = automaton[states, column[None, :]]
        tables[k, : len(pattern) + 1] = states
        tables[k, len(pattern) + 1:] = len(pattern)
    return tables, np.array([len(p) for p in patterns], dtype=np.int32)
