"""Cheap checks of sampled text that perplexity cannot see: repetition, made-up words, verbatim copying."""

from __future__ import annotations

import math
import unicodedata
from typing import Iterable, Iterator, Sequence

import numpy as np

from data_pipeline.near_duplicates import document_words


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
    known, words = known_word_counts(generated, training_documents)
    return float(known.sum() / words.sum()) if words.sum() else math.nan


def known_word_counts(generated: Sequence[str],
                      training_documents: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, its words found in the training split and its words ((N,) int each):
    known_word_share is their ratio of sums, which its interval resamples by sample."""
    vocabulary = set(_normalised_words(training_documents))
    per_sample = [list(_normalised_words([text])) for text in generated]
    return (np.asarray([sum(word in vocabulary for word in words) for words in per_sample], np.int64),
            np.asarray([len(words) for words in per_sample], np.int64))


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


def longest_copied_words(generated: Sequence[str], training_documents: Iterable[str]) -> float:
    """Median over samples of the longest run of consecutive words found in one training document.

    Words as in the near-duplicate audit (lowercased, punctuation stripped). 0 for a sample with
    no training word; NaN when nothing was generated. Exact, no hashing: every run of L words gets
    an id from the ids of its first L-1 words and its last word (np.unique), so one pass per length
    L covers all documents; it stops at the first L that no sample copies (a copied run of L words
    holds one of L-1).
    """
    if not generated:
        return math.nan
    documents = [document_words(text) for text in training_documents]
    train_count = len(documents)
    documents += [document_words(text) for text in generated]
    lengths = np.fromiter(map(len, documents), dtype=np.int64, count=len(documents))  # (D,)
    vocabulary: dict[str, int] = {}
    words = np.fromiter((vocabulary.setdefault(word, len(vocabulary)) for document in documents
                         for word in document), dtype=np.int64, count=int(lengths.sum()))  # (W,)
    owner = np.repeat(np.arange(len(documents)), lengths)  # (W,) document of each word
    words_left = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(words))  # to its end, incl.
    from_training = owner < train_count  # (W,)
    longest = np.zeros(len(generated), dtype=np.int64)
    run_ids, run_words = words, 1  # run_ids[i]: id of the run of run_words words starting at i
    while True:
        starts = len(run_ids)  # runs start at the first W - run_words + 1 words
        whole = words_left[:starts] >= run_words  # the run ends inside its document
        sample_runs = whole & ~from_training[:starts]
        copied = np.isin(run_ids[sample_runs], run_ids[whole & from_training[:starts]])
        samples = np.unique(owner[:starts][sample_runs][copied])
        if not len(samples):
            break
        longest[samples - train_count] = run_words
        pairs = run_ids[:-1] * (len(vocabulary) + 1) + words[run_words:]  # (run, next word)
        run_ids = np.unique(pairs, return_inverse=True)[1].astype(np.int64)
        run_words += 1
    return float(np.median(longest))
