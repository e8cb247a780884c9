"""Sampling text from the Kneser-Ney n-gram model, with the neural samplers' settings.

The generation panel shows the n-gram model beside the networks as a baseline, and the table
measures its samples as it measures theirs, so it takes the same sampler names, temperature,
top-k and top-p (evaluation.generation.SAMPLERS). Beam search has no n-gram counterpart here:
"beam" decodes greedily, and the result says so. Generation controls (repetition penalty, stop
strings, ...) apply to the neural models only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from data_pipeline.tokenizer import TextTokenizer
from evaluation.baselines import KneserNeyLM


@dataclass(frozen=True)
class NgramSample:
    """New token ids (without [EOS]) and the milliseconds each step took."""

    token_ids: list[int]
    ms_per_token: float
    note: str = ""  # e.g. that beam search decoded greedily


def next_token_probabilities(probabilities: np.ndarray, sampler: str, temperature: float,
                             top_k: int, top_p: float) -> np.ndarray:
    """The distribution a sampler draws from: tempered, then cut to top-k or the top-p nucleus."""
    if sampler in ("greedy", "beam"):
        chosen = np.zeros_like(probabilities)
        chosen[int(np.argmax(probabilities))] = 1.0
        return chosen
    logits = np.log(np.maximum(probabilities, 1e-300)) / temperature
    tempered = np.exp(logits - logits.max())
    tempered /= tempered.sum()
    if sampler == "top_k":
        kept = np.argsort(tempered)[::-1][:top_k]
    elif sampler == "top_p":
        order = np.argsort(tempered)[::-1]
        cumulative = np.cumsum(tempered[order])
        kept = order[: int(np.searchsorted(cumulative, top_p)) + 1]  # smallest set reaching top_p
    else:  # "random": the whole tempered distribution
        return tempered
    cut = np.zeros_like(tempered)
    cut[kept] = tempered[kept]
    return cut / cut.sum()


def sample_ngram(language_model: KneserNeyLM, prompt_ids: Sequence[int], max_new_tokens: int,
                 sampler: str = "top_p", temperature: float = 1.0, top_k: int = 40,
                 top_p: float = 0.9, seed: int | np.random.Generator | None = None,
                 never_ids: Sequence[int] = ()) -> NgramSample:
    """Continue `prompt_ids` (starting with the document-start id) until [EOS] or max_new_tokens.

    [PAD], [BOS] and `never_ids` (e.g. condition tokens, which only start documents) are never
    drawn. `seed` may be a Generator, so that several samples draw one seeded stream.
    """
    rng = np.random.default_rng(seed)
    never = [TextTokenizer.pad_id, TextTokenizer.bos_id, *never_ids]
    context, new = [int(t) for t in prompt_ids], []
    started = time.perf_counter()
    for _ in range(max_new_tokens):
        probabilities = language_model.distribution(context)  # (V,): uses the last order-1 ids
        probabilities[never] = 0.0
        probabilities /= probabilities.sum()
        drawn = next_token_probabilities(probabilities, sampler, temperature, top_k, top_p)
        token = int(rng.choice(len(drawn), p=drawn))
        if token == TextTokenizer.eos_id:
            break
        context.append(token)
        new.append(token)
    steps = max(len(new) + (len(new) < max_new_tokens), 1)  # the [EOS] step counts too
    note = "beam search is not available for the n-gram model: greedy" if sampler == "beam" else ""
    return NgramSample(new, 1000.0 * (time.perf_counter() - started) / steps, note)


@dataclass(frozen=True)
class NgramGeneration:
    """Decoded texts (each prompt, then its continuation) and the mean milliseconds per step."""

    texts: list[str]
    ms_per_token: float
    note: str = ""


def generate_ngram(language_model: KneserNeyLM, tokenizer: TextTokenizer, prompts: Sequence[str],
                   max_new_tokens: int, sampler: str = "top_p", temperature: float = 1.0,
                   top_k: int = 40, top_p: float = 0.9, seed: int | None = None,
                   start_id: int | None = None,
                   conditions: Mapping[str, str] | None = None) -> NgramGeneration:
    """One continuation per prompt, as evaluation.generation.generate_timed writes a network's.

    The prompts draw one seeded stream in turn, so a prompt repeated N times gets N samples.
    """
    from evaluation.generation import condition_prefix, encode_prompts  # TensorFlow: on use only

    rng = np.random.default_rng(seed)
    first, end = tokenizer.condition_id_range
    skipped = 1 + len(condition_prefix(tokenizer, conditions))  # the start id and the condition ids
    documents, milliseconds, note = [], [], ""
    for prompt_ids in encode_prompts(tokenizer, prompts, start_id, conditions):
        sampled = sample_ngram(language_model, prompt_ids, max_new_tokens, sampler, temperature,
                               top_k, top_p, rng, never_ids=range(first, end))
        documents.append(prompt_ids[skipped:] + sampled.token_ids)
        milliseconds.append(sampled.ms_per_token)
        note = sampled.note
    return NgramGeneration(tokenizer.decode_batch(documents),
                           float(np.mean(milliseconds)) if milliseconds else 0.0, note)
