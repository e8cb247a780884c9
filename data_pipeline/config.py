"""ExperimentConfig: the one validated form of the notebook's CONFIG dict.

Everything downstream reads settings from an ExperimentConfig, never from the raw dict, so a
typo or an out-of-range value fails here, in one line, before any slow work starts.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from data_pipeline.cleaning import clean_fragment
from data_pipeline.errors import ConfigError
from model_architectures.registry import (FAMILIES, check_hyperparameters, objective_problem,
                                          unknown_family_message)

CLEANING_STEPS = ("lowercase", "strip_punctuation", "strip_digits", "collapse_whitespace")
CLEANING_PRESETS: dict[str, tuple[str, ...]] = {
    "none": (),
    # The reference project's recipe: lowercase, no punctuation, no digits, single spaces.
    "reference": CLEANING_STEPS,
    "whitespace": ("collapse_whitespace",),
}

# "publish_date:year" -> <publish_date:year=2003>: bucket name -> strftime format of its values
DATE_BUCKETS = {"year": "%Y", "month": "%Y-%m", "weekday": "%A"}
CONDITION_RESERVED_CHARACTERS = ("=", "<", ">")  # they delimit condition tokens
# keys that take a whole number: (its minimum, the one-line fix when a value is not one)
_WHOLE_NUMBER_KEYS = {
    "seeds": (1, "give a whole number of training seeds per family, at least 1, e.g. 3 "
                 "(1: one training run each)"),
    "bootstrap_resamples": (200, "a 95% interval needs at least 200 bootstrap resamples: use "
                                 "1000 (the default) or more"),
}


class ExperimentConfig(BaseModel):
    """Every setting of one experiment, with its default, type and allowed range."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    # --- data: where documents come from ---------------------------------------------------
    data_file: str = "fortunes"  # CSV path, .txt path (one document per line), http(s) URL, or "fortunes"
    text_column: str = "headline_text"
    date_column: str = "publish_date"
    encoding: str = "utf-8"
    url_sha256: str | None = None  # optional checksum of a downloaded file
    download_dir: str = ".cache/downloads"
    sample_size: int | None = Field(default=None, ge=1)
    sample_strategy: Literal["first", "random"] = "first"
    cleaning: str | tuple[str, ...] = "none"  # a preset name or a list of steps
    # CSV columns whose values become control tokens before each document's text, e.g.
    # ["category"] or ["publish_date:year"] (a date column bucketed by year, month or weekday);
    # generation then takes the values. Empty: unconditional language modelling.
    condition_columns: tuple[str, ...] = ()

    # --- split: by document, before anything is fitted -------------------------------------
    split: Literal["random", "ordered", "chronological"] = "random"
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    drop_cross_split_duplicates: bool = True  # drop val/test documents that also occur in train
    # val/test documents sharing a run of this many consecutive words (lowercase, punctuation
    # stripped) with train (test: or validation) are near-duplicates, counted in the corpus report
    near_duplicate_words: int = Field(default=8, ge=3, le=1000)
    drop_near_duplicates: bool = True  # and dropped from validation/test
    seed: int = 42  # the split, the sample, tf.data shuffles, tuning, initial weights, dropout, sampling
    # seed Python, NumPy and TensorFlow from `seed` before every model is built and use TensorFlow's
    # deterministic ops: one CONFIG on one machine gives the same figures. Not with
    # train_time_budget_seconds, whose number of steps depends on the machine's speed that moment.
    # Costs speed, and XLA (Keras turns it off under op determinism): README, "Reproducible runs".
    deterministic: bool = True

    # --- tokenizer and sequences -----------------------------------------------------------
    tokenizer: Literal["bpe", "char"] = "bpe"
    vocab_size: int = Field(default=4000, ge=64, le=1_000_000)
    tokenizer_path: str = "trained_models/tokenizer.json"
    max_len: int = Field(default=64, ge=2, le=8192)
    packing: bool = True  # documents joined with [EOS] into full rows; False: one padded row each
    objective: Literal["causal", "last_token"] = "causal"  # last_token: the reference's formulation
    batch_size: int = Field(default=32, ge=1, le=65536)  # per replica; global = this x replicas
    shuffle_buffer: int = Field(default=10_000, ge=1)
    # "streaming": read the corpus in chunks, write token shards to disk, train from them (memory
    # does not grow with the corpus); "memory": everything in RAM; "auto": streaming for a local
    # data_file of at least streaming_min_mb megabytes
    data_preparation: Literal["auto", "memory", "streaming"] = "auto"
    streaming_min_mb: float = Field(default=200.0, gt=0)
    shards_dir: str = "trained_models/token_shards"  # one folder per data + settings fingerprint
    tokenizer_sample_mb: float = Field(default=64.0, gt=0, le=100_000)  # streaming: train text to fit on
    audit_sample_mb: float = Field(default=64.0, gt=0, le=100_000)  # streaming: train text near-dup audit indexes

    # --- models and tuning -----------------------------------------------------------------
    models_to_run: tuple[str, ...] = ("lstm", "gru", "transformer")
    hyperparameters: dict[str, dict[str, Any]] = Field(default_factory=dict)  # narrow or fix spaces
    # family "gpt2": a KerasHub preset name (downloaded on first use) or a local preset directory
    pretrained_preset: str = "gpt2_base_en"
    # family "gpt2": LoRA adapters of this rank on attention query/value, the rest frozen
    # (e.g. 4 or 8); None: full fine-tuning
    lora_rank: int | None = Field(default=None, ge=1, le=4096)
    tuner: Literal["none", "random", "hyperband", "bayesian"] = "random"
    tuning_trials: int = Field(default=2, ge=1)
    tuning_epochs: int = Field(default=1, ge=1)
    tuning_steps_per_epoch: int | None = Field(default=None, ge=1)
    # seconds of training per trial (the same for every trial; the cosine decay ends with it); None: steps only
    tuning_time_budget_seconds: float | None = Field(default=None, gt=0)

    # --- final training ----------------------------------------------------------------------
    # each family is trained this many times, at seeds seed, seed + 1, ... (initial weights, data
    # order, dropout; the split stays seed's): the table reports the mean over seeds, their
    # standard deviation and an interval that includes both seed and test-set variance
    seeds: Annotated[int, Field(ge=1, le=100, strict=True)] = 1
    final_training_epochs: int = Field(default=3, ge=1)
    steps_per_epoch: int | None = Field(default=None, ge=1)
    train_time_budget_seconds: float | None = Field(default=None, gt=0)
    # the clock of train_ and tuning_time_budget_seconds: "cpu" counts this process's CPU seconds (all
    # its threads; another process on the same cores does not eat them), "wall" wall-clock seconds,
    # "auto" "cpu" without a GPU/TPU and "wall" with one (there the accelerator does the work)
    budget_clock: Literal["auto", "wall", "cpu"] = "auto"
    # "muon": Muon on 2-D hidden matrices, AdamW on embeddings, the output matrix, norms and biases,
    # both at learning_rate (training_assets/compile.py, build_optimizer)
    optimizer: Literal["adamw", "adam", "muon"] = "adamw"
    learning_rate_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = Field(default=100, ge=0)
    weight_decay: float = Field(default=0.01, ge=0)
    clipnorm: float | None = Field(default=1.0, gt=0)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    # validate and keep the exponential moving average of the weights (Polyak averaging), e.g. 0.99
    ema_momentum: float | None = Field(default=None, gt=0, lt=1)
    early_stopping_patience: int = Field(default=2, ge=0)
    jit_compile: Literal["auto"] | bool = "auto"
    # batches per compiled call; "auto": 32 on TPU, 1 elsewhere; always 1 under Mirrored/MultiWorker
    steps_per_execution: Literal["auto"] | Annotated[int, Field(ge=1, le=10_000)] = "auto"
    mixed_precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "auto"
    strategy: Literal["auto", "default", "mirrored", "multi_worker", "tpu"] = "auto"
    tpu_address: str | None = None
    tensorboard: bool = False
    resume: bool = True  # reuse finished tuning trials and interrupted training
    retrain: bool = False  # train again even when this run's finished checkpoint exists
    # in a notebook (a Jupyter kernel with ipywidgets): a per-step bar with loss and tokens/s during
    # tuning and training. Logs, the command line and headless runs (make demo) print one line per epoch.
    live_progress: bool = True

    # --- evaluation and generation ---------------------------------------------------------
    kn_order: int = Field(default=3, ge=1, le=10)
    # the n-gram baseline counts at most this many training tokens (evenly spaced blocks of the
    # train stream; the table names the sample); None: all. ~100 bytes of RAM per token at order 3
    kn_max_train_tokens: int | None = Field(default=20_000_000, ge=1000)
    # a row for the best neural model (by validation) mixed per token with the n-gram model
    kn_interpolation: bool = True
    sampler: Literal["greedy", "random", "top_k", "top_p", "beam"] = "top_p"
    temperature: float = Field(default=0.8, gt=0)
    top_k: int = Field(default=40, ge=1)
    top_p: float = Field(default=0.9, gt=0, le=1)
    beam_width: int = Field(default=4, ge=1)
    prompts: tuple[str, ...] = ("",)
    num_samples: int = Field(default=5, ge=1)
    # the table's sample columns measure at least this many seeded samples per model: num_samples
    # per prompt first, then more, the prompts in turn (BLEU-4 of 8 samples moves by ~0.05
    # between seeds, of 32 by ~0.01); samples.json holds them all
    measure_samples: int = Field(default=32, ge=1, le=10_000)
    max_new_tokens: int = Field(default=40, ge=1)
    # generation controls, all off by default (evaluation/generation_controls.py): divide positive
    # / multiply negative logits of tokens already in the text (> 1 discourages repeats, CTRL);
    # never repeat an n-gram of this size (0: off); end a sample when its text contains one of
    # these strings (cut before it; cleaned like the corpus); no end of document before this
    # many new tokens. The report's samples and the notebook's use them.
    repetition_penalty: float = Field(default=1.0, gt=0, le=10)
    no_repeat_ngram_size: int = Field(default=0, ge=0, le=64)
    stop_strings: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = Field(
        default=(), max_length=16)
    min_new_tokens: int = Field(default=0, ge=0)
    # bootstrap resamples of the test documents (and of the samples) behind the table's 95%
    # intervals and p-values (evaluation/intervals.py); fewer than 200 cannot place a 95% interval
    bootstrap_resamples: int = Field(default=1000, ge=200, le=1_000_000)
    # test documents the samples' bleu_4 is measured against: a seeded random choice of this many
    # when the test split is larger (indexing them costs ~0.2 ms each, once per model); None: all
    bleu_references: int | None = Field(default=2000, ge=1)
    # per model, a grid of top-p sampling settings (temperature x top_p), each point's bleu_4 and
    # self_bleu_4 from decoding_sweep_samples seeded samples: plots/quality_diversity.png
    decoding_sweep: bool = False
    # samples per grid point, the prompts in turn: self-BLEU of a handful of samples is mostly noise
    decoding_sweep_samples: int = Field(default=32, ge=2, le=10_000)
    decoding_sweep_temperatures: tuple[float, ...] = (0.7, 1.0, 1.3)  # each in (0, 10]
    decoding_sweep_top_p: tuple[float, ...] = (0.8, 0.95, 1.0)  # each in (0, 1]

    # --- where results go --------------------------------------------------------------------
    plots_dir: str = "plots"
    models_dir: str = "trained_models"
    tuning_dir: str = "tuning_results"

    @field_validator("cleaning")
    @classmethod
    def _known_cleaning(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(value, str):
            if value not in CLEANING_PRESETS:
                raise ValueError(f"unknown preset {value!r}; use one of {sorted(CLEANING_PRESETS)} "
                                 f"or a list of steps from {list(CLEANING_STEPS)}")
        else:
            unknown = [step for step in value if step not in CLEANING_STEPS]
            if unknown:
                raise ValueError(f"unknown cleaning steps {unknown}; allowed: {list(CLEANING_STEPS)}")
        return value

    @field_validator("condition_columns")
    @classmethod
    def _valid_condition_columns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = []
        for entry in value:
            column, _, bucket = entry.partition(":")
            if not column.strip() or any(c in column for c in CONDITION_RESERVED_CHARACTERS):
                raise ValueError(f"{entry!r} is not a column name: give CSV column names, e.g. "
                                 "['category'], without the characters "
                                 f"{''.join(CONDITION_RESERVED_CHARACTERS)!r}")
            if ":" in entry and bucket not in DATE_BUCKETS:
                raise ValueError(f"{entry!r}: a date column is bucketed with one of "
                                 f"{[f'{column}:{b}' for b in DATE_BUCKETS]}")
            names.append(column)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"columns {repeated} are listed twice: list each column once")
        return value

    @field_validator("models_to_run")
    @classmethod
    def _known_models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("list at least one model family, e.g. ['gru']")
        for name in value:
            if name not in FAMILIES:
                raise ValueError(unknown_family_message(name))
        return value

    @field_validator("hyperparameters")
    @classmethod
    def _known_hyperparameters(cls, value: dict[str, dict[str, Any]],
                               info: ValidationInfo) -> dict[str, dict[str, Any]]:
        """Names and values are checked against each family's space here, not at its tuning."""
        source = (info.context or {}).get("source", "CONFIG")
        for family, overrides in value.items():
            if family not in FAMILIES:
                raise ValueError(unknown_family_message(family))
            # A ConfigError names the nested key itself; from_dict prints it as it is.
            check_hyperparameters(family, overrides, where=f"{source}['hyperparameters'][{family!r}]")
        return value

    @field_validator("pretrained_preset")
    @classmethod
    def _preset_directory_exists(cls, value: str) -> str:
        """A value written as a path must be a preset directory (a name or handle is checked when
        the family loads it)."""
        looks_like_path = "://" not in value and (
            "/" in value or "\\" in value or value.startswith((".", "~")))
        if looks_like_path and not (Path(value).expanduser() / "config.json").is_file():
            raise ValueError(f"{value!r} is not a preset directory (no config.json in it): give a "
                             "directory saved with save_to_preset, or a KerasHub preset name such "
                             "as 'gpt2_base_en'")
        return value

    @field_validator("decoding_sweep_temperatures", "decoding_sweep_top_p")
    @classmethod
    def _sweep_grid(cls, value: tuple[float, ...], info: ValidationInfo) -> tuple[float, ...]:
        high = 1.0 if info.field_name == "decoding_sweep_top_p" else 10.0
        if not value or any(not 0 < v <= high for v in value):
            raise ValueError(f"give one or more values, each in (0, {high:g}]")
        return value

    @field_validator("seeds", "bootstrap_resamples", mode="before")
    @classmethod
    def _whole_number(cls, value: Any, info: ValidationInfo) -> Any:
        """A strict whole number at least the key's minimum, with the fix in the message."""
        minimum, fix = _WHOLE_NUMBER_KEYS[info.field_name]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(fix)
        return value

    @field_validator("split_fractions")
    @classmethod
    def _fractions_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in value) or value[0] <= 0 or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"{list(value)} must be three non-negative fractions (train > 0) "
                             "that sum to 1, e.g. [0.8, 0.1, 0.1]")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentConfig":
        if self.tokenizer == "bpe" and self.vocab_size < 260:
            raise ValueError(f"vocab_size={self.vocab_size} is too small for a byte-level BPE "
                             "tokenizer (256 bytes + 4 special tokens): set vocab_size >= 260, "
                             "or tokenizer='char'")
        if self.deterministic and self.jit_compile is True:
            raise ValueError("jit_compile=True cannot be honoured with deterministic=True: Keras "
                             "turns XLA off under TensorFlow op determinism; set deterministic="
                             "False to compile with XLA, or jit_compile='auto'")
        own = [family for family in self.models_to_run if FAMILIES[family].brings_tokenizer]
        if own and self.condition_columns:
            raise ValueError(f"condition_columns need control tokens in the tokenizer, and {own} "
                             "bring a pretrained tokenizer without them: remove them from "
                             "models_to_run or set condition_columns = []")
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"min_new_tokens={self.min_new_tokens} > max_new_tokens="
                             f"{self.max_new_tokens}: lower min_new_tokens or raise max_new_tokens")
        for text in self.stop_strings:
            if not clean_fragment(text, self.cleaning_steps):
                raise ValueError(f"stop_strings: {text!r} is empty after the corpus cleaning "
                                 f"{list(self.cleaning_steps)}, so no sample can contain it: "
                                 "choose text that survives the cleaning")
        for family in self.models_to_run:
            problem = objective_problem(family, self.objective)
            if problem:
                raise ValueError(problem)
        return self

    @property
    def cleaning_steps(self) -> tuple[str, ...]:
        return CLEANING_PRESETS[self.cleaning] if isinstance(self.cleaning, str) else self.cleaning

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None = None, source: str = "CONFIG") -> "ExperimentConfig":
        """Validate a CONFIG dict; raise ConfigError with one readable line per problem."""
        raw = dict(raw or {})
        known = list(cls.model_fields)
        for key in raw:
            if key not in cls.model_fields:
                hint = difflib.get_close_matches(key, known, n=1)
                suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
                raise ConfigError(f"{source}: unknown key {key!r}.{suggestion} "
                                  f"Known keys are listed in data_pipeline/config.py.")
        try:
            return cls.model_validate(raw, context={"source": source})
        except ValidationError as error:
            lines = []
            for problem in error.errors():
                message = problem["msg"].removeprefix("Value error, ")
                if isinstance(problem.get("ctx", {}).get("error"), ConfigError):
                    lines.append(message)  # already names the source and the nested key
                elif problem["loc"]:
                    key = ".".join(str(part) for part in problem["loc"])
                    lines.append(f"{source}[{key!r}] = {raw.get(problem['loc'][0])!r}: {message}")
                else:  # a check across several keys names them in its message
                    lines.append(f"{source}: {message}")
            raise ConfigError("\n".join(lines)) from None

    @classmethod
    def from_file(cls, path: str | Path) -> "ExperimentConfig":
        """Read a JSON or YAML experiment file (the command line's form of CONFIG)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist: pass the path of a JSON "
                              "or YAML file with CONFIG keys")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                raw = yaml.safe_load(text)
            else:
                raw = json.loads(text)
        except (ValueError, ImportError) as error:
            raise ConfigError(f"config file {str(path)!r} is not valid JSON/YAML: {error}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {str(path)!r} must hold one mapping of CONFIG keys")
        return cls.from_dict(raw, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
