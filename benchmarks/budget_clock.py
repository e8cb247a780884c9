"""Budget clock: steps a time budget buys on a quiet machine and beside a busy process, per clock.

Run `python -m benchmarks.budget_clock [--budget 40] [--rounds 2] [--quick]`. The demo's GRU (its
notebook settings: fortunes, vocab 2000, max_len 128, batch 16, dropout 0, learning rate 0.02,
400 steps per epoch) trains with `train_time_budget_seconds` = --budget on the "cpu" clock and on
the "wall" clock, each once on the machine as it is ("quiet") and once beside a busy loop pinned
to core 0 ("busy"), alternating quiet and busy so a load that drifts (another user) hits both.
Each run is its own process (fresh TensorFlow thread pools), writes only under a temp folder and
reports the steps trained, its wall and CPU seconds and the load average before and after.
Goal: with the cpu clock, steps busy / steps quiet >= 0.90.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Sequence

from benchmarks.common import parse_args, report, run_worker, served_as_worker, write_results

NAME = "budget_clock"
GOAL = 0.90
BUSY_LOOP = [sys.executable, "-c", "while True: pass"]
DEMO = {"data_file": "fortunes", "vocab_size": 2000, "max_len": 128, "batch_size": 16,
        "models_to_run": ["gru"], "tuner": "none", "steps_per_epoch": 400,
        "final_training_epochs": 1000, "early_stopping_patience": 1000,
        "hyperparameters": {"gru": {"dropout": 0.0, "learning_rate": 0.02}}}


def train_once(arguments: dict[str, Any]) -> dict[str, Any]:
    """In a worker: train the demo GRU under one budget and clock; steps, seconds, load."""
    os.environ.update(arguments.get("env") or {})  # before TensorFlow initialises
    from data_pipeline.config import ExperimentConfig
    from model_architectures.registry import hyperparameters_for
    from training_assets import experiment
    from training_assets.trainer import TrainingPaths, read_history

    work = arguments["workdir"]
    run = f"{arguments['clock']}-{arguments['label']}-{arguments['index']}"
    config = ExperimentConfig.from_dict({
        **DEMO, "tokenizer_path": f"{work}/tokenizer.json", "models_dir": f"{work}/{run}/models",
        "tuning_dir": f"{work}/{run}/tuning", "plots_dir": f"{work}/{run}/plots",
        "train_time_budget_seconds": arguments["budget"], "budget_clock": arguments["clock"],
        **(arguments.get("config") or {})})
    environment = experiment.setup_environment(config)
    data = experiment.prepare_data(config, environment)
    family = "gru"
    hyperparameters = hyperparameters_for(family, config.hyperparameters.get(family))
    load_before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    trained = experiment.train_family(family, hyperparameters, config, environment, data)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rows = read_history(TrainingPaths.for_family(config.models_dir, family).history)  # with the timings
    history = {key: [row[key] for row in rows] for key in ("epoch_steps", "epoch_seconds", "epoch_cpu_seconds")}
    return {"clock": arguments["clock"], "machine": arguments["label"], "round": arguments["index"],
            "steps": int(sum(history["epoch_steps"])), "epochs": len(history["epoch_steps"]),
            "fit_wall_s": round(wall, 1), "fit_cpu_s": round(cpu, 1),
            "cpu_per_wall": round(cpu / wall, 3),
            "epochs_wall_s": round(sum(history["epoch_seconds"]), 1),
            "epochs_cpu_s": round(sum(history["epoch_cpu_seconds"]), 1),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "stopped_reason": trained.stopped_reason}


def run_beside(busy: bool, arguments: dict[str, Any]) -> dict[str, Any]:
    """One worker run, with a busy loop pinned to core 0 for its whole life when `busy`."""
    loop = subprocess.Popen(["taskset", "-c", "0", *BUSY_LOOP]) if busy else None
    try:
        return run_worker(NAME, {**arguments, "label": "busy" if busy else "quiet"})
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()


def ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per clock: mean steps quiet and busy, their ratio, and the quiet runs' CPU s per wall s."""
    rows = []
    for clock in dict.fromkeys(run["clock"] for run in runs):
        quiet = [run for run in runs if run["clock"] == clock and run["machine"] == "quiet"]
        busy = [run for run in runs if run["clock"] == clock and run["machine"] == "busy"]
        if not quiet or not busy:
            continue
        quiet_steps = statistics.mean(run["steps"] for run in quiet)
        busy_steps = statistics.mean(run["steps"] for run in busy)
        rows.append({"clock": clock, "steps_quiet": quiet_steps, "steps_busy": busy_steps,
                     "busy_over_quiet": round(busy_steps / quiet_steps, 3),
                     "quiet_cpu_per_wall": round(statistics.mean(run["cpu_per_wall"] for run in quiet), 3),
                     "busy_cpu_per_wall": round(statistics.mean(run["cpu_per_wall"] for run in busy), 3)})
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    if served_as_worker(argv, train_once):
        return

    def options(parser):
        parser.add_argument("--budget", type=float, default=40.0, help="seconds per run (default 40)")
        parser.add_argument("--rounds", type=int, default=2, help="quiet/busy pairs per clock (default 2)")
        parser.add_argument("--clocks", nargs="+", default=["cpu", "wall"], choices=["cpu", "wall"])
        parser.add_argument("--env", type=json.loads, default={}, metavar="JSON",
                            help='environment of each run, e.g. \'{"TF_ENABLE_ONEDNN_OPTS": "0"}\'')
        parser.add_argument("--config", type=json.loads, default={}, metavar="JSON",
                            help="CONFIG keys over the demo's for every run")

    args = parse_args(__doc__.splitlines()[0], argv, options)
    started = time.perf_counter()
    budget = 5.0 if args.quick else args.budget
    rounds = 1 if args.quick else args.rounds
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as workdir:  # the tokenizer is fitted once, then reused
        for index in range(rounds):
            for clock in args.clocks:
                # alternate which goes first, so a drifting load does not favour one side
                for busy in ((False, True) if index % 2 == 0 else (True, False)):
                    runs.append(run_beside(busy, {"clock": clock, "budget": budget, "index": index,
                                                  "workdir": workdir, "env": args.env,
                                                  "config": args.config}))
                    print({key: value for key, value in runs[-1].items() if key != "stopped_reason"},
                          flush=True)
    summary = ratios(runs)
    cpu = next((row for row in summary if row["clock"] == "cpu"), None)
    goals = {"cpu_busy_over_quiet": cpu and cpu["busy_over_quiet"], "goal": GOAL,
             "met": bool(cpu and cpu["busy_over_quiet"] >= GOAL)}
    path = write_results(NAME, {"budget_seconds": budget, "settings": DEMO, "env": args.env,
                                "config": args.config, "runs": runs, "summary": summary, "goals": goals},
                         args.quick, started)
    report(NAME, runs, path)
    report(f"{NAME} summary", summary, path, [f"goal: cpu clock busy/quiet >= {GOAL}: {goals}"])


if __name__ == "__main__":
    main(sys.argv[1:])
