"""Run every benchmark module of this package (each exposes `main()`), in name order."""

from __future__ import annotations

import importlib
import pkgutil

import benchmarks


def main() -> None:
    for module_info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"benchmarks.{module_info.name}")
        if callable(getattr(module, "main", None)):
            print(f"== benchmarks.{module_info.name}")
            module.main()


if __name__ == "__main__":
    main()
