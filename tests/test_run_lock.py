"""Output folders are locked per run: a second process is refused at start, a dead one's lock is
taken over, the same process (a notebook re-run) may take its folders again, cluster workers
lock only their own scratch folders."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from training_factories import alphabet_documents, make_config

from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import DataError
from training_assets.experiment import claim_output_folders, run_experiment
from training_assets.run import main
from training_assets.run_lock import LOCK_FILE, lock_output_folders

# Another run holding the folders: the lock a run takes, in a process of its own. model_construct
# skips validation, which would import TensorFlow for nothing.
HOLD = textwrap.dedent("""
    import json, sys
    from data_pipeline.config import ExperimentConfig
    from training_assets.run_lock import lock_output_folders
    lock_output_folders(ExperimentConfig.model_construct(**json.loads(sys.argv[1])))
    print("locked", flush=True)
    sys.stdin.read()  # holds the folders until the test closes stdin or kills it
""")


def lock_config(tmp_path: Path, **overrides) -> ExperimentConfig:
    """Every output folder in tmp_path (the tokenizer in a folder of its own), real data."""
    data = tmp_path / "corpus.txt"
    data.write_text("\n".join(alphabet_documents(60)) + "\n", encoding="utf-8")
    settings = {"data_file": str(data), "tokenizer_path": str(tmp_path / "tokenizer" / "tokenizer.json"),
                **overrides}
    return make_config(tmp_path, **settings)


def output_settings(config: ExperimentConfig) -> str:
    return json.dumps({key: getattr(config, key) for key in ("models_dir", "tuning_dir", "plots_dir",
                                                             "tokenizer_path")})


def start_holder(config: ExperimentConfig) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, output_settings(config)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def lock_files(config: ExperimentConfig) -> list[Path]:
    folders = (config.models_dir, config.tuning_dir, config.plots_dir, os.path.dirname(config.tokenizer_path))
    return [Path(folder) / LOCK_FILE for folder in folders if (Path(folder) / LOCK_FILE).exists()]


def test_a_second_run_on_the_same_folders_stops_at_start(tmp_path, capsys):
    config = lock_config(tmp_path)
    holder = start_holder(config)
    try:
        path = tmp_path / "experiment.json"
        path.write_text(json.dumps(config.to_dict()))
        assert main(["--config", str(path)]) == 2
        # refused before any work: no tokenizer fitted, nothing but the holder's lock files written
        assert not Path(config.tokenizer_path).exists()
        assert all(os.listdir(folder) == [LOCK_FILE] for folder in (config.models_dir, config.plots_dir))
    finally:
        holder.communicate("")  # the holder ends normally: its locks are released
    error = capsys.readouterr().err
    assert re.fullmatch(rf"error: {re.escape(config.models_dir)} is in use by another run \(pid {holder.pid}, "
                        r"started \d\d:\d\d:\d\d\): wait for it to finish, or set models_dir to another "
                        r"folder\n", error), error
    assert lock_files(config) == []


def test_the_lock_of_a_dead_run_is_taken_over(tmp_path, caplog):
    config = lock_config(tmp_path)
    holder = start_holder(config)
    holder.kill()  # no chance to release: its lock files stay, the kernel drops its locks
    holder.wait()
    assert len(lock_files(config)) == 4
    with caplog.at_level(logging.WARNING, logger="training_assets"):
        lock = lock_output_folders(config)
    assert f"{config.models_dir}: taking over the lock of a run that ended without releasing it " \
           f"(pid {holder.pid}, started " in caplog.text
    assert json.loads((Path(config.models_dir) / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert lock_files(config) == []


def test_the_same_process_takes_its_folders_again(tmp_path):
    config = lock_config(tmp_path, data_file=str(tmp_path / "absent.csv"))
    first = claim_output_folders(config)  # the notebook's environment cell ...
    again = claim_output_folders(config)  # ... run again in the same kernel
    assert len(first.folders) == 4 and again.folders == ()
    with pytest.raises(DataError, match="absent.csv"):  # a run in the same process gets past the lock
        run_experiment(config)
    # ... and leaves the folders the notebook claimed locked: another process is still refused
    refused = subprocess.run([sys.executable, "-c", HOLD, output_settings(config)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and f"is in use by another run (pid {os.getpid()}, " in refused.stderr
    first.release()
    assert lock_files(config) == []
    assert not Path(config.plots_dir).exists()  # the lock made it, nothing was written, release removed it


def test_a_cluster_worker_locks_its_own_scratch_folders(tmp_path, monkeypatch):
    config = lock_config(tmp_path)
    chief = start_holder(config)
    try:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                                    "task": {"type": "worker", "index": 1}}))
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
        lock = claim_output_folders(config)  # worker 1 while the chief holds the real folders
        assert len(lock.folders) == 4
        assert all(folder.is_relative_to(tmp_path / "scratch") for folder in lock.folders)
        lock.release()
    finally:
        chief.communicate("")
