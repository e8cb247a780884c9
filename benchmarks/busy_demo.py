"""The demo beside a busy core: does the comparison still say the same thing?

Run `python -m benchmarks.busy_demo [--reference RUN] [--quick]` after a quiet `make demo` in the
same checkout. It runs the demo notebook again, headless, with every output in
benchmarks/results/busy_demo/ (the reference run's files stay as they are), while a busy loop
pinned to core 0 (`taskset -c 0`) competes for one of the two cores, then compares family by
family with the reference run (its trained_models/<run>/*.history.csv and plots/<run>/comparison.csv):
training steps, wall seconds, tokens/s, and test bits/char against the reference's 95% interval.
Goals: every family >= 0.90 of the reference's steps, and its test bits/char inside the
reference's interval. `--compare-only` compares an existing busy run without training again.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.common import REPO_ROOT, RESULTS_DIR, load_average, parse_args, report, write_results
from evaluation.runs import find_run

NAME = "busy_demo"
STEPS_GOAL = 0.90
BUSY_LOOP = ["taskset", "-c", "0", sys.executable, "-c", "while True: pass"]
NOTEBOOK = REPO_ROOT / "Text_Synthesis_Comparison.ipynb"


def outputs(root: Path) -> dict[str, str]:
    """CONFIG keys that put a run's every output under `root`."""
    return {"models_dir": str(root / "trained_models"), "plots_dir": str(root / "plots"),
            "tuning_dir": str(root / "tuning_results"),
            "tokenizer_path": str(root / "trained_models" / "tokenizer.json")}


def run_busy_demo(root: Path, quick: bool) -> dict[str, Any]:
    """The demo notebook, headless, beside a busy loop on core 0; seconds and load."""
    from training_assets.notebook import execute_notebook

    if root.exists():
        shutil.rmtree(root)  # a fresh run: nothing reused from an earlier busy run
    overrides: dict[str, Any] = outputs(root)
    if quick:
        overrides.update(models_to_run=["gru"], train_time_budget_seconds=10, decoding_sweep=False)
    busy = subprocess.Popen(BUSY_LOOP, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load_before, started = load_average(), time.perf_counter()
    try:
        execute_notebook(NOTEBOOK, root / "executed.ipynb", overrides)
    finally:
        busy.kill()
        busy.wait()
    return {"notebook_seconds": round(time.perf_counter() - started, 1), "load_before": load_before,
            "load_after": load_average()}


def demo_run_name() -> str:
    """The run name `make demo` uses: the notebook's CONFIG, validated."""
    from data_pipeline.config import ExperimentConfig
    from training_assets.notebook import notebook_config

    return ExperimentConfig.from_dict(notebook_config(NOTEBOOK)).run_name


def family_figures(plots_dir: Path, models_dir: Path) -> dict[str, dict[str, float]]:
    """Per family of a run: steps, epochs' wall seconds, tokens/s and the table's figures."""
    table = pd.read_csv(plots_dir / "comparison.csv").set_index("model")
    figures = {}
    for history_path in sorted(models_dir.glob("*.history.csv")):
        family = history_path.name.removesuffix(".history.csv")
        if family not in table.index:
            continue
        history = pd.read_csv(history_path)
        row = table.loc[family]
        figures[family] = {
            "steps": int(history["epoch_steps"].sum()),
            "train_wall_seconds": float(history["epoch_seconds"].sum()),
            "train_cpu_seconds": float(history.get("epoch_cpu_seconds", pd.Series(dtype=float)).sum()),
            "tokens_per_second": float(row["train_tokens_per_second"]),
            "test_bits_per_char": float(row["test_bits_per_char"]),
            "low": float(row.get("test_bits_per_char_low", float("nan"))),
            "high": float(row.get("test_bits_per_char_high", float("nan"))),
        }
    return figures


def compare(reference: dict[str, dict[str, float]], busy: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    rows = []
    for family, quiet in reference.items():
        if family not in busy:
            continue
        loaded = busy[family]
        inside = quiet["low"] <= loaded["test_bits_per_char"] <= quiet["high"]
        rows.append({
            "family": family, "steps_quiet": quiet["steps"], "steps_busy": loaded["steps"],
            "steps_busy_over_quiet": round(loaded["steps"] / quiet["steps"], 3),
            "wall_s_quiet": round(quiet["train_wall_seconds"], 1),
            "wall_s_busy": round(loaded["train_wall_seconds"], 1),
            "tokens_per_s_quiet": round(quiet["tokens_per_second"]),
            "tokens_per_s_busy": round(loaded["tokens_per_second"]),
            "bits_per_char_quiet": round(quiet["test_bits_per_char"], 4),
            "quiet_interval": f"[{quiet['low']:.4f}, {quiet['high']:.4f}]",
            "bits_per_char_busy": round(loaded["test_bits_per_char"], 4),
            "inside_quiet_interval": bool(inside),
            "goal_met": bool(inside and loaded["steps"] / quiet["steps"] >= STEPS_GOAL)})
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__, argv, extra=lambda parser: (
        parser.add_argument("--reference", default=None,
                            help="the quiet demo run: its name or plots/<run> folder (default: "
                                 "the run of the notebook's CONFIG)"),
        parser.add_argument("--compare-only", action="store_true",
                            help="compare the last busy run with the reference, train nothing")))
    started = time.perf_counter()
    root = RESULTS_DIR / NAME
    run = {} if args.compare_only else run_busy_demo(root, args.quick)
    reference = find_run(args.reference or demo_run_name())
    rows = compare(family_figures(reference.plots_dir, reference.models_dir),
                   family_figures(root / "plots", root / "trained_models"))
    path = write_results(NAME, {"run": run, "goal_steps": STEPS_GOAL, "rows": rows}, args.quick, started)
    report(NAME, rows, path, [f"busy run: {run}" if run else "compared an existing busy run"])


if __name__ == "__main__":
    main(sys.argv[1:])
