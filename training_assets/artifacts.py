"""Files a run leaves behind (checkpoints, manifests, tuning folders): written atomically, and moved
aside, never deleted, when they belong to a different run."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

logger = logging.getLogger("training_assets")


def move_aside(path: str | os.PathLike, reason: str) -> Path | None:
    """Rename `path` (file or folder) to `<name>.moved-<timestamp>` beside it; log why. None if absent."""
    path = Path(path)
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.moved-{stamp}")
    counter = 1
    while target.exists():
        target = path.with_name(f"{path.name}.moved-{stamp}-{counter}")
        counter += 1
    path.rename(target)
    logger.warning("moved %s aside to %s: %s", path, target.name, reason)
    return target


def mismatched_keys(found: Mapping[str, Any] | None, expected: Mapping[str, Any]) -> list[str]:
    """Keys of `expected` whose value in `found` differs (all of them when there is no manifest)."""
    if found is None:
        return list(expected)
    return [key for key, value in expected.items() if _comparable(found.get(key)) != _comparable(value)]


def _comparable(value: Any) -> Any:
    """Round-trip through JSON so tuples/lists and int/float keys compare as they are stored."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))
