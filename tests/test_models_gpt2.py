"""The pretrained GPT-2 family, offline: a tiny GPT-2 preset the test saves itself, fine-tuned by
the real trainer and runner with and without LoRA, evaluated, sampled and reloaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import keras_hub
import numpy as np
import pytest
from preset_factories import save_tiny_gpt2_preset
from training_factories import ALPHABET, make_config, make_corpus

from data_pipeline.errors import ConfigError
from data_pipeline.preset_tokenizer import preset_tokenizer
from evaluation.evaluate import evaluate_model
from evaluation.generation import generate
from model_architectures import build_model, family_names, hyperparameters_for
from model_architectures.registry import family_tokenizer
from model_architectures.saving import load_trained_model
from training_assets.experiment import PreparedData, family_data, run_experiment, sample_prompts
from training_assets.strategy import select_strategy
from training_assets.trainer import train_model

# Fine-tuning the random tiny preset: a fast rate, a few short epochs, the text's own window.
GPT2_SETTINGS = {"tokenizer": "bpe", "vocab_size": 300, "max_len": 16, "batch_size": 8,
                 "final_training_epochs": 8, "steps_per_epoch": 20, "jit_compile": False,
                 "early_stopping_patience": 3, "num_samples": 1, "max_new_tokens": 8,
                 "hyperparameters": {"gru": {"embedding_dim": 16, "units": 16, "dropout": 0.0,
                                             "learning_rate": 1e-2},
                                     "gpt2": {"dropout": 0.0, "learning_rate": 1e-2}}}
DOCUMENTS = 800


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    return str(save_tiny_gpt2_preset(tmp_path_factory.mktemp("tiny_gpt2"), make_corpus().train))


class RecordWeights(keras.callbacks.Callback):
    """Every weight of the model when training starts and when it ends, by path."""

    def on_train_begin(self, logs=None):
        self.before = {w.path: np.array(w) for w in self.model.weights}

    def on_train_end(self, logs=None):
        self.after = {w.path: np.array(w) for w in self.model.weights}


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, preset):
    """train_model on the tiny preset with LoRA rank 4: the config, data, result and weights."""
    root = tmp_path_factory.mktemp("gpt2_lora")
    settings = {**GPT2_SETTINGS, "hyperparameters": {"gpt2": {"dropout": 0.0, "learning_rate": 3e-2}}}
    config = make_config(root, models_to_run=["gpt2"], pretrained_preset=preset, lora_rank=4,
                         **settings)
    corpus = make_corpus(DOCUMENTS)
    tokenizer = family_tokenizer("gpt2", config)
    from data_pipeline.datasets import build_datasets

    data = PreparedData(corpus, tokenizer, build_datasets(corpus, tokenizer, config))
    recorder = RecordWeights()
    training = train_model("gpt2", hyperparameters_for("gpt2", config.hyperparameters["gpt2"]),
                           data.datasets, config, select_strategy("default"), tokenizer,
                           callbacks=[recorder])
    return config, data, training, recorder


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, preset):
    """The real runner: a GRU on the project's BPE beside GPT-2 fully fine-tuned on its own."""
    root = tmp_path_factory.mktemp("gpt2_experiment")
    config = make_config(root, models_to_run=["gru", "gpt2"], pretrained_preset=preset,
                         **GPT2_SETTINGS)
    return config, run_experiment(config, corpus=make_corpus(DOCUMENTS))


def test_preset_tokenizer_round_trips_and_keeps_the_presets_tokens(preset):
    source = keras_hub.tokenizers.GPT2Tokenizer.from_preset(preset)
    tokenizer = preset_tokenizer(dict(source.vocabulary), list(source.merges), source.end_token)
    end = source.vocabulary[source.end_token]
    for text in ["abcdefghij klmno", "  Grüße, 🙂!\n\ttabs [EOS] <|endoftext|>", ""]:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text  # lossless, special-looking text included
        assert min(ids, default=4) >= 4  # text never encodes to [PAD] [UNK] [BOS] [EOS]
    text = "abcdefgh mnopq rstu"
    preset_ids = np.asarray(source(text)).tolist()
    assert tokenizer.encode(text) == [i + 4 if i < end else i + 3 for i in preset_ids]
    assert tokenizer.vocab_size == len(source.vocabulary) + 3  # + [PAD] [UNK] [BOS]; end = [EOS]


def test_lora_trains_only_the_adapters_and_the_loss_falls(lora_run):
    config, data, training, recorder = lora_run
    changed = sorted(path for path, before in recorder.before.items()
                     if not np.array_equal(before, recorder.after[path]))
    adapters = sorted(path for path in recorder.before if "lora_kernel" in path)
    assert adapters and changed == adapters  # every adapter moved, nothing else did
    assert training.trainable_parameters == sum(recorder.before[path].size for path in adapters)
    assert training.trainable_parameters < training.parameters / 10
    # A frozen model would score validation identically every epoch; the adapters lower it each
    # time (slowly: they cannot sharpen the random preset's frozen output head).
    validation = training.history["val_perplexity"]
    assert all(later < earlier for earlier, later in zip(validation, validation[1:]))
    assert training.history["loss"][-1] < training.history["loss"][0]


def test_lora_checkpoint_reloads_with_the_adapters_folded_in(lora_run):
    config, data, training, _ = lora_run
    model = load_trained_model(training.checkpoint_path)
    reloaded = evaluate_model(model, data.datasets.validation).perplexity
    assert reloaded == pytest.approx(min(training.history["val_perplexity"]), rel=1e-4)


def test_cached_generation_matches_the_full_forward_pass(lora_run):
    config, data, training, _ = lora_run
    model = load_trained_model(training.checkpoint_path)
    tokens = data.datasets.validation.token_stream[:12][None, :]  # (1, 12)
    full = np.asarray(model(tokens))  # (1, 12, V)
    cache = model.build_cache(1, 12)
    cached, _ = model.call_with_cache(tokens, cache, 0)
    np.testing.assert_allclose(np.asarray(cached), full, atol=1e-4)
    assert full[..., :3].max() < -1e8  # [PAD] [UNK] [BOS] are never predicted


def test_runner_fine_tunes_beside_a_from_scratch_family_on_the_same_characters(experiment):
    config, result = experiment
    table = result.table.set_index("model")
    assert {"gru", "gpt2", "kn_3gram"} <= set(table.index)
    # Full fine-tuning trains every weight; the n-gram row has no trainable parameters.
    assert table.loc["gpt2", "trainable_parameters"] == table.loc["gpt2", "parameters"]
    assert table.loc["gru", "trainable_parameters"] == table.loc["gru", "parameters"]
    assert table["trainable_parameters"].isna()["kn_3gram"]
    # Bits per character divide by the same characters whatever the tokenizer.
    runs = {run.family: run for run in result.runs}
    gru_test, gpt2_test = runs["gru"].report.evaluation, runs["gpt2"].report.evaluation
    assert gpt2_test.characters == gru_test.characters == result.baseline.report.evaluation.characters
    assert gpt2_test.tokens != gru_test.tokens  # two tokenizers
    losses = runs["gpt2"].training.history["loss"]
    assert losses[-1] < losses[0] * 0.8
    # The interpolation pairs the n-gram model with a model on its own tokens only.
    assert all(mixture.model.startswith("gru+") for mixture in result.interpolations)
    assert len(runs["gpt2"].samples) == len(sample_prompts(config))
    written = (Path(config.plots_dir) / "comparison.md").read_text(encoding="utf-8")
    assert "trainable_parameters" in written
    assert "gpt2 read the text through its pretrained preset's tokenizer" in written


def test_generation_uses_the_families_own_tokenizer(experiment):
    config, result = experiment
    data = family_data("gpt2", config, result.data)
    model = load_trained_model(next(run for run in result.runs if run.family == "gpt2")
                               .training.checkpoint_path)
    texts = generate(model, data.tokenizer, ["", "b"], max_new_tokens=10, sampler="greedy")
    # New documents of the corpus's letters, decoded by the preset's tokenizer.
    assert texts[0] and set(texts[0]) <= set(ALPHABET)
    assert texts[1].startswith("b") and set(texts[1]) <= set(ALPHABET)


def test_generate_cli_reloads_in_a_fresh_process_offline_without_the_preset(experiment, preset,
                                                                             tmp_path):
    config, result = experiment
    checkpoint = f"{config.models_dir}/gpt2.keras"
    os.rename(preset, f"{preset}.gone")  # the checkpoint and the tokenizer beside it suffice
    try:
        command = [sys.executable, "-m", "evaluation.generate", "--model", checkpoint,
                   "--prompt", "klm", "-n", "2", "--sampler", "greedy", "--max-new-tokens", "5"]
        done = subprocess.run(["unshare", "-rn", *command], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    finally:
        os.rename(f"{preset}.gone", preset)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("klm") for line in lines)


def test_a_missing_preset_directory_fails_in_one_line(tmp_path):
    with pytest.raises(ConfigError) as refused:
        make_config(tmp_path, models_to_run=["gpt2"], pretrained_preset=str(tmp_path / "nothing"))
    message = str(refused.value)
    assert "\n" not in message and "pretrained_preset" in message and "save_to_preset" in message


def test_the_registry_says_which_families_bring_their_tokenizer_and_need_config():
    assert family_names(brings_tokenizer=True) == ("gpt2",)
    assert "gpt2" in family_names() and "gpt2" not in family_names(brings_tokenizer=False)
    with pytest.raises(ValueError, match="pretrained_preset"):
        build_model("gpt2", None, 303, 16)  # which preset? only CONFIG says


def test_the_export_generates_what_the_project_generates(experiment, tmp_path):
    import tensorflow as tf

    from evaluation.export import main as export_cli
    from evaluation.generation import document_start_id, generate_ids

    config, result = experiment
    checkpoint = next(run for run in result.runs if run.family == "gpt2").training.checkpoint_path
    assert export_cli(["--model", str(checkpoint), "--out", str(tmp_path / "gpt2")]) == 0
    tokenizer = family_data("gpt2", config, result.data).tokenizer
    expected = generate_ids(load_trained_model(checkpoint), tokenizer, ["klm"], 6, sampler="greedy",
                            start_id=document_start_id(config))
    served = tf.saved_model.load(str(tmp_path / "gpt2")).signatures["generate"](
        prompt_ids=tf.constant([tokenizer.encode("klm")], tf.int32),
        max_new_tokens=tf.constant(6), temperature=tf.constant(0.0), top_k=tf.constant(0),
        top_p=tf.constant(1.0), seed=tf.constant(0))
    length = int(served["lengths"][0])
    assert served["token_ids"][0, :length].numpy().tolist() == expected[0]


def test_mixed_precision_computes_the_preset_in_bfloat16_with_float32_logits(preset, tmp_path):
    """The preset follows the global dtype policy that training sets, as every family does."""
    config = make_config(tmp_path, pretrained_preset=preset, **GPT2_SETTINGS)
    vocab_size = family_tokenizer("gpt2", config).vocab_size
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        tokens = np.full((2, 8), 10, "int32")
        model = build_model("gpt2", None, vocab_size, 16, {"dropout": 0.0}, config=config)
        logits = model(tokens)
        step_logits, cache = model.call_with_cache(tokens[:, :1], model.build_cache(2, 16), 0)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.backbone.transformer_layers[0].compute_dtype == "bfloat16"
    assert logits.dtype == "float32" and step_logits.dtype == "float32"
    assert cache.dtype == "bfloat16"
