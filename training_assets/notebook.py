"""Run the notebook headless (papermill), optionally overriding CONFIG keys: what `make demo` and
`make run` do.

    python -m training_assets.notebook Text_Synthesis_Comparison.ipynb [--set KEY=JSON ...]
    python -m training_assets.notebook IN.ipynb OUT.ipynb [--set KEY=JSON ...]

Without OUT the executed notebook goes into the run's plots folder (plots/<run_name>/), beside
its table. The notebook's CONFIG with the overrides is validated and the data file checked here,
before a kernel or TensorFlow starts, so a wrong key, run name or path fails in one line.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import ConfigError, DataError
from training_assets.run import parse_override

PARAMETERS_TAG = "parameters"


def notebook_config(source: str | Path) -> dict[str, Any]:
    """The CONFIG dict of the notebook's cell tagged "parameters" (read, not executed)."""
    import nbformat

    notebook = nbformat.read(str(source), as_version=4)
    for cell in notebook.cells:
        if PARAMETERS_TAG in cell.get("metadata", {}).get("tags", []):
            for node in ast.parse(cell.source).body:
                if (isinstance(node, ast.Assign) and len(node.targets) == 1
                        and getattr(node.targets[0], "id", None) == "CONFIG"):
                    return ast.literal_eval(node.value)
    raise ConfigError(f"{str(source)!r} has no cell tagged {PARAMETERS_TAG!r} assigning CONFIG = "
                      "{...}: restore the notebook's CONFIG cell")


def checked_config(source: str | Path, overrides: Mapping[str, Any]) -> ExperimentConfig:
    """The experiment the notebook will run, validated, with its data file checked."""
    config = ExperimentConfig.from_dict({**notebook_config(source), **overrides},
                                        source=f"{Path(source).name} CONFIG + --set")
    check_data_file(config.data_file)
    return config


def check_data_file(data_file: str) -> None:
    """A DataError unless a local data_file exists (a URL or built-in corpus is checked later)."""
    from data_pipeline.sources import BUILTIN_CORPORA, is_text_collection

    if data_file in BUILTIN_CORPORA or "://" in data_file or is_text_collection(data_file):
        return
    if not Path(data_file).is_file():
        raise DataError(f"data_file {data_file!r} does not exist (from {str(Path.cwd())!r}): give "
                        "the path of a .csv or .txt file, a folder or pattern of .txt files, or "
                        "'fortunes'")


def execute_notebook(source: str | Path, destination: str | Path,
                     config_overrides: Mapping[str, Any] | None = None,
                     timeout_seconds: int = 3600) -> Path:
    """Execute top to bottom in the notebook's own folder; CONFIG_OVERRIDES goes in as a parameter.

    Headless, nobody watches a progress bar: `live_progress` is off unless the overrides set it,
    so the executed notebook holds Keras's one line per epoch.
    """
    import papermill

    source, destination = Path(source).resolve(), Path(destination).resolve()
    destination.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(source), str(destination),
        parameters={"CONFIG_OVERRIDES": {"live_progress": False, **(config_overrides or {})}},
        cwd=str(source.parent), kernel_name="python3", progress_bar=False,
        log_output=True, execution_timeout=timeout_seconds)
    return destination


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training_assets.notebook", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("destination", nargs="?", default=None,
                        help="the executed notebook (default: plots/<run_name>/<source's name>)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    args = parser.parse_args(argv)
    try:
        if not Path(args.source).is_file():
            raise DataError(f"notebook {args.source!r} does not exist: pass the path of "
                            "Text_Synthesis_Comparison.ipynb")
        overrides = dict(map(parse_override, args.set))
        config = checked_config(args.source, overrides)
    except (ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:  # installed without the notebook extra
        print(f"error: running the notebook needs {error.name!r}: pip install -e '.[notebook]' "
              "(or use python -m training_assets.run, which needs no notebook)", file=sys.stderr)
        return 2
    destination = args.destination
    if destination is None:  # plots_dir is relative to the notebook's folder, where it runs
        destination = Path(args.source).resolve().parent / config.plots_dir / Path(args.source).name
    print(f"run {config.run_name!r}: executing {args.source} -> {destination}", flush=True)
    started = time.perf_counter()
    try:
        import papermill  # noqa: F401  (the notebook extra)
    except ImportError as error:
        print(f"error: running the notebook needs {error.name!r}: pip install -e '.[notebook]' "
              "(or use python -m training_assets.run, which needs no notebook)", file=sys.stderr)
        return 2
    out = execute_notebook(args.source, destination, overrides)
    print(f"executed notebook written to {out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
