"""Per-document text cleaning, configured by CONFIG's `cleaning` (a preset or a list of steps).

Cleaning runs before the split and before the tokenizer sees anything, so every split is cleaned
the same way and `decode(encode(text)) == text` holds for the cleaned text.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Iterator

# Unicode-aware versions of the reference's `string.punctuation` / `str.isdigit` filters:
# anything that is neither a word character nor whitespace, plus "_" (a word character in `\w`).
_PUNCTUATION = re.compile(r"[^\w\s]|_")
_DIGITS = re.compile(r"\d")
_WHITESPACE = re.compile(r"\s+")

CLEANERS: dict[str, Callable[[str], str]] = {
    "lowercase": str.lower,
    "strip_punctuation": lambda text: _PUNCTUATION.sub("", text),
    "strip_digits": lambda text: _DIGITS.sub("", text),
    "collapse_whitespace": lambda text: _WHITESPACE.sub(" ", text),
}


def clean_text(text: str, steps: Iterable[str]) -> str:
    """Apply `steps` in order, then strip leading/trailing whitespace (always done)."""
    for step in steps:
        text = CLEANERS[step](text)
    return text.strip()


def clean_fragment(text: str, steps: Iterable[str]) -> str:
    """Apply `steps` without the strip: for pieces of text whose edges matter (stop strings)."""
    for step in steps:
        text = CLEANERS[step](text)
    return text


def clean_documents(documents: Iterable[str], steps: Iterable[str]) -> Iterator[tuple[int, str]]:
    """Yield (index, cleaned text) for each document that is not empty after cleaning.

    A generator, so a caller that needs only the first N documents stops cleaning early.
    """
    steps = tuple(steps)
    for index, text in enumerate(documents):
        cleaned = clean_text(text, steps)
        if cleaned:
            yield index, cleaned
