"""Every registered family keeps the model-family contract (model_architectures/contract.py)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from model_architectures import FAMILIES, build_model, family_names
from model_architectures.contract import LanguageModel

VOCAB, MAX_LEN, BATCH = 30, 12, 3


def tiny(family: str) -> LanguageModel:
    keras.utils.set_random_seed(3)
    return build_model(family, None, VOCAB, MAX_LEN, FAMILIES[family].tiny)


def tokens(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, VOCAB, size=(BATCH, MAX_LEN)).astype("int32")


@pytest.mark.parametrize("family", family_names(brings_tokenizer=False))
def test_shapes_and_the_last_position_call(family):
    model = tiny(family)
    assert isinstance(model, LanguageModel)
    assert model.objectives == FAMILIES[family].objectives  # the registry declares them without keras
    assert model.has_likelihood == FAMILIES[family].likelihood  # so does it whether it has a likelihood
    ids = tokens()
    logits = np.asarray(model(ids))
    hidden = np.asarray(model.hidden_states(ids))
    last = np.asarray(model.call_last(ids))
    assert logits.shape == (BATCH, MAX_LEN, VOCAB) and last.shape == (BATCH, 1, VOCAB)
    assert hidden.shape[:2] == (BATCH, MAX_LEN) and hidden.ndim == 3
    assert last.dtype == logits.dtype == np.float32
    np.testing.assert_allclose(last, logits[:, -1:], atol=1e-5)
    # The head applied to the hidden states is the whole model.
    np.testing.assert_allclose(np.asarray(model.output_logits(model.hidden_states(ids))), logits, atol=1e-5)
    assert model.max_sequence_length in (None, MAX_LEN)


@pytest.mark.parametrize("family", family_names(brings_tokenizer=False))
def test_cached_steps_equal_recomputing(family):
    model = tiny(family)
    ids = tokens(1)
    full = np.asarray(model(ids))
    if not model.has_cache:
        with pytest.raises(NotImplementedError, match="has no cache"):
            model.build_cache(BATCH, MAX_LEN)
        # Generation re-encodes the window: the window's last-position logits, whatever came before.
        longer = np.concatenate([tokens(2), ids], axis=1)
        np.testing.assert_allclose(np.asarray(model.call_last(longer[:, -MAX_LEN:])), full[:, -1:],
                                   atol=1e-5)
        return
    cache = model.build_cache(BATCH, MAX_LEN)
    prefill, cache = model.call_with_cache(ids[:, :5], cache, 0)  # several tokens at once
    steps = [np.asarray(prefill)]
    for index in range(5, MAX_LEN):
        logits, cache = model.call_with_cache(ids[:, index: index + 1], cache, index)
        steps.append(np.asarray(logits))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-4)


def independent_flops(model: LanguageModel) -> float:
    """2 x every weight of two or more dimensions (embeddings included), once per position the
    family reads per prediction: the window for a last-token-only family, one token otherwise."""
    matrices = sum(math.prod(weight.shape) for weight in model.weights if len(weight.shape) >= 2)
    positions = 1 if "causal" in model.objectives else model.max_len
    return 2.0 * matrices * positions


@pytest.mark.parametrize("family", family_names(brings_tokenizer=False))
def test_flops_per_token_agree_with_a_count_from_the_parameter_shapes(family):
    model = tiny(family)
    flops = model.forward_flops_per_token()
    assert flops > 0
    assert 0.5 < flops / independent_flops(model) < 2.0, (flops, independent_flops(model))
