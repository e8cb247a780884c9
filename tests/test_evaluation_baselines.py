"""Interpolated modified Kneser-Ney: normalised, exact against a brute-force reference, useful."""

import math
from collections import Counter

import numpy as np
import pytest

from evaluation.baselines import FALLBACK_DISCOUNTS, KneserNeyLM, modified_kn_discounts


def markov_stream(length: int, vocab: int, seed: int = 0) -> np.ndarray:
    """Tokens 1..vocab-1 from a random sparse second-order chain: structure a trigram can learn.

    Successors are drawn Zipf-like, so some tokens are rare, as in text.
    """
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab)
    successors = rng.choice(np.arange(1, vocab), size=(vocab, vocab, 3), p=weights / weights.sum())
    stream = [1, 2]
    while len(stream) < length:
        stream.append(int(successors[stream[-2], stream[-1], rng.integers(0, 3)]))
    return np.array(stream)


# --- an independent brute-force reference: dict counts and the textbook recursion -----------
def reference_log_prob(train: list[int], order: int, vocab: int, history: tuple, word: int) -> float:
    grams = {k: Counter(tuple(train[i:i + k]) for i in range(len(train) - k + 1))
             for k in range(1, order + 2)}

    def counts(k: int) -> dict[tuple, int]:
        if k == order:
            return dict(grams[k])
        continuation = Counter(gram[1:] for gram in grams[k + 1])  # distinct left neighbours
        return {gram: continuation.get(gram, 0) for gram in grams[k]}

    def discounts(k: int) -> list[float]:
        n = Counter(counts(k).values())
        d = [0.0]
        for r in (1, 2, 3):  # Chen & Goodman where defined and in (0, r], else the fallback
            defined = all(n[j] > 0 for j in range(1, r + 2))
            value = r - (r + 1) * n[1] / (n[1] + 2 * n[2]) * n[r + 1] / n[r] if defined else 0
            d.append(value if 0 < value <= r else FALLBACK_DISCOUNTS[r - 1])
        return d

    def p(k: int, h: tuple, w: int) -> float:
        if k == 0:
            return 1.0 / vocab
        table, d = counts(k), discounts(k)
        children = {g: c for g, c in table.items() if g[:-1] == h}
        total = sum(children.values())
        if total == 0:
            return p(k - 1, h[1:], w)
        c = children.get(h + (w,), 0)
        gamma = sum(d[min(cc, 3)] for cc in children.values() if cc > 0)
        return (max(c - d[min(c, 3)], 0) + gamma * p(k - 1, h[1:], w)) / total

    return math.log(p(len(history) + 1, history, word))


@pytest.mark.parametrize("order", [2, 3])
def test_matches_brute_force_reference(order):
    vocab = 13  # id 12 never occurs in training
    train = markov_stream(300, 12, seed=0).tolist()
    test = markov_stream(60, 12, seed=2)
    test[[5, 30, 31]] = 12  # an unseen token, an unseen context, a partly seen context
    model = KneserNeyLM(order, vocab_size=vocab).fit(train)
    assert not np.isin(model.discounts[order][1:], FALLBACK_DISCOUNTS).any()  # real estimates
    got = model.log_probs(test)
    expected = [reference_log_prob(train, order, vocab, tuple(test[max(0, i - order + 1):i]), test[i])
                for i in range(1, len(test))]
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_distributions_sum_to_one(order):
    vocab = 12  # ids 10, 11 never occur in training
    train = markov_stream(500, 10, seed=3)
    model = KneserNeyLM(order, vocab_size=vocab).fit(train)
    seen = train[100:104].tolist()
    contexts = {"empty": [], "seen": seen, "unseen": [11, 10, 11], "partly seen": [10, *seen[-2:]],
                "last token unseen": [*seen[:2], 11]}
    for name, context in contexts.items():
        distribution = model.distribution(context)
        assert distribution.shape == (vocab,)
        assert distribution.sum() == pytest.approx(1.0, abs=1e-12), name
        assert distribution.min() > 0, name  # the uniform floor reaches every token


def test_beats_unigram_on_structured_text():
    train, test = markov_stream(5000, 30, seed=4), markov_stream(1000, 30, seed=4)[200:]
    trigram = KneserNeyLM(3, vocab_size=30).fit(train).evaluate(test, characters=len(test))
    unigram = KneserNeyLM(1, vocab_size=30).fit(train).evaluate(test, characters=len(test))
    assert trigram.perplexity < unigram.perplexity / 3
    assert trigram.accuracy > unigram.accuracy + 0.2


def test_order_one_is_the_smoothed_unigram():
    train = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 5, 5, 5, 5])  # counts 4, 3, 2, 1, 5
    vocab = 7
    model = KneserNeyLM(1, vocab_size=vocab).fit(train)
    d = modified_kn_discounts(np.array([4, 3, 2, 1, 5]))
    counts = np.array([0, 4, 3, 2, 1, 5, 0], float)
    discounted = np.maximum(counts - d[np.minimum(counts, 3).astype(int)], 0)
    gamma = d[1] + d[2] + d[3] * 3  # one type each seen once and twice, three seen 3+ times
    expected = (discounted + gamma / vocab) / counts.sum()
    for context in ([], [5], [1, 2, 3]):  # an order-1 model ignores any context
        np.testing.assert_allclose(model.distribution(context), expected, rtol=1e-12)
    assert np.argmax(expected) == 5


def test_predict_is_the_argmax_of_the_full_distribution():
    train, test = markov_stream(3000, 25, seed=5), markov_stream(300, 25, seed=6)
    for order in (1, 2, 3):
        model = KneserNeyLM(order, vocab_size=25).fit(train)
        full = [int(np.argmax(model.distribution(test[:i]))) for i in range(1, len(test))]
        assert model.predict(test).tolist() == full


def test_evaluate_predicts_every_token_after_the_first():
    train, test = markov_stream(2000, 20, seed=7), markov_stream(101, 20, seed=8)
    result = KneserNeyLM(3, vocab_size=20).fit(train).evaluate(test, characters=400)
    assert result.tokens == 100
    assert result.bits_per_char == pytest.approx(result.nll_nats / math.log(2) / 400)
    assert result.perplexity == pytest.approx(math.exp(result.nll_nats / 100))


def test_discounts_follow_chen_goodman_and_fall_back_on_tiny_data():
    counts = np.array([1] * 10 + [2] * 5 + [3] * 3 + [4] * 2 + [7])
    y = 10 / (10 + 2 * 5)
    np.testing.assert_allclose(modified_kn_discounts(counts),
                               [0, 1 - 2 * y * 5 / 10, 2 - 3 * y * 3 / 5, 3 - 4 * y * 2 / 3])
    np.testing.assert_allclose(modified_kn_discounts(np.array([1, 1, 2])),  # no 3s, no 4s
                               [0, 1 - 2 * (1 / 2) * 1 / 2, *FALLBACK_DISCOUNTS[1:]])


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="order"):
        KneserNeyLM(0)
    with pytest.raises(ValueError, match="vocab_size"):
        KneserNeyLM(2, vocab_size=4).fit([1, 2, 7])
    model = KneserNeyLM(2, vocab_size=8).fit([1, 2, 3, 1, 2])
    with pytest.raises(ValueError, match="at least 2"):
        model.evaluate([3], characters=1)
    with pytest.raises(RuntimeError, match="fit"):
        KneserNeyLM(2).log_probs([1, 2])


def test_chunked_evaluation_scores_every_target_with_its_full_history(monkeypatch):
    import evaluation.baselines as baselines

    train, test = markov_stream(3000, 20, seed=9), markov_stream(500, 20, seed=10)
    model = KneserNeyLM(3, vocab_size=20).fit(train)
    whole = model.evaluate(test, characters=900)
    monkeypatch.setattr(baselines, "EVALUATION_CHUNK", 37)  # 14 chunks, boundaries mid-trigram
    chunked = model.evaluate(test, characters=900)
    assert chunked.tokens == whole.tokens == 499
    assert chunked.nll_nats == pytest.approx(whole.nll_nats, rel=1e-12)
    assert chunked.accuracy == whole.accuracy


def test_capped_training_stream_is_sampled_end_to_end_and_named():
    from evaluation.baselines import SAMPLE_BLOCKS, baseline_name, training_sample

    stream = np.arange(100_000)
    assert training_sample(stream, None) is stream and training_sample(stream, 200_000) is stream
    sample = training_sample(stream, 6_400)
    assert len(sample) == 6_400 and sample[0] == 0 and sample[-1] == len(stream) - 1
    runs = sample.reshape(SAMPLE_BLOCKS, -1)  # consecutive runs, evenly spread over the stream
    assert (np.diff(runs, axis=1) == 1).all()
    np.testing.assert_allclose(np.diff(runs[:, 0]), (len(stream) - 100) / (SAMPLE_BLOCKS - 1), atol=1)
    assert baseline_name(3, 100, 100) == "kn_3gram"
    assert baseline_name(3, 6_400, 100_000) == "kn_3gram (on 6.4% of train)"
