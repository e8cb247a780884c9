"""Cheap checks of sampled text that perplexity cannot see: repetition, made-up words, verbatim copying."""

from __future__ import annotations

import math
import unicodedata
from typing import Iterable, Iterator, Sequence


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams / total n-grams of whitespace tokens, pooled over all samples.

    N-grams never cross sample boundaries. 1.0 means no n-gram repeats; a model stuck in a loop
    scores near 0. NaN when the samples hold no n-gram at all (nothing to judge).
    """
    if n < 1:
        raise ValueError(f"distinct_n needs n >= 1, got n={n}")
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        words = text.split()
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        seen.update(grams)
        total += len(grams)
    return len(seen) / total if total else math.nan


def known_word_share(generated: Sequence[str], training_documents: Iterable[str]) -> float:
    """Share of the samples' words that occur in the training split: does the model write words?

    Words are whitespace-separated, lowercased, with every punctuation character removed (the
    same for training text); a word that was only punctuation is ignored. Samples pooled; NaN
    when they hold no word. Subword models that glue pieces into non-words score low.
    """
    vocabulary = set(_normalised_words(training_documents))
    words = list(_normalised_words(generated))
    return sum(word in vocabulary for word in words) / len(words) if words else math.nan


def _normalised_words(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        for word in text.lower().split():
            # Unicode category P*: ASCII and typographic punctuation alike ("don't", “quoted”)
            word = "".join(char for char in word if not unicodedata.category(char).startswith("P"))
            if word:
                yield word


def memorisation_rate(generated: Sequence[str], training_documents: Iterable[str]) -> float:
    """Share of generated documents equal to a training document (both stripped of whitespace).

    Pass whole generated documents (prompt + continuation). NaN when nothing was generated.
    """
    if not generated:
        return math.nan
    training = {document.strip() for document in training_documents}
    return sum(text.strip() in training for text in generated) / len(generated)
