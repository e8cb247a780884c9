"""The export command on checkpoints the trainer wrote, served in a process without the project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import pytest
from trained_checkpoints import SAVING_CASES

from data_pipeline.cleaning import clean_text
from evaluation.export import main
from evaluation.generation import document_start_id, encode_prompts, generate_ids
from model_architectures.registry import family_names
from model_architectures.saving import load_trained_model

PROMPTS = ["Abc", "x", ""]  # cleaned like the training text; "" starts a new document
# 20 new tokens run the bilstm past its 16-token window and clip the Transformer at its positions.
GREEDY = {"max_new_tokens": 20, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": 0}
SAMPLED = {"max_new_tokens": 6, "temperature": 0.8, "top_k": 5, "top_p": 0.9, "seed": 7}
# One trained checkpoint per family trained from scratch (the GRU that has learnt the alphabet, to
# read its text); gpt2 is exported in tests/test_models_gpt2.py, and a GAN is refused (below).
EXPORTED = {family: "gru_constant" if family == "gru" else family
            for family in family_names(brings_tokenizer=False, likelihood=True)}
CLIENT = Path(__file__).with_name("serving_client.py")


def prompt_ids(trained) -> list[list[int]]:
    """The prompts as a client sends them: cleaned, encoded, right-padded with [PAD]."""
    tokenizer = trained.data.tokenizer
    cleaned = [clean_text(prompt, trained.config.cleaning_steps) for prompt in PROMPTS]
    encoded = [tokenizer.encode(prompt) if prompt else [] for prompt in cleaned]
    width = max(map(len, encoded))
    return [ids + [tokenizer.pad_id] * (width - len(ids)) for ids in encoded]


@pytest.fixture(scope="module")
def exports(trained_checkpoints, tmp_path_factory) -> dict[str, Path]:
    """Every family's checkpoint exported by the command line (the GRU's into an empty folder)."""
    assert all(SAVING_CASES[name].family == family for family, name in EXPORTED.items())
    root = tmp_path_factory.mktemp("exported")
    (root / "gru").mkdir()  # an existing empty folder is fine
    for family, name in EXPORTED.items():
        model = trained_checkpoints[name].training.checkpoint_path
        assert main(["--model", str(model), "--out", str(root / family)]) == 0
    return {family: root / family for family in EXPORTED}


@pytest.fixture(scope="module")
def served(exports, trained_checkpoints, tmp_path_factory) -> dict:
    """One fresh process, without the project, loading every export and calling `generate`."""
    workdir = tmp_path_factory.mktemp("client")
    request = {"exports": [str(path) for path in exports.values()],
               "prompt_ids": prompt_ids(trained_checkpoints[EXPORTED["gru"]]),
               "runs": {"greedy": GREEDY, "sampled": SAMPLED, "sampled_again": SAMPLED},
               "bad_requests": {"unknown_id": [[10**6]], "long_prompt": [[5] * 40]}}
    (workdir / "request.json").write_text(json.dumps(request))
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(CLIENT), sysconfig.get_paths()["purelib"], "request.json"],
        cwd=workdir, env={**environment, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True,
        text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return {family: answer["exports"][str(path)] for family, path in exports.items()} | {
        "importable": answer["importable"], "imported": answer["imported"]}


def test_the_serving_process_has_nothing_of_the_project(served):
    assert served["importable"] == [] and served["imported"] == []


def test_export_folder_holds_savedmodel_tokenizer_and_description(exports, trained_checkpoints):
    for family, path in exports.items():
        trained = trained_checkpoints[EXPORTED[family]]
        assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
        assert (path / "tokenizer.json").read_text() == Path(trained.data.tokenizer.path).read_text()
        description = json.loads((path / "export.json").read_text())
        assert description["family"] == family and description["signature"] == "generate"
        assert description["document_start_id"] == document_start_id(trained.config)
        assert description["prompt_cleaning"] == list(trained.config.cleaning_steps)
    assert not [p for p in exports["gru"].parent.iterdir() if ".partial-" in p.name]


@pytest.mark.parametrize("family", list(EXPORTED))
def test_greedy_export_matches_the_projects_own_generation(served, trained_checkpoints, family):
    trained = trained_checkpoints[EXPORTED[family]]
    model = load_trained_model(trained.training.checkpoint_path)
    cleaned = [clean_text(prompt, trained.config.cleaning_steps) for prompt in PROMPTS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Transformer's max_new_tokens is clipped, as exported
        expected = generate_ids(model, trained.data.tokenizer, cleaned, GREEDY["max_new_tokens"],
                                sampler="greedy", start_id=document_start_id(trained.config))
    exported = served[family]["greedy"]
    assert exported["ids"] == expected
    assert exported["texts"] == trained.data.tokenizer.decode_batch(expected)
    for text, prompt in zip(exported["texts"], cleaned):
        assert text.startswith(prompt)


def test_the_exported_gru_continues_the_alphabet(served):
    # trained on runs of the alphabet until it learnt them (tests/trained_checkpoints.py)
    assert served["gru"]["greedy"]["texts"][0].startswith("abcdefgh")


@pytest.mark.parametrize("family", list(EXPORTED))
def test_sampling_is_a_seeded_continuation(served, trained_checkpoints, family):
    trained = trained_checkpoints[EXPORTED[family]]
    tokenizer = trained.data.tokenizer
    prompts = [ids[1:] for ids in encode_prompts(
        tokenizer, [clean_text(p, trained.config.cleaning_steps) for p in PROMPTS])]
    sampled = served[family]["sampled"]["ids"]
    assert sampled == served[family]["sampled_again"]["ids"]  # same seed, same ids
    for row, prompt in zip(sampled, prompts):
        assert row[: len(prompt)] == prompt
        assert len(row) <= len(prompt) + SAMPLED["max_new_tokens"]
        assert all(0 < token < tokenizer.vocab_size and token != tokenizer.eos_id for token in row)


def test_a_bad_request_names_the_input(served, trained_checkpoints):
    for family in EXPORTED:
        assert "prompt_ids must be < vocab_size" in served[family]["unknown_id"]
    # 40 tokens: past the Transformer's 16 positions; recurrent state has no such limit
    max_len = trained_checkpoints[EXPORTED["transformer"]].config.max_len
    assert f"must have fewer than {max_len} tokens" in served["transformer"]["long_prompt"]
    assert served["gru"]["long_prompt"] == "" and served["bilstm"]["long_prompt"] == ""


def test_missing_model_is_one_clear_line(tmp_path, capsys):
    code = main(["--model", str(tmp_path / "gru.keras"), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 2 and "gru.keras' does not exist" in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_an_existing_export_is_never_overwritten(exports, trained_checkpoints, capsys):
    before = {path: path.stat().st_mtime_ns for path in exports["gru"].rglob("*")}
    model = trained_checkpoints[EXPORTED["gru"]].training.checkpoint_path
    code = main(["--model", str(model), "--out", str(exports["gru"])])
    error = capsys.readouterr().err
    assert code == 2 and "exists and is not an empty folder" in error and error.count("\n") == 1
    assert {path: path.stat().st_mtime_ns for path in exports["gru"].rglob("*")} == before
