"""Cluster roles from TF_CONFIG and keras-tuner's variables, and where each process may write."""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import ConfigError
from training_assets.cluster import (
    OUTPUT_PATH_KEYS,
    backup_dir,
    cluster_role,
    config_for_this_process,
    family_oracle,
    is_chief,
    tuning_role,
    writable_path,
)


def tf_config(task_type: str, index: int, workers: int = 2, chief: bool = False) -> dict[str, str]:
    cluster = {"worker": [f"127.0.0.1:{20000 + i}" for i in range(workers)]}
    if chief:
        cluster["chief"] = ["127.0.0.1:19999"]
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path / "tmp"


def test_single_process_is_its_own_chief_and_writes_in_place():
    role = cluster_role({})
    assert role.is_chief and not role.is_multi_worker and role.num_workers == 1
    assert is_chief({})
    assert writable_path("trained_models/gru.keras", {}) == "trained_models/gru.keras"
    assert backup_dir("trained_models/.backup/gru", {}) == "trained_models/.backup/gru"


def test_worker_zero_is_chief_unless_the_cluster_has_a_chief_job():
    assert cluster_role(tf_config("worker", 0)).is_chief
    assert not cluster_role(tf_config("worker", 1)).is_chief
    assert cluster_role(tf_config("worker", 1)).num_workers == 2
    assert not cluster_role(tf_config("worker", 0, chief=True)).is_chief
    with_chief = cluster_role(tf_config("chief", 0, chief=True))
    assert with_chief.is_chief and with_chief.num_workers == 3 and with_chief.is_multi_worker


def test_each_worker_gets_its_own_backup_directory():
    dirs = {backup_dir("models/.backup/gru", tf_config("worker", i)) for i in range(2)}
    assert dirs == {os.path.join("models/.backup/gru", "worker-0"),
                    os.path.join("models/.backup/gru", "worker-1")}


def test_non_chief_writes_to_its_own_stable_scratch(scratch, tmp_path):
    worker = tf_config("worker", 1)
    target = tmp_path / "models" / "gru.keras"
    moved = writable_path(target, worker)
    assert moved.startswith(str(scratch)) and moved.endswith(str(target))
    assert writable_path(moved, worker) == moved  # redirecting twice changes nothing
    assert writable_path(target, worker) == moved  # a restarted worker finds the same place
    other = writable_path(target, tf_config("worker", 2, workers=3))
    assert other != moved
    assert writable_path(target, tf_config("worker", 0)) == str(target)


def test_config_for_a_worker_moves_every_output_and_nothing_else(scratch, tmp_path):
    config = ExperimentConfig.from_dict({"models_dir": str(tmp_path / "models"), "max_len": 16})
    assert config_for_this_process(config, tf_config("worker", 0)) is config
    moved = config_for_this_process(config, tf_config("worker", 1))
    for key in OUTPUT_PATH_KEYS:
        assert getattr(moved, key).startswith(str(scratch)), key
    unchanged = {k: v for k, v in config.to_dict().items() if k not in OUTPUT_PATH_KEYS}
    assert {k: v for k, v in moved.to_dict().items() if k not in OUTPUT_PATH_KEYS} == unchanged


@pytest.mark.parametrize("raw, words", [
    ("{not json", "not a JSON object"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), "'cluster'"),
    (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}), "task.index"),
    (json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "ps", "index": 0}}),
     "only 'chief' or 'worker'"),
])
def test_bad_tf_config_is_a_one_line_config_error(raw, words):
    with pytest.raises(ConfigError, match="TF_CONFIG") as error:
        cluster_role({"TF_CONFIG": raw})
    assert words in str(error.value)


TUNER = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "8000"}


def test_tuning_roles_follow_keras_tuner_rules():
    assert not tuning_role({}).is_distributed
    chief = tuning_role({**TUNER, "KERASTUNER_TUNER_ID": "chief"})
    assert chief.is_chief and chief.oracle_port == 8000
    worker = tuning_role({**TUNER, "KERASTUNER_TUNER_ID": "tuner1"})
    assert worker.is_worker and worker.tuner_id == "tuner1"
    assert is_chief({**TUNER, "KERASTUNER_TUNER_ID": "chief"})
    assert not is_chief({**TUNER, "KERASTUNER_TUNER_ID": "tuner1"})


def test_tuning_worker_writes_to_scratch(scratch, tmp_path):
    worker = {**TUNER, "KERASTUNER_TUNER_ID": "tuner1"}
    moved = writable_path(tmp_path / "plots", worker)
    assert moved.startswith(os.path.join(str(scratch), "text_synthesis_workers", "tuner-tuner1"))


@pytest.mark.parametrize("environ, words", [
    ({"KERASTUNER_TUNER_ID": "chief"}, "missing"),
    ({**TUNER, "KERASTUNER_TUNER_ID": "t0", "KERASTUNER_ORACLE_PORT": "http"}, "not a TCP port"),
])
def test_incomplete_tuner_environment_is_a_config_error(environ, words):
    with pytest.raises(ConfigError, match=words):
        tuning_role(environ)


def test_each_tuned_family_gets_its_own_oracle_port():
    environ = {**TUNER, "KERASTUNER_TUNER_ID": "tuner0"}
    with family_oracle(0, environ) as role:
        assert role.oracle_port == 8000 and environ["KERASTUNER_ORACLE_PORT"] == "8000"
    with family_oracle(2, environ) as role:
        assert role.oracle_port == 8002 and environ["KERASTUNER_ORACLE_PORT"] == "8002"
    assert environ["KERASTUNER_ORACLE_PORT"] == "8000"
    with family_oracle(3, {}) as role:  # not distributed: nothing to change
        assert not role.is_distributed
