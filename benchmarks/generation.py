"""Generation speed: ms per new token with the cache against recomputing the whole sequence.

Run `python -m benchmarks.generation [--quick]`. Per family at its default size (vocab 10k;
max_len 256 so that 200 new tokens fit the Transformer's learned positions), for 1 and 16 prompts
and 50 and 200 new tokens:
- cached: evaluation.generation.sample_ids, one model step per new token (key/value cache for
  attention, carried state for recurrent layers) in a compiled sampling loop, greedy and top-p;
- recompute: the reference's way, the whole sequence so far through the model for every new
  token (one traced function for every length), greedy.
Weights are untrained: the cost of a step does not depend on them, and every run generates
exactly the asked number of tokens (no stop at [EOS]). ms per token is per decoding step, i.e. the
wait for each new token of every sequence in the batch. Each family runs in its own process,
whose peak resident memory is reported.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Sequence

import numpy as np

from benchmarks.common import (load_average, parse_args, peak_rss_mb, report, served_as_worker,
                               run_worker, write_results)
from model_architectures.registry import family_names

NAME = "generation"
FAMILIES = family_names(brings_tokenizer=False)
VOCAB, MAX_LEN = 10_000, 256
PROMPT_LENGTH = 8  # [EOS] + 7 prompt tokens
FULL = {"batches": (1, 16), "new_tokens": (50, 200), "repeats": 3}
QUICK = {"batches": (1, 2), "new_tokens": (8,), "repeats": 1}
GOAL_MS_PER_TOKEN = 2.0  # Transformer, one prompt, cached


def recompute_ms_per_token(model: Any, prompts: np.ndarray, new_tokens: int, repeats: int) -> float:
    """Greedy decoding that runs the whole prefix through the model for every new token."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, None), tf.int32)])
    def next_token(prefix):  # (B, t) -> (B,)
        logits = model(prefix, training=False)  # (B, t, V)
        return tf.argmax(logits[:, -1, :], axis=-1, output_type=tf.int32)

    def generate() -> None:
        prefix = tf.constant(prompts)
        for _ in range(new_tokens):
            prefix = tf.concat([prefix, next_token(prefix)[:, None]], axis=1)  # (B, t+1)
        prefix.numpy()

    generate_short = lambda: next_token(tf.constant(prompts)).numpy()  # noqa: E731  trace once
    generate_short()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        generate()
        timings.append(time.perf_counter() - start)
    return 1000 * statistics.median(timings) / new_tokens


def cached_ms_per_token(model: Any, prompts: np.ndarray, new_tokens: int, sampler: str,
                        repeats: int) -> float:
    from evaluation.generation import sample_ids

    ids = prompts.tolist()
    timings = [sample_ids(model, ids, new_tokens, sampler=sampler, seed=0, stop_at_end=False).ms_per_token
               for _ in range(repeats)]  # compilation happens before each timed run
    return statistics.median(timings)


def family_worker(arguments: dict[str, Any]) -> dict[str, Any]:
    import keras

    from model_architectures.registry import build_model

    keras.utils.set_random_seed(0)
    family, settings = arguments["family"], QUICK if arguments["quick"] else FULL
    model = build_model(family, None, VOCAB, MAX_LEN)
    rows = []
    for batch in settings["batches"]:
        prompts = np.random.default_rng(0).integers(4, VOCAB, (batch, PROMPT_LENGTH), dtype=np.int32)
        prompts[:, 0] = 3  # [EOS]: the document start
        for new_tokens in settings["new_tokens"]:
            row = {"family": family, "prompts": batch, "new_tokens": new_tokens}
            for sampler in ("greedy", "top_p"):
                row[f"cached_{sampler}_ms"] = round(cached_ms_per_token(
                    model, prompts, new_tokens, sampler, settings["repeats"]), 3)
            row["recompute_greedy_ms"] = round(recompute_ms_per_token(
                model, prompts, new_tokens, settings["repeats"]), 3)
            row["recompute_over_cached"] = round(row["recompute_greedy_ms"] / row["cached_greedy_ms"], 1)
            rows.append(row)
    return {"family": family, "parameters": model.count_params(), "rows": rows,
            "peak_rss_mb": round(peak_rss_mb()), "load_average": load_average()}


def main(argv: Sequence[str] | None = None) -> None:
    if served_as_worker(argv, family_worker):
        return
    args = parse_args(__doc__.splitlines()[0], argv)
    started = time.perf_counter()
    families = ("gru", "transformer") if args.quick else FAMILIES
    results = []
    for family in families:
        results.append(run_worker(NAME, {"family": family, "quick": args.quick}))
        print({key: value for key, value in results[-1].items() if key != "rows"}, flush=True)
    rows = [{**row, "peak_rss_mb": result["peak_rss_mb"]} for result in results for row in result["rows"]]
    transformer_one = [row for row in rows if row["family"] == "transformer" and row["prompts"] == 1]
    goal = {"goal_ms_per_token": GOAL_MS_PER_TOKEN,
            "transformer_one_prompt_cached_greedy_ms": [row["cached_greedy_ms"] for row in transformer_one],
            "met": bool(transformer_one) and all(row["cached_greedy_ms"] <= GOAL_MS_PER_TOKEN
                                                  for row in transformer_one)}
    path = write_results(NAME, {"vocab_size": VOCAB, "max_len": MAX_LEN, "prompt_tokens": PROMPT_LENGTH,
                                "goal": goal, "families": results, "rows": rows}, args.quick, started)
    report(NAME, rows, path, [f"goal: {goal}"])


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
