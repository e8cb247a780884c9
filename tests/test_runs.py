"""Runs: one folder per experiment, never overwritten, resumed by name; compare, generate and
export take a run; one set of defaults whichever door is used; bad input fails in one line before
TensorFlow loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_factories import write_csv
from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import ConfigError, DataError
from data_pipeline.sources import read_documents
from test_fast_failure import HEAVY_MODULES, clean_environment
from test_notebook import NOTEBOOK, tiny_headlines_csv

REPO = Path(__file__).resolve().parents[1]


def run_module(module: str, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m module args` in `cwd` (where a run's relative folders go), this repo importable."""
    environment = {**clean_environment(), "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, env=environment, timeout=timeout)


# --- the run's name and folders --------------------------------------------------------------

def test_default_run_name_follows_the_settings_and_names_every_folder():
    config = ExperimentConfig.from_dict({"data_file": "data/my news.csv"})
    name = config.run_name
    assert name.startswith("my_news-") and len(name) == len("my_news-") + 8
    assert (config.models_dir, config.tuning_dir, config.plots_dir, config.tokenizer_path) == (
        f"trained_models/{name}", f"tuning_results/{name}", f"plots/{name}",
        f"trained_models/{name}/tokenizer.json")
    # the same settings resume the same run; where files go and progress bars do not count
    same = ExperimentConfig.from_dict({"data_file": "data/my news.csv", "live_progress": False,
                                       "resume": False})
    assert same.run_name == name
    other = ExperimentConfig.from_dict({"data_file": "data/my news.csv", "vocab_size": 3000})
    assert other.run_name != name and other.models_dir != config.models_dir
    # validated twice (the manifest, --config config.json) it stays the same run
    assert ExperimentConfig.from_dict(config.to_dict()) == config


def test_given_run_name_and_explicit_paths_win(tmp_path):
    config = ExperimentConfig.from_dict({"run_name": "news-small"})
    assert config.plots_dir == "plots/news-small" and config.models_dir == "trained_models/news-small"
    explicit = ExperimentConfig.from_dict({"run_name": "x", "models_dir": str(tmp_path / "m"),
                                           "plots_dir": str(tmp_path / "p")})
    assert explicit.models_dir == str(tmp_path / "m") and explicit.plots_dir == str(tmp_path / "p")
    assert explicit.tokenizer_path == str(tmp_path / "m" / "tokenizer.json")
    assert explicit.tuning_dir == "tuning_results/x"


@pytest.mark.parametrize("bad", ["a/b", "..", "my run", "", "-x", "a\\b", "x" * 101, "tab\t"])
def test_run_name_that_cannot_be_a_folder_fails_naming_the_key(bad):
    with pytest.raises(ConfigError) as error:
        ExperimentConfig.from_dict({"run_name": bad})
    message = str(error.value)
    assert "run_name" in message and "letters, digits" in message and "\n" not in message


# --- one set of defaults ---------------------------------------------------------------------

def test_the_notebook_config_holds_the_defaults_of_the_command_line():
    """Every key the notebook's CONFIG shows has the value the command line gets by default, so
    the same keys give the same experiment (and the same run name) through either door."""
    from training_assets.notebook import notebook_config

    shown = notebook_config(REPO / NOTEBOOK)
    defaults = ExperimentConfig().to_dict()
    assert shown and "run_name" in shown
    differing = {key: (value, defaults[key]) for key, value in shown.items()
                 if key != "run_name" and json.loads(json.dumps(value)) != defaults[key]}
    assert not differing
    assert ExperimentConfig.from_dict(shown).run_name == ExperimentConfig().run_name


# --- your own data ----------------------------------------------------------------------------

def test_the_one_text_like_column_is_guessed_and_printed(tmp_path, capsys):
    data = tiny_headlines_csv(tmp_path / "news.csv", rows=50)  # publish_date (digits) + headline_text
    raw = read_documents(ExperimentConfig.from_dict({"data_file": str(data)}))
    assert len(raw.texts) == 50 and raw.texts[0].split()[0] in {
        "police", "council", "government", "farmers", "court", "minister"}
    assert "using 'headline_text'" in capsys.readouterr().err


def test_several_text_like_columns_ask_for_text_column(tmp_path):
    rows = [[f"title number {i} of many", f"a body of text number {i} with words", str(i)]
            for i in range(30)]
    data = write_csv(tmp_path / "two.csv", rows, header=["title", "body", "id"])
    with pytest.raises(DataError) as error:
        read_documents(ExperimentConfig.from_dict({"data_file": str(data)}))
    assert "['title', 'body']" in str(error.value) and "text_column" in str(error.value)
    chosen = read_documents(ExperimentConfig.from_dict({"data_file": str(data),
                                                        "text_column": "body"}))
    assert chosen.texts[0] == "a body of text number 0 with words"


@pytest.mark.parametrize("per, expected", [("line", ["one", "two", "three"]),
                                           ("file", ["one\ntwo", "three"])])
def test_a_folder_or_glob_of_text_files_is_a_corpus(tmp_path, per, expected):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("one\r\ntwo\n", encoding="utf-8")
    (folder / "b.txt").write_text("three\n\n", encoding="utf-8")
    (folder / "notes.md").write_text("not a document\n", encoding="utf-8")
    for data_file in (str(folder), str(folder / "*.txt")):
        raw = read_documents(ExperimentConfig.from_dict({"data_file": data_file,
                                                         "document_per": per}))
        assert raw.texts == expected
    with pytest.raises(DataError, match="matches no .txt file"):
        read_documents(ExperimentConfig.from_dict({"data_file": str(folder / "*.csv")}))


# --- bad input: one line, before TensorFlow ------------------------------------------------------

def test_missing_data_file_and_bad_run_name_fail_before_a_kernel_or_tensorflow(tmp_path):
    for setting, expected in ((f"data_file={tmp_path / 'absent.csv'}", "absent.csv"),
                              ("run_name=a/b", "run_name")):
        done = run_module("training_assets.notebook", str(REPO / NOTEBOOK), "--set", setting,
                          cwd=tmp_path, timeout=60)
        assert done.returncode == 2, done.stderr[-2000:]
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and lines[0].startswith("error: ")
    assert not (tmp_path / "plots").exists()


def test_unknown_run_given_to_compare_or_generate_fails_in_one_line(tmp_path):
    script = ("import sys; from evaluation.compare import main as compare; "
              "from evaluation.generate import main as generate; "
              "codes = [compare(['nosuch']), generate(['--model', 'nosuch'])]; "
              f"print(codes, [m for m in {HEAVY_MODULES!r} if m in sys.modules])")
    environment = {**clean_environment(), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, env=environment, timeout=60)
    assert done.stdout.strip() == "[2, 2] []", done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and all("run 'nosuch' not found" in line for line in lines)


# --- real runs, then their consumers --------------------------------------------------------------

def tiny_run_config(data: Path) -> dict:
    small = {"embedding_dim": 16, "dropout": 0.0, "num_layers": 1, "learning_rate": 1e-2,
             "units": 16}
    return {"data_file": str(data), "tokenizer": "char", "vocab_size": 64, "max_len": 16,
            "batch_size": 8, "models_to_run": ["gru"], "hyperparameters": {"gru": small},
            "final_training_epochs": 2, "steps_per_epoch": 4, "train_time_budget_seconds": None,
            "num_samples": 1, "measure_samples": 2, "max_new_tokens": 4, "decoding_sweep": False,
            "kn_interpolation": False, "bootstrap_resamples": 200, "mixed_precision": "float32",
            "strategy": "default", "sample_every_steps": 4}


@pytest.mark.slow
def test_two_runs_keep_their_own_folders_and_compare_generate_and_export_read_them(
        tmp_path, monkeypatch, capsys):
    """The real runner trains two tiny runs (in this process: TensorFlow is loaded already);
    compare, generate and export then read what it wrote, by run name or folder."""
    from evaluation.compare import main as compare
    from evaluation.export import main as export
    from evaluation.generate import main as generate
    from training_assets.run import main as run

    monkeypatch.chdir(tmp_path)  # the run's relative folders go here
    data = tiny_headlines_csv(tmp_path / "news.csv", rows=200)
    Path("experiment.json").write_text(json.dumps(tiny_run_config(data)))

    assert run(["--config", "experiment.json"]) == 0
    assert "gru after 4 steps" in capsys.readouterr().out  # sample_every_steps: while training
    name = ExperimentConfig.from_dict(tiny_run_config(data)).run_name
    models, plots = Path("trained_models") / name, Path("plots") / name
    for path in (models / "gru.keras", models / "tokenizer.json", models / "run.json",
                 plots / "comparison.csv", plots / "config.json", plots / "environment.json",
                 plots / "document_scores.csv", plots / "samples.json"):
        assert path.is_file(), path
    assert json.loads((plots / "run.json").read_text())["best_checkpoint"].endswith("gru.keras")
    assert json.loads((plots / "config.json").read_text())["run_name"] == name
    before = {path: path.read_bytes() for path in (models / "gru.keras", models / "tokenizer.json",
                                                   plots / "comparison.csv")}

    # another setting: another run beside the first, which stays as it was
    assert run(["--config", "experiment.json", "--set", "seed=7",
                "--set", "sample_every_steps=null"]) == 0
    other = ExperimentConfig.from_dict({**tiny_run_config(data), "seed": 7}).run_name
    assert other != name and (Path("plots") / other / "comparison.csv").is_file()
    assert all(path.read_bytes() == content for path, content in before.items())

    # the first CONFIG again (how progress shows does not count): the same run, its model reused
    assert run(["--config", "experiment.json", "--set", "sample_every_steps=null",
                "--set", "live_progress=false"]) == 0
    assert sorted(p.name for p in Path("plots").iterdir()) == sorted([name, other])
    assert (models / "gru.keras").read_bytes() == before[models / "gru.keras"]
    assert "gru after" not in capsys.readouterr().out  # reused, not trained again

    assert compare([name, f"plots/{other}"]) == 0
    out = capsys.readouterr().out
    assert "| seed " in out and name in out and other in out
    assert out.count("kn_3gram") == 2  # every row of both runs
    assert (Path("plots") / "compare" / f"{name}_vs_{other}.png").stat().st_size > 5_000

    assert generate(["--model", name, "-n", "2", "--max-new-tokens", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2

    from evaluation.panel import panel_models  # the notebook's panel takes a run too
    assert [(model.name, model.tokenizer.path) for model in panel_models([name])] == [
        ("gru", str(models / "tokenizer.json"))]

    assert export(["--model", f"trained_models/{name}", "--out", "exported/gru/1"]) == 0
    assert json.loads(Path("exported/gru/1/export.json").read_text())["source_model"] == "gru.keras"
