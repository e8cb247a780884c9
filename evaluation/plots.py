"""The comparison's figures as PNG files (returned as paths for the notebook to show).

Figures are built with matplotlib's object API on the Agg canvas, not pyplot: no display is
needed, nothing changes the notebook's backend, and no figure stays open after saving.
Each model family keeps one colour in every figure.
"""

from __future__ import annotations

import logging
import math
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, MaxNLocator

from evaluation.intervals import p_phrase
from evaluation.report import ModelReport
from model_architectures.registry import family_names

if TYPE_CHECKING:
    import pandas as pd

    from evaluation.decoding_sweep import SweepPoint
    from training_assets.trainer import TrainingResult

logger = logging.getLogger("evaluation")

# Matplotlib's categorical colours without grey (the baseline's): registered families take them
# in registry order, any other name a stable one of those left.
_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
            "tab:olive", "tab:cyan")
FAMILY_COLOURS = {name: _PALETTE[index % len(_PALETTE)] for index, name in enumerate(family_names())}
_OTHER_COLOURS = _PALETTE[len(FAMILY_COLOURS):] or _PALETTE
BASELINE_COLOUR = "tab:gray"
_HISTORY_PANELS = (("loss", "Loss (nats per token)", False),
                   ("perplexity", "Perplexity (log scale)", True),
                   ("accuracy", "Next-token accuracy", False))


def family_colour(name: str) -> str:
    """The colour of a model in every figure: fixed for the known families, stable otherwise."""
    if name in FAMILY_COLOURS:
        return FAMILY_COLOURS[name]
    if name.startswith("kn_"):
        return BASELINE_COLOUR
    return _OTHER_COLOURS[sum(map(ord, name)) % len(_OTHER_COLOURS)]


def _log_y(axis) -> None:
    """Log scale with plain numbers (60, not 6x10^1) on the ticks."""
    axis.set_yscale("log")
    axis.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    axis.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _save(figure: Figure, plots_dir: str | Path, name: str) -> Path:
    path = Path(plots_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)  # attaches the Agg canvas: PNG without any display
    figure.savefig(path, dpi=110)
    return path


def plot_histories(results: Sequence["TrainingResult"], plots_dir: str | Path) -> Path:
    """Training (solid) and validation (dashed) loss, perplexity and accuracy per epoch."""
    figure = Figure(figsize=(15, 4.2), layout="constrained")
    axes = figure.subplots(1, len(_HISTORY_PANELS))
    for axis, (metric, label, log_scale) in zip(axes, _HISTORY_PANELS):
        for result in results:
            colour = family_colour(result.family)
            lines = ((metric, "-", "train"), (f"val_{metric}", "--", "validation"))
            for key, style, suffix in lines:
                values = result.history.get(key)
                if values:
                    axis.plot(range(1, len(values) + 1), values, style, marker="o", markersize=3,
                              color=colour, label=f"{result.family} {suffix}")
        axis.set(title=label.split(" (")[0] + " per epoch", xlabel="Epoch", ylabel=label)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log_scale and axis.has_data():
            _log_y(axis)
        axis.grid(alpha=0.3)
    if axes[0].has_data():
        axes[0].legend(fontsize="small")
    figure.suptitle("Training history (solid: training, dashed: validation)")
    return _save(figure, plots_dir, "training_history.png")


def plot_training_time(reports: Sequence[ModelReport], plots_dir: str | Path) -> Path:
    """Wall-clock training seconds per model (for the n-gram baseline: its fit time)."""
    timed = [report for report in reports if report.train_seconds is not None]
    figure = Figure(figsize=(7, 4), layout="constrained")
    axis = figure.subplots()
    names = [report.model for report in timed]
    seconds = [report.train_seconds for report in timed]
    bars = axis.bar(names, seconds, color=[family_colour(name) for name in names])
    axis.bar_label(bars, labels=[f"{value:.3g} s" for value in seconds], fontsize="small")
    if seconds and min(seconds) > 0 and max(seconds) / min(seconds) > 50:
        _log_y(axis)  # an n-gram fit in 0.1 s next to minutes of training
    axis.set(title="Training time", xlabel="Model", ylabel="Wall-clock seconds")
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, plots_dir, "training_time.png")


def plot_validation_vs_time(results: Sequence["TrainingResult"], plots_dir: str | Path) -> Path:
    """Validation perplexity after each epoch against cumulative training seconds.

    Quality per unit of compute: the honest comparison between a fast small model and a slow
    large one. Epochs without a recorded duration (history longer than epoch_seconds) are left out.
    """
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axis = figure.subplots()
    for result in results:
        perplexities = result.history.get("val_perplexity") or []
        if not perplexities:  # a model without a likelihood (a GAN) has none
            continue
        if len(perplexities) != len(result.epoch_seconds):
            logger.warning("%s: %d validation perplexities but %d epoch durations; plotting the "
                           "first %d", result.family, len(perplexities), len(result.epoch_seconds),
                           min(len(perplexities), len(result.epoch_seconds)))
        elapsed = list(accumulate(result.epoch_seconds))
        points = list(zip(elapsed, perplexities))
        if points:
            axis.plot(*zip(*points), marker="o", color=family_colour(result.family),
                      label=result.family)
    if axis.has_data():
        _log_y(axis)
        axis.legend()
    axis.set(title="Validation perplexity against training time",
             xlabel="Cumulative training seconds (wall clock)",
             ylabel="Validation perplexity (log scale)")
    axis.grid(alpha=0.3, which="both")
    return _save(figure, plots_dir, "validation_perplexity_vs_time.png")


def plot_test_metrics(reports: Sequence[ModelReport], plots_dir: str | Path,
                      table: "pd.DataFrame | None" = None) -> Path:
    """Test perplexity and bits/char per model; baselines drawn as horizontal reference lines.

    With the comparison `table`, the bits/char panel shows each row's 95% interval (error bars,
    and a shaded band around a baseline's line) and the figures are the table's (means over
    seeds)."""
    # a model without a likelihood (a GAN) has no bar: its figures are not defined
    models = [report for report in reports
              if not report.baseline and math.isfinite(report.evaluation.perplexity)]
    baselines = [report for report in reports if report.baseline]
    rows = None if table is None or "test_bits_per_char_low" not in table else table.set_index("model")
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    axes = figure.subplots(1, 2)
    panels = (("perplexity", "Test perplexity (log scale)", True, ".1f"),
              ("bits_per_char", "Test bits per character", False, ".3f"))
    for axis, (field, label, log_scale, number) in zip(axes, panels):
        names = [report.model for report in models]
        values = [_table_value(rows, report, field) for report in models]
        errors = _interval_errors(rows, names, values) if field == "bits_per_char" else None
        bars = axis.bar(names, values, color=[family_colour(name) for name in names],
                        yerr=errors, capsize=6 if errors is not None else 0,
                        error_kw={"elinewidth": 1.2})
        axis.bar_label(bars, labels=[format(value, number) for value in values], fontsize="small",
                       label_type="center" if errors is not None else "edge", padding=3,
                       color="white" if errors is not None else "black")
        for baseline in baselines:
            value = _table_value(rows, baseline, field)
            axis.axhline(value, color=family_colour(baseline.model), linestyle="--",
                         label=f"{baseline.model} baseline: {value:{number}}")
            if field == "bits_per_char" and rows is not None and baseline.model in rows.index:
                low, high = rows.loc[baseline.model, ["test_bits_per_char_low",
                                                      "test_bits_per_char_high"]]
                if math.isfinite(low) and math.isfinite(high):
                    axis.axhspan(low, high, color=family_colour(baseline.model), alpha=0.12,
                                 label=f"{baseline.model} 95% interval")
        if log_scale:
            _log_y(axis)
        elif errors is not None:
            tops = [v + e for v, e in zip(values, errors[1])] + [
                _table_value(rows, b, field) for b in baselines]
            bottoms = [v - e for v, e in zip(values, errors[0])] + [
                _table_value(rows, b, field) for b in baselines]
            finite = [x for x in tops + bottoms if math.isfinite(x)]
            if finite:  # zoomed on the figures, so the intervals can be seen
                span = max(finite) - min(finite) or 0.1
                axis.set_ylim(min(finite) - 0.3 * span, max(finite) + 0.3 * span)
        title = label.split(" (")[0] + " (lower is better)"
        if errors is not None:
            title += "\nbars: 95% bootstrap intervals over test documents"
        axis.set(title=title, xlabel="Model", ylabel=label)
        axis.grid(axis="y", alpha=0.3, which="both")
        if baselines:
            axis.legend(fontsize="small")
    return _save(figure, plots_dir, "test_metrics.png")


def _table_value(rows: "pd.DataFrame | None", report: ModelReport, field: str) -> float:
    """The table's figure (mean over seeds) when there is a table row, else the report's own."""
    column = f"test_{field}"
    if rows is not None and report.model in rows.index and column in rows:
        return float(rows.loc[report.model, column])
    return getattr(report.evaluation, field)


def _interval_errors(rows: "pd.DataFrame | None", names: Sequence[str],
                     values: Sequence[float]) -> list[list[float]] | None:
    """matplotlib's yerr [below, above] from the table's interval columns; None without them."""
    if rows is None:
        return None
    below, above = [], []
    for name, value in zip(names, values):
        low, high = (rows.loc[name, ["test_bits_per_char_low", "test_bits_per_char_high"]]
                     if name in rows.index else (math.nan, math.nan))
        below.append(value - low if math.isfinite(low) else 0.0)
        above.append(high - value if math.isfinite(high) else 0.0)
    return [below, above]


def plot_differences(table: "pd.DataFrame", plots_dir: str | Path) -> Path:
    """Each row's test bits/char minus the best row's, with the paired 95% interval and the
    Holm-corrected p-value: what tells two rows apart (their own intervals share the test set's
    variance and overlap far more)."""
    rows = table[table["difference_from_best"].notna()].iloc[::-1]  # best at the top
    figure = Figure(figsize=(8, 0.6 * len(rows) + 1.6), layout="constrained")
    axis = figure.subplots()
    positions = range(len(rows))
    values = rows["difference_from_best"].to_numpy(float)
    below = values - rows["difference_low"].to_numpy(float)
    above = rows["difference_high"].to_numpy(float) - values
    for position, (name, value, low, high, p) in enumerate(zip(
            rows["model"], values, below, above, rows["p_value_holm"])):
        axis.errorbar(value, position, xerr=[[low], [high]], fmt="o", capsize=5,
                      color=family_colour(name))
        label = "best" if value == 0 and not math.isfinite(p) else p_phrase(p)
        axis.annotate(label, (value + high, position), xytext=(6, 0), textcoords="offset points",
                      va="center", fontsize="small")
    axis.axvline(0.0, color="grey", linestyle="--", linewidth=1)
    axis.set_yticks(list(positions), list(rows["model"]))
    axis.set(title="Test bits per character minus the best row's\n(paired 95% bootstrap "
                   "intervals, Holm-corrected p-values)",
             xlabel="Difference in bits per character (right of 0: worse than the best)")
    axis.grid(axis="x", alpha=0.3)
    return _save(figure, plots_dir, "differences_from_best.png")


def plot_loss_by_position(reports: Sequence[ModelReport], plots_dir: str | Path) -> Path:
    """Test loss at each context position of a row, one line per model.

    Position p predicts its target from p tokens of the row; a recurrent model's state and an
    attention model's window use that context differently, most visibly at the first positions.
    """
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axis = figure.subplots()
    for report in reports:
        losses = report.evaluation.loss_by_position
        if losses:
            axis.plot(range(1, len(losses) + 1), losses, marker="o" if len(losses) == 1 else None,
                      color=family_colour(report.model), label=report.model)
    if axis.has_data():
        axis.legend()
    axis.set(title="Test loss by context position", xlabel="Context position (tokens of the row seen)",
             ylabel="Mean test loss (nats per token)")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    return _save(figure, plots_dir, "loss_by_position.png")


def quality_frontier(points: Sequence["SweepPoint"]) -> list["SweepPoint"]:
    """The points no other point beats on both measures (higher BLEU-4 and lower self-BLEU-4),
    by increasing self-BLEU-4: a model's quality-diversity curve."""
    scored = sorted((p for p in points if not math.isnan(p.bleu_4) and not math.isnan(p.self_bleu_4)),
                    key=lambda p: (p.self_bleu_4, -p.bleu_4))
    frontier: list["SweepPoint"] = []
    for point in scored:
        if not frontier or point.bleu_4 > frontier[-1].bleu_4:
            frontier.append(point)
    return frontier


def plot_quality_diversity(sweeps: Mapping[str, Sequence["SweepPoint"]],
                           plots_dir: str | Path) -> Path:
    """BLEU-4 (quality) against self-BLEU-4 (repetition) over the decoding sweep, per model.

    Every grid point is a marker labelled with its temperature and top-p; the line joins the
    points no other point of the model beats on both measures (its quality-diversity curve).
    """
    figure = Figure(figsize=(8, 5.5), layout="constrained")
    axis = figure.subplots()
    for model, points in sweeps.items():
        colour = family_colour(model)
        frontier = quality_frontier(points)
        axis.plot([p.self_bleu_4 for p in frontier], [p.bleu_4 for p in frontier],
                  "--" if colour == BASELINE_COLOUR else "-", color=colour, label=model)
        axis.scatter([p.self_bleu_4 for p in points], [p.bleu_4 for p in points], s=18,
                     color=colour)
        for point in points:
            axis.annotate(f"T{point.temperature:g} p{point.top_p:g}",
                          (point.self_bleu_4, point.bleu_4), fontsize=6, color=colour,
                          xytext=(3, 2), textcoords="offset points")
    if axis.has_data():
        axis.legend()
    axis.set(title="Quality against diversity of samples over temperature x top-p",
             xlabel="Self-BLEU-4 (lower: more diverse samples)",
             ylabel="BLEU-4 against the test documents (higher: closer to real text)")
    axis.grid(alpha=0.3)
    return _save(figure, plots_dir, "quality_diversity.png")


def plot_all(training_results: Sequence["TrainingResult"], reports: Sequence[ModelReport],
             plots_dir: str | Path,
             sweeps: Mapping[str, Sequence["SweepPoint"]] | None = None,
             table: "pd.DataFrame | None" = None) -> list[Path]:
    """Every figure of the comparison, as PNG paths in the order the notebook shows them.

    The quality-diversity figure only with a decoding sweep (`sweeps`: model -> its points).
    """
    paths = [plot_histories(training_results, plots_dir),
             plot_training_time(reports, plots_dir),
             plot_validation_vs_time(training_results, plots_dir),
             plot_test_metrics(reports, plots_dir, table),
             plot_loss_by_position(reports, plots_dir)]
    if table is not None and "difference_from_best" in table and table["difference_from_best"].notna().any():
        paths.append(plot_differences(table, plots_dir))
    if sweeps:
        paths.append(plot_quality_diversity(sweeps, plots_dir))
    return paths
