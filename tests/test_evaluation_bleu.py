"""BLEU-4 and self-BLEU-4 (Texygen's definitions, NLTK's sentence BLEU) on hand-countable cases."""

import math
import random

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from evaluation.bleu import BleuReferences, bleu_4, reference_sample, self_bleu_4


def test_a_sample_equal_to_a_reference_scores_one_and_a_disjoint_one_near_zero():
    references = ["The police probe a crash on the road.", "council plans new school funds"]
    assert bleu_4(["the police probe a crash on the road"], references) == pytest.approx(1.0)
    # no word in common: every precision is NLTK's smoothing epsilon over its count
    assert bleu_4(["wombats juggle seven purple kettles"], references) < 0.02
    assert bleu_4(["the police probe a crash on the road", "wombats juggle seven purple kettles"],
                  references) == pytest.approx((1.0 + bleu_4(["wombats juggle seven purple kettles"],
                                                              references)) / 2)  # mean over samples


def test_an_ngram_counts_if_any_reference_holds_it():
    """Texygen scores a sample against all references at once: 'a b c d e f' against 'a b c d'
    and 'c d e f' has every 1-, 2- and 3-gram, and 2 of its 3 4-grams ('b c d e' is in neither);
    it is longer than the closest reference, so no brevity penalty: BLEU = (2/3)^(1/4)."""
    assert bleu_4(["a b c d e f"], ["a b c d", "c d e f"]) == pytest.approx((2 / 3) ** 0.25)


def test_self_bleu_is_one_for_identical_samples_and_low_for_unrelated_ones():
    assert self_bleu_4(["police probe road crash at night"] * 3) == pytest.approx(1.0)
    unrelated = ["police probe road crash", "council funds new school", "wombats juggle purple kettles"]
    assert self_bleu_4(unrelated) < 0.02
    # a repeated pair raises it: two of the three samples find themselves in the others
    assert self_bleu_4(unrelated[:2] + unrelated[:1]) > 0.6


def test_samples_without_words_are_left_out_and_nothing_to_score_is_nan():
    assert bleu_4(["a b c d", "", " ... "], ["a b c d"]) == pytest.approx(1.0)
    assert math.isnan(bleu_4(["", "!"], ["a b c d"])) and math.isnan(bleu_4(["a b"], [""]))
    assert math.isnan(self_bleu_4(["only one sample", ""]))


def test_reference_sample_is_seeded_and_capped():
    documents = [f"document {i}" for i in range(100)]
    chosen = reference_sample(documents, 10, seed=3)
    assert len(chosen) == 10 == len(set(chosen)) and set(chosen) <= set(documents)
    assert chosen == reference_sample(documents, 10, seed=3) != reference_sample(documents, 10, seed=4)
    assert reference_sample(documents, None, seed=3) == documents
    assert reference_sample(documents, 500, seed=3) == documents


def test_indexed_references_give_nltks_score_against_every_reference():
    """BleuReferences hands NLTK a few references per sample: the score must be NLTK's own with all
    of them, on samples and references drawn from a small vocabulary so that n-grams repeat."""
    rng = random.Random(7)

    def text(longest: int) -> str:  # 1..longest words of eight
        return " ".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, longest)))

    references = [text(14) for _ in range(60)]
    samples = [text(16) for _ in range(40)]
    indexed = BleuReferences(references)
    all_references = [reference.split() for reference in references]
    smoothing = SmoothingFunction().method1
    for sample in samples:
        expected = sentence_bleu(all_references, sample.split(), (0.25,) * 4, smoothing)
        assert bleu_4([sample], indexed) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert bleu_4(samples, indexed) == bleu_4(samples, references)
