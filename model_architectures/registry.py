"""The registry: model family name -> builder, and the two calls the rest of the project uses."""

from __future__ import annotations

import difflib
from functools import partial
from typing import Any, Callable, Mapping

import keras
import keras_tuner as kt

from data_pipeline.config import ConfigError
from model_architectures.recurrent import RECURRENT_SPACE, build_recurrent
from model_architectures.search_space import SearchSpace, declare
from model_architectures.transformer import TRANSFORMER_SPACE, build_transformer

# builder(hp, vocab_size, max_len, overrides) -> uncompiled keras.Model
Builder = Callable[[kt.HyperParameters, int, int, Mapping[str, Any] | None], keras.Model]

MODEL_BUILDERS: dict[str, Builder] = {
    "lstm": partial(build_recurrent, cell="lstm"),
    "gru": partial(build_recurrent, cell="gru"),
    "simple_rnn": partial(build_recurrent, cell="simple_rnn"),
    "transformer": build_transformer,
}

SEARCH_SPACES: dict[str, SearchSpace] = {
    "lstm": RECURRENT_SPACE,
    "gru": RECURRENT_SPACE,
    "simple_rnn": RECURRENT_SPACE,
    "transformer": TRANSFORMER_SPACE,
}


def _check_family(family: str) -> None:
    if family not in MODEL_BUILDERS:
        hint = difflib.get_close_matches(family, MODEL_BUILDERS, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"unknown model family {family!r}{suggestion}; "
                          f"available: {sorted(MODEL_BUILDERS)}")


def build_model(family: str, hp: kt.HyperParameters | None, vocab_size: int, max_len: int,
                overrides: Mapping[str, Any] | None = None) -> keras.Model:
    """Declare `family`'s search space on `hp` (a fresh one: defaults) and return the model.

    The model is uncompiled and built for (None, max_len) inputs, so count_params() works.
    """
    _check_family(family)
    if not isinstance(vocab_size, int) or vocab_size < 5:
        raise ValueError(f"vocab_size={vocab_size!r}: need an int >= 5 (4 special tokens + text)")
    if not isinstance(max_len, int) or max_len < 2:
        raise ConfigError(f"CONFIG['max_len'] = {max_len!r}: need an int >= 2")
    model = MODEL_BUILDERS[family](hp if hp is not None else kt.HyperParameters(),
                                   vocab_size, max_len, overrides)
    model.build((None, max_len))
    return model


def hyperparameters_for(family: str, overrides: Mapping[str, Any] | None = None) -> kt.HyperParameters:
    """The family's search space with CONFIG overrides; its values are the untuned defaults."""
    _check_family(family)
    hp = kt.HyperParameters()
    declare(hp, family, SEARCH_SPACES[family], overrides)
    return hp
