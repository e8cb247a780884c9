"""Reproducibility against speed (CONFIG['deterministic'], 'jit_compile'): tokens/s per mode, and
whether two runs of one seed give the same losses.

Run `python -m benchmarks.determinism [--quick]`. Each family (LSTM, GRU, Transformer) at its
default size trains on the real tf.data pipeline of the built-in corpus at the demo's shape (BPE
vocabulary 2,000, batch 16 x 128) in its own process, after the same seeding
(training_assets.reproducibility.seed_everything), in three modes:
- `deterministic`: TensorFlow op determinism on, which makes Keras refuse XLA;
- `eager_kernels`: op determinism off, no XLA (TensorFlow's own kernels);
- `xla`: op determinism off, XLA forced on.
Rounds rotate the order so a change in machine load hits every mode; the speed of a mode is the
median over rounds of its tokens/s over the `deterministic` mode's in the same round. Each mode
runs twice per family with the same seed; `repeat_max_loss_difference` is the largest difference
between the two runs' per-step training losses (0.0: bit-identical).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any, Sequence

from benchmarks.common import (MEASURED_DEFAULTS, limit_threads, load_average, parse_args, peak_rss_mb, report,
                               run_worker, served_as_worker, write_results)

NAME = "determinism"
FAMILIES = ("lstm", "gru", "transformer")
MODES = ("deterministic", "eager_kernels", "xla")
VOCAB, MAX_LEN, BATCH = 2000, 128, 16  # the demo's shape
FULL = {"families": FAMILIES, "rounds": 2, "steps": 40, "warm_steps": 8, "sample_size": None}
QUICK = {"families": ("gru",), "rounds": 2, "steps": 4, "warm_steps": 2, "sample_size": 2000}


def family_worker(arguments: dict[str, Any]) -> dict[str, Any]:
    """Tokens/s and per-step losses of one family in one mode, after the same seeding."""
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

    mode = arguments["mode"]
    config = ExperimentConfig.from_dict({
        **MEASURED_DEFAULTS, "data_file": "fortunes", "vocab_size": VOCAB, "max_len": MAX_LEN, "batch_size": BATCH,
        "strategy": "default", "deterministic": mode == "deterministic",
        "jit_compile": mode == "xla",
        "tokenizer_path": f"{arguments['workdir']}/tokenizer.json",  # fitted once, then reused
        "sample_size": arguments["sample_size"]})
    seed_everything(config)  # same weights and batches in every mode; op determinism when on
    corpus = load_corpus(config)
    datasets = build_datasets(corpus, fit_or_load_tokenizer(corpus.train, config), config)
    steps, warm = arguments["steps"], arguments["warm_steps"]
    model = build_model(arguments["family"], None, datasets.vocab_size, datasets.max_len)
    compile_model(model, config, 1e-3, steps + warm + 1, tf.distribute.get_strategy())
    clock, losses = step_clock(), []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: losses.append(float(logs["loss"])))
    model.fit(datasets.train.fresh_dataset().repeat(), steps_per_epoch=steps + warm + 1, epochs=1,
              callbacks=[clock, record], verbose=0)
    rate = clock.rate(datasets.global_batch_size * datasets.max_len, warm)
    rate["cpu_ms_per_step"] = rate["ms_per_step"] * rate["cpu_per_wall"]
    return {"family": arguments["family"], "mode": mode, "repeat": arguments["repeat"],
            **{key: round(value, 3) for key, value in rate.items()}, "losses": losses,
            "peak_rss_mb": round(peak_rss_mb()), "load_average": load_average()}


def cost_per_family(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per family and mode: median tokens/s, its median ratio to the deterministic mode's in the
    same round (wall and CPU), and how far two runs of one seed drift apart."""
    rows = []
    for family in dict.fromkeys(run["family"] for run in runs):
        of = {mode: [run for run in runs if run["family"] == family and run["mode"] == mode]
              for mode in MODES}
        for mode in (mode for mode in MODES if of[mode]):
            pairs = list(zip(of[mode], of["deterministic"]))
            ratios = [a["tokens_per_second"] / b["tokens_per_second"] for a, b in pairs]
            cpu_ratios = [b["cpu_ms_per_step"] / a["cpu_ms_per_step"] for a, b in pairs]
            first, second = of[mode][0]["losses"], of[mode][-1]["losses"]
            rows.append({
                "family": family, "mode": mode, "runs": len(of[mode]),
                "tokens_per_second": round(statistics.median(r["tokens_per_second"] for r in of[mode])),
                "over_deterministic": round(statistics.median(ratios), 3),
                "over_deterministic_range": [round(min(ratios), 3), round(max(ratios), 3)],
                "cpu_over_deterministic": round(statistics.median(cpu_ratios), 3),
                "repeat_max_loss_difference": max(abs(a - b) for a, b in zip(first, second)),
                "final_loss": round(first[-1], 5)})
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
            order = MODES[round_index % len(MODES):] + MODES[:round_index % len(MODES)]
            for family in settings["families"]:
                for mode in order:
                    runs.append(run_worker(NAME, {
                        "family": family, "mode": mode, "repeat": round_index, "workdir": workdir,
                        "steps": settings["steps"], "warm_steps": settings["warm_steps"],
                        "sample_size": settings["sample_size"]}))
                    print({k: v for k, v in runs[-1].items() if k != "losses"}, flush=True)
    costs = cost_per_family(runs)
    path = write_results(NAME, {"costs": costs, "runs": runs,
                                "shape": {"vocab_size": VOCAB, "max_len": MAX_LEN, "batch": BATCH}},
                         args.quick, started)
    report(NAME, costs, path)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
