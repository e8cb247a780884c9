"""JSON manifests and other small files, read tolerantly and written atomically.

Shared by the tokenizer cache (here) and the checkpoints and tuning folders (training_assets), so
every stage agrees on one rule: readers never see half a file, and an unreadable one counts as absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write via a temporary file and rename: other workers or a killed run never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in `path`, or None if the file is missing or unreadable (e.g. half-written)."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(path: str | os.PathLike, value: Mapping[str, Any]) -> None:
    write_text_atomically(path, json.dumps(value, indent=2, sort_keys=True, default=str))
