"""Text generation with keras-hub samplers, one model step per new token.

Only the model-family contract (model_architectures/contract.py) is used. A family with a cache
(`has_cache`: key/value cache for attention, carried state for recurrent layers) is fed through
`build_cache` / `call_with_cache`: prompts are right-padded into one buffer, as keras-hub does,
all prompt tokens but the last of the shortest prompt are fed at once (prefill), then a compiled
loop feeds one token per step from there. A family without one (a bidirectional encoder)
re-encodes the last `max_len` tokens with `call_last` for every new token, left-padded with
[PAD] as the last-token training windows are at the start of the stream; its ms per token shows
that cost. Longer prompts keep their own tokens (the sampler never overwrites prompt positions). Every prompt starts with the token that starts
a document in training ([EOS], the separator of packed streams; [BOS] for packing=False), so an
empty prompt starts a new document. [PAD] is never sampled. The generation controls (repetition
penalty, no-repeat n-grams, stop strings, minimum length: evaluation/generation_controls.py) act
on each step's logits inside the same loop, at no extra model step.
"""

from __future__ import annotations

import time
import warnings
import weakref
from dataclasses import dataclass
from functools import partial
from typing import Any, Mapping, Sequence

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras import ops

from data_pipeline.conditions import check_generation_conditions, resolve_buckets
from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import DataError
from data_pipeline.tokenizer import TextTokenizer
from evaluation.generation_controls import GenerationControls, cut_at_stop_strings
from evaluation.logits_controls import LogitsControls
from evaluation.stop_strings import stop_string_tables
from model_architectures.contract import LanguageModel

SAMPLERS = ("greedy", "random", "top_k", "top_p", "beam")
PAD_ID, EOS_ID = TextTokenizer.pad_id, TextTokenizer.eos_id
# jit_compile=None picks per sampler. Measured on CPU (vocab 4000, batch 5, 40 tokens, default
# sizes): the XLA loop is 1.5-4x faster per token for greedy, random, top_k and beam, but 2-6x
# slower for top_p, whose full-vocabulary sort XLA compiles poorly on CPU: top_p runs as a graph.
NOT_XLA_BY_DEFAULT = ("top_p",)


@dataclass(frozen=True)
class SampledIds:
    """New token ids per prompt (no prompt, no [EOS]) and the cost of producing them."""

    token_ids: list[list[int]]
    seconds: float  # prefill + sampling loops, compilation excluded
    steps: int  # decoding steps run (each adds one token to every sequence of its batch)

    @property
    def ms_per_token(self) -> float:
        """Milliseconds per decoding step: the wait for each new token of a sequence."""
        return 1000.0 * self.seconds / max(self.steps, 1)


@dataclass(frozen=True)
class TimedGeneration:
    """Generated documents (prompt + continuation) with their ids and the decoding speed."""

    texts: list[str]
    token_ids: list[list[int]]
    ms_per_token: float
    seconds: float
    steps: int


def make_sampler(sampler: str, temperature: float = 1.0, top_k: int = 40, top_p: float = 0.9,
                 beam_width: int = 4, seed: int | None = None,
                 vocab_size: int | None = None) -> keras_hub.samplers.Sampler:
    """The keras-hub sampler for a CONFIG `sampler` name ("random": plain temperature sampling).

    top_k is capped at vocab_size (a char vocabulary can be smaller than the default 40).
    """
    samplers = keras_hub.samplers
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r}: use one of {list(SAMPLERS)}")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}: must be > 0 (use sampler='greedy' for argmax)")
    if sampler == "greedy":
        return samplers.GreedySampler()
    if sampler == "random":
        return samplers.RandomSampler(seed=seed, temperature=temperature)
    if sampler == "top_k":
        if top_k < 1:
            raise ValueError(f"top_k={top_k}: must be >= 1")
        k = min(top_k, vocab_size) if vocab_size else top_k
        return samplers.TopKSampler(k=k, seed=seed, temperature=temperature)
    if sampler == "top_p":
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p={top_p}: must be in (0, 1]")
        return samplers.TopPSampler(p=top_p, seed=seed, temperature=temperature)
    if beam_width < 1:
        raise ValueError(f"beam_width={beam_width}: must be >= 1")
    return samplers.BeamSampler(num_beams=beam_width, temperature=temperature)


class _CompiledLoop:
    """One sampler and its compiled sampling loop for one model, reused across calls.

    Random samplers get their seed state re-assigned before each call, so a seeded call gives
    the same tokens every time. The generation controls act on each step's logits; their state
    travels in the loop's cache as {"model": the model's cache, **LogitsControls state}.
    """

    def __init__(self, model: LanguageModel, sampler: keras_hub.samplers.Sampler,
                 jit_compile: bool, vocab_size: int, controls: GenerationControls) -> None:
        self.sampler = sampler
        self.controls = LogitsControls(controls, vocab_size)
        self.traced: set[tuple] = set()
        never = np.zeros((vocab_size,), dtype="float32")
        never[PAD_ID] = -1e9  # [PAD] is never a training target
        never = tf.constant(never)
        model_ref = weakref.ref(model)  # the per-model loop cache must not keep the model alive

        def next_logits(prompt, cache, index):
            step = index - 1  # feed the token before `index`, predict the one at `index`
            tokens = ops.slice(prompt, [0, step], [ops.shape(prompt)[0], 1])  # (B, 1)
            logits, cache = model_ref().call_with_cache(tokens, cache, step)  # (B, 1, V)
            return ops.squeeze(logits, axis=1) + never, cache  # (B, V)

        window = model.max_len

        def reencoded_logits(prompt, cache, index):
            batch = ops.shape(prompt)[0]
            padded = ops.concatenate([ops.zeros((batch, window), prompt.dtype), prompt], axis=1)
            tokens = ops.slice(padded, [0, index], [batch, window])  # the window before `index`
            logits = model_ref().call_last(tokens)  # (B, 1, V); length 1 may be unknown in a graph
            return logits[:, -1, :] + never, cache  # (B, V)

        def prefill(token_ids, cache):  # (B, t) prompt tokens before the first sampled one
            return model_ref().call_with_cache(token_ids, cache, 0)[1]

        # Compiled: run eagerly, the prefill of a short prompt cost more than 50 decoding steps.
        self.prefill = tf.function(prefill, reduce_retracing=True)

        step_logits = next_logits if model.has_cache else reencoded_logits

        def run(token_ids, cache, index, mask, lengths, stop_table, stop_token_ids):
            def controlled_logits(prompt, state, index):
                logits, model_cache = step_logits(prompt, state["model"], index)
                logits, state = self.controls(logits, prompt, index, state, stop_table)
                return logits, None, {**state, "model": model_cache}

            state = {"model": () if cache is None else cache,
                     **self.controls.initial_state(lengths, stop_table)}
            return self.sampler(next=controlled_logits, prompt=token_ids, cache=state,
                                index=index, mask=mask, stop_token_ids=stop_token_ids,
                                model=model_ref())

        # partial objects, not lambdas: tf.function counts retracing per code object, and each
        # model/sampler pair tracing its own loop once is expected, not a retracing problem.
        self.functions = {
            True: tf.function(partial(run, stop_token_ids=(EOS_ID,)), jit_compile=jit_compile),
            False: tf.function(partial(run, stop_token_ids=None), jit_compile=jit_compile),
        }

    def reseed(self, model: LanguageModel, seed: int | None) -> None:
        """The sampler's seed and the model's own (a noise vector per sample), from one `seed`."""
        model.seed_generation(seed)
        generator = getattr(self.sampler, "seed_generator", None)
        if generator is not None:
            seed = int(np.random.randint(0, 2**31 - 1)) if seed is None else int(seed)
            generator.state.assign(ops.cast([seed, 0], generator.state.dtype))


_LOOPS: "weakref.WeakKeyDictionary[keras.Model, dict[tuple, _CompiledLoop]]" = weakref.WeakKeyDictionary()


def _loop_for(model: LanguageModel, sampler: str, temperature: float, top_k: int, top_p: float,
              beam_width: int, jit_compile: bool, controls: GenerationControls) -> _CompiledLoop:
    per_model = _LOOPS.setdefault(model, {})
    # The stop strings' tables are arguments of the loop, not part of it: only their presence counts.
    traced_controls = (controls.repetition_penalty, controls.no_repeat_ngram_size,
                       controls.min_new_tokens, bool(controls.stop_strings))
    key = (sampler, temperature, top_k, top_p, beam_width, jit_compile, traced_controls)
    if key not in per_model:
        vocab_size = _vocab_size(model)
        per_model[key] = _CompiledLoop(
            model, make_sampler(sampler, temperature, top_k, top_p, beam_width,
                                vocab_size=vocab_size), jit_compile, vocab_size, controls)
    return per_model[key]


def _vocab_size(model: LanguageModel) -> int:
    return int(model.vocab_size)


@dataclass(frozen=True)
class _Batch:
    """Right-padded prompts of one batch: what the sampling loop consumes."""

    rows: list[int]  # indices into the caller's prompts
    lengths: list[int]
    token_ids: np.ndarray  # (B, S) int32, [PAD] after each prompt
    mask: np.ndarray  # (B, S) bool, True on prompt tokens

    @classmethod
    def of(cls, rows: list[int], prompts: list[list[int]], total: int) -> "_Batch":
        lengths = [len(prompts[i]) for i in rows]
        token_ids = np.full((len(rows), total), PAD_ID, dtype="int32")
        for r, i in enumerate(rows):
            token_ids[r, : lengths[r]] = prompts[i]
        mask = np.arange(total)[None, :] < np.array(lengths)[:, None]
        return cls(rows, lengths, token_ids, mask)


def sample_ids(model: LanguageModel, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int,
               sampler: str = "top_p", temperature: float = 1.0, top_k: int = 40,
               top_p: float = 0.9, beam_width: int = 4, seed: int | None = None,
               stop_at_end: bool = True, jit_compile: bool | None = None,
               controls: GenerationControls | None = None,
               token_bytes: Sequence[bytes] | None = None) -> SampledIds:
    """Continue each prompt (token ids, starting with the document-start id) by <= max_new_tokens.

    Prompt + max_new_tokens is clipped, with a warning, to the model's learned positions.
    `stop_at_end=False` runs exactly max_new_tokens steps (timing). jit_compile=None: see
    NOT_XLA_BY_DEFAULT. `controls.stop_strings` need `token_bytes` (the tokenizer's
    `token_bytes()`): a continuation ends with the token that completes a stop string, which it
    keeps (the text is cut by `generate`).
    """
    controls = controls or GenerationControls()
    prompts = [[int(t) for t in ids] for ids in prompt_ids]
    if not prompts:
        return SampledIds([], 0.0, 0)
    if any(not ids for ids in prompts):
        raise DataError("every prompt needs at least one token: start it with [EOS] (id 3)")
    if max_new_tokens < 1:
        raise DataError(f"max_new_tokens={max_new_tokens}: must be >= 1")
    vocab_size = _vocab_size(model)
    bad = sorted({t for ids in prompts for t in ids if not 0 <= t < vocab_size})
    if bad:
        raise DataError(f"prompt token ids {bad[:5]} are outside the model's vocabulary "
                        f"(0..{vocab_size - 1}): was the prompt encoded with another tokenizer?")
    longest = max(map(len, prompts))
    limit = model.max_sequence_length
    if limit is not None:
        if longest >= limit:
            raise DataError(f"a prompt has {longest} tokens (with the document-start token) but "
                            f"the model has only {limit} positions (max_len): shorten it to "
                            f"<= {limit - 1} tokens")
        if longest + max_new_tokens > limit:
            warnings.warn(f"max_new_tokens={max_new_tokens} clipped to {limit - longest}: prompt "
                          f"({longest} tokens) + new tokens must fit in max_len={limit}",
                          stacklevel=2)
            max_new_tokens = limit - longest
    stop_table = None
    if controls.stop_strings:
        if token_bytes is None or len(token_bytes) != vocab_size:
            raise DataError("stop strings need the bytes of each of the model's "
                            f"{vocab_size} tokens: pass token_bytes=tokenizer.token_bytes()")
        stop_table = tuple(tf.constant(t) for t in stop_string_tables(token_bytes, controls.stop_strings))
    if jit_compile is None:
        jit_compile = sampler not in NOT_XLA_BY_DEFAULT
    loop = _loop_for(model, sampler, temperature, top_k, top_p, beam_width, bool(jit_compile),
                     controls)

    # Beam search keeps its beams apart only while no row still copies its prompt, so each of its
    # batches holds prompts of one length; other samplers take all prompts in one batch. One
    # buffer length for all batches, so they share one trace.
    if sampler == "beam":
        groups = [[i for i, ids in enumerate(prompts) if len(ids) == n]
                  for n in sorted(set(map(len, prompts)))]
    else:
        groups = [list(range(len(prompts)))]
    batches = [_Batch.of(rows, prompts, longest + max_new_tokens) for rows in groups]
    for batch in batches:  # compile outside the timed runs
        signature = (batch.token_ids.shape, stop_at_end,
                     None if stop_table is None else tuple(stop_table[0].shape))
        if signature not in loop.traced:
            _run(model, loop, batch, stop_at_end, stop_table)
            loop.traced.add(signature)
    loop.reseed(model, seed)

    continuations: list[list[int]] = [[] for _ in prompts]
    seconds, steps = 0.0, 0
    for batch in batches:
        started = time.perf_counter()
        out = _run(model, loop, batch, stop_at_end, stop_table)  # (B, S)
        seconds += time.perf_counter() - started
        ends = []
        for i, length, row in zip(batch.rows, batch.lengths, out):
            new = row[length: length + max_new_tokens].tolist()
            if stop_at_end and EOS_ID in new:
                new = new[: new.index(EOS_ID)]
                ends.append(length + len(new) + 1)  # the loop wrote up to this sequence's [EOS]
            else:
                ends.append(out.shape[1])
            continuations[i] = new
        steps += max(ends) - min(batch.lengths)
    return SampledIds(continuations, seconds, steps)


def _run(model: LanguageModel, loop: _CompiledLoop, batch: _Batch, stop_at_end: bool,
         stop_table: tuple[tf.Tensor, tf.Tensor] | None) -> np.ndarray:
    """Prefill the cache with all but the last token of the shortest prompt, then sample."""
    start = min(batch.lengths)  # first position the sampler may write
    batch_size, total = batch.token_ids.shape
    cache = model.build_cache(batch_size, total) if model.has_cache else None
    if start > 1 and model.has_cache:
        cache = loop.prefill(tf.constant(batch.token_ids[:, : start - 1]), cache)
    out = loop.functions[stop_at_end](tf.constant(batch.token_ids), cache,
                                      tf.constant(start, dtype="int32"), tf.constant(batch.mask),
                                      tf.constant(batch.lengths, dtype="int32"), stop_table)
    return np.asarray(out)


def document_start_id(config: ExperimentConfig | Mapping[str, Any] | None = None) -> int:
    """The id before a document's first token in training: [BOS] for unpacked rows, else [EOS]."""
    if config is None:
        return TextTokenizer.eos_id
    settings = config.to_dict() if isinstance(config, ExperimentConfig) else config
    unpacked = settings.get("objective", "causal") == "causal" and not settings.get("packing", True)
    return TextTokenizer.bos_id if unpacked else TextTokenizer.eos_id


def encode_prompts(tokenizer: TextTokenizer, prompts: Sequence[str],
                   start_id: int | None = None,
                   conditions: Mapping[str, str] | None = None) -> list[list[int]]:
    """[start] + condition ids + encode(prompt): "" starts a new document.

    `conditions` (column -> value) are required exactly when the tokenizer has condition
    tokens; an unknown column or value fails with the known ones.
    """
    start = tokenizer.eos_id if start_id is None else start_id
    prefix = condition_prefix(tokenizer, conditions)
    return [[start, *prefix] + (tokenizer.encode(prompt) if prompt else []) for prompt in prompts]


def condition_prefix(tokenizer: TextTokenizer, conditions: Mapping[str, str] | None) -> list[int]:
    """The condition ids a document of these values starts with, in training's column order."""
    known = tokenizer.known_conditions
    conditions = resolve_buckets(conditions, tokenizer.condition_edges)
    check_generation_conditions(conditions, known, tokenizer.condition_edges)
    if not known:
        return []
    columns = list(known)
    return tokenizer.encode_conditions(columns, [tuple(str(conditions[c]) for c in columns)])[0]


def check_tokenizer(model: LanguageModel, tokenizer: TextTokenizer) -> None:
    """DataError unless the tokenizer's vocabulary has the model's size."""
    vocab_size = _vocab_size(model)
    if tokenizer.vocab_size != vocab_size:
        raise DataError(f"tokenizer {tokenizer.path or ''!r} has vocab_size={tokenizer.vocab_size} "
                        f"but the model has vocab_size={vocab_size}: use the tokenizer the model "
                        "was trained with (tokenizer_path in its manifest)")


def generate_timed(model: LanguageModel, tokenizer: TextTokenizer, prompts: Sequence[str],
                   max_new_tokens: int, sampler: str = "top_p", temperature: float = 1.0,
                   top_k: int = 40, top_p: float = 0.9, beam_width: int = 4,
                   seed: int | None = None, start_id: int | None = None,
                   jit_compile: bool | None = None,
                   conditions: Mapping[str, str] | None = None,
                   controls: GenerationControls | None = None) -> TimedGeneration:
    """`generate` plus ids and decoding speed (ms per step, compilation excluded).

    With stop strings, a text ends before the first one its continuation contains; its ids
    keep the tokens the model wrote, through the one that completed the stop string.
    """
    check_tokenizer(model, tokenizer)
    controls = controls or GenerationControls()
    encoded = encode_prompts(tokenizer, prompts, start_id, conditions)
    sampled = sample_ids(model, encoded, max_new_tokens, sampler, temperature, top_k, top_p,
                         beam_width, seed, jit_compile=jit_compile, controls=controls,
                         token_bytes=tokenizer.token_bytes() if controls.stop_strings else None)
    skipped = 1 + len(tokenizer.known_conditions)  # the start id and the condition ids
    documents = [ids[skipped:] + new for ids, new in zip(encoded, sampled.token_ids)]
    texts = tokenizer.decode_batch(documents)
    if controls.stop_strings:
        prompt_texts = tokenizer.decode_batch([ids[skipped:] for ids in encoded])
        texts = [cut_at_stop_strings(text, controls.stop_strings,
                                     len(prompt) if text.startswith(prompt) else 0)
                 for text, prompt in zip(texts, prompt_texts)]
    return TimedGeneration(texts=texts, token_ids=documents, ms_per_token=sampled.ms_per_token,
                           seconds=sampled.seconds, steps=sampled.steps)


def generate_ids(model: LanguageModel, tokenizer: TextTokenizer, prompts: Sequence[str],
                 max_new_tokens: int, sampler: str = "top_p", temperature: float = 1.0,
                 top_k: int = 40, top_p: float = 0.9, beam_width: int = 4,
                 seed: int | None = None, start_id: int | None = None,
                 jit_compile: bool | None = None,
                 conditions: Mapping[str, str] | None = None,
                 controls: GenerationControls | None = None) -> list[list[int]]:
    """Ids of each generated document: the prompt's ids, then new ids up to (without) [EOS]."""
    return generate_timed(model, tokenizer, prompts, max_new_tokens, sampler, temperature, top_k,
                          top_p, beam_width, seed, start_id, jit_compile, conditions,
                          controls).token_ids


def generate(model: LanguageModel, tokenizer: TextTokenizer, prompts: list[str],
             max_new_tokens: int, sampler: str = "top_p", temperature: float = 1.0,
             top_k: int = 40, top_p: float = 0.9, beam_width: int = 4, seed: int | None = None,
             start_id: int | None = None, jit_compile: bool | None = None,
             conditions: Mapping[str, str] | None = None,
             controls: GenerationControls | None = None) -> list[str]:
    """One generated document (prompt + continuation) per prompt; "" starts a new document.

    `conditions`: the condition columns' values (e.g. {"category": "computers"}) when the model
    was trained with condition_columns. `controls`: repetition penalty, no-repeat n-grams, stop
    strings, minimum length (evaluation/generation_controls.py).
    """
    return generate_timed(model, tokenizer, prompts, max_new_tokens, sampler, temperature, top_k,
                          top_p, beam_width, seed, start_id, jit_compile, conditions,
                          controls).texts


def generation_ms_per_token(model: LanguageModel, tokenizer: TextTokenizer,
                            prompts: Sequence[str] = ("",), max_new_tokens: int = 32,
                            sampler: str = "greedy", repeats: int = 3,
                            jit_compile: bool | None = None) -> float:
    """Median milliseconds per decoding step over `repeats` runs of exactly max_new_tokens steps."""
    check_tokenizer(model, tokenizer)
    known = tokenizer.known_conditions  # timing only: any known value will do
    encoded = encode_prompts(tokenizer, prompts,
                             conditions={column: values[0] for column, values in known.items()
                                         if values} or None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a clipped max_new_tokens is fine for timing
        timings = [sample_ids(model, encoded, max_new_tokens, sampler, seed=0, stop_at_end=False,
                              jit_compile=jit_compile).ms_per_token for _ in range(max(repeats, 1))]
    return float(np.median(timings))
