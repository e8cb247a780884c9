"""distinct-n, known words and memorisation on hand-countable samples."""

import math

import pytest

from evaluation.quality import distinct_n, known_word_share, longest_copied_words, memorisation_rate


def test_distinct_n_pools_ngrams_over_samples_without_crossing_them():
    samples = ["the cat sat", "the cat ran", "  "]
    assert distinct_n(samples, 1) == pytest.approx(4 / 6)  # the, cat, sat, ran of 6 words
    # bigrams: (the cat) x2, (cat sat), (cat ran); none spans "sat" -> "the"
    assert distinct_n(samples, 2) == pytest.approx(3 / 4)
    assert distinct_n(["a b c d"], 4) == 1.0


def test_a_looping_sample_scores_low():
    assert distinct_n(["na " * 50], 2) == pytest.approx(1 / 49)


def test_distinct_n_without_ngrams_is_nan_and_bad_n_fails():
    assert math.isnan(distinct_n(["one", ""], 2))
    assert math.isnan(distinct_n([], 1))
    with pytest.raises(ValueError, match="n >= 1"):
        distinct_n(["a"], 0)


def test_memorisation_counts_verbatim_copies_after_stripping():
    training = ["police probe crash ", "new school plan"]
    generated = ["police probe crash", " new school plan\n", "new school plans", "police probe"]
    assert memorisation_rate(generated, training) == pytest.approx(2 / 4)
    assert memorisation_rate(["x"], iter(["x"])) == 1.0  # any iterable of documents
    assert math.isnan(memorisation_rate([], training))


def test_known_word_share_normalises_case_and_punctuation_and_pools_samples():
    training = ["The police probe a crash.", "Council's new plan: water!"]
    generated = ["POLICE, probe... Dreare", "councils “new” IfIt", " -- ", ""]
    # police probe dreare | councils new ifit: "--" is only punctuation and is ignored
    assert known_word_share(generated, training) == pytest.approx(4 / 6)
    assert known_word_share(["crash crash"], iter(training)) == 1.0  # any iterable of documents
    assert known_word_share(["zzz"], training) == 0.0
    assert math.isnan(known_word_share(["", "!?"], training)) and math.isnan(known_word_share([], training))


def test_longest_copied_words_is_the_median_of_each_samples_longest_run_from_one_document():
    training = ["The cat sat, on a mat.", "on the mat today", "x a b"]
    samples = ["the cat sat on the mat",  # 'the cat sat on' (first document): 4
               "zzz",  # no training word: 0
               "A b!"]  # 'a b' (third document), case and punctuation ignored: 2
    assert longest_copied_words(samples, training) == 2.0
    assert longest_copied_words(samples[:1], training) == 4.0
    assert longest_copied_words(["x a b"], iter(training)) == 3.0  # a whole document, any iterable


def test_a_copied_run_never_spans_two_training_documents():
    # 'b c' runs over the end of one training document into the next: one word each side
    assert longest_copied_words(["b c"], ["a b", "c d"]) == 1.0
    assert longest_copied_words(["b c"], ["a b c d"]) == 2.0
    assert math.isnan(longest_copied_words([], ["a b"]))
    assert longest_copied_words(["", "a"], ["a"]) == 0.5  # median of 0 and 1
