"""keras-tuner's distributed mode through tune_model: a chief oracle and two tuning workers."""

from __future__ import annotations

import json

import pytest

from scaleout_harness import Namespace, read_result, write_experiment

TRIALS = 4


@pytest.mark.slow
def test_chief_and_two_workers_finish_the_search_and_the_chief_reports_the_best(tmp_path):
    config = write_experiment(
        tmp_path, tuner="random", tuning_trials=TRIALS, tuning_epochs=1, tuning_steps_per_epoch=3,
        hyperparameters={"gru": {"embedding_dim": 16, "units": [8, 16, 24, 32], "num_layers": 1,
                                 "dropout": 0.2, "tie_embeddings": False,
                                 "learning_rate": [1e-2, 1e-3]}})
    oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "8000"}
    namespace = Namespace(tmp_path)
    try:
        # The chief runs the runner's tuning stage (tune_model) and reports; the workers run the
        # runner itself, which stops once the oracle has no trials left for them.
        chief = namespace.start("chief", ["tune", str(config), str(tmp_path / "chief.json")],
                                {**oracle, "KERASTUNER_TUNER_ID": "chief"})
        workers = [namespace.start(tuner_id, ["-m", "training_assets.run", "--config", str(config)],
                                   {**oracle, "KERASTUNER_TUNER_ID": tuner_id})
                   for tuner_id in ("tuner0", "tuner1")]
        namespace.wait([chief, *workers], timeout=200)
    finally:
        namespace.close()

    chief = read_result(tmp_path / "chief.json")
    assert chief["role"] == "chief"
    # The chief ran no trial itself but holds all of them, finished, in the real tuning_dir.
    trials = [json.loads((tmp_path / "tuning" / "gru" / name / "trial.json").read_text())
              for name in chief["trial_dirs"]]
    assert len(trials) == TRIALS and all(t["status"] == "COMPLETED" for t in trials)
    best = min(trials, key=lambda t: t["metrics"]["metrics"]["val_perplexity"]["observations"][0]["value"][0])
    assert chief["best"] == best["hyperparameters"]["values"]
    # The chief's oracle handed out the defaults first; 3-step trials are too short to rank.
    first = min(trials, key=lambda t: t["trial_id"])
    assert first["hyperparameters"]["values"] == chief["defaults"]
    assert chief["kept"] == "defaults" and chief["hyperparameters"] == chief["defaults"]
    # The workers ran the trials in their own scratch directories, and wrote nothing else.
    scratch = tmp_path / "tmp" / "text_synthesis_workers"
    ran = {tuner_id: sorted(p.name for p in (scratch / f"tuner-{tuner_id}").rglob("gru/trial_*"))
           for tuner_id in ("tuner0", "tuner1")}
    assert sum(len(trial_dirs) for trial_dirs in ran.values()) == TRIALS, ran
    assert not (tmp_path / "models" / "gru.keras").exists() and not (tmp_path / "plots").exists()
