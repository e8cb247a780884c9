"""Generation controls: ms per new token with every control on against none, in one run.

Run `python -m benchmarks.generation_controls [--quick]`. The demo's sizes (vocab 2,000, max_len
128, 8 samples of 120 new tokens from an empty prompt) at each family's default size, the demo's
sampler (top_p, a graph loop) and greedy (an XLA loop). "on" is repetition_penalty 1.2,
no_repeat_ngram_size 3, min_new_tokens 5 and two stop strings that never occur (each step still
advances their automata). Untrained weights and made-up token bytes: a step's cost depends on
neither, and every run generates exactly the asked number of tokens. Runs with and without the
controls alternate, so both see the same machine load; the figure to read is their ratio.
"""

from __future__ import annotations

import statistics
import time
from typing import Sequence

from benchmarks.common import load_average, parse_args, report, write_results

NAME = "generation_controls"
VOCAB, MAX_LEN, BATCH, NEW_TOKENS = 2000, 128, 8, 120
FULL = {"families": ("lstm", "gru", "transformer"), "samplers": ("top_p", "greedy"), "repeats": 5}
QUICK = {"families": ("gru",), "samplers": ("greedy",), "repeats": 1}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    settings = QUICK if args.quick else FULL
    started = time.perf_counter()

    import keras

    from evaluation.generation import sample_ids
    from evaluation.generation_controls import GenerationControls
    from model_architectures.registry import build_model

    every = GenerationControls(repetition_penalty=1.2, no_repeat_ngram_size=3, min_new_tokens=5,
                               stop_strings=("\n\n", "THE END"))
    token_bytes = [b""] * 4 + [f" w{i}".encode() for i in range(4, VOCAB)]
    prompts = [[3]] * BATCH  # [EOS]: new documents
    new_tokens = 8 if args.quick else NEW_TOKENS
    rows = []
    for family in settings["families"]:
        keras.utils.set_random_seed(0)
        model = build_model(family, None, VOCAB, MAX_LEN)
        for sampler in settings["samplers"]:
            timings: dict[str, list[float]] = {"off": [], "on": []}
            for _ in range(settings["repeats"]):
                for name, controls in (("off", None), ("on", every)):
                    timings[name].append(sample_ids(
                        model, prompts, new_tokens, sampler, seed=0, stop_at_end=False,
                        controls=controls, token_bytes=token_bytes).ms_per_token)
            off, on = statistics.median(timings["off"]), statistics.median(timings["on"])
            rows.append({"family": family, "sampler": sampler, "off_ms_per_token": round(off, 3),
                         "on_ms_per_token": round(on, 3), "on_over_off": round(on / off, 2),
                         "load_average": load_average()})
            print(rows[-1], flush=True)
    path = write_results(NAME, {"vocab_size": VOCAB, "max_len": MAX_LEN, "batch": BATCH,
                                "new_tokens": new_tokens, "controls_on": str(every), "rows": rows},
                         args.quick, started)
    report(NAME, rows, path)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
