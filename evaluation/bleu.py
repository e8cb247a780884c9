"""BLEU of generated samples as the Texygen benchmark defines it: quality and diversity.

Texygen (Zhu et al., 2018) scores each sample with sentence BLEU against every reference text at
once (an n-gram counts if any reference has it; brevity uses the closest reference length), with
NLTK's smoothing method 1, and averages over samples. Self-BLEU scores each sample against the
other samples: high when the samples repeat each other. NLTK computes every sentence BLEU, so the
scores are NLTK's own; words are the project's one definition (lowercased, punctuation stripped,
as in the near-duplicate audit), where Texygen used NLTK's word tokenizer.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from data_pipeline.near_duplicates import document_words

BLEU_ORDER = 4
_WEIGHTS = (1.0 / BLEU_ORDER,) * BLEU_ORDER  # uniform over 1..4-grams, as Texygen's BLEU-4
_SMOOTHING = SmoothingFunction().method1  # Texygen's: a zero n-gram count becomes 0.1


def bleu_4(samples: Sequence[str], references: Sequence[str]) -> float:
    """Mean sentence BLEU-4 of the samples, each against all references: higher reads more like them.

    Samples without a word are left out (they have nothing to score); NaN when no sample or no
    reference has a word.
    """
    hypotheses = _word_lists(samples)
    reference_words = _word_lists(references)
    if not hypotheses or not reference_words:
        return math.nan
    return _mean(sentence_bleu(reference_words, hypothesis, _WEIGHTS, _SMOOTHING)
                 for hypothesis in hypotheses)


def self_bleu_4(samples: Sequence[str]) -> float:
    """Mean sentence BLEU-4 of each sample against the others: 1.0 when all samples are the same.

    Lower is more diverse. Samples without a word are left out; NaN with fewer than two left.
    """
    hypotheses = _word_lists(samples)
    if len(hypotheses) < 2:
        return math.nan
    return _mean(sentence_bleu(hypotheses[:i] + hypotheses[i + 1:], hypothesis, _WEIGHTS,
                               _SMOOTHING)
                 for i, hypothesis in enumerate(hypotheses))


def reference_sample(documents: Sequence[str], limit: int | None, seed: int) -> list[str]:
    """At most `limit` of the documents, a seeded random choice: BLEU's cost grows with references."""
    if limit is None or len(documents) <= limit:
        return list(documents)
    return random.Random(seed).sample(list(documents), limit)


def _word_lists(texts: Sequence[str]) -> list[list[str]]:
    return [words for words in map(document_words, texts) if words]


def _mean(values) -> float:
    values = list(values)
    return math.fsum(values) / len(values)
