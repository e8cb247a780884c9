"""Command line: sample text from trained models.

    python -m evaluation.generate --model RUN --prompt "police"   # a run's best model
    python -m evaluation.generate --model trained_models/RUN/gru.keras --prompt "police"
        --sampler top_p --top-p 0.9 --temperature 0.8 -n 5
    python -m evaluation.generate --model trained_models/RUN/*.keras --prompt "police"   # side by side
    python -m evaluation.generate --model trained_models/gru.keras --condition category=zippy
    python -m evaluation.generate --model trained_models/gpt2.keras --list-conditions
    python -m evaluation.generate --model trained_models/gru.keras --condition price:quantiles5=q2
    python -m evaluation.generate --model trained_models/gru.keras --repetition-penalty 1.2
        --no-repeat-ngram-size 3 --stop-string "." --min-new-tokens 5

RUN is a run's name or its trained_models/<run> or plots/<run> folder: its model chosen on
validation (the one the notebook samples from).

The tokenizer comes from the manifest beside the model (`<family>.manifest.json`, key
"tokenizer_path"), or --tokenizer. Prompts are cleaned like the training text (the manifest's
`cleaning`), and sampling settings not given default to the manifest's CONFIG. Paths and the
manifest are checked before TensorFlow is imported, so mistakes fail in a second. A bucketed
numeric column takes its bucket (q1 .. qN) or a number, which falls in its bucket. Models load
without their optimizer (inference only), so nothing of the training code is needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from data_pipeline.cleaning import clean_text
from data_pipeline.conditions import check_generation_conditions, resolve_buckets
from data_pipeline.config import ConfigError, ExperimentConfig
from data_pipeline.errors import DataError
from data_pipeline.tokenizer import TextTokenizer
from evaluation.generation_controls import CONTROL_KEYS, GenerationControls
from evaluation.runs import model_files

SAMPLING_KEYS = ("sampler", "temperature", "top_k", "top_p", "beam_width", "max_new_tokens",
                 "num_samples", "seed", *CONTROL_KEYS)


@dataclass(frozen=True)
class GenerationJob:
    """One model to sample from, with everything checked before TensorFlow is imported."""

    model_path: Path
    tokenizer: TextTokenizer
    config: ExperimentConfig
    settings: dict[str, Any]  # SAMPLING_KEYS: the command line's values, else the manifest's CONFIG
    controls: GenerationControls  # from settings, stop strings cleaned like the training text
    prompts: list[str]  # cleaned like the training text
    conditions: dict[str, str]  # --condition column=value pairs, checked against the tokenizer


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m evaluation.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, action="extend", nargs="+",
                        help="a .keras file written by training, or a run (its name or folder: "
                             "its best model); several (e.g. trained_models/RUN/*.keras) print "
                             "each model's samples under a '== path' line")
    parser.add_argument("--prompt", action="append", default=None,
                        help="text to continue (repeatable); omit or '' for a new document")
    parser.add_argument("--tokenizer", help="tokenizer JSON (default: tokenizer_path in the manifest)")
    parser.add_argument("--sampler", choices=["greedy", "random", "top_k", "top_p", "beam"])
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-k", dest="top_k", type=int)
    parser.add_argument("--top-p", dest="top_p", type=float)
    parser.add_argument("--beam-width", dest="beam_width", type=int)
    parser.add_argument("--max-new-tokens", dest="max_new_tokens", type=int)
    parser.add_argument("-n", "--num-samples", dest="num_samples", type=int,
                        help="samples per prompt")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--repetition-penalty", dest="repetition_penalty", type=float,
                        help="> 1 discourages tokens already in the text (1.0: off)")
    parser.add_argument("--no-repeat-ngram-size", dest="no_repeat_ngram_size", type=int,
                        help="never repeat an n-gram of this many tokens (0: off)")
    parser.add_argument("--stop-string", dest="stop_strings", action="append", default=None,
                        metavar="TEXT", help="end a sample when its text contains TEXT, cut "
                                             "before it (repeatable)")
    parser.add_argument("--min-new-tokens", dest="min_new_tokens", type=int,
                        help="no end of document before this many new tokens")
    parser.add_argument("--condition", action="append", default=[], metavar="COLUMN=VALUE",
                        help="a condition column's value (repeatable), for models trained with "
                             "condition_columns, e.g. category=computers; a bucketed numeric "
                             "column takes q1 .. qN or a number")
    parser.add_argument("--list-conditions", action="store_true",
                        help="print each model's condition columns and values (buckets with "
                             "their ranges), then stop")
    parser.add_argument("--no-xla", dest="jit_compile", action="store_false", default=None,
                        help="run the sampling loop without XLA (default: per sampler)")
    return parser.parse_args(argv)


def manifest_path_for(model_path: Path) -> Path:
    """`<models_dir>/<family>.manifest.json` beside `<models_dir>/<family>.keras`."""
    return model_path.with_name(model_path.stem + ".manifest.json")


def read_manifest(model_path: Path) -> dict[str, Any]:
    """The model's manifest ({} when there is none); DataError if it is unreadable."""
    path = manifest_path_for(model_path)
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise DataError(f"manifest {str(path)!r} is not valid JSON ({error}): re-run training "
                        "or pass --tokenizer") from None
    if not isinstance(manifest, dict):
        raise DataError(f"manifest {str(path)!r} must hold one JSON object")
    return manifest


def experiment_config(manifest: dict[str, Any]) -> ExperimentConfig:
    """The CONFIG the model was trained with, or the defaults if it is absent or outdated."""
    try:
        return ExperimentConfig.from_dict(manifest.get("config") or {}, source="manifest config")
    except ConfigError as error:
        print(f"warning: using default settings; the manifest's config does not validate: {error}",
              file=sys.stderr)
        return ExperimentConfig()


def find_tokenizer(model_path: Path, manifest: dict[str, Any], override: str | None) -> TextTokenizer:
    """--tokenizer, else the manifest's tokenizer_path (as written, or beside the model)."""
    if override:
        return TextTokenizer.load(override)
    recorded = manifest.get("tokenizer_path")
    if not recorded:
        raise DataError(f"no tokenizer for {str(model_path)!r}: its manifest "
                        f"{str(manifest_path_for(model_path))!r} is missing or has no "
                        "'tokenizer_path'; pass --tokenizer PATH")
    candidates = [Path(recorded), model_path.parent / Path(recorded).name]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        raise DataError(f"tokenizer {recorded!r} named in the manifest of {str(model_path)!r} does "
                        f"not exist (also looked in {str(model_path.parent)!r}): pass --tokenizer PATH")
    tokenizer = TextTokenizer.load(found)
    expected = manifest.get("tokenizer_fingerprint")
    if expected and tokenizer.fingerprint and expected != tokenizer.fingerprint:
        raise DataError(f"tokenizer {str(found)!r} was refitted after {str(model_path)!r} was "
                        "trained (fingerprints differ), so its ids mean other text: retrain the "
                        "model or pass the original tokenizer with --tokenizer")
    return tokenizer


def prepare(model_path: Path, args: argparse.Namespace) -> GenerationJob:
    """Check one model's file, manifest and tokenizer (no TensorFlow yet) and settle its settings."""
    if not model_path.is_file():
        raise DataError(f"model file {str(model_path)!r} does not exist: train one first "
                        "(python -m training_assets.run) or check --model")
    manifest = read_manifest(model_path)
    tokenizer = find_tokenizer(model_path, manifest, args.tokenizer)
    if "vocab_size" in manifest and manifest["vocab_size"] != tokenizer.vocab_size:
        raise DataError(f"tokenizer {tokenizer.path!r} has vocab_size={tokenizer.vocab_size} but "
                        f"{str(model_path)!r} was trained with vocab_size={manifest['vocab_size']}: "
                        "use the tokenizer named in its manifest")
    config = experiment_config(manifest)
    settings = {key: getattr(args, key) if getattr(args, key) is not None else getattr(config, key)
                for key in SAMPLING_KEYS}
    if settings["num_samples"] < 1 or settings["max_new_tokens"] < 1:
        raise DataError("-n and --max-new-tokens must be >= 1")
    controls = GenerationControls.from_settings(settings, config.cleaning_steps)
    prompts = [clean_text(prompt, config.cleaning_steps) for prompt in (args.prompt or [""])]
    conditions = resolve_buckets(parse_conditions(args.condition), tokenizer.condition_edges)
    check_generation_conditions(conditions, tokenizer.known_conditions, tokenizer.condition_edges)
    return GenerationJob(model_path, tokenizer, config, settings, controls, prompts, conditions)


def parse_conditions(pairs: Sequence[str]) -> dict[str, str]:
    """{"category": "computers"} from ["category=computers"]; DataError for a malformed pair."""
    conditions = {}
    for pair in pairs:
        column, separator, value = pair.partition("=")
        if not separator or not column:
            raise DataError(f"--condition {pair!r} is not COLUMN=VALUE, e.g. category=computers")
        conditions[column] = value
    return conditions


def condition_lines(tokenizer: TextTokenizer) -> list[str]:
    """`column: value, value, ...` per condition column (buckets with their ranges)."""
    choices = tokenizer.condition_choices
    return ([f"{column}: {', '.join(values)}" for column, values in choices.items()]
            or ["(no conditions: the model was trained without condition_columns)"])


def run(args: argparse.Namespace) -> list[tuple[Path, list[str]]]:
    """Per model, in --model order: its documents, in prompt order, `num_samples` per prompt
    (--list-conditions: its condition lists instead, without TensorFlow).

    Every model's files are checked before the first one is loaded.
    """
    if args.list_conditions:
        return [(path, condition_lines(find_tokenizer(path, read_manifest(path), args.tokenizer)))
                for spec in args.model for path in model_files(spec, best_only=True)]
    jobs = [prepare(path, args) for spec in args.model for path in model_files(spec, best_only=True)]

    from evaluation.generation import document_start_id, generate
    from model_architectures.saving import load_trained_model

    results = []
    for job in jobs:
        model = load_trained_model(job.model_path)  # without the optimizer: inference only
        settings = job.settings
        texts = generate(model, job.tokenizer,
                         [p for p in job.prompts for _ in range(settings["num_samples"])],
                         max_new_tokens=settings["max_new_tokens"], sampler=settings["sampler"],
                         temperature=settings["temperature"], top_k=settings["top_k"],
                         top_p=settings["top_p"], beam_width=settings["beam_width"],
                         seed=settings["seed"], start_id=document_start_id(job.config),
                         jit_compile=args.jit_compile, conditions=job.conditions or None,
                         controls=job.controls)
        results.append((job.model_path, texts))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = run(args)
    except (DataError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for model_path, texts in results:
        if len(results) > 1:
            print(f"== {model_path}")
        for text in texts:
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
