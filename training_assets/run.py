"""Command line for one experiment: the same stages and artifacts as the notebook.

    python -m training_assets.run --config experiment.json   (JSON or YAML with CONFIG keys)
    python -m training_assets.run --set data_file=my.csv --set text_column=text   (defaults + keys)
    python -m training_assets.run --config experiment.json --until data   (prepare data and stop)

Without --config every key has its default, the same as the notebook's CONFIG cell. The run's
files go to trained_models/<run_name>/, tuning_results/<run_name>/ and plots/<run_name>/.

CONFIG is validated and the corpus read before TensorFlow is imported, so a wrong key or value,
a missing file or a missing CSV column fails in a second with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from data_pipeline.config import ExperimentConfig, read_config_file
from data_pipeline.corpus import Corpus, load_corpus
from data_pipeline.errors import ConfigError, DataError
from data_pipeline.streaming import check_streamed_source, uses_streaming
from training_assets.cluster import config_for_this_process
from training_assets.run_lock import FolderInUseError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training_assets.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON or YAML file of CONFIG keys (default: none, every "
                                         "key at its default)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override one key, e.g. --set max_len=128 --set 'models_to_run=[\"gru\"]'")
    parser.add_argument("--until", choices=["data"], default=None,
                        help="stop after a stage: 'data' prepares corpus, tokenizer and datasets "
                             "(or token shards), prints the split summary and trains nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        config = config_from_arguments(args.config, args.set)
        config = config_for_this_process(config)  # checks TF_CONFIG and keras-tuner's variables
        if uses_streaming(config):
            check_streamed_source(config)  # prepare_data streams it into token shards later
            corpus = None
        else:
            corpus = load_corpus(config)
        if args.until == "data":
            return _prepare_only(config, corpus)
        from training_assets.experiment import run_experiment  # TensorFlow loads only now

        result = run_experiment(config, corpus)
    except (ConfigError, DataError, FolderInUseError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not result.table.empty:
        from evaluation.report import markdown_table

        print(markdown_table(result.table))
        print()
    print(result.conclusions)
    return 0


def _prepare_only(config: ExperimentConfig, corpus: Corpus | None) -> int:
    """--until data: build the datasets as training would, print the split summary, stop."""
    from training_assets.experiment import prepare_data, setup_environment, split_summary

    data = prepare_data(config, setup_environment(config), corpus)
    print(split_summary(data).to_string())
    return 0


def config_from_arguments(path: str | None, settings: list[str]) -> ExperimentConfig:
    """--config's keys (or none) with each --set KEY=JSON on top, validated once: a key --set
    changes also changes the default run name, as it would in the file."""
    raw = read_config_file(path) if path else {}
    overrides = dict(parse_override(item) for item in settings)
    source = " + ".join(part for part in (path, "--set" if overrides else None) if part) or "CONFIG"
    return ExperimentConfig.from_dict({**raw, **overrides}, source=source)


def parse_override(item: str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    if not sep:
        raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set max_len=128")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value  # a bare string such as --set data_file=news.csv


if __name__ == "__main__":
    sys.exit(main())
