"""Generation: cached decoding matches full recomputation, samplers, limits, prompts, learning."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from trained_checkpoints import SAVING_CASES

from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import DataError
from data_pipeline.tokenizer import CharTokenizer
from evaluation.generation import (document_start_id, encode_prompts, generate, generate_timed,
                                   generation_ms_per_token, sample_ids)
from model_architectures import FAMILIES, build_model, family_names
from model_architectures.saving import load_trained_model

VOCAB, MAX_LEN, EOS = 30, 16, 3
# Every registered family at its tiny size; some also take the two-layer and untied paths (the
# simple_rnn tests below set its untied output layer's weights).
VARIATIONS = {"lstm": {"num_layers": 2}, "transformer": {"num_layers": 2},
              "simple_rnn": {"tie_embeddings": False}}
TINY = {family: {**FAMILIES[family].tiny, **VARIATIONS.get(family, {})} for family in family_names(brings_tokenizer=False)}
PROMPTS = [[EOS], [EOS, 5, 6, 7, 8], [EOS, 9, 10]]


def recomputed_greedy(model, prompt: list[int], max_new_tokens: int) -> list[int]:
    """The quadratic reference: run the model on the whole text for every new token (a family
    without a cache: on the last max_len tokens, [PAD]-filled on the left)."""
    ids, new = list(prompt), []
    for _ in range(max_new_tokens):
        window = ids if model.has_cache else ([0] * model.max_len + ids)[-model.max_len:]
        logits = np.array(model(np.array([window], dtype="int32")))[0, -1]
        logits[0] = -np.inf  # [PAD] is never generated
        token = int(logits.argmax())
        if token == EOS:
            break
        new.append(token)
        ids.append(token)
    return new


def tiny(family: str, seed: int = 1):
    keras.utils.set_random_seed(seed)
    return build_model(family, None, VOCAB, MAX_LEN, TINY[family])


def trained_model(trained_checkpoints, family: str) -> keras.Model:
    """The trainer's checkpoint of `family` (same vocabulary and length as above), loaded as the CLI does."""
    name = next(name for name, case in SAVING_CASES.items() if case.family == family)
    model = load_trained_model(trained_checkpoints[name].training.checkpoint_path)
    assert (model.vocab_size, model.max_len) == (VOCAB, MAX_LEN)
    return model


# A family without a likelihood samples with a fresh noise vector, which call() does not see.
@pytest.mark.parametrize("family", family_names(brings_tokenizer=False, likelihood=True))
@pytest.mark.filterwarnings("ignore:You are using a softmax over axis")  # Keras, 1-token recompute
def test_cached_greedy_equals_recomputing_the_full_sequence(trained_checkpoints, family):
    model = trained_model(trained_checkpoints, family)
    result = sample_ids(model, PROMPTS, 10, "greedy")  # batched, right-padded prompts
    assert result.token_ids == [recomputed_greedy(model, p, 10) for p in PROMPTS]
    assert all(len(ids) <= 10 for ids in result.token_ids)


def test_graph_loop_without_xla_gives_the_same_tokens():
    model = tiny("transformer")
    assert (sample_ids(model, PROMPTS, 8, "greedy", jit_compile=False).token_ids
            == sample_ids(model, PROMPTS, 8, "greedy", jit_compile=True).token_ids)


def test_generation_stops_at_end_of_document():
    model = build_model("simple_rnn", None, VOCAB, MAX_LEN, TINY["simple_rnn"])
    layer = model.output_layer  # untied: logits = h W + b; make [EOS] always the argmax
    kernel, bias = layer.get_weights()
    bias[:] = 0.0
    bias[EOS] = 100.0
    layer.set_weights([kernel * 0.0, bias])
    assert sample_ids(model, PROMPTS, 10, "greedy").token_ids == [[], [], []]
    timed = sample_ids(model, [[EOS]], 10, "greedy")
    assert timed.steps == 1  # the loop ended at the first [EOS]
    assert sample_ids(model, [[EOS]], 5, "greedy", stop_at_end=False).token_ids == [[EOS] * 5]


@pytest.mark.parametrize("family", ["gru", "transformer"])
def test_seeded_samplers_are_reproducible_and_never_emit_pad(family):
    model = tiny(family)
    for sampler in ("random", "top_k", "top_p"):
        first = sample_ids(model, PROMPTS, 8, sampler, temperature=1.5, seed=7).token_ids
        again = sample_ids(model, PROMPTS, 8, sampler, temperature=1.5, seed=7).token_ids
        other = sample_ids(model, PROMPTS, 8, sampler, temperature=1.5, seed=8).token_ids
        assert first == again and first != other, sampler
        assert all(0 < t < VOCAB and t != EOS for ids in first for t in ids)


def test_degenerate_settings_reduce_to_greedy():
    # Sharpened output: an untrained model's near-tied logits would let float32 rounding of the
    # beam's accumulated log-probabilities pick either of two equal tokens.
    model = tiny("simple_rnn")
    kernel, bias = model.output_layer.get_weights()
    model.output_layer.set_weights([kernel * 30.0, bias])
    greedy = sample_ids(model, PROMPTS, 8, "greedy").token_ids
    assert sample_ids(model, PROMPTS, 8, "top_k", top_k=1, seed=3).token_ids == greedy
    assert sample_ids(model, PROMPTS, 8, "beam", beam_width=1).token_ids == greedy
    beams = sample_ids(model, PROMPTS, 8, "beam", beam_width=3).token_ids
    assert len(beams) == 3 and all(len(ids) <= 8 for ids in beams)


def test_transformer_positions_limit_generation():
    model = tiny("transformer")
    with pytest.warns(UserWarning, match=r"max_new_tokens=40 clipped to 11"):
        result = sample_ids(model, [[EOS, 5, 6, 7, 8]], 40, "greedy", stop_at_end=False)
    assert len(result.token_ids[0]) == MAX_LEN - 5
    with pytest.raises(DataError, match=r"16 tokens .* only 16 positions"):
        sample_ids(model, [[EOS] + [5] * (MAX_LEN - 1)], 4, "greedy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recurrent state has no position limit: no clipping
        long = sample_ids(tiny("gru"), [[EOS]], 2 * MAX_LEN, "greedy", stop_at_end=False)
    assert len(long.token_ids[0]) == 2 * MAX_LEN


def test_prompts_with_foreign_ids_fail_before_generating():
    with pytest.raises(DataError, match=r"outside the model's vocabulary"):
        sample_ids(tiny("gru"), [[EOS, VOCAB + 3]], 4, "greedy")


def test_text_prompts_start_a_document_and_tokenizer_must_match():
    tokenizer = CharTokenizer.fit(["abcdefghijklmnopqrstuvwxyz"], 64)  # 4 specials + 26 chars
    assert tokenizer.vocab_size == VOCAB
    assert encode_prompts(tokenizer, ["", "ab"]) == [[EOS], [EOS] + tokenizer.encode("ab")]
    config = ExperimentConfig.from_dict({"packing": False})
    assert document_start_id(config) == tokenizer.bos_id and document_start_id(None) == EOS
    model = tiny("gru")
    texts = generate(model, tokenizer, ["", "ab"], 6, sampler="top_p", seed=0)
    assert len(texts) == 2 and texts[1].startswith("ab")
    timed = generate_timed(model, tokenizer, ["ab"], 6, sampler="greedy")
    assert timed.texts[0] == tokenizer.decode(timed.token_ids[0]) and timed.ms_per_token > 0
    assert generation_ms_per_token(model, tokenizer, max_new_tokens=4, repeats=1) > 0
    other = CharTokenizer.fit(["abc"], 64)
    with pytest.raises(DataError, match=r"vocab_size=7 but the model has vocab_size=30"):
        generate(model, other, ["a"], 4)


def test_a_trained_model_continues_what_it_learned(trained_checkpoints):
    """A GRU the trainer taught runs of the alphabet: from "[EOS]cde" greedy decoding writes "fghij..."."""
    trained = trained_checkpoints["gru_constant"]
    model = load_trained_model(trained.training.checkpoint_path)
    text = generate(model, trained.data.tokenizer, ["cde"], 6, sampler="greedy")[0]
    assert text == "cdefghijk"
