"""The experimental GAN family: adversarial training under the real runner, its table row, its
checkpoint in a fresh process, and sampling with a fresh noise vector per sample."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
from data_factories import documents
from training_factories import TINY_HYPERPARAMETERS, make_config

from data_pipeline.corpus import Corpus
from evaluation.generation import generate
from model_architectures.registry import build_model, register_model_classes
from model_architectures.saving import load_trained_model
from training_assets.experiment import conclusions, run_experiment, sample_prompts
from training_assets.trainer import read_history

STEPS, EPOCHS = 4, 2
# Maximum-likelihood pre-training for the first epoch's steps, adversarial for the second's.
GAN = {**TINY_HYPERPARAMETERS["gan"], "pretrain_steps": STEPS}


def gan_config(root, **overrides):
    # A two-word prompt: every sample has words and word pairs for the sample measures.
    return make_config(root, models_to_run=["gan"], hyperparameters={"gan": GAN},
                       steps_per_epoch=STEPS, final_training_epochs=EPOCHS, num_samples=4,
                       prompts=["fire man"], max_new_tokens=6, **overrides)


def headline_corpus() -> Corpus:
    """Generated headline-like documents of several words, split 80/10/10."""
    texts = documents(240)
    return Corpus(train=texts[:192], validation=texts[192:216], test=texts[216:],
                  source="generated", report={})


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """One real run of the experiment with the GAN (tuner on: the GAN keeps its defaults)."""
    root = tmp_path_factory.mktemp("gan_run")
    config = gan_config(root, tuner="random")
    return config, run_experiment(config, corpus=headline_corpus())


@pytest.mark.slow  # the module's run of the experiment
def test_the_table_row_has_no_likelihood_figures_and_every_sample_measure(experiment):
    config, result = experiment
    table = result.table.set_index("model")
    gan, baseline = table.loc["gan"], table.loc[f"kn_{config.kn_order}gram"]
    assert all(pd.isna(gan[column]) for column in ("test_perplexity", "test_bits_per_char", "test_accuracy"))
    assert math.isfinite(baseline["test_bits_per_char"])  # the other rows keep theirs
    # Whatever the table measures on samples, the GAN's row has it: the same sampling path.
    sample_columns = ["generation_ms_per_token", "distinct_1", "distinct_2", "known_word_share",
                      "memorised_share"]
    assert all(pd.notna(gan[column]) and math.isfinite(gan[column]) for column in sample_columns), gan.to_dict()
    markdown = (result.artifacts[1]).read_text(encoding="utf-8")
    assert "gan: test perplexity, bits/char and accuracy are not defined" in markdown
    samples = json.loads((result.artifacts[2]).read_text(encoding="utf-8"))
    assert len(samples["gan"]) == len(sample_prompts(config))
    assert result.interpolations == []  # nothing to mix with the n-gram model
    assert "No model with a likelihood" in conclusions(result.runs, result.baseline)


def test_training_logs_both_losses_and_switches_from_pretraining_to_adversarial(experiment):
    config, result = experiment
    run = result.runs[0]
    assert run.training.stopped_reason == f"completed {EPOCHS} of {EPOCHS} epochs"
    rows = read_history(os.path.join(config.models_dir, "gan.history.csv"))
    assert len(rows) == EPOCHS and "val_perplexity" not in rows[0]
    for row in rows:
        for name in ("generator_loss", "discriminator_loss", "generator_nll", "val_discriminator_loss"):
            assert math.isfinite(row[name]), (name, row)
    # The generator's objective: its likelihood while pre-training, the adversarial loss after.
    assert rows[0]["loss"] == pytest.approx(rows[0]["generator_nll"], rel=1e-5)
    assert rows[1]["loss"] == pytest.approx(rows[1]["generator_loss"], rel=1e-5)
    with open(os.path.join(config.models_dir, "gan.manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert manifest["training"]["best_epoch"] == EPOCHS  # no likelihood: the last epoch is kept


@pytest.mark.slow  # the module's run of the experiment; a fresh process
def test_the_checkpoint_resumes_both_optimisers_and_samples_in_a_fresh_process(experiment):
    config, result = experiment
    path = result.runs[0].training.checkpoint_path
    register_model_classes()
    restored = keras.saving.load_model(path)  # with its training state
    assert int(restored.optimizer.iterations) == STEPS * EPOCHS
    assert int(restored.discriminator_optimizer.iterations) == STEPS * EPOCHS

    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-m", "evaluation.generate", "--model", path, "-n", "3", "--seed", "1",
         "--max-new-tokens", "6"], capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(len(line) <= 6 for line in lines), lines


def test_each_sample_gets_its_own_seeded_noise_vector_and_the_noise_changes_the_tokens(experiment):
    config, result = experiment
    model = load_trained_model(result.runs[0].training.checkpoint_path)
    model.seed_generation(0)
    _, noise = model.build_cache(4, 8)
    model.seed_generation(0)
    _, again = model.build_cache(4, 8)
    noise, again = np.asarray(noise), np.asarray(again)
    np.testing.assert_array_equal(noise, again)
    assert len({row.tobytes() for row in noise}) == 4 and np.abs(noise).min() > 0
    # The same tokens under two samples' noise vectors: different next-token distributions.
    tokens = np.full((4, 1), 3, dtype="int32")
    logits = np.asarray(model.call_with_cache(tokens, model.build_cache(4, 8), 0)[0])
    assert np.abs(logits[0] - logits[1]).max() > 1e-4

    tokenizer = result.data.tokenizer
    first = generate(model, tokenizer, [""] * 4, max_new_tokens=8, sampler="greedy", seed=5)
    assert generate(model, tokenizer, [""] * 4, max_new_tokens=8, sampler="greedy", seed=5) == first


def test_the_adversarial_loss_reaches_the_generator_through_soft_tokens():
    # No pre-training: the generator's only loss is the discriminator's verdict on its soft
    # tokens, so its weights move only if gradients flow back through them (an argmax would stop
    # them). One eager step of a tiny model: no graph to trace.
    keras.utils.set_random_seed(0)
    model = build_model("gan", None, 20, 8, {**GAN, "pretrain_steps": 0})
    model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=True)
    ids = np.random.default_rng(0).integers(1, 20, size=(4, 9)).astype("int32")
    generator = np.array(model.token_embedding.embeddings)
    discriminator = np.array(model.discriminator_embedding.kernel)
    logs = model.fit(ids[:, :-1], ids[:, 1:], batch_size=4, epochs=1, verbose=0).history
    assert logs["loss"] == logs["generator_loss"]  # the adversarial objective from the first step
    assert np.abs(np.array(model.token_embedding.embeddings) - generator).max() > 1e-6
    assert np.abs(np.array(model.discriminator_embedding.kernel) - discriminator).max() > 1e-6


def test_export_refuses_a_gan_in_one_line_before_writing(experiment, tmp_path, capsys):
    from evaluation.export import main as export_cli

    _, result = experiment
    code = export_cli(["--model", str(result.runs[0].training.checkpoint_path),
                       "--out", str(tmp_path / "gan")])
    error = capsys.readouterr().err
    assert code == 2 and "noise vector" in error and error.count("\n") == 1
    assert not (tmp_path / "gan").exists()
