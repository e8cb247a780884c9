"""Run the notebook headless (papermill), optionally overriding CONFIG keys: what `make demo` does.

    python -m training_assets.notebook IN.ipynb OUT.ipynb [--set KEY=JSON ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from training_assets.run import parse_override


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
    parser.add_argument("destination")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out = execute_notebook(args.source, args.destination, dict(map(parse_override, args.set)))
    print(f"executed notebook written to {out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
