"""Transformer recipe ablations: validation bits/char of each change at an equal CPU-seconds budget.

Run `python -m benchmarks.transformer_recipe [--budget 90] [--variants gpt2 modern ...]` on the
built-in corpus, or `--data PATH --column NAME` on a CSV (e.g. the ABC headlines sample). Every
variant trains the Transformer with the project's own `train_model` at the demo's settings (BPE
vocab 2000, max_len 128, batch 16, dropout 0, learning_rate 3e-3, default sizes) for the same
`train_time_budget_seconds` on the "cpu" budget clock (another process on the cores does not eat
this one's seconds), with the cosine decay fitted to the budget and XLA on (deterministic off, so
jit_compile "auto" compiles the Transformer). The variants: the gpt2 block; the full modern block;
the modern block with one part taken out or swapped; untied output; logit soft-capping; and
optimizer "muon" against AdamW for both blocks. Each runs in its own process; the table gives the
best validation bits/char, the steps the budget bought and the parameters.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

from benchmarks.common import (RESULTS_DIR, parse_args, report, run_worker, served_as_worker,
                               write_results)

NAME = "transformer_recipe"
BUDGET_CPU_SECONDS = 90.0
VALIDATION_EVERY = 100  # steps between validation points
DEMO = {"vocab_size": 2000, "max_len": 128, "batch_size": 16}
DEMO_HYPERPARAMETERS = {"dropout": 0.0, "learning_rate": 3e-3}
GPT2 = {"block": "gpt2"}
MODERN = {"block": "modern", "norm": "rms", "rotary": True, "qk_norm": True,
          "feed_forward": "relu2", "zero_init": True, "logit_softcap": 0.0, "tie_embeddings": True}
# name -> (transformer hyperparameters, CONFIG keys): one change from gpt2 or from modern each
VARIANTS: dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {
    "gpt2": (GPT2, {}),
    "modern": (MODERN, {}),
    "modern, LayerNorm": ({**MODERN, "norm": "layer"}, {}),
    "modern, learned positions": ({**MODERN, "rotary": False}, {}),
    "modern, no QK-norm": ({**MODERN, "qk_norm": False}, {}),
    "modern, GELU MLP": ({**MODERN, "feed_forward": "gelu"}, {}),
    "modern, SwiGLU MLP": ({**MODERN, "feed_forward": "swiglu"}, {}),
    "modern, random-init outputs": ({**MODERN, "zero_init": False}, {}),
    "modern, soft-cap 15": ({**MODERN, "logit_softcap": 15.0}, {}),
    "modern, untied output": ({**MODERN, "tie_embeddings": False}, {}),
    "modern, Muon": (MODERN, {"optimizer": "muon"}),
    "gpt2, Muon": (GPT2, {"optimizer": "muon"}),
    # the changes that each helped above, together (effects need not add up)
    "modern, untied, random-init outputs, Muon": ({**MODERN, "tie_embeddings": False, "zero_init": False},
                                                  {"optimizer": "muon"}),
}


def run_variant(arguments: dict[str, Any]) -> dict[str, Any]:
    """Train one variant for the budget (in a worker process); its validation curve and size."""
    from benchmarks.time_to_quality import curve_callback
    from data_pipeline.config import ExperimentConfig
    from model_architectures.registry import hyperparameters_for
    from training_assets import experiment
    from training_assets.trainer import train_model

    hyperparameters, config_keys = VARIANTS[arguments["variant"]]
    work = f"{arguments['workdir']}/{time.time_ns()}"  # its own folder: variants run side by side
    settings = {
        **DEMO, "data_file": arguments["data"], "text_column": arguments["column"],
        # each fits the same BPE on the same train split: no two processes write one file
        "tokenizer_path": f"{work}/tokenizer.json", "models_dir": f"{work}/models",
        "tuning_dir": f"{work}/tuning", "plots_dir": f"{work}/plots",
        "models_to_run": ["transformer"], "tuner": "none", "seed": arguments["seed"],
        "hyperparameters": {"transformer": {**DEMO_HYPERPARAMETERS, **hyperparameters}},
        "train_time_budget_seconds": arguments["budget"], "budget_clock": "cpu",
        "deterministic": False, "final_training_epochs": 10_000,
        "steps_per_epoch": VALIDATION_EVERY, "early_stopping_patience": 10_000, "resume": False,
        **config_keys,
    }
    config = ExperimentConfig.from_dict(settings)
    environment = experiment.setup_environment(config)
    data = experiment.prepare_data(config, environment)
    curve = curve_callback(data.datasets.validation)
    process_start = time.process_time()
    trained = train_model("transformer", hyperparameters_for("transformer", config.hyperparameters["transformer"]),
                          data.datasets, config, environment.strategy, data.tokenizer, callbacks=[curve])
    finite = [point["val_bits_per_char"] for point in curve.points if math.isfinite(point["val_bits_per_char"])]
    return {"variant": arguments["variant"], "seed": arguments["seed"],
            "hyperparameters": dict(hyperparameters), "config": dict(config_keys),
            "parameters": trained.parameters, "steps": curve.steps,
            "cpu_seconds": round(time.process_time() - process_start, 1),
            "wall_seconds": curve.points[-1]["wall_seconds"] if curve.points else None,
            "best_val_bits_per_char": min(finite, default=math.nan),
            "final_val_bits_per_char": finite[-1] if finite else math.nan,
            "stopped_reason": trained.stopped_reason, "curve": curve.points}


def mean_bpc(runs: Sequence[Mapping[str, Any]], variant: str) -> float | None:
    """A variant's best validation bits/char, averaged over its seeds (None: not run)."""
    values = [run["best_val_bits_per_char"] for run in runs if run["variant"] == variant]
    return sum(values) / len(values) if values else None


def summarise(runs: Sequence[Mapping[str, Any]], variant: str) -> dict[str, Any]:
    """One table row: a variant's mean over its seeds and its difference from the gpt2 block's
    and the full modern block's (an ablation's cost)."""
    mine = [run for run in runs if run["variant"] == variant]
    best = mean_bpc(runs, variant)
    row = {"variant": variant, "seeds": len(mine), "val_bpc": round(best, 4)}
    for reference in ("gpt2", "modern"):
        other = mean_bpc(runs, reference)
        row[f"vs_{reference}"] = round(best - other, 4) if other is not None else None
    return {**row, "spread": round(max(r["best_val_bits_per_char"] for r in mine)
                                   - min(r["best_val_bits_per_char"] for r in mine), 4),
            "steps": round(sum(run["steps"] for run in mine) / len(mine)),
            "parameters": mine[0]["parameters"]}


def main(argv: Sequence[str] | None = None) -> None:
    if served_as_worker(argv, run_variant):
        return

    def options(parser):
        parser.add_argument("--budget", type=float, default=BUDGET_CPU_SECONDS, metavar="CPU_SECONDS",
                            help=f"training CPU seconds per variant (default {BUDGET_CPU_SECONDS:g})")
        parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
        parser.add_argument("--seeds", type=int, default=1, help="seeds per variant, from 42 up")
        parser.add_argument("--data", default="fortunes",
                            help="data_file: the built-in corpus (default) or a CSV / .txt path")
        parser.add_argument("--column", default="headline_text", help="the CSV's text column")
        parser.add_argument("--jobs", type=int, default=1,
                            help="variants trained at once (each on the CPU clock: a busy core "
                                 "slows its wall time, not its steps per budget)")

    args = parse_args(__doc__.splitlines()[0], argv, options)
    started = time.perf_counter()
    budget = 10.0 if args.quick else args.budget
    label = Path(args.data).stem if args.data != "fortunes" else "fortunes"
    with tempfile.TemporaryDirectory() as workdir:
        def run(variant: str, seed: int) -> dict[str, Any]:
            result = run_worker(NAME, {"variant": variant, "seed": seed, "budget": budget,
                                       "data": args.data, "column": args.column, "workdir": workdir})
            print({key: result[key] for key in ("variant", "seed", "best_val_bits_per_char", "steps",
                                                "cpu_seconds")}, flush=True)
            return result

        work = [(variant, seed) for seed in range(42, 42 + args.seeds) for variant in args.variants]
        with ThreadPoolExecutor(max(args.jobs, 1)) as pool:
            runs = list(pool.map(lambda item: run(*item), work))
    # One file for every corpus: runs at the same budget join the earlier ones (a variant and seed
    # run again replaces its earlier run), so the table can grow a few variants at a time.
    earlier = RESULTS_DIR / (f"{NAME}.quick.json" if args.quick else f"{NAME}.json")
    datasets = json.loads(earlier.read_text())["datasets"] if earlier.is_file() else {}
    kept = [run for run in datasets.get(label, {}).get("runs", [])
            if datasets[label]["budget_cpu_seconds"] == budget
            and (run["variant"], run["seed"]) not in {(r["variant"], r["seed"]) for r in runs}]
    runs = kept + runs
    rows = [summarise(runs, variant) for variant in VARIANTS if any(r["variant"] == variant for r in runs)]
    datasets[label] = {"data": label, "budget_cpu_seconds": budget, "settings": {**DEMO, **DEMO_HYPERPARAMETERS},
                       "summary": rows, "runs": runs}
    path = write_results(NAME, {"datasets": datasets}, args.quick, started)
    report(NAME, rows, path, [f"data: {label}; budget: {budget:g} CPU s per variant"])


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
