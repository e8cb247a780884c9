"""Multi-worker training through train_model: two worker processes, TF_CONFIG, one private loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaleout_harness import Namespace, read_result, tf_config, write_experiment


@pytest.mark.slow
def test_two_workers_train_an_epoch_to_identical_weights_and_only_the_chief_writes(tmp_path):
    config = write_experiment(tmp_path, final_training_epochs=1)
    namespace = Namespace(tmp_path)
    try:
        workers = [namespace.start(f"worker{i}", ["train", str(config), str(tmp_path / f"result{i}.json")],
                                   tf_config(i, 2)) for i in range(2)]
        namespace.wait(workers, timeout=180)
    finally:
        namespace.close()
    chief, worker = (read_result(tmp_path / f"result{i}.json") for i in range(2))

    for result in (chief, worker):
        assert result["multi_worker"] and result["replicas"] == 2
        assert result["global_batch"] == 2 * 8  # per-replica batch_size x replicas
        assert result["epochs_run_here"] == [0]
        assert len(result["first_batch"]) == 8  # each worker gets per-replica batches...
    assert chief["first_batch"] != worker["first_batch"]  # ...of its own shard of the data
    assert chief["digest"] == worker["digest"], "the two workers ended with different weights"
    assert chief["history"] == worker["history"]  # epoch metrics are reduced over both workers

    # Only the chief wrote into the experiment's folders; the worker's files are in its scratch.
    models = tmp_path / "models"
    assert chief["checkpoint"] == str(models / "gru.keras") and (models / "gru.keras").exists()
    assert json.loads((models / "gru.manifest.json").read_text())["family"] == "gru"
    assert Path(worker["checkpoint"]).is_relative_to(tmp_path / "tmp" / "text_synthesis_workers" / "worker-1")
    written = {p.relative_to(models).as_posix() for p in models.rglob("*") if p.is_file()}
    assert written == {"tokenizer.json", "tokenizer.json.manifest.json", "gru.keras",
                       "gru.manifest.json", "gru.history.csv"}, written


@pytest.mark.slow
def test_a_worker_killed_mid_epoch_resumes_from_its_own_backup_after_restart(tmp_path):
    """Kill worker 1 in epoch 2; the survivor cannot go on without it (collectives), so the cluster
    manager's part is played here: stop it and restart both. Each restores its own last epoch."""
    epochs = 2
    # A time budget that never runs out: its per-step vote across workers runs all the same.
    config = write_experiment(tmp_path, final_training_epochs=epochs, steps_per_epoch=6,
                              train_time_budget_seconds=600)
    marker = tmp_path / "worker1-in-epoch-2"
    namespace = Namespace(tmp_path)
    try:
        first = [namespace.start(f"worker{i}", ["train", str(config), str(tmp_path / f"first{i}.json"),
                                                *([str(marker)] if i == 1 else [])], tf_config(i, 2))
                 for i in range(2)]
        namespace.wait_for(marker, first, timeout=150)
        namespace.kill(first[1:])  # SIGKILL mid-epoch: epoch 1 is backed up, epoch 2 is not
        namespace.kill(first[:1])
        backups = sorted(p.parent.name for p in tmp_path.rglob(".backup/gru/*/training_metadata.json"))
        assert backups == ["worker-0", "worker-1"], "each worker keeps its own backup directory"

        second = [namespace.start(f"worker{i}-restart",
                                  ["train", str(config), str(tmp_path / f"result{i}.json")], tf_config(i, 2))
                  for i in range(2)]
        namespace.wait(second, timeout=180)
    finally:
        namespace.close()
    assert not any((tmp_path / f"first{i}.json").exists() for i in range(2))
    chief, worker = (read_result(tmp_path / f"result{i}.json") for i in range(2))
    for result in (chief, worker):
        assert result["epochs_run_here"] == [1], "the restart must begin at epoch 2, not 1"
        assert len(result["history"]["loss"]) == epochs  # the CSV history spans the restart
    assert chief["digest"] == worker["digest"]
    assert not (tmp_path / "models" / ".backup" / "gru" / "worker-0").exists()  # removed at the end
