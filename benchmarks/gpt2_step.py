"""Cost of one training step of GPT-2 124M (gpt2_base_en's shape, random weights): wall and CPU
seconds per step and peak memory, fully fine-tuned and with LoRA.

The shape of `gpt2_base_en`: 12 layers, hidden 768, 12 heads, feed-forward 3072, vocabulary
50,257, 1,024 positions; the batch is the demo's, 16 x max_len 128. The model is the gpt2
family's (model_architectures/gpt2.py) compiled by the project's compile_model with the default
CONFIG (AdamW, clipnorm, masked loss and metrics), so a step costs what one step of a real run
costs. Random weights: nothing is downloaded. Each mode runs in its own process, so its peak
resident memory is its own.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np

from benchmarks.common import (MEASURED_DEFAULTS, parse_args, peak_rss_mb, report, run_worker, served_as_worker,
                               timed, write_results)

NAME = "gpt2_step"
SHAPE = {"vocabulary_size": 50257, "num_layers": 12, "num_heads": 12, "hidden_dim": 768,
         "intermediate_dim": 3072, "max_sequence_length": 1024}
END_TOKEN_ID = 50256  # <|endoftext|>, the last id of GPT-2's vocabulary
BATCH, MAX_LEN = 16, 128
FULL = {"modes": (None, 8), "warm_steps": 2, "steps": 3}
QUICK = {"modes": (8,), "warm_steps": 1, "steps": 1}


def step_worker(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Build, compile and train the 124M shape for warm + timed steps in this process."""
    import keras_hub
    import tensorflow as tf

    from data_pipeline.config import ExperimentConfig
    from model_architectures.gpt2 import Gpt2LanguageModel
    from training_assets.compile import compile_model, configure_precision
    from training_assets.trainer import trainable_parameters

    lora_rank = arguments["lora_rank"]
    config = ExperimentConfig.from_dict({**MEASURED_DEFAULTS, "max_len": MAX_LEN, "batch_size": BATCH,
                                         "models_to_run": ["gpt2"], "lora_rank": lora_rank})
    strategy = tf.distribute.get_strategy()
    configure_precision(config, strategy)
    started_rss = peak_rss_mb()
    backbone = keras_hub.models.GPT2Backbone(**SHAPE, dropout=0.1)
    model = Gpt2LanguageModel(backbone, MAX_LEN, END_TOKEN_ID, lora_rank)
    model.build((None, MAX_LEN))
    compile_model(model, config, 3e-4, total_steps=1000, strategy=strategy)
    rng = np.random.default_rng(0)
    tokens = rng.integers(4, model.vocab_size, size=(BATCH, MAX_LEN + 1)).astype("int32")
    inputs, targets = tokens[:, :-1], tokens[:, 1:]  # (B, T), (B, T)
    step = lambda: model.train_on_batch(inputs, targets)  # noqa: E731
    first = timed(step, arguments["warm_steps"])  # tracing and the optimizer's slots
    steady = timed(step, arguments["steps"])
    return {"mode": f"lora_rank={lora_rank}" if lora_rank else "full fine-tuning",
            "parameters": model.count_params(), "trainable_parameters": trainable_parameters(model),
            "warm_up_seconds": round(first.wall_seconds, 2),
            "seconds_per_step": round(steady.wall_per_repeat, 3),
            "cpu_seconds_per_step": round(steady.cpu_per_repeat, 3),
            "tokens_per_second": round(BATCH * MAX_LEN / steady.wall_per_repeat, 1),
            "peak_rss_mb": round(peak_rss_mb(), 0),
            "rss_before_model_mb": round(started_rss, 0)}


def main(argv: Sequence[str] | None = None) -> None:
    if served_as_worker(argv, step_worker):
        return
    args = parse_args(__doc__.splitlines()[0], argv)
    started = time.perf_counter()
    settings = QUICK if args.quick else FULL
    rows = []
    for lora_rank in settings["modes"]:
        rows.append(run_worker(NAME, {"lora_rank": lora_rank, "warm_steps": settings["warm_steps"],
                                      "steps": settings["steps"]}))
        print(rows[-1], flush=True)
    shape = {**SHAPE, "batch": BATCH, "max_len": MAX_LEN}
    path = write_results(NAME, {"shape": shape, "rows": rows}, args.quick, started)
    report(NAME, rows, path, notes=[f"shape: {shape}"])


if __name__ == "__main__":
    main(sys.argv[1:])
