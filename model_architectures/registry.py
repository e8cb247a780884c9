"""The registry: the one list of model families, and the calls that build them.

Each family names the module that holds its model and builder; that module (and with it keras
and TensorFlow) is imported only when a model is built. Family names, search spaces and the
"did you mean" check need no TensorFlow, so CONFIG validation uses them before anything slow.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from data_pipeline.errors import ConfigError
from model_architectures.bilstm_space import BILSTM_OBJECTIVE_REASON, BILSTM_OBJECTIVES, BILSTM_SPACE, BILSTM_TINY
from model_architectures.gan_space import GAN_OBJECTIVE_REASON, GAN_OBJECTIVES, GAN_SPACE, GAN_TINY
from model_architectures.gpt2_space import GPT2_CONFIG_KEYS, GPT2_SPACE, GPT2_TINY
from model_architectures.recurrent_space import RECURRENT_SPACE, RECURRENT_TINY
from model_architectures.search_space import Declaration, SearchSpace, declare, resolve
from model_architectures.transformer_space import TRANSFORMER_SPACE, TRANSFORMER_TINY

if TYPE_CHECKING:
    import keras
    import keras_tuner as kt

    from data_pipeline.conditions import BucketEdges, Conditions
    from data_pipeline.config import ExperimentConfig
    from data_pipeline.tokenizer import TextTokenizer

    # builder(hp, vocab_size, max_len, overrides, **options) -> uncompiled keras.Model
    Builder = Callable[..., keras.Model]


# The training layouts of data_pipeline/datasets.py (CONFIG['objective']).
OBJECTIVES = ("causal", "last_token")


@dataclass(frozen=True)
class Family:
    """Where a model family lives, and what can be known of it without importing it."""

    module: str  # holds the model class and the builder; imported on the first build
    builder: str  # builder(hp, vocab_size, max_len, overrides, **options) -> keras.Model
    space: SearchSpace  # its hyperparameters, from a module without keras
    tiny: Mapping[str, Any]  # hyperparameters of the small model every test builds
    options: Mapping[str, Any] = field(default_factory=dict)  # extra keyword arguments of the builder
    objectives: tuple[str, ...] = OBJECTIVES  # the model class declares the same
    objective_reason: str = ""  # why an objective outside `objectives` is refused
    config_keys: tuple[str, ...] = ()  # CONFIG keys the builder takes as keyword arguments
    # A function in `module`, tokenizer(family, config, train_conditions, condition_edges) ->
    # TextTokenizer (with CONFIG's condition tokens), for a family that brings
    # its own (a pretrained preset's); None: it trains on the project's tokenizer at any vocab_size.
    tokenizer: str | None = None
    # False: the model has no likelihood of text (a GAN), so no perplexity or bits/char; it is
    # checkpointed on its last epoch, not tuned, and judged by its samples only. The model class
    # declares the same (LanguageModel.has_likelihood).
    likelihood: bool = True

    @property
    def brings_tokenizer(self) -> bool:
        return self.tokenizer is not None

    def load_builder(self) -> Builder:
        return getattr(importlib.import_module(self.module), self.builder)


FAMILIES: dict[str, Family] = {
    "lstm": Family("model_architectures.recurrent", "build_recurrent", RECURRENT_SPACE,
                   RECURRENT_TINY, {"cell": "lstm"}),
    "gru": Family("model_architectures.recurrent", "build_recurrent", RECURRENT_SPACE,
                  RECURRENT_TINY, {"cell": "gru"}),
    "simple_rnn": Family("model_architectures.recurrent", "build_recurrent", RECURRENT_SPACE,
                         RECURRENT_TINY, {"cell": "simple_rnn"}),
    "transformer": Family("model_architectures.transformer", "build_transformer",
                          TRANSFORMER_SPACE, TRANSFORMER_TINY),
    "bilstm": Family("model_architectures.bilstm", "build_bilstm", BILSTM_SPACE, BILSTM_TINY,
                     objectives=BILSTM_OBJECTIVES, objective_reason=BILSTM_OBJECTIVE_REASON),
    "gpt2": Family("model_architectures.gpt2", "build_gpt2", GPT2_SPACE, GPT2_TINY,
                   config_keys=GPT2_CONFIG_KEYS, tokenizer="gpt2_tokenizer"),
    # experimental: not in the default models_to_run (docs/gan.md)
    "gan": Family("model_architectures.gan", "build_gan", GAN_SPACE, GAN_TINY,
                  objectives=GAN_OBJECTIVES, objective_reason=GAN_OBJECTIVE_REASON, likelihood=False),
}


def family_names(objective: str | None = None, brings_tokenizer: bool | None = None,
                 likelihood: bool | None = None) -> tuple[str, ...]:
    """Every registered family, in registry order (the order of plots and benchmarks), filtered
    by what is given: supports `objective`; brings its own tokenizer or not
    (`brings_tokenizer=False`: built at any vocabulary size, from scratch); has a likelihood or not.
    """
    return tuple(name for name, spec in FAMILIES.items()
                 if (objective is None or objective in spec.objectives)
                 and (brings_tokenizer is None or spec.brings_tokenizer == brings_tokenizer)
                 and (likelihood is None or spec.likelihood == likelihood))


def family_tokenizer(family: str, config: ExperimentConfig,
                     train_conditions: Sequence[Conditions] | None = None,
                     condition_edges: BucketEdges | None = None) -> TextTokenizer | None:
    """The tokenizer `family` brings (imports its module), or None: it uses the project's.
    With condition_columns it carries their tokens, from the train values (and bucket edges)."""
    spec = _family(family)
    if spec.tokenizer is None:
        return None
    return getattr(importlib.import_module(spec.module), spec.tokenizer)(
        family, config, train_conditions, condition_edges)


def has_likelihood(family: str) -> bool:
    """Whether `family` assigns text a probability (perplexity, bits/char, checkpoint selection)."""
    return _family(family).likelihood


def unknown_family_message(name: str) -> str:
    """One line naming the closest registered family, for a name that is not one."""
    hint = difflib.get_close_matches(name, FAMILIES, n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"unknown model family {name!r}{suggestion}; available: {sorted(FAMILIES)}"


def objective_problem(family: str, objective: str) -> str | None:
    """Why `family` cannot train under `objective` and how to fix it (one line), or None."""
    spec = _family(family)
    if objective in spec.objectives:
        return None
    reason = f": {spec.objective_reason}" if spec.objective_reason else ""
    return (f"model family {family!r} supports objective {' or '.join(map(repr, spec.objectives))} "
            f"only, not {objective!r}{reason}; set CONFIG['objective'] = {spec.objectives[0]!r} "
            f"or remove {family!r} from models_to_run")


def _family(name: str) -> Family:
    if name not in FAMILIES:
        raise ConfigError(unknown_family_message(name))
    return FAMILIES[name]


def check_hyperparameters(family: str, overrides: Mapping[str, Any] | None,
                          where: str | None = None) -> dict[str, Declaration]:
    """CONFIG's overrides of `family`'s space, checked without keras; ConfigError if one is bad."""
    return resolve(family, _family(family).space, overrides, where)


def build_model(family: str, hp: kt.HyperParameters | None, vocab_size: int, max_len: int,
                overrides: Mapping[str, Any] | None = None,
                config: ExperimentConfig | None = None) -> keras.Model:
    """Declare `family`'s search space on `hp` (a fresh one: defaults) and return the model.

    The model is uncompiled and built for (None, max_len) inputs, so count_params() works.
    `config` supplies the CONFIG keys the family's builder takes (`Family.config_keys`).
    """
    spec = _family(family)
    if spec.config_keys and config is None:
        raise ValueError(f"model family {family!r} is built from CONFIG keys "
                         f"{list(spec.config_keys)}: pass config=ExperimentConfig")
    settings = {key: getattr(config, key) for key in spec.config_keys}
    if not isinstance(vocab_size, int) or vocab_size < 5:
        raise ValueError(f"vocab_size={vocab_size!r}: need an int >= 5 (4 special tokens + text)")
    if not isinstance(max_len, int) or max_len < 2:
        raise ConfigError(f"CONFIG['max_len'] = {max_len!r}: need an int >= 2")
    if hp is None:
        import keras_tuner as kt

        hp = kt.HyperParameters()
    model = spec.load_builder()(hp, vocab_size, max_len, overrides, **spec.options, **settings)
    model.build((None, max_len))
    return model


def hyperparameters_for(family: str, overrides: Mapping[str, Any] | None = None) -> kt.HyperParameters:
    """The family's search space with CONFIG overrides; its values are the untuned defaults."""
    import keras_tuner as kt

    hp = kt.HyperParameters()
    declare(hp, family, _family(family).space, overrides)
    return hp


def register_model_classes() -> None:
    """Import every family's module, which registers its model classes with Keras serialization,
    so `keras.saving.load_model(path)` needs no custom_objects. Call it before loading a model."""
    for spec in FAMILIES.values():
        importlib.import_module(spec.module)
