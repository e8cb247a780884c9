"""The experiment's stages as plain functions, shared by the notebook and the command line.

CONFIG -> ExperimentConfig -> PreparedData -> (tune, train) per family -> FamilyReport
-> comparison table + plots. The notebook calls the stages one cell at a time; `run_experiment`
calls them in the same order for `python -m training_assets.run`.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import keras
import keras_tuner as kt
import pandas as pd
import tensorflow as tf

from data_pipeline.config import ExperimentConfig
from data_pipeline.corpus import Corpus, load_corpus
from data_pipeline.datasets import Datasets, build_datasets, build_shard_datasets
from data_pipeline.manifests import write_json
from data_pipeline.streaming import prepare_streamed, uses_streaming
from data_pipeline.tokenizer import TextTokenizer, fit_or_load_tokenizer
from evaluation.baselines import KneserNeyLM, fit_kneser_ney, kneser_ney_report
from evaluation.bleu import BleuReferences, bleu_4, reference_sample, self_bleu_4
from evaluation.condition_gain import shuffled_condition_evaluation
from evaluation.decoding_sweep import SweepPoint, decoding_sweep, sweep_table
from evaluation.evaluate import EvaluationResult, evaluate_model
from evaluation.generation import document_start_id, generate_timed
from evaluation.generation_controls import GenerationControls
from evaluation.interpolation import Interpolation, interpolate, pairing_problem
from evaluation.ngram_sampling import generate_ngram
from evaluation.plots import plot_all
from evaluation.quality import distinct_n, known_word_share, longest_copied_words, memorisation_rate
from evaluation.report import ModelReport, comparison_table, save_table
from model_architectures.registry import FAMILIES, family_tokenizer
from model_architectures.saving import load_trained_model
from training_assets.cluster import config_for_this_process, is_chief, tuning_role
from training_assets.compile import configure_precision
from training_assets.reproducibility import seed_everything
from training_assets.run_lock import RunLock, lock_output_folders
from training_assets.strategy import select_strategy
from training_assets.trainer import TrainingResult, train_model
from training_assets.tuner import TuningOutcome, tune_model

log = logging.getLogger("training_assets")

NO_LIKELIHOOD_NOTE = ("test perplexity, bits/char and accuracy are not defined: the model assigns "
                      "text no likelihood (a GAN); its sample measures place it")


@dataclass(frozen=True)
class Environment:
    """Where the experiment runs: the distribution strategy and the compute precision."""

    strategy: tf.distribute.Strategy
    precision: str

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    def describe(self) -> dict[str, Any]:
        return {
            "strategy": type(self.strategy).__name__,
            "replicas": self.replicas,
            "devices": [d.name for d in tf.config.list_logical_devices() if d.device_type != "CPU"]
            or ["CPU"],
            "precision": self.precision,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        }


@dataclass(frozen=True)
class PreparedData:
    """Everything the models need from the data stage, computed once."""

    corpus: Corpus
    tokenizer: TextTokenizer
    datasets: Datasets
    # family -> its own tokenizer's data (a pretrained preset's), built once on first use
    by_family: dict[str, "PreparedData"] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class FamilyRun:
    """One model family's way through the experiment: tuned, trained, evaluated, sampled."""

    family: str
    training: TrainingResult
    report: ModelReport
    samples: list[str] = field(default_factory=list)
    sweep: list[SweepPoint] = field(default_factory=list)  # with config.decoding_sweep


@dataclass
class BaselineRun:
    """The n-gram baseline: its table row, its samples and sweep, and the fitted model (which the
    interpolation and the generation panel reuse rather than fit again)."""

    report: ModelReport
    language_model: KneserNeyLM
    samples: list[str] = field(default_factory=list)
    sweep: list[SweepPoint] = field(default_factory=list)


def claim_output_folders(config: ExperimentConfig) -> RunLock:
    """Lock this run's output folders until the process exits: a second run on them stops here.

    A cluster worker locks its own scratch folders (config_for_this_process), never the chief's.
    """
    return lock_output_folders(config_for_this_process(config))


def setup_environment(config: ExperimentConfig) -> Environment:
    """Seed and pick the strategy first: precision and every model depend on it."""
    seed_everything(config)
    strategy = select_strategy(config.strategy, tpu_address=config.tpu_address)
    return Environment(strategy=strategy, precision=configure_precision(config, strategy))


def prepare_data(config: ExperimentConfig, environment: Environment,
                 corpus: Corpus | None = None) -> PreparedData:
    """Load, clean and split the corpus (unless given), fit (or reuse) the tokenizer, build the
    tf.data splits; by streaming into token shards when CONFIG's data_preparation says so."""
    if corpus is None and uses_streaming(config):
        # Token shards on disk instead of lists in memory; corpus.train is a sample of train.
        streamed = prepare_streamed(config)
        datasets = build_shard_datasets(streamed.shards, streamed.tokenizer, config,
                                        num_replicas=environment.replicas)
        return PreparedData(corpus=streamed.corpus, tokenizer=streamed.tokenizer, datasets=datasets)
    corpus = load_corpus(config) if corpus is None else corpus
    tokenizer = fit_or_load_tokenizer(corpus.train, config, corpus.conditions_of("train"))
    datasets = build_datasets(corpus, tokenizer, config, num_replicas=environment.replicas)
    return PreparedData(corpus=corpus, tokenizer=tokenizer, datasets=datasets)


def family_data(family: str, config: ExperimentConfig, data: PreparedData) -> PreparedData:
    """The data `family` trains and is evaluated on: `data`, or the same corpus through the
    tokenizer the family brings. Bits per character stay comparable: every tokenizer's splits
    count the same documents' characters."""
    if not FAMILIES[family].brings_tokenizer:
        return data
    if family not in data.by_family:
        tokenizer = family_tokenizer(family, config)
        replicas = data.datasets.global_batch_size // data.datasets.per_replica_batch_size
        data.by_family[family] = PreparedData(data.corpus, tokenizer, build_datasets(
            data.corpus, tokenizer, config, num_replicas=replicas))
    return data.by_family[family]


def split_summary(data: PreparedData) -> pd.DataFrame:
    """Documents, tokens and characters per split: what the perplexities are measured on."""
    rows = []
    for name in ("train", "validation", "test"):
        split = getattr(data.datasets, name)
        rows.append({"split": name, "documents": split.documents, "tokens": split.tokens,
                     "characters": split.characters, "batches": split.steps,
                     "characters_per_token": round(split.characters / max(split.tokens, 1), 3)})
    return pd.DataFrame(rows).set_index("split")


def tune_family(family: str, config: ExperimentConfig, environment: Environment,
                data: PreparedData) -> TuningOutcome:
    """Search the family's space; its result replaces the defaults only if it clearly beats them."""
    return tune_model(family, family_data(family, config, data).datasets, config, environment.strategy)


def train_family(family: str, hyperparameters: kt.HyperParameters, config: ExperimentConfig,
                 environment: Environment, data: PreparedData) -> TrainingResult:
    """Train the family with the values tuning kept (its best checkpoint is the result)."""
    data = family_data(family, config, data)
    return train_model(family, hyperparameters, data.datasets, config, environment.strategy, data.tokenizer)


def evaluate_family(training: TrainingResult, config: ExperimentConfig,
                    data: PreparedData) -> FamilyRun:
    """Test-split metrics of the best checkpoint, generation speed and sample quality."""
    data = family_data(training.family, config, data)
    model = load_trained_model(training.checkpoint_path)  # as the generate CLI does: no optimizer
    if model.has_likelihood:
        evaluation = evaluate_model(model, data.datasets.test)
        shuffled = shuffled_condition_evaluation(model, data.corpus, data.tokenizer, config,
                                                 data.datasets.global_batch_size)
    else:  # empty cells with a note; its samples below are measured like every model's
        evaluation, shuffled = EvaluationResult.undefined(data.datasets.test), None
    conditions = most_common_conditions(config, data.corpus)
    generated = generate_timed(
        model, data.tokenizer, sample_prompts(config),
        max_new_tokens=config.max_new_tokens, sampler=config.sampler,
        temperature=config.temperature, top_k=config.top_k, top_p=config.top_p,
        beam_width=config.beam_width, seed=config.seed, start_id=document_start_id(config),
        conditions=conditions,
        controls=GenerationControls.from_settings(config.to_dict(), config.cleaning_steps))
    references = bleu_references(config, data)
    report = ModelReport(
        model=training.family,
        evaluation=evaluation,
        parameters=training.parameters,
        trainable_parameters=training.trainable_parameters,
        train_seconds=training.train_seconds,
        train_tokens_per_second=training.train_tokens_per_second,
        generation_ms_per_token=generated.ms_per_token,
        **sample_measures(generated.texts, data.corpus, references),
        shuffled_condition_bits_per_char=None if shuffled is None else shuffled.bits_per_char,
        note=None if model.has_likelihood else NO_LIKELIHOOD_NOTE,
    )
    sweep = []
    if config.decoding_sweep:
        started = time.perf_counter()
        sweep = decoding_sweep(model, data.tokenizer, config, references, conditions)
        log.info("%s: decoding sweep of %d settings in %.1f s", training.family, len(sweep),
                 time.perf_counter() - started)
    return FamilyRun(family=training.family, training=training, report=report,
                     samples=generated.texts, sweep=sweep)


def sample_prompts(config: ExperimentConfig) -> list[str]:
    """The prompt of each sample the table measures: num_samples per prompt, then the prompts in
    turn up to measure_samples (a handful of samples makes BLEU and self-BLEU mostly noise)."""
    prompts = list(config.prompts) * config.num_samples
    extra = max(0, config.measure_samples - len(prompts))
    return prompts + [config.prompts[i % len(config.prompts)] for i in range(extra)]


def bleu_references(config: ExperimentConfig, data: PreparedData) -> BleuReferences:
    """The test documents every model's samples are scored against (a seeded choice, indexed once)."""
    return BleuReferences(reference_sample(data.corpus.test, config.bleu_references, config.seed))


def sample_measures(texts: list[str], corpus: Corpus, references: BleuReferences) -> dict[str, float]:
    """The table's sample columns, the same for every row that samples."""
    return {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
            "known_word_share": known_word_share(texts, corpus.train),
            "memorised_share": memorisation_rate(texts, corpus.train),
            "bleu_4": bleu_4(texts, references), "self_bleu_4": self_bleu_4(texts),
            "longest_copied_words": longest_copied_words(texts, corpus.train)}


def most_common_conditions(config: ExperimentConfig, corpus: Corpus) -> dict[str, str] | None:
    """Each condition column's most frequent train value: what the report's samples are given."""
    train = corpus.conditions_of("train")
    if not config.condition_columns or not train:
        return None
    return {column: Counter(values[i] for values in train).most_common(1)[0][0]
            for i, column in enumerate(config.condition_columns)}


def baseline_run(config: ExperimentConfig, data: PreparedData) -> BaselineRun:
    """The Kneser-Ney n-gram bar every neural model has to clear, on the same tokens.

    Its samples are drawn with the networks' prompts, sampler and seed and measured like theirs
    (generation controls apply to the networks only), so its sample columns are a bar too.
    """
    language_model = fit_kneser_ney(data.datasets, config.kn_order, config.kn_max_train_tokens)
    report = kneser_ney_report(data.datasets, config.kn_order, language_model=language_model)
    conditions = most_common_conditions(config, data.corpus)
    generated = generate_ngram(
        language_model, data.tokenizer, sample_prompts(config),
        max_new_tokens=config.max_new_tokens, sampler=config.sampler,
        temperature=config.temperature, top_k=config.top_k, top_p=config.top_p, seed=config.seed,
        start_id=document_start_id(config), conditions=conditions)
    references = bleu_references(config, data)
    report = replace(report, generation_ms_per_token=generated.ms_per_token,
                     **sample_measures(generated.texts, data.corpus, references))
    sweep = []
    if config.decoding_sweep:
        sweep = decoding_sweep(language_model, data.tokenizer, config, references, conditions)
    return BaselineRun(report, language_model, generated.texts, sweep)


def interpolate_best(runs: list[FamilyRun], config: ExperimentConfig, data: PreparedData,
                     baseline: BaselineRun | None = None) -> Interpolation | None:
    """The neural model with the best validation perplexity, mixed per token with the n-gram model.

    Chosen on validation among the families on the project's tokenizer (they share it, so
    validation perplexity ranks them as validation bits/char would, and the n-gram model scores
    the same tokens); the test split only scores the mixture. The n-gram model is `baseline`'s,
    or fitted here. None, logged, when
    config.kn_interpolation is off or the split layout cannot pair the two models' tokens.
    """
    runs = [run for run in runs if not FAMILIES[run.family].brings_tokenizer]
    if not config.kn_interpolation or not runs:
        return None
    problem = pairing_problem(config)
    if problem:
        log.info("no n-gram interpolation row: %s", problem)
        return None
    best = min(runs, key=lambda run: _best_validation_perplexity(run.training))
    if not math.isfinite(_best_validation_perplexity(best.training)):
        log.info("no n-gram interpolation row: no model has a finite validation perplexity")
        return None
    model = load_trained_model(best.training.checkpoint_path)
    language_model = (baseline.language_model if baseline is not None else
                      fit_kneser_ney(data.datasets, config.kn_order, config.kn_max_train_tokens))
    mixture = interpolate(best.family, model, best.report.parameters or 0, language_model,
                          data.datasets.validation, data.datasets.test)
    log.info("interpolation %s", mixture.summary())
    return mixture


def _best_validation_perplexity(training: TrainingResult) -> float:
    finite = [value for value in training.history.get("val_perplexity", []) if math.isfinite(value)]
    return min(finite, default=math.inf)


def write_results(runs: list[FamilyRun], baseline: BaselineRun | None, config: ExperimentConfig,
                  interpolation: Interpolation | None = None) -> tuple[pd.DataFrame, list[Path]]:
    """The comparison table, the samples and the plots; only the chief writes, so workers never clash."""
    reports = ([run.report for run in runs] + ([baseline.report] if baseline else [])
               + ([interpolation.report()] if interpolation else []))
    table = comparison_table(reports)
    if not is_chief():
        return table, []
    paths = save_table(table, config.plots_dir, tokenizer_notes(runs))
    samples_path = Path(config.plots_dir) / "samples.json"  # per family, in prompt order
    samples = {run.family: run.samples for run in runs}
    sweeps = {run.family: run.sweep for run in runs if run.sweep}
    if baseline is not None:
        samples[baseline.report.model] = baseline.samples
        if baseline.sweep:
            sweeps[baseline.report.model] = baseline.sweep
    write_json(samples_path, samples)
    paths.append(samples_path)
    if sweeps:
        sweep_path = Path(config.plots_dir) / "decoding_sweep.csv"
        sweep_table(sweeps).to_csv(sweep_path, index=False)
        paths.append(sweep_path)
    paths += plot_all([run.training for run in runs], reports, config.plots_dir, sweeps)
    return table, paths


def tokenizer_notes(runs: list[FamilyRun]) -> list[str]:
    """What to say under the table when some rows read the text through their own tokenizer."""
    own = [run.family for run in runs if FAMILIES[run.family].brings_tokenizer]
    if not own:
        return []
    return [f"{', '.join(own)} read the text through {'its' if len(own) == 1 else 'their'} "
            "pretrained preset's tokenizer; the other rows, the n-gram baseline and its mixture "
            "through the project's. Compare rows by test_bits_per_char (the same characters for "
            "every row); perplexity and accuracy are per token of each row's own tokenizer."]


@dataclass
class ExperimentResult:
    environment: Environment
    data: PreparedData
    runs: list[FamilyRun]
    baseline: BaselineRun | None
    table: pd.DataFrame
    artifacts: list[Path]
    interpolation: Interpolation | None = None


def run_experiment(config: ExperimentConfig | Mapping[str, Any],
                   corpus: Corpus | None = None) -> ExperimentResult:
    """All stages, in the notebook's order, printing progress as they go.

    `corpus`: already loaded from this config (the command line reads it before TensorFlow loads,
    so data mistakes fail fast); otherwise it is loaded here.
    """
    if not isinstance(config, ExperimentConfig):
        config = ExperimentConfig.from_dict(config)
    config = config_for_this_process(config)  # a cluster worker writes to its own scratch space
    lock = claim_output_folders(config)
    try:
        return _run_stages(config, corpus)
    finally:
        lock.release()  # what this call locked; folders a notebook claimed earlier stay locked


def _run_stages(config: ExperimentConfig, corpus: Corpus | None) -> ExperimentResult:
    """run_experiment's stages, with the output folders locked."""
    started = time.perf_counter()
    environment = setup_environment(config)
    log.info("environment: %s", environment.describe())
    data = prepare_data(config, environment, corpus)
    log.info("data:\n%s", split_summary(data).to_string())
    if tuning_role().is_worker:  # keras-tuner worker: run the chief's trials, then stop
        for family in config.models_to_run:
            tune_model(family, data.datasets, config, environment.strategy)
        log.info("tuning worker: no trials left; the chief trains and reports")
        return ExperimentResult(environment, data, [], None, pd.DataFrame(), [])
    runs = []
    for family in config.models_to_run:
        log.info("== %s: tuning and training", family)
        tuning = tune_family(family, config, environment, data)
        training = train_family(family, tuning.hyperparameters, config, environment, data)
        run = evaluate_family(training, config, data)
        log.info("== %s: test perplexity %.2f, %.3f bits/char, %s", family,
                 run.report.evaluation.perplexity, run.report.evaluation.bits_per_char,
                 training.stopped_reason)
        runs.append(run)
    baseline = baseline_run(config, data)
    interpolation = interpolate_best(runs, config, data, baseline)
    table, artifacts = write_results(runs, baseline, config, interpolation)
    log.info("comparison:\n%s", table.to_string())
    log.info("done in %.0f s; wrote %s", time.perf_counter() - started,
             ", ".join(str(p) for p in artifacts))
    return ExperimentResult(environment, data, runs, baseline, table, artifacts, interpolation)


def conclusions(runs: list[FamilyRun], baseline: BaselineRun | None,
                interpolation: Interpolation | None = None) -> str:
    """A few sentences drawn from the measured figures: the winner, the bar, the mix, the cost."""
    if not runs:
        return "No model was trained."
    ranked = sorted((run for run in runs if math.isfinite(run.report.evaluation.bits_per_char)),
                    key=lambda run: run.report.evaluation.bits_per_char)
    if not ranked:
        return "No model with a likelihood was trained: compare the sample measures in the table."
    best = ranked[0].report
    lines = [f"- **Best model: {best.model}**, {best.evaluation.bits_per_char:.3f} bits per "
             f"character (test perplexity {best.evaluation.perplexity:.1f}), "
             f"{best.parameters:,} parameters, trained in {best.train_seconds:.0f} s."]
    if baseline is not None:
        bar = baseline.report.evaluation.bits_per_char
        beaten = [run.family for run in ranked if run.report.evaluation.bits_per_char < bar]
        margin = bar - best.evaluation.bits_per_char
        lines.append(f"- The {baseline.report.model} baseline scores {bar:.3f} bits per character; "
                     + (f"beaten by {', '.join(beaten)}; {best.model} is {margin:.3f} bits per "
                        f"character ({margin / bar:.1%}) below it." if beaten else
                        f"no neural model beats it yet ({best.model} is {-margin:.3f} bits per "
                        "character above it): train longer or larger "
                        "(`final_training_epochs`, `train_time_budget_seconds`)."))
    if interpolation is not None:
        mixed = interpolation.test.bits_per_char
        lines.append(f"- Mixed per token with the n-gram model ({interpolation.weight:.2f} neural, "
                     f"fitted on validation): **{interpolation.model}**, {mixed:.3f} bits per "
                     f"character, {best.evaluation.bits_per_char - mixed:.3f} below {best.model} "
                     "alone: what each model knows that the other does not.")
    for run in ranked[1:]:
        gap = run.report.evaluation.bits_per_char - best.evaluation.bits_per_char
        lines.append(f"- {run.family}: +{gap:.3f} bits per character, {run.report.parameters:,} "
                     f"parameters, {run.report.train_seconds:.0f} s of training.")
    fastest = min(runs, key=lambda run: run.report.generation_ms_per_token)
    lines.append(f"- Fastest generation: {fastest.family}, "
                 f"{fastest.report.generation_ms_per_token:.2f} ms per token.")
    return "\n".join(lines)
