"""Conditional generation from other CSV columns: reading the values, condition tokens in the
tokenizer, their targets masked, and a trained model that demonstrably uses them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_factories import make_config as make_data_config
from data_factories import write_csv
from training_factories import (CONDITION_LETTERS, conditional_documents, make_conditional_corpus,
                                make_config)

from data_pipeline.corpus import Corpus, load_corpus
from data_pipeline.datasets import build_datasets
from data_pipeline.errors import DataError
from data_pipeline.splitting import split_documents
from data_pipeline.tokenizer import TextTokenizer, fit_or_load_tokenizer, read_manifest
from evaluation.condition_gain import shuffled_condition_evaluation
from evaluation.evaluate import evaluate_model
from evaluation.generate import main as generate_main
from evaluation.generation import generate
from model_architectures.registry import family_names, hyperparameters_for
from model_architectures.saving import load_trained_model
from training_assets.experiment import run_experiment
from training_assets.strategy import select_strategy
from training_assets.trainer import train_model


def test_condition_columns_come_from_the_csv_with_dates_bucketed(tmp_path: Path) -> None:
    rows = [[f"headline {i}", ["sport", "politics", ""][i % 3], f"2003{1 + i % 2:02d}15"]
            for i in range(30)]
    data = write_csv(tmp_path / "news.csv", rows, ["headline_text", "topic", "publish_date"])
    config = make_data_config(tmp_path, data_file=str(data), split="ordered",
                              condition_columns=["topic", "publish_date:month"])
    corpus = load_corpus(config)
    assert corpus.train[:3] == ["headline 0", "headline 1", "headline 2"]
    # A missing field reads as the unknown value; months are bucketed as YYYY-MM.
    assert corpus.conditions_of("train")[:3] == [("sport", "2003-01"), ("politics", "2003-02"),
                                                 ("?", "2003-01")]
    assert [len(corpus.conditions_of(name)) for name in ("train", "validation", "test")] == \
        [len(corpus.train), len(corpus.validation), len(corpus.test)]

    missing = make_data_config(tmp_path, data_file=str(data), condition_columns=["category"])
    with pytest.raises(DataError, match=r"has no column 'category' named in condition_columns; "
                                        r"its columns are \['headline_text', 'topic', 'publish_date'\]"):
        load_corpus(missing)


def test_conditions_follow_their_documents_through_split_and_duplicate_dropping(tmp_path: Path) -> None:
    texts = [f"document number {i} about {'sport' if i % 2 else 'politics'}" for i in range(60)]
    texts += texts[:10]  # exact duplicates, dropped from validation and test
    conditions = [("sport" if "sport" in text else "politics",) for text in texts]
    config = make_data_config(tmp_path, split_fractions=[0.6, 0.2, 0.2])
    split = split_documents(texts, None, config, conditions)
    assert split.cross_split_duplicates_dropped > 0
    for documents, values in zip((split.train, split.validation, split.test), split.conditions):
        assert [("sport" if "sport" in text else "politics",) for text in documents] == values


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_condition_tokens_are_special_tokens_of_the_tokenizer(tmp_path: Path, kind: str) -> None:
    corpus = make_conditional_corpus(200)
    config = make_config(tmp_path, tokenizer=kind, vocab_size=300 if kind == "bpe" else 64,
                         condition_columns=["category"])
    tokenizer = fit_or_load_tokenizer(corpus.train, config, corpus.conditions_of("train"))
    assert tokenizer.special_tokens == ("[PAD]", "[UNK]", "[BOS]", "[EOS]", "<category=?>",
                                        "<category=a>", "<category=b>")
    assert tokenizer.known_conditions == {"category": ["a", "b"]}
    # A value unseen in train maps to the column's unknown token.
    assert tokenizer.encode_conditions(["category"], [("b",), ("c",)]) == [[6], [4]]
    # Typed inside a text, a condition token is text, not the special token; decoding drops ids.
    assert 5 not in tokenizer.encode("<category=a>")
    assert tokenizer.decode([5, *tokenizer.encode("abc")]) == "abc"

    reloaded = TextTokenizer.load(tokenizer.path)
    assert reloaded.special_tokens == tokenizer.special_tokens
    manifest = read_manifest(tokenizer.path)
    assert manifest["special_tokens"] == list(tokenizer.special_tokens)
    assert manifest["conditions"] == {"category": ["a", "b"]}
    # The fingerprint covers the condition tokens: the same text without conditions refits.
    plain = fit_or_load_tokenizer(corpus.train, make_config(tmp_path / "plain", tokenizer=kind,
                                                            vocab_size=config.vocab_size))
    assert plain.fingerprint != tokenizer.fingerprint


@pytest.mark.parametrize("objective", ["causal", "last_token"])
def test_condition_targets_are_masked_so_only_text_is_counted(tmp_path: Path, objective: str) -> None:
    corpus = make_conditional_corpus(200)
    conditional = make_config(tmp_path, condition_columns=["category"], objective=objective)
    tokenizer = fit_or_load_tokenizer(corpus.train, conditional, corpus.conditions_of("train"))
    datasets = build_datasets(corpus, tokenizer, conditional)
    plain_config = make_config(tmp_path / "plain", objective=objective)
    plain = Corpus(corpus.train, corpus.validation, corpus.test, "generated", {})
    plain_datasets = build_datasets(plain, fit_or_load_tokenizer(plain.train, plain_config),
                                    plain_config)
    first, end = datasets.condition_id_range
    for name in ("validation", "test"):
        split, plain_split = getattr(datasets, name), getattr(plain_datasets, name)
        # Condition tokens are in the inputs, one per document, but never a target.
        assert np.count_nonzero((split.token_stream >= first) & (split.token_stream < end)) \
            == split.documents
        targets = np.concatenate([t.numpy().ravel() for _, t in split.dataset])
        assert not np.any((targets >= first) & (targets < end))
        # The same text is predicted with and without conditions: same tokens and characters.
        assert np.count_nonzero(targets) == split.tokens == plain_split.tokens
        assert split.characters == plain_split.characters


def train_conditional(tmp_path: Path, family: str):
    """A tiny model of `family` trained by train_model on text that depends on its category."""
    config = make_config(tmp_path, models_to_run=[family], condition_columns=["category"],
                         max_len=12, final_training_epochs=3)
    corpus = make_conditional_corpus(400)
    tokenizer = fit_or_load_tokenizer(corpus.train, config, corpus.conditions_of("train"))
    datasets = build_datasets(corpus, tokenizer, config)
    result = train_model(family, hyperparameters_for(family, config.hyperparameters[family]),
                         datasets, config, select_strategy("default"), tokenizer)
    return config, corpus, tokenizer, datasets, load_trained_model(result.checkpoint_path)


@pytest.mark.parametrize("family", family_names("causal", brings_tokenizer=False, likelihood=True))  # own control tokens, bits/char
def test_a_trained_model_uses_its_condition(tmp_path: Path, family: str) -> None:
    config, corpus, tokenizer, datasets, model = train_conditional(tmp_path, family)
    own = evaluate_model(model, datasets.test)
    shuffled = shuffled_condition_evaluation(model, corpus, tokenizer, config,
                                             datasets.global_batch_size)
    assert shuffled.tokens == own.tokens and shuffled.characters == own.characters
    # Half the shuffled documents get the other category: their first letter is a surprise.
    assert own.bits_per_char < shuffled.bits_per_char - 0.2, (own, shuffled)

    for category, letters in CONDITION_LETTERS.items():
        texts = generate(model, tokenizer, [""] * 4, max_new_tokens=5, sampler="greedy",
                         conditions={"category": category})
        assert all(text and set(text) <= set(letters) for text in texts), (category, texts)


def test_generation_refuses_unknown_or_missing_conditions(tmp_path: Path, capsys) -> None:
    config, corpus, tokenizer, datasets, model = train_conditional(tmp_path, "gru")
    with pytest.raises(DataError, match=r"condition category='c' was not seen in training; "
                                        r"known values of 'category': \['a', 'b'\]"):
        generate(model, tokenizer, [""], max_new_tokens=3, conditions={"category": "c"})
    with pytest.raises(DataError, match=r"pass a value for 'category', one of \['a', 'b'\]"):
        generate(model, tokenizer, [""], max_new_tokens=3)

    # The command line: the manifest's tokenizer knows the values, checked before sampling.
    model_path = str(Path(config.models_dir) / "gru.keras")
    assert generate_main(["--model", model_path, "--condition", "category=c"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "known values of 'category': ['a', 'b']" in error
    assert generate_main(["--model", model_path, "--condition", "category=b", "-n", "2",
                          "--sampler", "greedy", "--max-new-tokens", "5"]) == 0
    printed = capsys.readouterr().out.split("\n")[:2]
    assert all(line and set(line) <= set(CONDITION_LETTERS["b"]) for line in printed), printed


def test_the_experiment_reports_the_condition_gain_from_a_csv(tmp_path: Path) -> None:
    texts, conditions = conditional_documents(400)
    data = write_csv(tmp_path / "letters.csv", [[text, category] for text, (category,)
                                                 in zip(texts, conditions)], ["text", "category"])
    # 26 distinct texts in 400 documents: keep the repeats, or nothing is left to test on.
    config = make_config(tmp_path, data_file=str(data), text_column="text",
                         condition_columns=["category"], max_len=12, final_training_epochs=3,
                         drop_cross_split_duplicates=False, drop_near_duplicates=False)
    result = run_experiment(config)
    table = result.table.set_index("model")
    assert table.loc["gru", "condition_gain_bits_per_char"] > 0.2
    assert np.isnan(table.loc["kn_3gram", "condition_gain_bits_per_char"])
    assert len(table) == 2  # no interpolation row: the n-gram model would score control tokens
    # The report's samples are given the most frequent train category.
    train_categories = [c for (c,) in result.data.corpus.conditions_of("train")]
    common = max(set(train_categories), key=train_categories.count)
    samples = json.loads((Path(config.plots_dir) / "samples.json").read_text())["gru"]
    assert sum(set(text) <= set(CONDITION_LETTERS[common]) for text in samples) >= len(samples) - 1
