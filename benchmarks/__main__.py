"""Run every benchmark (`make bench`), cheapest first; each module writes benchmarks/results/<name>.json.

torch_gpt is not a benchmark of its own: throughput imports it only when PyTorch is installed.
"""

from __future__ import annotations

import importlib

BENCHMARKS = ("sample_measures", "data_pipeline", "input_pipeline", "determinism", "generation",
              "generation_controls", "export", "throughput", "time_to_quality")


def main() -> None:
    for name in BENCHMARKS:
        print(f"== benchmarks.{name}", flush=True)
        importlib.import_module(f"benchmarks.{name}").main()


if __name__ == "__main__":
    main()
