"""A run, found from its name or any of its folders, without TensorFlow.

A run named N keeps its files in trained_models/N/ (checkpoints, manifests, histories, the
tokenizer), tuning_results/N/ (keras-tuner trials) and plots/N/ (table, per-document scores,
samples, plots, config.json, environment.json). Each of its models and plots folders holds
`run.json`: the run's name, its folders and the checkpoint chosen on validation. The generate,
export, panel and compare commands take a run as well as a checkpoint file, through here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_pipeline.errors import DataError

RUN_RECORD = "run.json"
OUTPUT_HOMES = ("plots", "trained_models", "tuning_results")


@dataclass(frozen=True)
class Run:
    name: str
    models_dir: Path
    plots_dir: Path
    tuning_dir: Path
    record: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        """The config as run (plots/<run>/config.json), {} when it was not written."""
        return _read_json(self.plots_dir / "config.json")

    def checkpoints(self) -> list[Path]:
        """Every trained model of the run (each family, each seed), in name order."""
        return sorted(self.models_dir.glob("*.keras"))

    def best_checkpoint(self) -> Path:
        """The checkpoint chosen on validation; the only one if there is one; else a DataError."""
        recorded = self.record.get("best_checkpoint")
        if recorded:
            for candidate in (Path(recorded), self.models_dir / Path(recorded).name):
                if candidate.is_file():
                    return candidate
        found = self.checkpoints()
        if len(found) == 1:
            return found[0]
        if not found:
            raise DataError(f"run {self.name!r} has no trained model in {str(self.models_dir)!r}: "
                            "train it first (make run, or python -m training_assets.run)")
        raise DataError(f"run {self.name!r} has not chosen a best model yet (it did not finish): "
                        f"pass one of {[str(p) for p in found]}")


def find_run(spec: str | Path) -> Run:
    """The run named `spec`, or whose models or plots folder `spec` is; DataError otherwise."""
    path = Path(spec)
    candidates = [path / RUN_RECORD] if path.is_dir() else []
    if not path.is_dir() and len(path.parts) == 1:  # a bare name: look in the output homes
        candidates = [Path(home) / str(spec) / RUN_RECORD for home in OUTPUT_HOMES]
    for record_path in candidates:
        if record_path.is_file():
            return _run_from_record(record_path)
    runs = known_runs()
    listing = f"known runs: {', '.join(runs[:10])}" if runs else "no run has finished here yet"
    if path.is_dir():
        raise DataError(f"{str(spec)!r} is not a run folder (no {RUN_RECORD} in it): give a run's "
                        f"name or its plots/<run> or trained_models/<run> folder; {listing}")
    raise DataError(f"run {str(spec)!r} not found (no folder plots/{spec} or trained_models/{spec} "
                    f"with {RUN_RECORD}, from {str(Path.cwd())!r}): {listing}")


def known_runs() -> list[str]:
    """Names of the runs under plots/ and trained_models/ here, sorted."""
    return sorted({record.parent.name for home in OUTPUT_HOMES[:2]
                   for record in Path(home).glob(f"*/{RUN_RECORD}")})


def model_files(spec: str | Path, best_only: bool = False) -> list[Path]:
    """A checkpoint file as it is; a run's checkpoints (or its best one). DataError otherwise."""
    path = Path(spec)
    if path.is_file() or path.suffix == ".keras":
        return [path]  # a missing .keras file is reported by the caller, naming --model
    run = find_run(spec)
    if best_only:
        return [run.best_checkpoint()]
    found = run.checkpoints()
    if not found:
        raise DataError(f"run {run.name!r} has no trained model in {str(run.models_dir)!r}")
    return found


def _run_from_record(record_path: Path) -> Run:
    record = _read_json(record_path)
    if not record.get("run_name"):
        raise DataError(f"{str(record_path)!r} is not a run record: rerun the experiment")
    folder = record_path.parent
    # The recorded folders are relative to where the run ran; find that root from this folder.
    root = None
    for key in ("plots_dir", "models_dir"):
        recorded = Path(record.get(key) or "")
        if recorded.is_absolute():
            continue
        parts = recorded.parts
        if parts and folder.resolve().parts[-len(parts):] == parts:
            root = folder.resolve().parents[len(parts) - 1]
            break
    def place(key: str) -> Path:
        value = Path(record.get(key) or "")
        return value if value.is_absolute() or root is None else root / value
    return Run(record["run_name"], place("models_dir"), place("plots_dir"), place("tuning_dir"),
               record)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
