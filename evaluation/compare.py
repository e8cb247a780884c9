"""Runs side by side: every row of their tables, the settings that differ, one plot of curves.

    python -m evaluation.compare RUN [RUN ...] [--out plots/compared.png]

A RUN is a run's name (e.g. fortunes-d997d75f) or its plots/<run> or trained_models/<run>
folder. Prints the config keys whose values differ between the runs, then one table of every
row of every run (a `run` column first), and draws every model's validation perplexity per epoch
on one plot (read from each run's `*.history.csv`). Runs are found and checked before anything
heavy is imported, so an unknown run fails in one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from data_pipeline.config import NOT_RESULT_KEYS
from data_pipeline.errors import DataError
from evaluation.runs import Run, find_run

SHOWN_COLUMNS = ("model", "parameters", "test_perplexity", "test_bits_per_char",
                 "difference_from_best", "train_seconds", "generation_ms_per_token", "bleu_4",
                 "self_bleu_4")


def differing_settings(runs: Sequence[Run]) -> "pd.DataFrame":
    """One column per run, one row per CONFIG key whose value differs between the runs (where
    files go and how progress shows are left out)."""
    import pandas as pd

    configs = [run.config for run in runs]
    keys = sorted({key for config in configs for key in config} - NOT_RESULT_KEYS)
    rows = {}
    for key in keys:
        values = [json.dumps(config.get(key), sort_keys=True) if key in config else "(absent)"
                  for config in configs]
        if len(set(values)) > 1:
            rows[key] = values
    return pd.DataFrame.from_dict(rows, orient="index", columns=[run.name for run in runs])


def combined_table(runs: Sequence[Run]) -> "pd.DataFrame":
    """Every row of every run's comparison.csv, with the run's name as the first column."""
    import pandas as pd

    frames = []
    for run in runs:
        path = run.plots_dir / "comparison.csv"
        if not path.is_file():
            raise DataError(f"run {run.name!r} has no table {str(path)!r}: it has not finished; "
                            "run it again with the same run_name to resume it")
        frame = pd.read_csv(path)
        frame.insert(0, "run", run.name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def plot_validation_curves(runs: Sequence[Run], out: str | Path) -> Path:
    """Validation perplexity after each epoch of every model of every run, one line each (the
    models' `*.history.csv`, as training wrote them). Perplexity is per token of each run's
    tokenizer: compare runs with different tokenizers by the table's bits/char instead."""
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), layout="constrained")
    axis = figure.subplots()
    styles = ["-", "--", ":", "-."]
    for index, run in enumerate(runs):
        for history in sorted(run.models_dir.glob("*.history.csv")):
            frame = pd.read_csv(history)
            if "val_perplexity" not in frame or frame["val_perplexity"].dropna().empty:
                continue
            model = history.name.removesuffix(".history.csv")
            axis.plot(range(1, len(frame) + 1), frame["val_perplexity"], styles[index % 4],
                      marker="o", markersize=3, label=f"{run.name}: {model}")
    if axis.has_data():
        axis.set_yscale("log")
        axis.legend(fontsize="small")
    axis.set(title="Validation perplexity per epoch, by run and model",
             xlabel="Epoch (steps_per_epoch steps each)", ylabel="Validation perplexity (log)")
    axis.grid(alpha=0.3, which="both")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(out, dpi=110)
    return out


def default_plot_path(runs: Sequence[Run]) -> Path:
    """plots/compare/<run>_vs_<run>.png (beside the first run's plots folder): one file per set
    of runs, so no run's own plot is touched."""
    name = "_vs_".join(run.name for run in runs)
    return runs[0].plots_dir.parent / "compare" / f"{name[:150]}.png"


def compare_runs(specs: Sequence[str | Path], out: str | Path | None = None
                 ) -> tuple["pd.DataFrame", "pd.DataFrame", Path]:
    """(settings that differ, every row of every run, the curves' plot) for runs named or
    given by folder; the notebook's comparison cell calls this."""
    runs = [find_run(spec) for spec in specs]
    names = [run.name for run in runs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(f"run {repeated[0]!r} is given twice: name each run once")
    table = combined_table(runs)
    return differing_settings(runs), table, plot_validation_curves(
        runs, out or default_plot_path(runs))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run names or their plots/<run> folders")
    parser.add_argument("--out", help="the curves' PNG (default: plots/compare/<run>_vs_<run>.png)")
    parser.add_argument("--all-columns", action="store_true",
                        help="print every column of the tables, not the main ones")
    args = parser.parse_args(argv)
    try:
        settings, table, plot = compare_runs(args.runs, args.out)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("Settings that differ:" if not settings.empty else "Settings: the same in every run.")
    if not settings.empty:
        print(settings.to_markdown())
    shown = table if args.all_columns else table[
        ["run", *[column for column in SHOWN_COLUMNS if column in table.columns]]]
    print()
    print(shown.to_markdown(index=False, floatfmt=".4g"))
    print(f"\nvalidation curves: {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
