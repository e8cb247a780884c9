"""BLEU of generated samples as the Texygen benchmark defines it: quality and diversity.

Texygen (Zhu et al., 2018) scores each sample with sentence BLEU against every reference text at
once (an n-gram counts up to the most times any one reference holds it; brevity uses the closest
reference length), with NLTK's smoothing method 1, and averages over samples. Self-BLEU scores
each sample against the other samples: high when the samples repeat each other. NLTK computes
every sentence BLEU, so the scores are NLTK's own; words are the project's one definition
(lowercased, punctuation stripped, as in the near-duplicate audit), where Texygen used NLTK's
word tokenizer.

NLTK recounts the n-grams of every reference for every sample (44 ms per sample against the
1,313 test documents of the built-in corpus). A sample's score depends only on, for each of its
n-grams, the largest count any reference has, and on the closest reference length; so
`BleuReferences` indexes the references once and hands NLTK, per sample, just the references that
hold those largest counts and one of the closest length: the same score, from a few references.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Iterable, Sequence

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from nltk.util import ngrams

from data_pipeline.near_duplicates import document_words

BLEU_ORDER = 4
_WEIGHTS = (1.0 / BLEU_ORDER,) * BLEU_ORDER  # uniform over 1..4-grams, as Texygen's BLEU-4
_SMOOTHING = SmoothingFunction().method1  # Texygen's: a zero n-gram count becomes 0.1


class BleuReferences:
    """Reference texts indexed for BLEU-4: per n-gram (n <= 4), one reference holding it most often."""

    def __init__(self, references: Iterable[str]):
        self.words = _word_lists(references)
        self._holder: dict[tuple[str, ...], tuple[int, int]] = {}  # n-gram -> (count, reference)
        for index, words in enumerate(self.words):
            for n in range(1, BLEU_ORDER + 1):
                for gram, count in Counter(ngrams(words, n)).items():
                    if count > self._holder.get(gram, (0, -1))[0]:
                        self._holder[gram] = (count, index)
        self._of_length: dict[int, int] = {}  # reference length -> one reference of that length
        for index, words in enumerate(self.words):
            self._of_length.setdefault(len(words), index)

    def __len__(self) -> int:
        return len(self.words)

    def for_hypothesis(self, hypothesis: Sequence[str]) -> list[list[str]]:
        """The references that decide `hypothesis`'s sentence BLEU-4 against all of them."""
        chosen = {self._holder[gram][1] for n in range(1, BLEU_ORDER + 1)
                  for gram in ngrams(hypothesis, n) if gram in self._holder}
        # NLTK's closest_ref_length: the nearest length, the shorter one on a tie
        closest = min(self._of_length, key=lambda length: (abs(length - len(hypothesis)), length))
        chosen.add(self._of_length[closest])
        return [self.words[index] for index in sorted(chosen)]


def bleu_4(samples: Sequence[str], references: Sequence[str] | BleuReferences) -> float:
    """Mean sentence BLEU-4 of the samples, each against all references: higher reads more like them.

    Pass a BleuReferences to score several sets of samples against one reference set. Samples
    without a word are left out (they have nothing to score); NaN when no sample or no reference
    has a word.
    """
    return _mean(bleu_4_scores(samples, references))


def bleu_4_scores(samples: Sequence[str], references: Sequence[str] | BleuReferences) -> list[float]:
    """Each sample's sentence BLEU-4 against all references (samples without a word left out):
    what bleu_4 averages, and what its interval resamples."""
    if not isinstance(references, BleuReferences):
        references = BleuReferences(references)
    hypotheses = _word_lists(samples)
    if not len(references):
        return []
    return [sentence_bleu(references.for_hypothesis(hypothesis), hypothesis, _WEIGHTS, _SMOOTHING)
            for hypothesis in hypotheses]


def self_bleu_4(samples: Sequence[str]) -> float:
    """Mean sentence BLEU-4 of each sample against the others: 1.0 when all samples are the same.

    Lower is more diverse. Samples without a word are left out; NaN with fewer than two left.
    """
    return _mean(self_bleu_4_scores(samples))


def self_bleu_4_scores(samples: Sequence[str]) -> list[float]:
    """Each sample's sentence BLEU-4 against the other samples (those without a word left out;
    none with fewer than two left): what self_bleu_4 averages."""
    hypotheses = _word_lists(samples)
    if len(hypotheses) < 2:
        return []
    return [sentence_bleu(hypotheses[:i] + hypotheses[i + 1:], hypothesis, _WEIGHTS, _SMOOTHING)
            for i, hypothesis in enumerate(hypotheses)]


def reference_sample(documents: Sequence[str], limit: int | None, seed: int) -> list[str]:
    """At most `limit` of the documents, a seeded random choice: BLEU's cost grows with references."""
    if limit is None or len(documents) <= limit:
        return list(documents)
    return random.Random(seed).sample(list(documents), limit)


def _word_lists(texts: Iterable[str]) -> list[list[str]]:
    return [words for words in map(document_words, texts) if words]


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return math.fsum(values) / len(values) if values else math.nan
