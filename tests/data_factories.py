"""Small generated corpora and configs for the data pipeline tests (tests/test_data_*.py)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.config import ExperimentConfig

WORDS = ("police", "council", "fire", "plan", "water", "court", "rain", "new", "man", "school",
         "market", "health", "road", "crash", "govt", "back", "win", "funds", "call", "farm")


def documents(count: int, seed: int = 0, words: int = 6) -> list[str]:
    """`count` distinct headline-like documents: a numbered tag keeps every one unique."""
    rng = np.random.default_rng(seed)
    return [f"{' '.join(rng.choice(WORDS, size=words))} item{i}" for i in range(count)]


def make_config(tmp_path: Path, **overrides: Any) -> ExperimentConfig:
    """A config whose every output path is inside tmp_path."""
    settings: dict[str, Any] = {
        "tokenizer_path": str(tmp_path / "tokenizer" / "tokenizer.json"),
        "download_dir": str(tmp_path / "downloads"),
        "text_column": "headline_text",  # the CSVs these tests write; guessing: tests/test_runs.py
        "models_to_run": ["gru"],
        "vocab_size": 300,
        "max_len": 8,
        "batch_size": 4,
        # tiny runs of tens of steps: an average trailing ~100 steps would still hold the initial weights
        "ema_momentum": None,
    }
    settings.update(overrides)
    return ExperimentConfig.from_dict(settings)


def write_csv(path: Path, rows: list[list[Any]], header: list[str],
              encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path
