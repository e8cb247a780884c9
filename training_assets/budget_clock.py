"""Which clock a time budget counts: wall seconds or this process's CPU seconds.

Another process on the same cores halves the steps a wall-clock budget buys; it does not eat this
process's CPU seconds (time.process_time: all its threads), so on CPUs a CPU-second budget buys
about the same steps on a busy machine as on a quiet one. On GPUs and TPUs the accelerator does the
work and CPU seconds say little about it: there "auto" counts wall seconds.
"""

from __future__ import annotations

import time
from typing import Callable

import tensorflow as tf

CLOCK_UNITS = {"wall": "wall s", "cpu": "CPU s"}  # how a stop reason names the seconds


def resolve_clock(setting: str, strategy: tf.distribute.Strategy | None = None) -> str:
    """"wall" or "cpu" for CONFIG's budget_clock; "auto": "wall" with a visible GPU/TPU, else "cpu"."""
    if setting in CLOCK_UNITS:
        return setting
    if setting != "auto":
        raise ValueError(f"budget_clock={setting!r}: use 'auto', 'wall' or 'cpu'")
    return "wall" if _has_accelerator(strategy) else "cpu"


def _has_accelerator(strategy: tf.distribute.Strategy | None) -> bool:
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def clock_seconds(kind: str) -> Callable[[], float]:
    """A zero-argument callable returning seconds on the resolved clock `kind` ("wall" or "cpu")."""
    if kind == "wall":
        return time.perf_counter
    if kind == "cpu":
        return time.process_time
    raise ValueError(f"clock {kind!r}: resolve budget_clock first (resolve_clock) to 'wall' or 'cpu'")
