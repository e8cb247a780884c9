"""Bad CONFIG and bad data fail before TensorFlow loads: validation, the registry's names and
search spaces, file checks and CSV reading import no tensorflow, keras or keras_tuner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from data_factories import write_csv
from model_architectures import FAMILIES

HEAVY_MODULES = ("tensorflow", "keras", "keras_tuner")

# Runs in a fresh interpreter: this test process has TensorFlow loaded already (conftest).
VALIDATE_AND_READ = textwrap.dedent("""
    import json, sys
    from data_pipeline.config import ExperimentConfig
    from data_pipeline.corpus import load_corpus
    from data_pipeline.errors import ConfigError
    from training_assets.cluster import config_for_this_process

    raw = json.loads(sys.argv[1])
    config = config_for_this_process(ExperimentConfig.from_dict(raw))
    corpus = load_corpus(config)
    errors = []
    for bad in ({"models_to_run": ["lstn"]}, {"hyperparameters": {"gru": {"unit": 8}}}):
        try:
            ExperimentConfig.from_dict({**raw, **bad})
        except ConfigError as error:
            errors.append(str(error))
    print(json.dumps({"documents": len(corpus.train) + len(corpus.validation) + len(corpus.test),
                      "errors": errors,
                      "heavy": [name for name in %r if name in sys.modules]}))
""" % (HEAVY_MODULES,))


def clean_environment() -> dict[str, str]:
    """This environment (PYTHONPATH included) with TensorFlow's own log level, so that a
    TensorFlow import would print its start-up lines."""
    return {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}


def test_validation_and_csv_reading_leave_tensorflow_unimported(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "news.csv", [[f"headline number {i}"] for i in range(40)],
                     header=["headline_text"])
    causal = [name for name, family in FAMILIES.items() if "causal" in family.objectives]
    raw = {"data_file": str(data), "models_to_run": causal, "tokenizer": "char",
           "hyperparameters": {name: dict(family.tiny) for name, family in FAMILIES.items()},
           "tokenizer_path": str(tmp_path / "tokenizer.json"),
           "download_dir": str(tmp_path / "downloads")}
    done = subprocess.run([sys.executable, "-c", VALIDATE_AND_READ, json.dumps(raw)],
                          capture_output=True, text=True, env=clean_environment(), timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["heavy"] == []
    assert result["documents"] == 40
    unknown_family, unknown_name = result["errors"]
    assert "unknown model family 'lstn' (did you mean 'lstm'?)" in unknown_family
    assert "CONFIG['hyperparameters']['gru']: unknown name(s) ['unit']" in unknown_name


BAD_INPUTS = {
    "unknown key": ({"vocab_sise": 500}, "Did you mean 'vocab_size'?"),
    "value out of range": ({"max_len": 1}, "'max_len'] = 1: Input should be greater than or equal to 2"),
    "unknown hyperparameter": ({"hyperparameters": {"gru": {"unit": 64}}},
                               "['hyperparameters']['gru']: unknown name(s) ['unit']"),
    "objective the family does not support": (
        {"models_to_run": ["gru", "bilstm"]},
        "'bilstm' supports objective 'last_token' only, not 'causal': it reads its window in both "
        "directions, so under 'causal' it would see the future; set CONFIG['objective'] = 'last_token'"),
    "missing data file": ({"data_file": "absent.csv"}, "absent.csv' does not exist"),
    "missing CSV column": ({"data_file": "news.csv", "text_column": "title"},
                           "has no column text_column='title'"),
    "bad condition bucket": ({"condition_columns": ["publish_date:century"]},
                             "bucket a date column with one of ['publish_date:year'"),
    "bad numeric bucket spelling": ({"condition_columns": ["price:quantile5"]},
                                    "or a numeric one with 'price:quantilesN'"),
    "non-numeric value in a numeric column": (
        {"data_file": "news.csv", "condition_columns": ["price:quantiles2"], "text_column": "headline_text"},
        "is declared numeric but data row 7 holds 'n/a'"),
    "more buckets than values": ({"data_file": "news.csv", "condition_columns": ["size:quantiles5"], "text_column": "headline_text"},
                                 "has 2 distinct values in the training split, fewer than its 5 "
                                 "buckets"),
    "missing condition column": ({"data_file": "news.csv", "condition_columns": ["category"], "text_column": "headline_text"},
                                 "has no column 'category' named in condition_columns"),
    "no training seed": ({"seeds": 0}, "'seeds'] = 0: give a whole number of training seeds"),
    "too few bootstrap resamples": ({"bootstrap_resamples": 100},
                                    "a 95% interval needs at least 200 bootstrap resamples"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_command_line_names_bad_input_in_one_line_before_tensorflow(tmp_path: Path, case: str) -> None:
    settings, expected = BAD_INPUTS[case]
    write_csv(tmp_path / "news.csv", [[f"headline number {i}", "n/a" if i == 6 else i, i % 2]
                                      for i in range(40)], header=["headline_text", "price", "size"])
    settings = {key: str(tmp_path / value) if key == "data_file" else value
                for key, value in settings.items()}
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps({"plots_dir": str(tmp_path / "plots"), **settings}))
    done = subprocess.run([sys.executable, "-m", "training_assets.run", "--config", str(path)],
                          capture_output=True, text=True, env=clean_environment(), timeout=60)
    assert done.returncode == 2
    # One line, and no TensorFlow start-up line before it (TensorFlow was never imported).
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert expected in done.stderr
    assert not (tmp_path / "plots").exists()
