"""Input pipeline overhead: training step time on the real tf.data pipeline vs in-memory batches.

Run `python -m benchmarks.input_pipeline [--quick]`. The real pipeline is build_datasets' train
split of the time-to-quality protocol (ABC headlines or the built-in corpus, 10k BPE, batch
32 x 64: cached rows, shuffled each epoch, batched, sliced into inputs/targets, prefetched); the
synthetic one repeats one batch of the same shapes held in memory. Both feed the same compiled
model through model.fit; rounds alternate real/synthetic so a change in machine load hits both.
The overhead is the median over rounds of real/synthetic - 1, each real round paired with the
synthetic round right after it: on a shared virtual machine the speed of a whole round can drop
by a third, which moves both rounds of a pair alike. The ratio of the fastest rounds and the CPU
seconds per step are reported beside it. Goal: <= 2% overhead.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any, Sequence

from benchmarks.common import (load_average, parse_args, peak_rss_mb, report, served_as_worker,
                               run_worker, write_results)

NAME = "input_pipeline"
FAMILIES = ("transformer", "gru")
FULL = {"steps": 20, "rounds": 10}
QUICK = {"steps": 4, "rounds": 2}
GOAL_OVERHEAD = 0.02


def family_worker(arguments: dict[str, Any]) -> dict[str, Any]:
    import tensorflow as tf

    from benchmarks.time_to_quality import benchmark_config
    from data_pipeline.corpus import load_corpus
    from data_pipeline.datasets import build_datasets
    from data_pipeline.tokenizer import fit_or_load_tokenizer
    from model_architectures.registry import build_model
    from training_assets.compile import compile_model

    family, settings = arguments["family"], QUICK if arguments["quick"] else FULL
    config = benchmark_config("causal", family, 1.0, arguments["workdir"], arguments["quick"])
    corpus = load_corpus(config)
    datasets = build_datasets(corpus, fit_or_load_tokenizer(corpus.train, config), config)
    model = build_model(family, None, datasets.vocab_size, datasets.max_len)
    compile_model(model, config, 1e-3, 10_000, tf.distribute.get_strategy())

    real = datasets.train.dataset.repeat()
    inputs, targets = next(iter(datasets.train.dataset))  # (B, T) each
    synthetic = tf.data.Dataset.from_tensors((inputs, targets)).repeat()
    steps = settings["steps"]
    for dataset in (real, synthetic):  # trace and warm both
        model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
    seconds: dict[str, list[float]] = {"real": [], "synthetic": []}
    cpu: dict[str, list[float]] = {"real": [], "synthetic": []}
    for _ in range(settings["rounds"]):
        for name, dataset in (("real", real), ("synthetic", synthetic)):
            wall, process = time.perf_counter(), time.process_time()
            model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
            seconds[name].append((time.perf_counter() - wall) / steps)
            cpu[name].append((time.process_time() - process) / steps)
    real_ms, synthetic_ms = 1000 * min(seconds["real"]), 1000 * min(seconds["synthetic"])
    paired = [real / synthetic - 1 for real, synthetic in zip(seconds["real"], seconds["synthetic"])]
    return {"family": family, "batch": f"{datasets.global_batch_size}x{datasets.max_len}",
            "real_ms_per_step": round(real_ms, 2), "synthetic_ms_per_step": round(synthetic_ms, 2),
            "overhead": round(statistics.median(paired), 4),
            "fastest_rounds_overhead": round(real_ms / synthetic_ms - 1, 4),
            "real_cpu_ms_per_step": round(1000 * statistics.median(cpu["real"]), 2),
            "synthetic_cpu_ms_per_step": round(1000 * statistics.median(cpu["synthetic"]), 2),
            "rounds": settings["rounds"], "steps_per_round": steps,
            "round_ms_per_step": {name: [round(1000 * value, 1) for value in values]
                                  for name, values in seconds.items()},
            "peak_rss_mb": round(peak_rss_mb()), "load_average": load_average()}


def main(argv: Sequence[str] | None = None) -> None:
    if served_as_worker(argv, family_worker):
        return
    args = parse_args(__doc__.splitlines()[0], argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        rows = [run_worker(NAME, {"family": family, "quick": args.quick, "workdir": workdir})
                for family in FAMILIES]
    goal = {"goal_overhead": GOAL_OVERHEAD, "met": all(row["overhead"] <= GOAL_OVERHEAD for row in rows)}
    path = write_results(NAME, {"goal": goal, "rows": rows}, args.quick, started)
    printed = [{key: value for key, value in row.items() if key != "round_ms_per_step"} for row in rows]
    report(NAME, printed, path, [f"goal: {goal}"])


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
