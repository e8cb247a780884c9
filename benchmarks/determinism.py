"""The cost of TensorFlow op determinism (CONFIG['deterministic']): training tokens/s on vs off.

Run `python -m benchmarks.determinism [--quick]`. Each family (LSTM, GRU, Transformer) at its
default size trains on the real tf.data pipeline of the built-in corpus (BPE vocabulary 2,000,
batch 32 x 64, the framework's compile: XLA for the Transformer on CPU) in its own process, once
with `deterministic` on (training_assets.reproducibility.seed_everything: seeds and
tf.config.experimental.enable_op_determinism) and once with the same seeds but without op
determinism, which cannot be turned off again inside a process. Rounds alternate the order
(on, off / off, on) so a change in machine load hits both; the cost is the median over rounds of
on / off tokens/s, each round's pair measured back to back.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any, Sequence

from benchmarks.common import (limit_threads, load_average, parse_args, peak_rss_mb, report,
                               run_worker, served_as_worker, write_results)

NAME = "determinism"
FAMILIES = ("lstm", "gru", "transformer")
VOCAB, MAX_LEN, BATCH = 2000, 64, 32  # the demo's vocabulary, the default rows
FULL = {"families": FAMILIES, "rounds": 3, "steps": 30, "warm_steps": 8, "sample_size": None}
QUICK = {"families": ("gru",), "rounds": 1, "steps": 4, "warm_steps": 2, "sample_size": 2000}


def family_worker(arguments: dict[str, Any]) -> dict[str, Any]:
    """Tokens/s of one family with op determinism on or off, after the same seeding."""
    limit_threads(arguments.get("threads"))
    import keras
    import tensorflow as tf

    from benchmarks.throughput import step_clock
    from data_pipeline.config import ExperimentConfig
    from data_pipeline.corpus import load_corpus
    from data_pipeline.datasets import build_datasets
    from data_pipeline.tokenizer import fit_or_load_tokenizer
    from model_architectures.registry import build_model
    from training_assets.compile import compile_model
    from training_assets.reproducibility import seed_everything

    config = ExperimentConfig.from_dict({
        "data_file": "fortunes", "vocab_size": VOCAB, "max_len": MAX_LEN, "batch_size": BATCH,
        "strategy": "default", "deterministic": arguments["deterministic"],
        "tokenizer_path": f"{arguments['workdir']}/tokenizer.json",  # fitted once, then reused
        "sample_size": arguments["sample_size"]})
    keras.utils.set_random_seed(config.seed)  # same weights and batches either way
    seed_everything(config)  # and op determinism when on
    corpus = load_corpus(config)
    datasets = build_datasets(corpus, fit_or_load_tokenizer(corpus.train, config), config)
    steps, warm = arguments["steps"], arguments["warm_steps"]
    model = build_model(arguments["family"], None, datasets.vocab_size, datasets.max_len)
    compile_model(model, config, 1e-3, steps + warm + 1, tf.distribute.get_strategy())
    clock = step_clock()
    model.fit(datasets.train.fresh_dataset().repeat(), steps_per_epoch=steps + warm + 1, epochs=1,
              callbacks=[clock], verbose=0)
    rate = clock.rate(datasets.global_batch_size * datasets.max_len, warm)
    rate["cpu_ms_per_step"] = rate["ms_per_step"] * rate["cpu_per_wall"]
    return {"family": arguments["family"], "deterministic": arguments["deterministic"],
            **{key: round(value, 3) for key, value in rate.items()},
            "peak_rss_mb": round(peak_rss_mb()), "load_average": load_average()}


def cost_per_family(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per family: median tokens/s on and off, the median and range of the per-round on/off ratios
    of tokens/s, and the same ratio of tokens per CPU second.

    On a loaded machine the wall clock also measures how well a process's threads get the cores;
    tokens per CPU second measure the work per step alone.
    """
    rows = []
    for family in dict.fromkeys(run["family"] for run in runs):
        on = [run for run in runs if run["family"] == family and run["deterministic"]]
        off = [run for run in runs if run["family"] == family and not run["deterministic"]]
        ratios = [a["tokens_per_second"] / b["tokens_per_second"] for a, b in zip(on, off)]
        cpu_ratios = [b["cpu_ms_per_step"] / a["cpu_ms_per_step"] for a, b in zip(on, off)]
        rows.append({"family": family, "rounds": len(ratios),
                     "tokens_per_second_on": round(statistics.median(r["tokens_per_second"] for r in on)),
                     "tokens_per_second_off": round(statistics.median(r["tokens_per_second"] for r in off)),
                     "on_over_off": round(statistics.median(ratios), 3),
                     "on_over_off_range": [round(min(ratios), 3), round(max(ratios), 3)],
                     "cpu_on_over_off": round(statistics.median(cpu_ratios), 3)})
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    if served_as_worker(argv, family_worker):
        return
    args = parse_args(__doc__.splitlines()[0], argv)
    started = time.perf_counter()
    settings = QUICK if args.quick else FULL
    runs = []
    with tempfile.TemporaryDirectory() as workdir:
        for round_index in range(settings["rounds"]):
            order = (True, False) if round_index % 2 == 0 else (False, True)
            for family in settings["families"]:
                for deterministic in order:
                    runs.append(run_worker(NAME, {
                        "family": family, "deterministic": deterministic, "workdir": workdir,
                        "steps": settings["steps"], "warm_steps": settings["warm_steps"],
                        "sample_size": settings["sample_size"]}))
                    print(runs[-1], flush=True)
    costs = cost_per_family(runs)
    path = write_results(NAME, {"costs": costs, "runs": runs,
                                "shape": {"vocab_size": VOCAB, "max_len": MAX_LEN, "batch": BATCH}},
                         args.quick, started)
    report(NAME, costs, path)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
