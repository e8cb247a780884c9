"""Shared helpers of the benchmarks: quick mode, timing, peak memory, machine description, JSON.

Every benchmark module exposes `main(argv=None)`, accepts `--quick` (or env BENCH_QUICK=1: a short
smoke run whose figures mean nothing) and writes benchmarks/results/<name>.json through
`write_results`, which stamps the machine and its load beside the figures: on a shared machine a
figure without the load it was measured under cannot be read.

Timings record wall seconds and this process's CPU seconds: on a busy machine the wall clock
stretches while CPU seconds per step stay close to what a quiet machine gives, so the pair shows
how much of a slow figure is contention.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ABC_HEADLINES = REPO_ROOT.parent / "shared" / "data" / "abcnews-date-text-sample.csv"
WORKER_FLAG = "--worker"  # argv of a benchmark re-running itself in a child process


# --- command line and modes ----------------------------------------------------------------
def parse_args(description: str, argv: Sequence[str] | None = None,
               extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """`--quick` (also env BENCH_QUICK=1) plus a module's own options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="short smoke run (also env BENCH_QUICK=1); figures are not meaningful")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(list(argv) if argv is not None else [])
    args.quick = args.quick or os.environ.get("BENCH_QUICK", "") not in ("", "0")
    return args


# CONFIG's defaults before the notebook's measured settings became the defaults (vocabulary 2,000,
# 128 x 16 rows, no search, 250 s budgets, the demo's dropout and learning rates): the benchmarks
# were measured with these, so they start from them and their figures repeat.
MEASURED_DEFAULTS = {
    "vocab_size": 4000, "max_len": 64, "batch_size": 32, "hyperparameters": {}, "tuner": "random",
    "final_training_epochs": 3, "steps_per_epoch": None, "train_time_budget_seconds": None,
    "temperature": 0.8, "num_samples": 5, "decoding_sweep": False, "text_column": "headline_text",
    "ema_momentum": None}

def benchmark_data_file() -> tuple[str, str]:
    """(name, data_file): the ABC headlines sample when it is beside the repo, else the built-in corpus."""
    if ABC_HEADLINES.is_file():
        return "abc_headlines", str(ABC_HEADLINES)
    return "fortunes", "fortunes"


def limit_threads(threads: int | None) -> None:
    """Pin TensorFlow (and numpy's BLAS) to `threads`; must run before TensorFlow initialises."""
    if not threads:
        return
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                     "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[variable] = str(threads)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


# --- timing ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    """Wall and CPU seconds of `repeats` runs of something (CPU: this process, all its threads)."""

    wall_seconds: float
    cpu_seconds: float
    repeats: int

    @property
    def wall_per_repeat(self) -> float:
        return self.wall_seconds / max(self.repeats, 1)

    @property
    def cpu_per_repeat(self) -> float:
        return self.cpu_seconds / max(self.repeats, 1)

    @property
    def cpu_utilisation(self) -> float:
        """CPU seconds per wall second: ~threads on an idle machine, less when others take cores."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else float("nan")


def timed(run: Callable[[], Any], repeats: int = 1) -> Timing:
    """Run `run` `repeats` times; wall and process CPU seconds of all of them."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        run()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu, repeats)


def best_of(run: Callable[[], Any], rounds: int, repeats: int = 1) -> Timing:
    """The fastest of `rounds` timings: on a shared machine the least disturbed one."""
    return min((timed(run, repeats) for _ in range(max(rounds, 1))), key=lambda t: t.wall_seconds)


# --- memory ----------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


# --- machine ---------------------------------------------------------------------------------
def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def machine_description() -> dict[str, Any]:
    """CPU model and count, memory, load, library versions: what a figure depends on."""
    import psutil

    versions = {}
    for module in ("tensorflow", "keras", "keras_hub", "numpy", "torch"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    return {
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_1m_5m_15m": [round(value, 2) for value in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --- results ---------------------------------------------------------------------------------
def write_results(name: str, payload: Mapping[str, Any], quick: bool, started: float,
                  command: str | None = None) -> Path:
    """benchmarks/results/<name>.json (quick runs: <name>.quick.json, never the real figures).

    `command`: how the figures were made, when not `python -m benchmarks.<name> [--quick]`.
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / (f"{name}.quick.json" if quick else f"{name}.json")
    document = {
        "benchmark": name,
        "command": command or f"python -m benchmarks.{name}" + (" --quick" if quick else ""),
        "quick": quick,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine_description(),
        **payload,
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def markdown_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """A printed table of result rows (floats rounded to 4 significant digits)."""
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    return frame.to_markdown(index=False, floatfmt=".4g") if not frame.empty else "(no rows)"


def report(name: str, rows: Sequence[Mapping[str, Any]], path: Path, notes: Sequence[str] = ()) -> None:
    print(f"-- {name}")
    print(markdown_table(rows))
    for note in notes:
        print(note)
    print(f"load average now: {load_average()}; written: {path}")


# --- child processes -------------------------------------------------------------------------
def run_worker(module: str, arguments: Mapping[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """Run `python -m benchmarks.<module> --worker JSON` and return the JSON it prints last.

    Thread counts can only be set before TensorFlow or PyTorch initialise, so each setting runs
    in its own process.
    """
    command = [sys.executable, "-m", f"benchmarks.{module}", WORKER_FLAG, json.dumps(dict(arguments))]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=REPO_ROOT)
    lines = [line for line in finished.stdout.splitlines() if line.startswith("{")]
    if finished.returncode != 0 or not lines:
        tail = "\n".join((finished.stderr or finished.stdout).splitlines()[-15:])
        raise RuntimeError(f"benchmark worker {module} {dict(arguments)} failed "
                           f"(exit {finished.returncode}):\n{tail}")
    return json.loads(lines[-1])


def worker_arguments(argv: Sequence[str] | None) -> dict[str, Any] | None:
    """The JSON arguments when this process is a worker (argv = [--worker, JSON]), else None."""
    argv = list(argv if argv is not None else sys.argv[1:])
    if len(argv) == 2 and argv[0] == WORKER_FLAG:
        return json.loads(argv[1])
    return None


def print_worker_result(result: Mapping[str, Any]) -> None:
    print(json.dumps(dict(result), default=_jsonable), flush=True)


def served_as_worker(argv: Sequence[str] | None, work: Callable[[dict[str, Any]], Mapping[str, Any]]) -> bool:
    """In a worker process (argv = [--worker, JSON]): print `work(arguments)` as JSON, return True."""
    arguments = worker_arguments(argv)
    if arguments is None:
        return False
    print_worker_result(work(arguments))
    return True
