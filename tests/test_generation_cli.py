"""The generate command line: a real run in a fresh process, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from data_pipeline.tokenizer import CharTokenizer
from evaluation.generate import main
from model_architectures import build_model

DOCUMENTS = ["police arrest man", "council plans new road", "police probe fire"]


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory) -> Path:
    """models/gru.keras + its manifest + the tokenizer it names, as training leaves them."""
    folder = tmp_path_factory.mktemp("models")
    tokenizer = CharTokenizer.fit(DOCUMENTS, 64, fingerprint="abc123")
    tokenizer.save(folder / "tokenizer.json")
    model = build_model("gru", None, tokenizer.vocab_size, 16, {"embedding_dim": 16, "units": 16})
    model.save(folder / "gru.keras")
    write_manifest(folder / "gru.manifest.json", tokenizer_path=str(folder / "tokenizer.json"),
                   vocab_size=tokenizer.vocab_size)
    return folder


def write_manifest(path: Path, **changes) -> None:
    manifest = {"family": "gru", "tokenizer_fingerprint": "abc123",
                "config": {"models_to_run": ["gru"], "tokenizer": "char", "vocab_size": 64,
                           "cleaning": "reference", "max_len": 16}}
    manifest.update(changes)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def test_generates_in_a_fresh_process(trained_folder):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run(
        [sys.executable, "-m", "evaluation.generate", "--model", str(trained_folder / "gru.keras"),
         "--prompt", "Police!", "--sampler", "top_p", "--top-p", "0.9", "--temperature", "0.8",
         "-n", "3", "--max-new-tokens", "5", "--seed", "1"],
        capture_output=True, text=True, env=environment, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    # The prompt is cleaned like the training text ("reference": lowercase, no punctuation).
    assert all(line.startswith("police") and len(line) <= len("police") + 5 for line in lines)


def run_main(capsys, *arguments: str) -> tuple[int, str]:
    code = main(list(arguments))
    return code, capsys.readouterr().err


def test_missing_model_is_one_clear_line(tmp_path, capsys):
    code, error = run_main(capsys, "--model", str(tmp_path / "lstm.keras"))
    assert code == 2 and "lstm.keras' does not exist" in error and error.count("\n") == 1


def test_tokenizer_must_match_the_model(trained_folder, tmp_path, capsys):
    (tmp_path / "gru.keras").write_bytes((trained_folder / "gru.keras").read_bytes())
    write_manifest(tmp_path / "gru.manifest.json", vocab_size=99,
                   tokenizer_path=str(trained_folder / "tokenizer.json"))
    code, error = run_main(capsys, "--model", str(tmp_path / "gru.keras"))
    assert code == 2 and "vocab_size=99" in error and "tokenizer named in its manifest" in error

    write_manifest(tmp_path / "gru.manifest.json", tokenizer_fingerprint="other",
                   tokenizer_path=str(trained_folder / "tokenizer.json"))
    code, error = run_main(capsys, "--model", str(tmp_path / "gru.keras"))
    assert code == 2 and "was refitted after" in error

    other = CharTokenizer.fit(["xyz"], 64)  # right file format, wrong vocabulary for the model
    other.save(tmp_path / "other.json")
    write_manifest(tmp_path / "gru.manifest.json", tokenizer_fingerprint="")
    code, error = run_main(capsys, "--model", str(tmp_path / "gru.keras"),
                           "--tokenizer", str(tmp_path / "other.json"))
    assert code == 2 and "vocab_size=7 but the model has vocab_size=" in error

    (tmp_path / "gru.manifest.json").unlink()
    code, error = run_main(capsys, "--model", str(tmp_path / "gru.keras"))
    assert code == 2 and "pass --tokenizer PATH" in error


def test_model_needing_unsafe_loading_is_refused(trained_folder, tmp_path, capsys):
    inputs = keras.Input((4,))
    unsafe = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2.0)(inputs))
    unsafe.save(tmp_path / "gru.keras")
    write_manifest(tmp_path / "gru.manifest.json", tokenizer_path=str(trained_folder / "tokenizer.json"))
    code, error = run_main(capsys, "--model", str(tmp_path / "gru.keras"))
    assert code == 2 and "safe_mode=False" in error and "never does that" in error
