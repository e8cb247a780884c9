"""The generate command line on checkpoints the trainer wrote: a fresh process, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import pytest
from trained_checkpoints import SAVING_CASES

from data_pipeline.tokenizer import CharTokenizer
from evaluation.generate import main

NEW_TOKENS = 5


@pytest.fixture(scope="module")
def samples(trained_checkpoints) -> dict[str, list[str]]:
    """One `python -m evaluation.generate` process over every trained checkpoint, by case name."""
    paths = {trained.training.checkpoint_path: name for name, trained in trained_checkpoints.items()}
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run(
        [sys.executable, "-m", "evaluation.generate", "--model", *paths, "--prompt", "Police!",
         "--sampler", "top_p", "--top-p", "0.9", "--temperature", "0.8", "-n", "3",
         "--max-new-tokens", str(NEW_TOKENS), "--seed", "1"],
        capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        if line.startswith("== "):
            current = found.setdefault(paths[line[3:]], [])
        else:
            current.append(line)
    return found


@pytest.mark.parametrize("name", SAVING_CASES)
def test_generates_from_every_trained_checkpoint_in_a_fresh_process(samples, name):
    assert len(samples[name]) == 3
    # The prompt is cleaned like the training text ("reference": lowercase, no punctuation).
    assert all(line.startswith("police") and len(line) <= len("police") + NEW_TOKENS
               for line in samples[name]), samples[name]


@pytest.fixture
def checkpoint_copy(trained_checkpoints, tmp_path) -> tuple[Path, dict]:
    """A copy of a trained GRU's checkpoint, to spoil its manifest, and the manifest training wrote."""
    trained = trained_checkpoints["gru_constant"]
    source = Path(trained.training.checkpoint_path)
    shutil.copy(source, tmp_path / "gru.keras")
    manifest = json.loads(source.with_suffix(".manifest.json").read_text())
    return tmp_path / "gru.keras", manifest


def write_manifest(model_path: Path, manifest: dict, **changes) -> None:
    model_path.with_suffix(".manifest.json").write_text(json.dumps({**manifest, **changes}))


def run_main(capsys, *arguments: str) -> tuple[int, str]:
    code = main(list(arguments))
    return code, capsys.readouterr().err


def test_missing_model_is_one_clear_line(tmp_path, capsys):
    code, error = run_main(capsys, "--model", str(tmp_path / "lstm.keras"))
    assert code == 2 and "lstm.keras' does not exist" in error and error.count("\n") == 1


def test_tokenizer_must_match_the_model(checkpoint_copy, tmp_path, capsys):
    model_path, manifest = checkpoint_copy
    write_manifest(model_path, manifest, vocab_size=99)
    code, error = run_main(capsys, "--model", str(model_path))
    assert code == 2 and "vocab_size=99" in error and "tokenizer named in its manifest" in error

    write_manifest(model_path, manifest, tokenizer_fingerprint="other")
    code, error = run_main(capsys, "--model", str(model_path))
    assert code == 2 and "was refitted after" in error

    other = CharTokenizer.fit(["xyz"], 64)  # right file format, wrong vocabulary for the model
    other.save(tmp_path / "other.json")
    write_manifest(model_path, manifest, tokenizer_fingerprint="")
    code, error = run_main(capsys, "--model", str(model_path), "--tokenizer", str(tmp_path / "other.json"))
    assert code == 2 and f"vocab_size=7 but {str(model_path)!r} was trained with vocab_size={manifest['vocab_size']}" in error
    # a manifest without vocab_size (hand-made): the model itself refuses the foreign vocabulary
    write_manifest(model_path, {key: value for key, value in manifest.items() if key != "vocab_size"},
                   tokenizer_fingerprint="")
    code, error = run_main(capsys, "--model", str(model_path), "--tokenizer", str(tmp_path / "other.json"))
    assert code == 2 and "vocab_size=7 but the model has vocab_size=" in error

    model_path.with_suffix(".manifest.json").unlink()
    code, error = run_main(capsys, "--model", str(model_path))
    assert code == 2 and "pass --tokenizer PATH" in error


def test_every_model_is_checked_before_any_is_loaded(checkpoint_copy, tmp_path, capsys):
    model_path, manifest = checkpoint_copy
    write_manifest(model_path, manifest)
    code = main(["--model", str(model_path), str(tmp_path / "lstm.keras")])
    output = capsys.readouterr()
    assert code == 2 and "lstm.keras' does not exist" in output.err and output.err.count("\n") == 1
    assert output.out == ""  # the first, valid, model was not sampled either


def test_model_needing_unsafe_loading_is_refused(checkpoint_copy, capsys):
    model_path, manifest = checkpoint_copy
    inputs = keras.Input((4,))  # no training writes such a file: hand-made on purpose
    unsafe = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2.0)(inputs))
    unsafe.save(model_path)
    write_manifest(model_path, manifest)
    code, error = run_main(capsys, "--model", str(model_path))
    assert code == 2 and "safe_mode=False" in error and "never does that" in error
