"""Search spaces: each family's reference ranges, narrowed or fixed by CONFIG, declared on a `hp`.

A family lists its hyperparameters as `Dimension`s in a table beside its builder. `resolve` turns
a table and `config.hyperparameters[family]` into checked `Declaration`s:
scalar -> Fixed, list -> Choice, dict {min, max, step, sampling} -> Int / Float. A dimension with
`tuned=False` (a recipe switch, not a size) is Fixed at its default unless CONFIG lists values.
`declare` makes the keras-tuner calls on a `hp`. The `default` of each dimension is the value used
without tuning; it always lies inside the (possibly narrowed) range, so an untuned run and a tuned
run explore the same space.

Nothing here imports keras or keras_tuner (`declare` only calls methods of the `hp` it is given):
CONFIG validation checks hyperparameters with this module before TensorFlow loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping

from data_pipeline.errors import ConfigError

if TYPE_CHECKING:
    import keras_tuner as kt

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
    tuned: bool = True  # False: the tuner keeps the default unless CONFIG gives a list


SearchSpace = Mapping[str, Dimension]

# Shared by every family: the reference project's ranges.
LEARNING_RATE = Dimension("choice", 1e-3, values=(1e-2, 1e-3, 1e-4), sampling="log",
                          lowest=1e-7, highest=1.0)
DROPOUT = Dimension("float", 0.2, min=0.2, max=0.5, step=0.1, lowest=0.0, highest=1.0,
                    below_highest=True)
NUM_LAYERS = Dimension("int", 1, min=1, max=2, step=1, lowest=1, highest=64)
EMBEDDING_DIM = Dimension("int", 128, min=64, max=256, step=64, lowest=1, highest=65536)
TIE_EMBEDDINGS = Dimension("boolean", True)


@dataclass(frozen=True)
class Declaration:
    """One hyperparameter as CONFIG shaped it: the keras-tuner call that declares it on a `hp`."""

    method: Literal["Fixed", "Choice", "Boolean", "Int", "Float"]
    default: Any  # Fixed: the value
    values: tuple[Any, ...] = ()  # Choice
    min: float | None = None  # Int / Float
    max: float | None = None
    step: float | None = None
    sampling: str = "linear"

    def declare(self, hp: kt.HyperParameters, name: str) -> Any:
        """Declare on `hp`; return its current value (a trial's value, or the default)."""
        if self.method == "Fixed":
            return hp.Fixed(name, self.default)
        if self.method == "Boolean":
            return hp.Boolean(name, default=self.default)
        if self.method == "Choice":
            return hp.Choice(name, list(self.values), default=self.default)
        method = hp.Int if self.method == "Int" else hp.Float
        return method(name, self.min, self.max, step=self.step, sampling=self.sampling,
                      default=self.default)


def resolve(family: str, space: SearchSpace, overrides: Mapping[str, Any] | None = None,
            where: str | None = None) -> dict[str, Declaration]:
    """`space` with CONFIG `overrides` applied and checked; a bad one is a one-line ConfigError.

    `where` names the overrides in messages (default: CONFIG['hyperparameters'][family]).
    """
    where = where or f"CONFIG['hyperparameters'][{family!r}]"
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(space))
    if unknown:
        raise ConfigError(f"{where}: unknown name(s) {unknown}; "
                          f"known names for {family!r}: {sorted(space)}")
    return {name: _resolve_one(f"{where}[{name!r}]", dimension, overrides.get(name, _UNSET))
            for name, dimension in space.items()}


def declare(hp: kt.HyperParameters, family: str, space: SearchSpace,
            overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Declare `space` on `hp` with CONFIG `overrides` applied; return the current values."""
    return {name: declaration.declare(hp, name)
            for name, declaration in resolve(family, space, overrides).items()}


class _Unset:
    pass


_UNSET = _Unset()


def _resolve_one(where: str, dim: Dimension, override: Any) -> Declaration:
    if isinstance(override, _Unset):
        return _reference(dim)
    if isinstance(override, Mapping):
        return _resolve_range(where, dim, override)
    if isinstance(override, (list, tuple)):
        if not override:
            raise ConfigError(f"{where} = []: give at least one value, or remove the key")
        values = tuple(_checked(where, dim, value) for value in override)
        default = dim.default if dim.default in values else values[0]
        return Declaration("Choice", default, values=values)
    return Declaration("Fixed", _checked(where, dim, override))


def _reference(dim: Dimension) -> Declaration:
    if not dim.tuned:
        return Declaration("Fixed", dim.default)
    if dim.kind == "boolean":
        return Declaration("Boolean", dim.default)
    if dim.kind == "choice":
        return Declaration("Choice", dim.default, values=dim.values)
    return Declaration("Int" if dim.kind == "int" else "Float", dim.default, min=dim.min,
                       max=dim.max, step=dim.step, sampling=dim.sampling)


def _resolve_range(where: str, dim: Dimension, override: Mapping[str, Any]) -> Declaration:
    extra = sorted(set(override) - set(RANGE_KEYS))
    if extra:
        raise ConfigError(f"{where}: unknown range key(s) {extra}; use {list(RANGE_KEYS)}")
    if dim.kind == "boolean":
        raise ConfigError(f"{where} = {dict(override)!r}: a boolean takes true, false or "
                          "[true, false], not a range")
    if isinstance(dim.default, str):
        raise ConfigError(f"{where} = {dict(override)!r}: a named choice takes one of "
                          f"{list(dim.values)} or a list of them, not a range")
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
    default = dim.default if low <= dim.default <= high else low
    if is_int:
        return Declaration("Int", int(default), min=int(low), max=int(high),
                           step=int(step) if step else 1, sampling=sampling)
    return Declaration("Float", float(default), min=float(low), max=float(high), step=step,
                       sampling=sampling)


def _checked(where: str, dim: Dimension, value: Any) -> Any:
    """A CONFIG value of the right type inside the dimension's validity limits, or ConfigError."""
    if dim.kind == "boolean":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: use true or false")
        return value
    if isinstance(dim.default, str):  # a named choice: one of its values
        if value not in dim.values:
            raise ConfigError(f"{where} = {value!r}: use one of {list(dim.values)}")
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
