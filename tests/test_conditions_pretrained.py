"""Conditions for every left-to-right family, the pretrained one included, and numeric columns
bucketed at training quantiles: the runner trains a GRU and the tiny local GPT-2 preset on text
that depends on its category, and the table, the generate CLI, the panel and the export follow
the conditions; a numeric CSV column bucketed by quantiles does the same."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from data_factories import make_config as make_data_config
from data_factories import write_csv
from preset_factories import save_tiny_gpt2_preset
from training_factories import (CONDITION_LETTERS, conditional_documents, make_conditional_corpus,
                                make_config)

from data_pipeline.conditions import bucket_numeric_conditions, bucket_ranges
from data_pipeline.corpus import load_corpus
from data_pipeline.errors import ConfigError, DataError
from data_pipeline.tokenizer import TextTokenizer, read_manifest
from evaluation.condition_accuracy import balanced_accuracy
from evaluation.generate import main as generate_cli
from model_architectures.registry import family_tokenizer
from training_assets.experiment import family_data, run_experiment

SETTINGS = {"max_len": 12, "batch_size": 8, "warmup_steps": 0,
            "final_training_epochs": 6, "steps_per_epoch": 20, "jit_compile": False,
            "num_samples": 1, "max_new_tokens": 5, "measure_samples": 4,
            "condition_columns": ["category"],
            "hyperparameters": {"gru": {"embedding_dim": 16, "units": 16, "dropout": 0.0,
                                        "learning_rate": 1e-2},
                                "gpt2": {"dropout": 0.0, "learning_rate": 1e-2}}}


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    """The tiny GPT-2 preset, its vocabulary learnt from the conditional texts."""
    return str(save_tiny_gpt2_preset(tmp_path_factory.mktemp("preset"),
                                     make_conditional_corpus(400).train))


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory, preset):
    """The runner on gru and the tiny GPT-2 preset with condition_columns ["category"]."""
    root = tmp_path_factory.mktemp("conditional_gpt2")
    corpus = make_conditional_corpus(400)
    config = make_config(root, models_to_run=["gru", "gpt2"], pretrained_preset=preset, **SETTINGS)
    result = run_experiment(config, corpus=corpus)
    checkpoints = {run.family: str(run.training.checkpoint_path) for run in result.runs}
    return config, result, checkpoints


def letters_of(texts: list[str], category: str) -> bool:
    return all(text and set(text) <= set(CONDITION_LETTERS[category]) for text in texts)


def test_both_rows_follow_their_conditions_above_chance(conditional_run):
    config, result, _ = conditional_run
    table = result.table.set_index("model")
    for family in ("gru", "gpt2"):
        row = table.loc[family]
        assert row["condition_accuracy_chance"] == 0.5
        assert row["condition_accuracy"] > 0.8, row
        assert row["sample_condition_accuracy"] > 0.8, row
    assert math.isnan(table.loc["kn_3gram", "condition_accuracy"])


def test_new_condition_rows_train_under_lora_and_are_never_predicted(preset, tmp_path):
    from model_architectures import build_model

    corpus = make_conditional_corpus(400)
    config = make_config(tmp_path, models_to_run=["gpt2"], pretrained_preset=preset, lora_rank=4,
                         **SETTINGS)
    tokenizer = family_tokenizer("gpt2", config, corpus.conditions_of("train"))
    first, end = tokenizer.condition_id_range
    assert (first, end) == (tokenizer.vocab_size - 3, tokenizer.vocab_size)
    model = build_model("gpt2", None, tokenizer.vocab_size, 12, {"dropout": 0.0}, config=config)
    trainable = {weight.path for weight in model.trainable_weights}
    assert any("condition_embedding" in path for path in trainable)
    assert not any("token_embedding" in path for path in trainable)  # frozen by LoRA
    logits = np.asarray(model(np.array([[3, first + 1, *tokenizer.encode("abc")]])))
    assert logits[..., first:end].max() < -1e8  # condition tokens are inputs only


def test_the_gpt2_checkpoint_generates_and_lists_its_conditions(conditional_run, capsys):
    _, _, checkpoints = conditional_run
    assert generate_cli(["--model", checkpoints["gpt2"], "--list-conditions"]) == 0
    assert capsys.readouterr().out.strip() == "category: a, b"
    for category in CONDITION_LETTERS:
        assert generate_cli(["--model", checkpoints["gpt2"], "--condition", f"category={category}",
                             "--sampler", "greedy", "-n", "1", "--max-new-tokens", "5",
                             "--no-xla"]) == 0
        assert letters_of(capsys.readouterr().out.split("\n")[:1], category)
    assert generate_cli(["--model", checkpoints["gpt2"], "--condition", "category=zippy"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "known values of 'category': ['a', 'b']" in error


def test_the_panel_samples_both_families_under_a_condition(conditional_run):
    from evaluation.panel import (condition_options, default_settings, panel_models,
                                  sample_side_by_side)

    config, _, checkpoints = conditional_run
    models = panel_models([checkpoints["gru"], checkpoints["gpt2"]])
    assert condition_options(models[1].tokenizer) == {"category": [("a", "a"), ("b", "b")]}
    settings = {**default_settings(config), "sampler": "greedy", "max_new_tokens": 5}
    samples = sample_side_by_side(models, "", settings, {"category": "b"})
    assert letters_of([sample.text for sample in samples], "b"), samples


@pytest.mark.parametrize("family", ["gru", "gpt2"])
def test_the_export_takes_condition_ids_first(conditional_run, tmp_path, family):
    import tensorflow as tf

    from evaluation.export import main as export_cli
    from evaluation.generation import document_start_id, generate_ids
    from model_architectures.saving import load_trained_model

    config, result, checkpoints = conditional_run
    out = tmp_path / family
    assert export_cli(["--model", checkpoints[family], "--out", str(out)]) == 0
    described = json.loads((out / "export.json").read_text())
    tokenizer = family_data(family, config, result.data).tokenizer
    assert described["condition_ids"] == tokenizer.condition_ids
    assert described["condition_columns"] == {"category": ["a", "b"]}
    expected = generate_ids(load_trained_model(checkpoints[family]), tokenizer, [""], 5,
                            sampler="greedy", start_id=document_start_id(config),
                            conditions={"category": "a"})
    served = tf.saved_model.load(str(out)).signatures["generate"](
        prompt_ids=tf.constant([[described["condition_ids"]["<category=a>"]]], tf.int32),
        max_new_tokens=tf.constant(5), temperature=tf.constant(0.0), top_k=tf.constant(0),
        top_p=tf.constant(1.0), seed=tf.constant(0))
    new = served["token_ids"][0, 1:int(served["lengths"][0])].numpy().tolist()
    assert new == expected[0] and letters_of([tokenizer.decode(new)], "a")


def priced_csv(path: Path, documents: int = 400) -> Path:
    """conditional_documents with a `price` instead of a category: "a" texts cost 1-10, "b" 20-30."""
    texts, conditions = conditional_documents(documents)
    prices = np.random.default_rng(1).uniform(1, 10, documents)
    rows = [[text, f"{price + (19 if category == 'b' else 0):.2f}"]
            for text, (category,), price in zip(texts, conditions, prices)]
    return write_csv(path, rows, ["text", "price"])


def test_a_numeric_column_is_bucketed_at_train_quantiles_and_conditions_the_runner(tmp_path, capsys):
    # 26 distinct texts in 400 documents: keep the repeats, or nothing is left to test on.
    config = make_config(tmp_path, data_file=str(priced_csv(tmp_path / "priced.csv")),
                         text_column="text", condition_columns=["price:quantiles2"], max_len=12,
                         final_training_epochs=3, drop_cross_split_duplicates=False,
                         drop_near_duplicates=False, measure_samples=4)
    result = run_experiment(config)
    row = result.table.set_index("model").loc["gru"]
    assert row["condition_accuracy"] > 0.8 and row["condition_accuracy_chance"] == 0.5
    tokenizer = result.data.tokenizer
    (edge,) = read_manifest(tokenizer.path)["condition_edges"]["price:quantiles2"]
    assert 1 < edge < 30  # the median of train's prices
    assert TextTokenizer.load(tokenizer.path).condition_edges == {"price:quantiles2": [edge]}

    model = str(Path(config.models_dir) / "gru.keras")
    capsys.readouterr()  # the training log
    assert generate_cli(["--model", model, "--list-conditions"]) == 0
    assert capsys.readouterr().out.strip() == f"price:quantiles2: q1 (< {edge:g}), q2 (>= {edge:g})"
    # A bucket by name or a price that falls in it ("a" texts cost 1-10, "b" texts 20-30).
    for value, category in (("q1", "a"), ("29", "b")):
        assert generate_cli(["--model", model, "--condition", f"price:quantiles2={value}",
                             "--sampler", "greedy", "-n", "1", "--max-new-tokens", "5",
                             "--no-xla"]) == 0
        assert letters_of(capsys.readouterr().out.split("\n")[:1], category)


def test_buckets_come_from_train_only_and_outside_values_go_to_the_end_buckets() -> None:
    train = [(str(v),) for v in range(1, 11)]  # 1..10: quartile edges at 3.25, 5.5, 7.75
    test = [("-100",), ("5",), ("1000",), ("?",)]
    (train_b, test_b), edges = bucket_numeric_conditions(["x:quantiles4"], [train, test])
    assert edges == {"x:quantiles4": [3.25, 5.5, 7.75]}
    assert [c for (c,) in train_b] == ["q1"] * 3 + ["q2"] * 2 + ["q3"] * 2 + ["q4"] * 3
    assert test_b == [("q1",), ("q2",), ("q4",), ("?",)]  # a missing value stays unknown
    assert bucket_ranges([3.25, 5.5]) == ["q1 (< 3.25)", "q2 (3.25 to 5.5)", "q3 (>= 5.5)"]
    assert bucket_ranges([20030316.0]) == ["q1 (< 20030316)", "q2 (>= 20030316)"]
    # Several columns at once: each bucketed by its own spelling, others left as they are.
    (both,), edges = bucket_numeric_conditions(["cat", "x:quantiles2"], [[("a", "1"), ("b", "3")]])
    assert both == [("a", "q1"), ("b", "q2")] and list(edges) == ["x:quantiles2"]


def test_bad_numeric_conditions_fail_in_one_line_naming_the_fix(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"'price:quantile5': bucket a date column .* or a "
                                          r"numeric one with 'price:quantilesN'"):
        make_data_config(tmp_path, condition_columns=["price:quantile5"])
    with pytest.raises(ConfigError, match="price:quantiles1"):
        make_data_config(tmp_path, condition_columns=["price:quantiles1"])
    data = write_csv(tmp_path / "bad.csv", [[f"text {i}", "cheap" if i == 3 else i] for i in range(20)],
                     ["headline_text", "price"])
    with pytest.raises(DataError, match=r"'price:quantiles2' .* declared numeric but data row 4 "
                                        r"holds 'cheap'"):
        load_corpus(make_data_config(tmp_path, data_file=str(data),
                                     condition_columns=["price:quantiles2"]))


def test_balanced_accuracy_does_not_reward_answering_the_common_value() -> None:
    truth = [0] * 9 + [1]
    assert balanced_accuracy(truth, [0] * 10) == 0.5  # chance for two values
    assert balanced_accuracy(truth, truth) == 1.0
    assert balanced_accuracy([0, 0, 1, 1], [0, 1, 1, 1]) == 0.75
