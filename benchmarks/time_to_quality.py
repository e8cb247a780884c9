"""Time to quality: validation bits per character against seconds of training, per family.

Run `python -m benchmarks.time_to_quality [--quick]`. Protocol (the issue's): the ABC headlines
sample beside the repo (else the built-in corpus), file-order split 80/10/10 (the last 10% is
test), the reference's cleaning preset, byte-level BPE with 10k tokens, bits per character
counting every [EOS] and one separator character per headline. The bar is a Kneser-Ney 3-gram
fitted on the same training tokens.

Causal packing: each family is trained by the framework's own `train_model` with its default
hyperparameters and `train_time_budget_seconds`; a callback turns each epoch's exact
val_perplexity into bits/char (ln ppl x tokens / characters / ln 2) and stamps it with the
seconds of training so far (compilation included, validation excluded).

The reference formulation (objective "last_token", windows of 50 tokens: 49 in, the last one
predicted) runs the same model sizes, as the reference did: its models computed logits for the
last position only, so `LastPositionModel` does the same with the framework's layers (running
the framework model as it is would compute 50 positions' logits and make the reference look
slower than it was). Each family runs in its own process, which gives its peak memory too.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.common import (MEASURED_DEFAULTS, benchmark_data_file, limit_threads, parse_args, peak_rss_mb,
                               report, run_worker, served_as_worker,
                               write_results)
from model_architectures.registry import FAMILIES as REGISTRY
from model_architectures.registry import family_names

NAME = "time_to_quality"
FAMILIES = family_names(brings_tokenizer=False, likelihood=True)  # ranked by validation perplexity
# The reference formulation for the best recurrent family and for attention, whose per-window cost
# (49 positions through every block) is the larger: an epoch alone costs minutes, so 300 s each;
# and for every family that trains under last_token only.
REFERENCE_FAMILIES = ("gru", "transformer") + tuple(
    name for name, family in REGISTRY.items() if "causal" not in family.objectives)
BUDGET_SECONDS = 300.0  # the goal: beat the trigram within 300 s on 2 cores
REFERENCE_BUDGET_SECONDS = 300.0  # one reference epoch, or as much of it as fits
# simple_rnn is the weakest family: half the budget keeps `make bench` under ~45 minutes.
FAMILY_BUDGET_SECONDS = {"simple_rnn": 150.0}
REFERENCE_POINTS = 4  # validation points per reference epoch
CAUSAL_POINTS = 2  # validation points per pass over the causal training split (steps_per_epoch)
SPEEDUP_GOAL = 20  # causal reaches the reference's quality in <= 1/20 of its time
QUICK = {"sample_size": 3000, "vocab_size": 1000, "budget": 8.0, "reference_budget": 8.0}


def benchmark_config(objective: str, family: str, budget: float, workdir: str, quick: bool,
                     **overrides: Any):
    """The issue's protocol as an ExperimentConfig (last_token: windows of 50 -> max_len 49)."""
    from data_pipeline.config import ExperimentConfig

    _, data_file = benchmark_data_file()
    settings = {
        **MEASURED_DEFAULTS, "data_file": data_file, "split": "ordered", "split_fractions": (0.8, 0.1, 0.1),
        "cleaning": "reference", "tokenizer": "bpe", "vocab_size": 10_000,
        "tokenizer_path": str(Path(workdir) / "tokenizer.json"),
        "models_dir": str(Path(workdir) / f"models-{objective}"),
        "objective": objective, "max_len": 49 if objective == "last_token" else 64,
        "models_to_run": (family,), "final_training_epochs": 10_000,
        "train_time_budget_seconds": budget, "early_stopping_patience": 10_000,
        "resume": False, "strategy": "default",
        # a full shuffle for both: the reference shuffled all its windows (Keras fit(shuffle=True))
        "shuffle_buffer": 1_000_000,
    }
    if quick:
        settings.update(sample_size=QUICK["sample_size"], vocab_size=QUICK["vocab_size"])
    settings.update(overrides)
    return ExperimentConfig.from_dict(settings)


def bits_per_char(perplexity: float, tokens: int, characters: int) -> float:
    """Total NLL in bits per character, from the exact (token-weighted) perplexity of a split."""
    return math.log(perplexity) * tokens / characters / math.log(2)


def curve_callback(split: Any):
    """A Keras callback recording (training seconds, wall seconds, val bits/char) per epoch."""
    import keras

    class ValidationCurve(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.points: list[dict[str, float]] = []

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()
            self.validation_seconds = 0.0
            self.steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1

        def on_test_begin(self, logs=None):
            self.test_start = time.perf_counter()

        def on_test_end(self, logs=None):
            self.validation_seconds += time.perf_counter() - self.test_start

        def on_epoch_end(self, epoch, logs=None):
            wall = time.perf_counter() - self.start
            perplexity = (logs or {}).get("val_perplexity", math.nan)
            self.points.append({
                "epoch": epoch + 1,
                "steps": self.steps,
                "train_seconds": round(wall - self.validation_seconds, 2),
                "wall_seconds": round(wall, 2),
                "val_bits_per_char": round(bits_per_char(perplexity, split.tokens, split.characters), 4)
                if math.isfinite(perplexity) and perplexity > 0 else math.nan,
            })

    return ValidationCurve()


def first_time_below(points: Sequence[dict[str, float]], bar: float) -> float | None:
    """Training seconds of the first point whose val bits/char is below `bar` (None: never)."""
    for point in points:
        if point["val_bits_per_char"] < bar:
            return point["train_seconds"]
    return None


# --- the reference formulation's model ---------------------------------------------------------
def last_position_model(language_model: Any):
    """The framework model through its contract's `call_last`: (B, T) -> (B, 1, V)."""
    import keras

    class LastPositionModel(keras.Model):
        def __init__(self, inner: keras.Model, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.inner = inner

        def call(self, token_ids, training: bool = False):
            return self.inner.call_last(token_ids, training=training)  # the one prediction the loss uses

    return LastPositionModel(language_model)


def _last_target(inputs, targets):
    return inputs, targets[:, -1:]  # (B, T), (B, 1): every other target is [PAD]


# --- one run, in a worker process ----------------------------------------------------------------
def run_family(arguments: dict[str, Any]) -> dict[str, Any]:
    """Train one family under one objective; its curve, test bits/char and peak memory."""
    limit_threads(arguments.get("threads"))
    import keras

    from data_pipeline.corpus import load_corpus
    from data_pipeline.datasets import build_datasets
    from data_pipeline.tokenizer import fit_or_load_tokenizer
    from evaluation.baselines import KneserNeyLM
    from evaluation.evaluate import evaluate_model
    from model_architectures.registry import build_model, hyperparameters_for
    from training_assets.callbacks import time_budget_callbacks
    from training_assets.compile import compile_model, configure_precision, weight_averaging
    from training_assets.strategy import select_strategy
    from training_assets.trainer import train_model

    family, objective, quick = arguments["family"], arguments["objective"], arguments["quick"]
    config = benchmark_config(objective, family, arguments["budget"], arguments["workdir"], quick,
                              hyperparameters=arguments.get("hyperparameters") or {},
                              **(arguments.get("config") or {}))
    corpus = load_corpus(config)
    tokenizer = fit_or_load_tokenizer(corpus.train, config)
    datasets = build_datasets(corpus, tokenizer, config)
    strategy = select_strategy("default")
    curve = curve_callback(datasets.validation)
    hyperparameters = hyperparameters_for(family, config.hyperparameters.get(family))
    result: dict[str, Any] = {"family": family, "objective": objective,
                              "hyperparameters": dict(hyperparameters.values)}
    if objective == "causal":
        points = max(datasets.train.steps // CAUSAL_POINTS, 1)
        config = config.model_copy(update={"steps_per_epoch": points})
        trained = train_model(family, hyperparameters, datasets, config, strategy, tokenizer,
                              callbacks=[curve])
        model = keras.saving.load_model(trained.checkpoint_path)
        test = evaluate_model(model, datasets.test)
        result.update(parameters=trained.parameters, stopped_reason=trained.stopped_reason,
                      train_tokens_per_second=round(trained.train_tokens_per_second),
                      test_bits_per_char=round(test.bits_per_char, 4))
    else:
        configure_precision(config, strategy)
        language_model = build_model(family, hyperparameters, datasets.vocab_size, datasets.max_len)
        model = last_position_model(language_model)
        epoch_steps = datasets.train.steps
        steps = max(epoch_steps // REFERENCE_POINTS, 1)
        schedule = compile_model(model, config, hyperparameters.get("learning_rate"),
                                 total_steps=epoch_steps, strategy=strategy)
        # the same stop and decay-by-the-budget as the causal runs
        budget, budget_callbacks = time_budget_callbacks(arguments["budget"], schedule, steps)
        model.fit(datasets.train.dataset.map(_last_target).repeat(), steps_per_epoch=steps,
                  epochs=REFERENCE_POINTS, callbacks=[*budget_callbacks, *weight_averaging(config), curve],
                  verbose=2,
                  validation_data=datasets.validation.dataset.map(_last_target))
        result.update(parameters=language_model.count_params(),
                      stopped_reason=budget.reason or "one epoch completed",
                      epoch_steps=epoch_steps, epoch_fraction_trained=round(
                          curve.steps / epoch_steps, 3),
                      train_tokens_per_second=None)

    baseline = KneserNeyLM(3, datasets.vocab_size).fit(datasets.train.token_stream)
    result.update(
        curve=curve.points,
        trigram_val_bits_per_char=round(baseline.evaluate(
            datasets.validation.token_stream, datasets.validation.characters).bits_per_char, 4),
        trigram_test_bits_per_char=round(baseline.evaluate(
            datasets.test.token_stream, datasets.test.characters).bits_per_char, 4),
        peak_rss_mb=round(peak_rss_mb()),
        data={"train_tokens": datasets.train.tokens, "validation_tokens": datasets.validation.tokens,
              "validation_characters": datasets.validation.characters,
              "vocab_size": datasets.vocab_size, "batch": datasets.global_batch_size,
              "max_len": datasets.max_len},
    )
    return result


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    points = run["curve"]
    finite = [p for p in points if math.isfinite(p["val_bits_per_char"])]
    best = min(finite, key=lambda p: p["val_bits_per_char"]) if finite else None
    return {
        "family": run["family"], "objective": run["objective"], "parameters": run["parameters"],
        "train_s": points[-1]["train_seconds"] if points else None,
        "best_val_bpc": best["val_bits_per_char"] if best else None,
        "s_to_best_val": best["train_seconds"] if best else None,
        "trigram_val_bpc": run["trigram_val_bits_per_char"],
        "s_to_beat_trigram": first_time_below(points, run["trigram_val_bits_per_char"]),
        "test_bpc": run.get("test_bits_per_char"),
        "trigram_test_bpc": run["trigram_test_bits_per_char"],
        "tokens_per_s": run.get("train_tokens_per_second"),
        "peak_rss_mb": run["peak_rss_mb"],
    }


def compare_formulations(causal: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """When causal packing reaches the reference's final quality, and the speed-up in time."""
    points = [p for p in reference["curve"] if math.isfinite(p["val_bits_per_char"])]
    if not points:
        return {"family": reference["family"], "note": "the reference run produced no validation point"}
    target, seconds = points[-1]["val_bits_per_char"], points[-1]["train_seconds"]
    reached = first_time_below(causal["curve"], target + 1e-9)
    return {
        "family": reference["family"],
        "reference_val_bpc": target, "reference_train_seconds": seconds,
        "reference_epoch_fraction": reference.get("epoch_fraction_trained"),
        "causal_seconds_to_reach_it": reached,
        "speedup": round(seconds / reached, 1) if reached else None,
        "goal_met": bool(reached and seconds / reached >= SPEEDUP_GOAL),
    }


def main(argv: Sequence[str] | None = None) -> None:
    if served_as_worker(argv, run_family):
        return
    def options(parser):
        parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
        parser.add_argument("--hyperparameters", type=json.loads, default={}, metavar="JSON",
                            help='fixed values per family instead of the defaults, e.g. \'{"gru": {"dropout": 0.4}}\'')
        parser.add_argument("--config", type=json.loads, default={}, metavar="JSON",
                            help='CONFIG keys for every run, e.g. \'{"ema_momentum": 0.99}\'')
        parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                            help=f"training seconds per family (default {BUDGET_SECONDS:g}; "
                                 f"{dict(FAMILY_BUDGET_SECONDS)} for the slowest)")
        parser.add_argument("--no-reference", dest="reference", action="store_false",
                            help="skip the reference (last-token) formulation runs")

    args = parse_args(__doc__.splitlines()[0], argv, options)
    started = time.perf_counter()
    budget = args.budget or (QUICK["budget"] if args.quick else BUDGET_SECONDS)
    reference_budget = QUICK["reference_budget"] if args.quick else REFERENCE_BUDGET_SECONDS
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as workdir:  # tokenizer shared by every run
        for family in (f for f in args.families if "causal" in REGISTRY[f].objectives):
            family_budget = (budget if args.quick or args.budget
                             else FAMILY_BUDGET_SECONDS.get(family, budget))
            runs.append(run_worker(NAME, {"family": family, "objective": "causal", "budget": family_budget,
                                          "workdir": workdir, "quick": args.quick,
                                          "hyperparameters": args.hyperparameters, "config": args.config}))
            print(summarise(runs[-1]), flush=True)
        for family in (f for f in REFERENCE_FAMILIES if f in args.families and args.reference):
            runs.append(run_worker(NAME, {"family": family, "objective": "last_token",
                                          "budget": reference_budget, "workdir": workdir,
                                          "quick": args.quick, "hyperparameters": args.hyperparameters,
                                          "config": args.config}))
            print(summarise(runs[-1]), flush=True)
    rows = [summarise(run) for run in runs]
    causal = {run["family"]: run for run in runs if run["objective"] == "causal"}
    comparisons = [compare_formulations(causal[run["family"]], run) for run in runs
                   if run["objective"] == "last_token" and run["family"] in causal]
    beaten = [row for row in rows if row["objective"] == "causal" and row["s_to_beat_trigram"] is not None
              and row["s_to_beat_trigram"] <= budget]
    goals = {
        "best_family_beats_trigram_within_budget": bool(beaten),
        "budget_seconds": budget,
        "causal_reaches_reference_quality_in_1_20_of_its_time": (
            all(c.get("goal_met") for c in comparisons) if comparisons else None),
    }
    _, data_file = benchmark_data_file()
    options = {"families": args.families, "hyperparameters": args.hyperparameters, "config": args.config,
               "budget": budget, "reference": args.reference}
    path = write_results(NAME, {"data_file": data_file, "options": options, "goals": goals, "summary": rows,
                                "formulations": comparisons, "runs": runs}, args.quick, started)
    report(NAME, rows, path, [f"formulations: {comparisons}", f"goals: {goals}"])


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
