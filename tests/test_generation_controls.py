"""Generation controls: each one does what it says with every sampler, in the cached and the
re-encoding loop, with batches of mixed prompt lengths, and adds no model step."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import ConfigError, DataError
from data_pipeline.tokenizer import BpeTokenizer, CharTokenizer
from evaluation.generate import main
from evaluation.generation import generate, generate_timed, sample_ids
from evaluation.generation_controls import GenerationControls, cut_at_stop_strings
from evaluation.stop_strings import stop_string_tables
from model_architectures import FAMILIES, build_model
from model_architectures.saving import load_trained_model
from training_assets.experiment import evaluate_family, sample_prompts

VOCAB, MAX_LEN, EOS = 30, 16, 3
SAMPLERS = ("greedy", "random", "top_k", "top_p", "beam")
# Mixed lengths in one right-padded batch (beam search runs one batch per length).
PROMPTS = [[EOS], [EOS, 5, 6, 7], [EOS, 9]] * 4
NEW_TOKENS = 12  # the Transformer's 16 positions hold the longest prompt and these


def tiny(family: str, seed: int = 1, **hyperparameters) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_model(family, None, VOCAB, MAX_LEN, {**FAMILIES[family].tiny, **hyperparameters})


def documents(model, controls=None, sampler="random", seeds=(0, 1, 2), **settings) -> list[list[int]]:
    """Prompt text ids + new ids of every row, over several seeds (the start [EOS] left out)."""
    rows = []
    for seed in seeds:
        new = sample_ids(model, PROMPTS, NEW_TOKENS, sampler, seed=seed, controls=controls,
                         **settings).token_ids
        rows += [prompt[1:] + ids for prompt, ids in zip(PROMPTS, new)]
    return rows


def repeats_an_ngram(ids: list[int], n: int) -> bool:
    grams = [tuple(ids[i: i + n]) for i in range(len(ids) - n + 1)]
    return len(grams) != len(set(grams))


def repeated_token_share(rows: list[list[int]], prompts=PROMPTS * 3) -> float:
    """Share of new tokens that already occur earlier in their document."""
    repeated = total = 0
    for prompt, ids in zip(prompts, rows):
        for position in range(len(prompt) - 1, len(ids)):
            repeated += ids[position] in ids[:position]
            total += 1
    return repeated / total


CASES = [("gru", s) for s in SAMPLERS] + [("transformer", "top_p"),
                                          ("bilstm", "random")]  # bilstm: the re-encoding loop


@pytest.mark.parametrize("family,sampler", CASES)
def test_no_repeat_ngram_size_never_repeats_an_ngram(family, sampler):
    model = tiny(family)
    peaked = {"temperature": 0.3}  # untrained and peaked: repeats are common without the control
    free = documents(model, None, sampler, **peaked)
    assert any(repeats_an_ngram(ids, 2) for ids in free)
    controlled = documents(model, GenerationControls(no_repeat_ngram_size=2), sampler, **peaked)
    assert not any(repeats_an_ngram(ids, 2) for ids in controlled), controlled


def sharpened(family: str) -> keras.Model:
    """Logits of a trained model's size (tens, not hundredths): a penalty that divides them matters."""
    model = tiny(family, tie_embeddings=False)
    kernel, bias = model.output_layer.get_weights()
    model.output_layer.set_weights([kernel * 30.0, bias])
    return model


@pytest.mark.parametrize("family,sampler", [("gru", s) for s in SAMPLERS] + [("bilstm", "top_p")])
def test_repetition_penalty_lowers_the_repeated_token_share(family, sampler):
    model = sharpened(family)
    free = repeated_token_share(documents(model, None, sampler, temperature=0.5))
    penalised = repeated_token_share(documents(model, GenerationControls(repetition_penalty=3.0),
                                               sampler, temperature=0.5))
    assert penalised < free, (penalised, free)  # the same draws: only the penalty differs


def ends_at_once(family: str) -> keras.Model:
    """A model whose every distribution is almost all on [EOS]."""
    model = tiny(family, tie_embeddings=False)
    kernel, bias = model.output_layer.get_weights()
    bias[:] = 0.0
    bias[EOS] = 30.0
    model.output_layer.set_weights([kernel * 0.0, bias])
    return model


@pytest.mark.parametrize("family,sampler", [("simple_rnn", s) for s in SAMPLERS] + [("bilstm", "top_k")])
def test_min_new_tokens_holds_back_the_end_of_document(family, sampler):
    model = ends_at_once(family)
    assert sample_ids(model, PROMPTS, 8, sampler, seed=0).token_ids == [[]] * len(PROMPTS)
    result = sample_ids(model, PROMPTS, 8, sampler, seed=0, controls=GenerationControls(min_new_tokens=5))
    assert [len(ids) for ids in result.token_ids] == [5] * len(PROMPTS)  # and [EOS] right after
    assert all(EOS not in ids for ids in result.token_ids)


ALPHABET = CharTokenizer.fit(["abcdefghijklmnopqrstuvwxyz"], 64)  # 4 specials + 26 letters = VOCAB
TEXT_PROMPTS = ["", "ab", "xyz"] * 3


@pytest.mark.parametrize("family,sampler", [("gru", s) for s in SAMPLERS] + [("bilstm", "top_p")])
def test_a_stop_string_ends_the_text_before_it(family, sampler):
    model = tiny(family)
    free = generate_timed(model, ALPHABET, TEXT_PROMPTS, NEW_TOKENS, sampler, temperature=2.0, seed=4)
    # a stop string from inside the first sample, and one never written
    stop = free.texts[0][3:5]
    assert len(stop) == 2
    controls = GenerationControls(stop_strings=(stop, "zzzzzz"))
    stopped = generate_timed(model, ALPHABET, TEXT_PROMPTS, NEW_TOKENS, sampler, temperature=2.0,
                             seed=4, controls=controls)
    hits = 0
    for prompt, text, ids in zip(TEXT_PROMPTS, stopped.texts, stopped.token_ids):
        assert stop not in text[len(prompt):] and text.startswith(prompt)
        written = ALPHABET.decode(ids)
        if written != text:  # stopped: the tokens end with the stop string, the text before it
            hits += 1
            assert written == text + stop
    assert hits >= 1
    if sampler != "beam":  # the same draws until a stop: the text is the free text, cut
        assert stopped.texts == [cut_at_stop_strings(text, [stop], len(prompt))
                                 for prompt, text in zip(TEXT_PROMPTS, free.texts)]


def test_stop_string_automaton_finds_strings_across_multibyte_tokens():
    """Against Python's `in` on the decoded text: stop strings that start and end inside tokens."""
    rng = np.random.default_rng(0)
    pieces = [b"", b"", b"a", b"b", b"ab", b"ba", b"aab", b".", b"..", b"a.", "é".encode(), "é".encode()[:1],
              "é".encode()[1:], b"bab."]
    tables, matched = stop_string_tables(pieces, ["ab.", "aa", "é", "b.b"])
    for _ in range(300):
        tokens = rng.integers(2, len(pieces), size=8)
        states = np.zeros(len(matched), dtype=int)
        text = b""
        for token in tokens:
            states = tables[np.arange(len(matched)), states, token]
            text += pieces[token]
            expected = [s.encode() in text for s in ["ab.", "aa", "é", "b.b"]]
            assert list(states == matched) == expected, (text, states)


@pytest.mark.parametrize("kind", [BpeTokenizer, CharTokenizer])
def test_token_bytes_spell_the_text_the_automaton_reads(kind):
    texts = ["Café au lait… naïve 東京 police", "the police said... «non»"] * 3
    tokenizer = kind.fit(texts, 300)
    token_bytes = tokenizer.token_bytes()
    assert len(token_bytes) == tokenizer.vocab_size and token_bytes[EOS] == b""
    for text in texts:
        assert b"".join(token_bytes[i] for i in tokenizer.encode(text)) == text.encode("utf-8")


def test_controls_add_no_model_step():
    """The Transformer's cache is fed exactly one token per step, with every control on."""
    model = tiny("transformer")
    fed = tf.Variable(0, dtype="int64")
    call_with_cache = model.call_with_cache

    def counted(token_ids, cache, index):
        fed.assign_add(tf.cast(tf.size(token_ids), "int64"))
        return call_with_cache(token_ids, cache, index)

    model.call_with_cache = counted
    every = GenerationControls(repetition_penalty=1.3, no_repeat_ngram_size=2, min_new_tokens=2,
                               stop_strings=("zz",))
    rows = [[EOS], [EOS, 5, 6]]  # no prefill: the shortest prompt has one token
    for controls in (None, every):
        fed.assign(0)
        result = sample_ids(model, rows, 9, "greedy", stop_at_end=False, controls=controls,
                            token_bytes=ALPHABET.token_bytes())
        steps = 3 + 9 - 1  # buffer length - first sampled position
        assert result.steps == steps
        # a new loop runs twice (compiling, then timed): batch x one token per step, each time
        assert int(fed.numpy()) == 2 * len(rows) * steps


def reference_greedy(model, prompt: list[int], new_tokens: int, controls: GenerationControls) -> list[int]:
    """Recompute the model over the whole text for each token, controls applied in plain numpy."""
    ids, new = list(prompt), []
    n = controls.no_repeat_ngram_size
    for _ in range(new_tokens):
        window = ids if model.has_cache else ([0] * model.max_len + ids)[-model.max_len:]
        logits = np.array(model(np.array([window], dtype="int32")))[0, -1].astype("float64")
        logits[0] = -1e9
        for token in set(ids):
            if token != EOS:
                logits[token] = (logits[token] / controls.repetition_penalty if logits[token] > 0
                                 else logits[token] * controls.repetition_penalty)
        for i in range(len(ids) - n + 1):
            if ids[i: i + n - 1] == ids[len(ids) - n + 1:] and ids[i + n - 1] != EOS:
                logits[ids[i + n - 1]] = -1e9
        if len(new) < controls.min_new_tokens:
            logits[EOS] = -1e9
        token = int(logits.argmax())
        if token == EOS:
            break
        new.append(token)
        ids.append(token)
    return new


@pytest.mark.parametrize("family", ["gru", "transformer", "bilstm"])
@pytest.mark.filterwarnings("ignore:You are using a softmax over axis")
def test_controlled_loop_equals_recomputing_the_full_text(trained_checkpoints, family):
    name = next(name for name, trained in trained_checkpoints.items() if trained.case.family == family)
    model = load_trained_model(trained_checkpoints[name].training.checkpoint_path)
    controls = GenerationControls(repetition_penalty=1.5, no_repeat_ngram_size=3, min_new_tokens=3)
    # "cdefgcde": the learnt next letter "f" would repeat the trigram "def", and is penalised
    prompts = [[EOS], [EOS, 6, 7, 8, 9, 10, 6, 7, 8], [EOS, 9, 10]]
    result = sample_ids(model, prompts, 6, "greedy", controls=controls)
    assert result.token_ids == [reference_greedy(model, p, 6, controls) for p in prompts]
    assert result.token_ids != sample_ids(model, prompts, 6, "greedy").token_ids


def test_controls_reach_the_evaluation_samples(trained_checkpoints):
    """The trainer's alphabet GRU continues "cde" with "fghij...": CONFIG's stop string ends it."""
    trained = trained_checkpoints["gru_constant"]
    config = ExperimentConfig.from_dict({**trained.config.to_dict(), "prompts": ["cde"],
                                         "sampler": "greedy", "stop_strings": ["HI"]})
    run = evaluate_family(trained.training, config, trained.data)
    assert run.samples == ["cdefg"] * len(sample_prompts(config))  # "HI" cleaned like the corpus: "hi"


def test_the_command_line_takes_every_control(trained_checkpoints, capsys):
    path = trained_checkpoints["gru_constant"].training.checkpoint_path
    base = ["--model", path, "--prompt", "cde", "--sampler", "greedy", "-n", "1", "--max-new-tokens", "8"]
    assert main([*base, "--stop-string", "xyz", "--stop-string", "gh"]) == 0
    assert capsys.readouterr().out == "cdef\n"
    assert main([*base, "--no-repeat-ngram-size", "1", "--repetition-penalty", "1.5",
                 "--min-new-tokens", "8"]) == 0
    text = capsys.readouterr().out.strip()
    assert len(text) == 3 + 8 and len(set(text)) == len(text)  # 8 new letters, none repeated
    assert main([*base, "--stop-string", "."]) == 2  # the corpus cleaning strips punctuation
    error = capsys.readouterr().err
    assert "stop string '.' is empty after the corpus cleaning" in error and error.count("\n") == 1
    assert main([*base, "--repetition-penalty", "0"]) == 2
    assert "repetition_penalty=0.0: must be > 0" in capsys.readouterr().err


def test_config_checks_the_controls():
    assert not GenerationControls.from_settings(ExperimentConfig().to_dict()).active  # off by default
    with pytest.raises(ConfigError, match=r"min_new_tokens=50 > max_new_tokens=40"):
        ExperimentConfig.from_dict({"min_new_tokens": 50})
    with pytest.raises(ConfigError, match=r"'\?' is empty after the corpus cleaning"):
        ExperimentConfig.from_dict({"stop_strings": ["?"], "cleaning": "reference"})
    with pytest.raises(ConfigError, match=r"repetition_penalty"):
        ExperimentConfig.from_dict({"repetition_penalty": 0})
    with pytest.raises(DataError, match=r"token_bytes"):
        sample_ids(tiny("gru"), [[EOS]], 4, controls=GenerationControls(stop_strings=("a",)))
