"""ExperimentConfig: the one validated form of the notebook's CONFIG dict.

Everything downstream reads settings from an ExperimentConfig, never from the raw dict, so a
typo or an out-of-range value fails here, in one line, before any slow work starts.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
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
# "price:quantiles5": a numeric column cut into 5 buckets at quantiles of the training split
QUANTILE_BUCKETS = "quantiles"
CONDITION_RESERVED_CHARACTERS = ("=", "<", ">")  # they delimit condition tokens
# keys that take a whole number: (its minimum, the one-line fix when a value is not one)
_WHOLE_NUMBER_KEYS = {
    "seeds": (1, "give a whole number of training seeds per family, at least 1, e.g. 3 "
                 "(1: one training run each)"),
    "bootstrap_resamples": (200, "a 95% interval needs at least 200 bootstrap resamples: use "
                                 "1000 (the default) or more"),
}


def quantile_count(bucket: str) -> int | None:
    """N of a "quantilesN" bucket spelling (N >= 2), else None."""
    digits = bucket.removeprefix(QUANTILE_BUCKETS)
    if bucket.startswith(QUANTILE_BUCKETS) and digits.isdigit() and int(digits) >= 2:
        return int(digits)
    return None


RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
# CONFIG keys that change no figure of a run: where files go, how progress shows, whether to
# resume. Every other key, present or future, is part of the default run name's hash.
NOT_RESULT_KEYS = frozenset({
    "run_name", "tokenizer_path", "models_dir", "tuning_dir", "plots_dir", "shards_dir",
    "download_dir", "live_progress", "resume", "retrain", "tensorboard", "sample_every_steps"})


class ExperimentConfig(BaseModel):
    """Every setting of one experiment, with its default, type and allowed range."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    # --- the run: one folder per experiment --------------------------------------------------
    # this experiment's name: its files go to trained_models/<run_name>/, tuning_results/<run_name>/
    # and plots/<run_name>/. None: "<data file's stem>-<8 hex digits of the settings that change
    # results>", so the same CONFIG resumes its run and a different one never overwrites it.
    # Letters, digits, ".", "_" and "-" only (a folder name on every system).
    run_name: str | None = None

    # --- data: where documents come from ---------------------------------------------------
    # a CSV path, a .txt path, a folder of .txt files or a glob such as "texts/*.txt", an
    # http(s) URL, or "fortunes" (the built-in corpus)
    data_file: str = "fortunes"
    # the CSV column holding the documents; None: the CSV's one text-like column (the guess is
    # printed; with several such columns the error names them)
    text_column: str | None = None
    # .txt files: "line" = one document per line, "file" = one document per file
    document_per: Literal["line", "file"] = "line"
    date_column: str = "publish_date"
    encoding: str = "utf-8"
    url_sha256: str | None = None  # optional checksum of a downloaded file
    download_dir: str = ".cache/downloads"
    sample_size: int | None = Field(default=None, ge=1)
    sample_strategy: Literal["first", "random"] = "first"
    cleaning: str | tuple[str, ...] = "none"  # a preset name or a list of steps
    # CSV columns whose values become control tokens before each document's text, e.g.
    # ["category"], ["publish_date:year"] (a date column bucketed by year, month or weekday) or
    # ["price:quantiles5"] (a numeric column in 5 buckets cut at quantiles of the training split);
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
    # `seed` seeds Python, NumPy and TensorFlow before every model is built, always. On CPUs that
    # is enough for one CONFIG to give the same figures on one machine (measured: two runs of each
    # family give bit-identical losses, with and without XLA; docs/how-it-works.md, "Reproducible runs"), so
    # TensorFlow's op determinism is off by default: Keras refuses XLA under it. True: op
    # determinism too, for GPUs, whose parallel sums otherwise differ from run to run (and no XLA).
    # A time budget's step count follows the machine's speed, so only a step budget repeats.
    deterministic: bool = False

    # --- tokenizer and sequences -----------------------------------------------------------
    tokenizer: Literal["bpe", "char"] = "bpe"
    vocab_size: int = Field(default=2000, ge=64, le=1_000_000)
    tokenizer_path: str | None = None  # None: trained_models/<run_name>/tokenizer.json
    max_len: int = Field(default=128, ge=2, le=8192)  # recurrent models carry more context
    packing: bool = True  # documents joined with [EOS] into full rows; False: one padded row each
    objective: Literal["causal", "last_token"] = "causal"  # last_token: the reference's formulation
    batch_size: int = Field(default=16, ge=1, le=65536)  # per replica; global = this x replicas
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
    # narrow or fix a family's search space. The defaults fix what the demo measured best for a
    # run of a few passes over the corpus (no dropout yet, learning rates for a short run);
    # {} searches every family's full space
    hyperparameters: dict[str, dict[str, Any]] = Field(default_factory=lambda: {
        "lstm": {"dropout": 0.0, "learning_rate": 0.02},
        "gru": {"dropout": 0.0, "learning_rate": 0.02},
        "transformer": {"dropout": 0.0, "learning_rate": 0.003}})
    # family "gpt2": a KerasHub preset name (downloaded on first use) or a local preset directory
    pretrained_preset: str = "gpt2_base_en"
    # family "gpt2": LoRA adapters of this rank on attention query/value, the rest frozen
    # (e.g. 4 or 8); None: full fine-tuning
    lora_rank: int | None = Field(default=None, ge=1, le=4096)
    # "none": train the defaults. A search needs trials of 300+ steps to rank settings: give it
    # tuning_time_budget_seconds when you have the time
    tuner: Literal["none", "random", "hyperband", "bayesian"] = "none"
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
    final_training_epochs: int = Field(default=1000, ge=1)  # the time budget decides
    steps_per_epoch: int | None = Field(default=400, ge=1)  # validation and a checkpoint every 400 steps
    # per family: ~150 s on 2 quiet cores with budget_clock "auto" (CPU seconds of this process on
    # CPUs, wall seconds on GPUs/TPUs); the cosine decay ends with it. None: epochs decide
    train_time_budget_seconds: float | None = Field(default=250, gt=0)
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
    # validate and keep the exponential moving average of the weights (Polyak averaging); None: off.
    # 0.99 measured better for the GRU and LSTM at the demo's settings (docs/how-it-works.md)
    ema_momentum: float | None = Field(default=0.99, gt=0, lt=1)
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
    # print a few samples from the model every this many training steps, at a validation (rounded
    # up to a whole epoch of steps_per_epoch), so you see the text improve; None: off
    sample_every_steps: int | None = Field(default=None, ge=1)

    # --- evaluation and generation ---------------------------------------------------------
    kn_order: int = Field(default=3, ge=1, le=10)
    # the n-gram baseline counts at most this many training tokens (evenly spaced blocks of the
    # train stream; the table names the sample); None: all. ~100 bytes of RAM per token at order 3
    kn_max_train_tokens: int | None = Field(default=20_000_000, ge=1000)
    # a row for the best neural model (by validation) mixed per token with the n-gram model
    kn_interpolation: bool = True
    sampler: Literal["greedy", "random", "top_k", "top_p", "beam"] = "top_p"
    temperature: float = Field(default=0.7, gt=0)  # lower: more known words, less variety
    top_k: int = Field(default=40, ge=1)
    top_p: float = Field(default=0.9, gt=0, le=1)
    beam_width: int = Field(default=4, ge=1)
    prompts: tuple[str, ...] = ("",)
    num_samples: int = Field(default=8, ge=1)
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
    decoding_sweep: bool = True
    # samples per grid point, the prompts in turn: self-BLEU of a handful of samples is mostly noise
    decoding_sweep_samples: int = Field(default=32, ge=2, le=10_000)
    decoding_sweep_temperatures: tuple[float, ...] = (0.7, 1.0, 1.3)  # each in (0, 10]
    decoding_sweep_top_p: tuple[float, ...] = (0.8, 0.95, 1.0)  # each in (0, 1]

    # --- where results go: None = the run's folder (run_name); a path given here wins -----------
    plots_dir: str | None = None  # plots/<run_name>: table, scores, samples, plots, config
    models_dir: str | None = None  # trained_models/<run_name>: checkpoints, manifests, histories
    tuning_dir: str | None = None  # tuning_results/<run_name>: keras-tuner's trials

    @field_validator("run_name")
    @classmethod
    def _folder_name(cls, value: str | None) -> str | None:
        if value is not None and not RUN_NAME.fullmatch(value):
            raise ValueError("a run name is one folder name: letters, digits, '.', '_' and '-', "
                             "at most 100 characters, not starting with '.' or '-' (no '/' or "
                             "spaces), e.g. 'news-small'")
        return value

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
            if ":" in entry and bucket not in DATE_BUCKETS and quantile_count(bucket) is None:
                raise ValueError(f"{entry!r}: bucket a date column with one of "
                                 f"{[f'{column}:{b}' for b in DATE_BUCKETS]}, or a numeric one "
                                 f"with '{column}:{QUANTILE_BUCKETS}N' (N buckets, 2 or more, "
                                 f"e.g. '{column}:{QUANTILE_BUCKETS}5')")
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

    @model_validator(mode="after")
    def _run_folders(self) -> "ExperimentConfig":
        """Fill run_name and the output paths left unset: the run's own folders."""
        name = self.run_name or default_run_name(self)
        folders = {"run_name": name, "models_dir": f"trained_models/{name}",
                   "tuning_dir": f"tuning_results/{name}", "plots_dir": f"plots/{name}"}
        folders["tokenizer_path"] = f"{self.models_dir or folders['models_dir']}/tokenizer.json"
        for key, value in folders.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)  # frozen model: filled once, while validating
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
        return cls.from_dict(read_config_file(path), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def default_run_name(config: ExperimentConfig) -> str:
    """"<data file's stem>-<8 hex digits>": the hash of every key that can change a figure."""
    settings = {key: value for key, value in config.model_dump(mode="json").items()
                if key not in NOT_RESULT_KEYS}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    data = config.data_file.rstrip("/\\").replace("\\", "/")
    stem = data.rsplit("/", 1)[-1].split("?", 1)[0]
    stem = stem.split(".", 1)[0] if "*" not in stem else (data.rsplit("/", 2)[-2:-1] or ["texts"])[0]
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[:40] or "data"
    return f"{stem}-{digest}"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of CONFIG keys in a JSON or YAML file (not validated yet)."""
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
    return raw
