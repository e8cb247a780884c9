"""The experiment's stages as plain functions, shared by the notebook and the command line.

CONFIG -> ExperimentConfig -> PreparedData -> (tune, train) per family -> FamilyReport
-> comparison table + plots. The notebook calls the stages one cell at a time; `run_experiment`
calls them in the same order for `python -m training_assets.run`.
"""

from __future__ import annotations

import json
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
from evaluation.bleu import BleuReferences, bleu_4_scores, reference_sample, self_bleu_4_scores
from evaluation.condition_accuracy import (ConditionAccuracy, condition_accuracy,
                                           generate_under_each_value)
from evaluation.condition_gain import shuffled_condition_evaluation
from evaluation.decoding_sweep import SweepPoint, decoding_sweep, sweep_table
from evaluation.evaluate import EvaluationResult, evaluate_model
from evaluation.generation import document_start_id, generate_timed
from evaluation.generation_controls import GenerationControls
from evaluation.intervals import DocumentBootstrap
from evaluation.interpolation import Interpolation, interpolate, pairing_problem
from evaluation.ngram_sampling import generate_ngram
from evaluation.plots import plot_all
from evaluation.quality import distinct_n, known_word_counts, longest_copied_words, memorisation_rate
from evaluation.runs import RUN_RECORD
from evaluation.report import (ModelReport, SampleScores, comparison_table, document_bootstrap,
                               document_scores_frame, group_by_model, save_table)
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


def record_run(config: ExperimentConfig, environment: Environment,
               best: "FamilyRun | None" = None) -> list[Path]:
    """What a run is, beside its results: `config.json` (the config as run; `--config` it to
    rerun or resume), `environment.json`, and `run.json` in its models and plots folders (the
    folders and, once chosen on validation, the checkpoint generate and export use)."""
    if not is_chief():
        return []
    plots, models = Path(config.plots_dir), Path(config.models_dir)
    record = {"run_name": config.run_name, "models_dir": config.models_dir,
              "tuning_dir": config.tuning_dir, "plots_dir": config.plots_dir,
              "tokenizer_path": config.tokenizer_path,
              "best_checkpoint": None if best is None else str(best.training.checkpoint_path)}
    previous = _read_record(plots / RUN_RECORD)
    if best is None and previous.get("best_checkpoint"):  # a resumed run keeps its choice
        record["best_checkpoint"] = previous["best_checkpoint"]
    paths = [plots / "config.json", plots / "environment.json", plots / RUN_RECORD,
             models / RUN_RECORD]
    for path, content in zip(paths, (config.to_dict(), environment.describe(), record, record)):
        write_json(path, content)
    return paths


def _read_record(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


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
    tokenizer = fit_or_load_tokenizer(corpus.train, config, corpus.conditions_of("train"),
                                      corpus.condition_edges)
    datasets = build_datasets(corpus, tokenizer, config, num_replicas=environment.replicas)
    return PreparedData(corpus=corpus, tokenizer=tokenizer, datasets=datasets)


def family_data(family: str, config: ExperimentConfig, data: PreparedData) -> PreparedData:
    """The data `family` trains and is evaluated on: `data`, or the same corpus through the
    tokenizer the family brings. Bits per character stay comparable: every tokenizer's splits
    count the same documents' characters."""
    if not FAMILIES[family].brings_tokenizer:
        return data
    if family not in data.by_family:
        tokenizer = family_tokenizer(family, config, data.corpus.conditions_of("train"),
                                     data.corpus.condition_edges)
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
                 environment: Environment, data: PreparedData, seed_index: int = 0) -> TrainingResult:
    """Train the family with the values tuning kept (its best checkpoint is the result), at its
    `seed_index`-th training seed (config.seed + seed_index)."""
    data = family_data(family, config, data)
    return train_model(family, hyperparameters, data.datasets, config, environment.strategy,
                       data.tokenizer, seed_index=seed_index)


def train_seeds(family: str, hyperparameters: kt.HyperParameters, config: ExperimentConfig,
                environment: Environment, data: PreparedData) -> list[TrainingResult]:
    """The family trained config.seeds times with the same hyperparameters, one seed after
    another; finished seeds are reused like a finished family."""
    return [train_family(family, hyperparameters, config, environment, data, index)
            for index in range(config.seeds)]


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
    followed = conditions_followed(model, config, data, conditions)
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
        seed=training.seed,
        evaluation=evaluation,
        parameters=training.parameters,
        trainable_parameters=training.trainable_parameters,
        train_seconds=training.train_seconds,
        train_tokens_per_second=training.train_tokens_per_second,
        generation_ms_per_token=generated.ms_per_token,
        **sample_measures(generated.texts, data.corpus, references),
        shuffled_condition_bits_per_char=None if shuffled is None else shuffled.bits_per_char,
        condition_accuracy=None if followed is None else followed.accuracy,
        condition_accuracy_chance=None if followed is None else followed.chance,
        sample_condition_accuracy=None if followed is None else followed.sample_accuracy,
        note=None if model.has_likelihood else NO_LIKELIHOOD_NOTE,
    )
    sweep = []
    if config.decoding_sweep and training.seed == config.seed:  # one sweep per family
        started = time.perf_counter()
        sweep = decoding_sweep(model, data.tokenizer, config, references, conditions)
        log.info("%s: decoding sweep of %d settings in %.1f s", training.family, len(sweep),
                 time.perf_counter() - started)
    return FamilyRun(family=training.family, training=training, report=report,
                     samples=generated.texts, sweep=sweep)


def conditions_followed(model: keras.Model, config: ExperimentConfig, data: PreparedData,
                        typical: dict[str, str] | None) -> ConditionAccuracy | None:
    """condition_accuracy on the test split and on samples generated under each value; None
    without condition_columns or for a model without a likelihood (it cannot classify)."""
    if typical is None or not model.has_likelihood:
        return None
    started = time.perf_counter()
    samples, given = generate_under_each_value(model, data.tokenizer, config, typical)
    followed = condition_accuracy(model, data.corpus.test, data.corpus.conditions_of("test"),
                                  data.tokenizer, config, data.datasets.global_batch_size,
                                  samples, given)
    log.info("condition accuracy %.3f (chance %.3f), of samples %.3f, in %.1f s", followed.accuracy,
             followed.chance, followed.sample_accuracy, time.perf_counter() - started)
    return followed


def sample_prompts(config: ExperimentConfig) -> list[str]:
    """The prompt of each sample the table measures: num_samples per prompt, then the prompts in
    turn up to measure_samples (a handful of samples makes BLEU and self-BLEU mostly noise)."""
    prompts = list(config.prompts) * config.num_samples
    extra = max(0, config.measure_samples - len(prompts))
    return prompts + [config.prompts[i % len(config.prompts)] for i in range(extra)]


def bleu_references(config: ExperimentConfig, data: PreparedData) -> BleuReferences:
    """The test documents every model's samples are scored against (a seeded choice, indexed once)."""
    return BleuReferences(reference_sample(data.corpus.test, config.bleu_references, config.seed))


def sample_measures(texts: list[str], corpus: Corpus, references: BleuReferences) -> dict[str, Any]:
    """The table's sample columns, the same for every row that samples, and the per-sample
    values their intervals resample."""
    bleu, self_bleu = bleu_4_scores(texts, references), self_bleu_4_scores(texts)
    known, words = known_word_counts(texts, corpus.train)
    mean = lambda values: math.fsum(values) / len(values) if values else math.nan  # noqa: E731
    return {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
            "known_word_share": float(known.sum() / words.sum()) if words.sum() else math.nan,
            "memorised_share": memorisation_rate(texts, corpus.train),
            "bleu_4": mean(bleu), "self_bleu_4": mean(self_bleu),
            "longest_copied_words": longest_copied_words(texts, corpus.train),
            "sample_scores": SampleScores(tuple(bleu), tuple(self_bleu), tuple(known.tolist()),
                                          tuple(words.tolist()))}


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
                     baseline: BaselineRun | None = None) -> list[Interpolation]:
    """The neural family with the best validation perplexity, mixed per token with the n-gram
    model: one mixture per training seed of that family.

    Chosen on validation among the families on the project's tokenizer (they share it, so
    validation perplexity ranks them as validation bits/char would, and the n-gram model scores
    the same tokens); the test split only scores the mixtures. The n-gram model is `baseline`'s,
    or fitted here. Empty, logged, when config.kn_interpolation is off or the split layout cannot
    pair the two models' tokens.
    """
    runs = [run for run in runs if not FAMILIES[run.family].brings_tokenizer]
    if not config.kn_interpolation or not runs:
        return []
    problem = pairing_problem(config)
    if problem:
        log.info("no n-gram interpolation row: %s", problem)
        return []
    by_family = {}
    for run in runs:
        by_family.setdefault(run.family, []).append(run)
    family = min(by_family, key=lambda name: _mean_log_perplexity(by_family[name]))
    if not math.isfinite(_mean_log_perplexity(by_family[family])):
        log.info("no n-gram interpolation row: no model has a finite validation perplexity")
        return []
    language_model = (baseline.language_model if baseline is not None else
                      fit_kneser_ney(data.datasets, config.kn_order, config.kn_max_train_tokens))
    mixtures = []
    for run in by_family[family]:
        model = load_trained_model(run.training.checkpoint_path)
        mixture = interpolate(family, model, run.report.parameters or 0, language_model,
                              data.datasets.validation, data.datasets.test, seed=run.training.seed)
        log.info("interpolation %s", mixture.summary())
        mixtures.append(mixture)
    return mixtures


def _mean_log_perplexity(runs: list[FamilyRun]) -> float:
    """Mean over a family's seeds of ln(best validation perplexity): inf if any seed has none."""
    return sum(math.log(run.training.best_validation_perplexity) for run in runs) / len(runs)


def best_on_validation(runs: list[FamilyRun], config: ExperimentConfig,
                       data: PreparedData) -> FamilyRun | None:
    """The run with the lowest validation bits/char: what samples are shown from and what the
    panel and the generate command point to. Never chosen on test. Bits per character, not
    perplexity, so a family with its own tokenizer is ranked on the same scale."""
    def validation_bits_per_char(run: FamilyRun) -> float:
        perplexity = run.training.best_validation_perplexity
        split = family_data(run.family, config, data).datasets.validation
        return math.log2(perplexity) * split.tokens / max(split.characters, 1)

    ranked = [run for run in runs if math.isfinite(run.training.best_validation_perplexity)]
    return min(ranked, key=validation_bits_per_char) if ranked else None


def best_checkpoints(runs: list[FamilyRun], config: ExperimentConfig, data: PreparedData) -> list[str]:
    """One checkpoint per family for the panel: its seed with the lowest validation bits/char
    (its first seed when none has a validation figure, e.g. a GAN)."""
    chosen = []
    for family in dict.fromkeys(run.family for run in runs):
        seeds = [run for run in runs if run.family == family]
        chosen.append((best_on_validation(seeds, config, data) or seeds[0]).training.checkpoint_path)
    return chosen


def all_reports(runs: list[FamilyRun], baseline: BaselineRun | None,
                interpolations: list[Interpolation] | Interpolation | None = None) -> list[ModelReport]:
    """Every trained model's report (each family at each seed), the baseline's and the mixtures'."""
    if isinstance(interpolations, Interpolation):
        interpolations = [interpolations]
    return ([run.report for run in runs] + ([baseline.report] if baseline else [])
            + [mixture.report() for mixture in interpolations or []])


def write_results(runs: list[FamilyRun], baseline: BaselineRun | None, config: ExperimentConfig,
                  interpolations: list[Interpolation] | Interpolation | None = None
                  ) -> tuple[pd.DataFrame, list[Path]]:
    """The comparison table, the per-document scores behind its intervals, the samples and the
    plots; only the chief writes, so workers never clash."""
    started = time.perf_counter()
    reports = all_reports(runs, baseline, interpolations)
    table = comparison_table(reports, config.bootstrap_resamples, config.seed)
    log.info("intervals: %d bootstrap resamples of the test documents in %.2f s",
             config.bootstrap_resamples, time.perf_counter() - started)
    if not is_chief():
        return table, []
    plots_dir = Path(config.plots_dir)
    paths = save_table(table, plots_dir, tokenizer_notes(runs))
    samples_path = plots_dir / "samples.json"  # per family (and further seed), in prompt order
    first = [run for run in runs if run.training.seed == config.seed]  # one run per family
    samples = {_run_name(run, config): run.samples for run in runs}
    sweeps = {run.family: run.sweep for run in runs if run.sweep}
    if baseline is not None:
        samples[baseline.report.model] = baseline.samples
        if baseline.sweep:
            sweeps[baseline.report.model] = baseline.sweep
    write_json(samples_path, samples)
    paths.append(samples_path)
    if sweeps:
        sweep_path = plots_dir / "decoding_sweep.csv"
        sweep_table(sweeps).to_csv(sweep_path, index=False)
        paths.append(sweep_path)
    scores_path = plots_dir / "document_scores.csv"  # see evaluation.report.DOCUMENT_SCORE_COLUMNS
    document_scores_frame(reports).to_csv(scores_path, index=False)
    seeds_path = plots_dir / "comparison_by_seed.csv"
    seed_table(runs).to_csv(seeds_path, index=False)
    paths += [scores_path, seeds_path]
    first_reports = [report for report in reports if report.seed in (None, config.seed)]
    paths += plot_all([run.training for run in first], first_reports, plots_dir, sweeps, table)
    return table, paths


def _run_name(run: FamilyRun, config: ExperimentConfig) -> str:
    """'gru' for a family's first seed, 'gru (seed 43)' for the others."""
    return run.family if run.training.seed == config.seed else f"{run.family} (seed {run.training.seed})"


def seed_table(runs: list[FamilyRun]) -> pd.DataFrame:
    """One line per trained model (family x seed): how far seeds alone move the figures."""
    return pd.DataFrame([{
        "model": run.family, "seed": run.training.seed,
        "test_bits_per_char": run.report.evaluation.bits_per_char,
        "best_validation_perplexity": run.training.best_validation_perplexity,
        "epochs": len(run.training.epoch_seconds), "train_seconds": run.training.train_seconds,
        "train_tokens_per_second": run.training.train_tokens_per_second,
        "stopped_reason": run.training.stopped_reason, "checkpoint": run.training.checkpoint_path,
    } for run in runs], columns=["model", "seed", "test_bits_per_char", "best_validation_perplexity",
                                 "epochs", "train_seconds", "train_tokens_per_second",
                                 "stopped_reason", "checkpoint"])


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
    interpolations: list[Interpolation] = field(default_factory=list)  # one per seed of the family
    conclusions: str = ""  # what the figures support (experiment.conclusions)


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
    log.info("run %r: models in %s, tuning trials in %s, table and plots in %s", config.run_name,
             config.models_dir, config.tuning_dir, config.plots_dir)
    data = prepare_data(config, environment, corpus)
    record_run(config, environment)  # once the data is read: bad data leaves no run behind
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
        for training in train_seeds(family, tuning.hyperparameters, config, environment, data):
            run = evaluate_family(training, config, data)
            log.info("== %s (seed %d): test perplexity %.2f, %.3f bits/char, %s", family,
                     training.seed, run.report.evaluation.perplexity,
                     run.report.evaluation.bits_per_char, training.stopped_reason)
            runs.append(run)
    baseline = baseline_run(config, data)
    interpolations = interpolate_best(runs, config, data, baseline)
    table, artifacts = write_results(runs, baseline, config, interpolations)
    log.info("comparison:\n%s", table.to_string())
    best = best_on_validation(runs, config, data)
    record_run(config, environment, best)
    summary = conclusions(runs, baseline, interpolations, config.bootstrap_resamples, config.seed,
                          best)
    log.info("conclusions:\n%s", summary)
    log.info("done in %.0f s; wrote %s", time.perf_counter() - started,
             ", ".join(str(p) for p in artifacts))
    return ExperimentResult(environment, data, runs, baseline, table, artifacts, interpolations,
                            summary)


def conclusions(runs: list[FamilyRun], baseline: BaselineRun | None,
                interpolations: list[Interpolation] | Interpolation | None = None,
                resamples: int = 1000, seed: int = 0, chosen: FamilyRun | None = None) -> str:
    """A few sentences the measured figures support: a winner only when its difference from
    the runner-up is significant at 5% after Holm's correction, otherwise which rows are tied,
    with the interval; the same for the n-gram bar and the mixture. `chosen`: the run picked
    on validation for samples and generation (best_on_validation)."""
    if not runs:
        return "No model was trained."
    reports = all_reports(runs, baseline, interpolations)
    families = group_by_model([run.report for run in runs])
    ranked = sorted((name for name, group in families.items()
                     if all(math.isfinite(r.evaluation.bits_per_char) for r in group)),
                    key=lambda name: _mean_bits(families[name]))
    if not ranked:
        return "No model with a likelihood was trained: compare the sample measures in the table."
    bootstrap = document_bootstrap(reports, resamples, seed)
    if bootstrap is None or any(name not in bootstrap.rows for name in ranked):
        return _plain_conclusions(runs, families, ranked, baseline)
    best = ranked[0]
    lines = [_winner_line(best, ranked, families, bootstrap)]
    if baseline is not None and baseline.report.model in bootstrap.rows:
        lines.append(_baseline_line(baseline.report.model, ranked, bootstrap))
    mixtures = [name for name in group_by_model(reports) if "+" in name and name in bootstrap.rows]
    for mixture in mixtures:
        neural = mixture.split("+", 1)[0]
        difference = bootstrap.difference(mixture, neural)
        verdict = ("below" if difference.value < 0 else "above") if difference.significant() \
            else "tied with"
        lines.append(f"- Mixed per token with the n-gram model (weight fitted on validation): "
                     f"**{mixture}**, {_figure(bootstrap, mixture)}; {verdict} {neural} alone "
                     f"({difference.describe()}): what each model knows that the other does not.")
    for name in ranked[1:]:
        report = families[name][0]
        lines.append(f"- {name}: {_figure(bootstrap, name)}, {report.parameters:,} parameters, "
                     f"{_mean_of(families[name], 'train_seconds'):.0f} s of training.")
    fastest = min(ranked, key=lambda name: _mean_of(families[name], "generation_ms_per_token"))
    lines.append(f"- Fastest generation: {fastest}, "
                 f"{_mean_of(families[fastest], 'generation_ms_per_token'):.2f} ms per token.")
    if all(len(group) == 1 for group in families.values()):
        lines.append("- These intervals hold the test set's variance, from one training seed per "
                     "family: a second seed can move a model by more than a narrow interval "
                     "(set `seeds` to 3 to include that variance and pool the seeds).")
    if chosen is not None:
        lines.append(f"- Samples, the panel and generation use **{chosen.family}** (seed "
                     f"{chosen.training.seed}), the lowest validation bits/char (chosen on "
                     f"validation, never on test): `python -m evaluation.generate --model "
                     f"{chosen.training.checkpoint_path} --prompt \"...\"`.")
    return "\n".join(lines)


def _mean_bits(group: list[ModelReport]) -> float:
    return sum(report.evaluation.bits_per_char for report in group) / len(group)


def _mean_of(group: list[ModelReport], field_name: str) -> float:
    values = [getattr(report, field_name) for report in group if getattr(report, field_name) is not None]
    return sum(values) / len(values) if values else math.nan


def _figure(bootstrap: DocumentBootstrap, model: str) -> str:
    """'2.148 bits/char (95% interval 2.131 to 2.165)', with the seeds' mean and spread."""
    interval, row = bootstrap.interval(model), bootstrap.rows[model]
    seeds = (f", mean of {row.seeds} seeds, between-seed sd {row.seed_sd:.3f}"
             if row.seeds > 1 else "")
    return (f"{interval.value:.3f} bits/char (95% interval {interval.low:.3f} to "
            f"{interval.high:.3f}{seeds})")


def _winner_line(best: str, ranked: list[str], families: dict[str, list[ModelReport]],
                 bootstrap: DocumentBootstrap) -> str:
    report = families[best][0]
    cost = (f"{report.parameters:,} parameters, {_mean_of(families[best], 'train_seconds'):.0f} s "
            "of training")
    if len(ranked) == 1:
        return f"- **Only model: {best}**, {_figure(bootstrap, best)}, {cost}."
    differences = bootstrap.versus(ranked, best)  # Holm over the other families
    tied = [name for name in ranked[1:] if not differences[name].significant()]
    runner_up = ranked[1]
    if not tied:
        return (f"- **Best model: {best}**, {_figure(bootstrap, best)}, {cost}; significantly "
                f"below the runner-up {runner_up} ({differences[runner_up].describe()}, "
                "Holm-corrected).")
    ties = "; ".join(f"{best} and {name} are tied: difference {differences[name].describe()}"
                     for name in tied)
    return (f"- **No single winner**: {ties} (Holm-corrected; a tie means the test set cannot "
            f"tell them apart at 5%). {best} has the lowest figure, {_figure(bootstrap, best)}, "
            f"{cost}. More test documents or `seeds` would narrow the interval.")


def _baseline_line(bar: str, ranked: list[str], bootstrap: DocumentBootstrap) -> str:
    differences = bootstrap.versus([*ranked, bar], bar)  # Holm over the families
    beats = [name for name in ranked if differences[name].significant() and differences[name].value < 0]
    tied = [name for name in ranked if not differences[name].significant()]
    worse = [name for name in ranked if name not in beats and name not in tied]
    parts = []
    if beats:
        parts.append("beaten by " + ", ".join(f"{name} ({differences[name].describe()})"
                                              for name in beats))
    if tied:
        parts.append("tied with " + ", ".join(f"{name} ({differences[name].describe()})"
                                              for name in tied))
    if worse:
        parts.append("not reached by " + ", ".join(f"{name} ({differences[name].describe()})"
                                                   for name in worse))
    advice = ("" if beats else " No neural model beats it significantly yet: train longer or "
              "larger (`train_time_budget_seconds`, `final_training_epochs`) or add `seeds`.")
    return (f"- The {bar} baseline scores {_figure(bootstrap, bar)}; " + "; ".join(parts)
            + " (differences from it, Holm-corrected)." + advice)


def _plain_conclusions(runs: list[FamilyRun], families: dict[str, list[ModelReport]],
                       ranked: list[str], baseline: BaselineRun | None) -> str:
    """Without per-document scores (a layout that cannot be split by document): the figures
    alone, and no claim of a winner."""
    lines = [f"- {name}: {_mean_bits(families[name]):.3f} bits per character"
             for name in ranked]
    if baseline is not None:
        lines.append(f"- {baseline.report.model}: {baseline.report.evaluation.bits_per_char:.3f} "
                     "bits per character")
    lines.append("- No per-document scores, so no interval: the ranking above may be noise.")
    return "\n".join(lines)
