"""The command-line runner: bad CONFIG files fail in one line before TensorFlow work starts."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training_assets.run import main, parse_override
from data_pipeline.errors import ConfigError


def test_unknown_key_fails_with_suggestion(tmp_path, capsys):
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps({"vocab_sise": 500}))
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'vocab_sise'" in err and "did you mean 'vocab_size'" in err.lower()


def test_bad_value_names_key_and_range(tmp_path, capsys):
    path = tmp_path / "experiment.yaml"
    path.write_text("max_len: 1\n")
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "max_len" in err and "greater than or equal to 2" in err


def test_missing_config_file_is_named(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_missing_data_file_fails_before_training(tmp_path, capsys):
    path = tmp_path / "experiment.json"
    outputs = {"plots_dir": "plots", "models_dir": "models", "tuning_dir": "tuning"}
    path.write_text(json.dumps({"data_file": str(tmp_path / "absent.csv"),
                                "tokenizer_path": str(tmp_path / "tokenizer" / "tokenizer.json"),
                                **{key: str(tmp_path / name) for key, name in outputs.items()}}))
    assert main(["--config", str(path)]) == 2
    assert "absent.csv" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in [*outputs.values(), "tokenizer"])


def test_set_overrides_parse_json_or_plain_strings():
    assert parse_override("max_len=128") == ("max_len", 128)
    assert parse_override('models_to_run=["gru"]') == ("models_to_run", ["gru"])
    assert parse_override("data_file=news.csv") == ("data_file", "news.csv")
    with pytest.raises(ConfigError):
        parse_override("max_len")


@pytest.mark.slow
def test_runner_writes_the_same_artifacts_as_the_notebook(tmp_path):
    from test_notebook import tiny_config

    config = tiny_config(tmp_path)
    config["models_to_run"] = ["gru"]
    config["tuner"] = "none"
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(config))
    done = subprocess.run([sys.executable, "-m", "training_assets.run", "--config", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "kn_3gram" in done.stdout and "gru" in done.stdout
    assert (tmp_path / "plots" / "comparison.csv").is_file()
    assert len(list((tmp_path / "plots").glob("*.png"))) >= 4
    assert (tmp_path / "models" / "gru.keras").is_file()
