"""Search spaces: each family's reference ranges, narrowed or fixed by CONFIG, declared on a `hp`.

A family lists its hyperparameters as `Dimension`s beside its builder. `declare` turns them into
keras-tuner calls, applying `config.hyperparameters[family]`:
scalar -> hp.Fixed, list -> hp.Choice, dict {min, max, step, sampling} -> hp.Int / hp.Float.
The `default` of each dimension is the value used without tuning; it always lies inside the
(possibly narrowed) range, so an untuned run and a tuned run explore the same space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

import keras_tuner as kt

from data_pipeline.config import ConfigError

RANGE_KEYS = ("min", "max", "step", "sampling")


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter: its reference range, its untuned default and the values that make sense."""

    kind: Literal["int", "float", "choice", "boolean"]
    default: Any
    min: float | None = None  # int/float range
    max: float | None = None
    step: float | None = None
    sampling: str = "linear"  # also used when a CONFIG dict turns a "choice" into a range
    values: tuple[Any, ...] = ()  # choice values
    lowest: float | None = None  # hard validity limits for any CONFIG value (inclusive)
    highest: float | None = None
    below_highest: bool = False  # True: value must be < highest (e.g. dropout < 1)


SearchSpace = Mapping[str, Dimension]

# Shared by every family: the reference project's ranges.
LEARNING_RATE = Dimension("choice", 1e-3, values=(1e-2, 1e-3, 1e-4), sampling="log",
                          lowest=1e-7, highest=1.0)
DROPOUT = Dimension("float", 0.2, min=0.2, max=0.5, step=0.1, lowest=0.0, highest=1.0,
                    below_highest=True)
NUM_LAYERS = Dimension("int", 1, min=1, max=2, step=1, lowest=1, highest=64)
EMBEDDING_DIM = Dimension("int", 128, min=64, max=256, step=64, lowest=1, highest=65536)
TIE_EMBEDDINGS = Dimension("boolean", True)


def declare(hp: kt.HyperParameters, family: str, space: SearchSpace,
            overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Declare `space` on `hp` with CONFIG `overrides` applied; return the current values."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(space))
    if unknown:
        raise ConfigError(f"CONFIG['hyperparameters'][{family!r}]: unknown name(s) {unknown}; "
                          f"known names for {family!r}: {sorted(space)}")
    return {name: _declare_one(hp, family, name, dimension, overrides.get(name, _UNSET))
            for name, dimension in space.items()}


def default_values(family: str, space: SearchSpace,
                   overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The values used without tuning (a fresh hp holds each dimension's default)."""
    return declare(kt.HyperParameters(), family, space, overrides)


class _Unset:
    pass


_UNSET = _Unset()


def _declare_one(hp: kt.HyperParameters, family: str, name: str, dim: Dimension, override: Any) -> Any:
    where = f"CONFIG['hyperparameters'][{family!r}][{name!r}]"
    if isinstance(override, _Unset):
        return _declare_reference(hp, name, dim)
    if isinstance(override, Mapping):
        return _declare_range(hp, where, name, dim, override)
    if isinstance(override, (list, tuple)):
        if not override:
            raise ConfigError(f"{where} = []: give at least one value, or remove the key")
        values = [_checked(where, dim, value) for value in override]
        default = dim.default if dim.default in values else values[0]
        return hp.Choice(name, values, default=default)
    return hp.Fixed(name, _checked(where, dim, override))


def _declare_reference(hp: kt.HyperParameters, name: str, dim: Dimension) -> Any:
    if dim.kind == "boolean":
        return hp.Boolean(name, default=dim.default)
    if dim.kind == "choice":
        return hp.Choice(name, list(dim.values), default=dim.default)
    method = hp.Int if dim.kind == "int" else hp.Float
    return method(name, dim.min, dim.max, step=dim.step, sampling=dim.sampling, default=dim.default)


def _declare_range(hp: kt.HyperParameters, where: str, name: str, dim: Dimension,
                   override: Mapping[str, Any]) -> Any:
    extra = sorted(set(override) - set(RANGE_KEYS))
    if extra:
        raise ConfigError(f"{where}: unknown range key(s) {extra}; use {list(RANGE_KEYS)}")
    if dim.kind == "boolean":
        raise ConfigError(f"{where} = {dict(override)!r}: a boolean takes true, false or "
                          "[true, false], not a range")
    is_int = dim.kind == "int" or (dim.kind == "choice" and isinstance(dim.default, int))
    low = override.get("min", dim.min)
    high = override.get("max", dim.max)
    if low is None or high is None:
        raise ConfigError(f"{where} = {dict(override)!r}: give both 'min' and 'max' "
                          f"(reference values: {list(dim.values)})")
    low, high = _checked(where, dim, low), _checked(where, dim, high)
    if low > high:
        raise ConfigError(f"{where}: min={low} is greater than max={high}")
    sampling = override.get("sampling", dim.sampling)
    if sampling not in ("linear", "log", "reverse_log"):
        raise ConfigError(f"{where}: sampling={sampling!r}; use 'linear', 'log' or 'reverse_log'")
    if sampling != "linear" and low <= 0:
        raise ConfigError(f"{where}: sampling={sampling!r} needs min > 0 (got {low})")
    # The reference step only fits the reference range; a narrowed range keeps it if given.
    step = override.get("step", dim.step if "min" not in override and "max" not in override else None)
    if is_int:
        step = int(step) if step else 1
    default = dim.default if low <= dim.default <= high else low
    if is_int:
        return hp.Int(name, int(low), int(high), step=step, sampling=sampling, default=int(default))
    return hp.Float(name, float(low), float(high), step=step, sampling=sampling, default=float(default))


def _checked(where: str, dim: Dimension, value: Any) -> Any:
    """A CONFIG value of the right type inside the dimension's validity limits, or ConfigError."""
    if dim.kind == "boolean":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: use true or false")
        return value
    numeric = (int,) if (dim.kind == "int" or isinstance(dim.default, int)) else (int, float)
    if isinstance(value, bool) or not isinstance(value, numeric):
        kind = "an integer" if numeric == (int,) else "a number"
        raise ConfigError(f"{where} = {value!r}: must be {kind}")
    too_low = dim.lowest is not None and value < dim.lowest
    too_high = dim.highest is not None and (value >= dim.highest if dim.below_highest
                                            else value > dim.highest)
    if too_low or too_high:
        upper = f"< {dim.highest}" if dim.below_highest else f"<= {dim.highest}"
        raise ConfigError(f"{where} = {value!r}: must be >= {dim.lowest} and {upper}")
    return value
