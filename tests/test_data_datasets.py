"""tf.data splits: every token predicted once, static shapes, masked padding, replicas, layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from data_factories import documents, make_config
from data_pipeline.corpus import Corpus
from data_pipeline.datasets import build_datasets, packed_rows
from data_pipeline.errors import DataError
from data_pipeline.tokenizer import fit_or_load_tokenizer


def make_corpus(train: int = 40, held_out: int = 7) -> Corpus:
    texts = documents(train + 2 * held_out, seed=5, words=3)
    return Corpus(train=texts[:train], validation=texts[train:train + held_out],
                  test=texts[train + held_out:], source="generated", report={})


def batches(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    pairs = list(dataset.as_numpy_iterator())
    return np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])


def build(tmp_path: Path, corpus: Corpus | None = None, num_replicas: int = 1, **overrides):
    config = make_config(tmp_path, tokenizer="char", **overrides)
    corpus = corpus or make_corpus()
    tokenizer = fit_or_load_tokenizer(corpus.train, config)
    return corpus, tokenizer, build_datasets(corpus, tokenizer, config, num_replicas=num_replicas)


def test_token_stream_and_counts(tmp_path: Path) -> None:
    corpus, tokenizer, datasets = build(tmp_path)
    test = datasets.test
    expected = [3]
    for text in corpus.test:
        expected += tokenizer.encode(text) + [3]
    assert test.token_stream.dtype == np.int32 and test.token_stream.tolist() == expected
    assert test.documents == len(corpus.test)
    assert test.tokens == len(expected) - 1
    assert test.characters == sum(len(t) for t in corpus.test) + len(corpus.test)
    assert datasets.vocab_size == tokenizer.vocab_size and datasets.pad_id == 0
    assert datasets.max_len == 8
    assert (datasets.per_replica_batch_size, datasets.global_batch_size) == (4, 4)


@pytest.mark.parametrize("split", ["validation", "test"])
def test_held_out_splits_predict_every_token_exactly_once(tmp_path: Path, split: str) -> None:
    _, _, datasets = build(tmp_path)
    data = getattr(datasets, split)
    assert data.dataset.element_spec[0].shape.as_list() == [4, 8]  # static (B, T)
    inputs, targets = batches(data.dataset)
    assert len(inputs) // 4 == data.steps
    stream = data.token_stream
    mask = targets != 0
    assert mask.sum() == data.tokens == len(stream) - 1
    assert targets[mask].tolist() == stream[1:].tolist()  # each target once, in order
    assert inputs[mask].tolist() == stream[:-1].tolist()  # each predicted from its predecessor
    flat = mask.ravel()  # real targets first, then only [PAD]: the padded tail and filler rows
    assert flat[:len(stream) - 1].all() and not flat[len(stream) - 1:].any()
    rows_needed = -(-(len(stream) - 1) // 8)
    assert 0 <= len(inputs) - rows_needed < 4  # fewer filler rows than one batch


def test_train_drops_remainder_and_reshuffles(tmp_path: Path) -> None:
    _, _, datasets = build(tmp_path)
    train = datasets.train
    stream = train.token_stream
    first, _ = batches(train.dataset)
    second, second_targets = batches(train.dataset)
    assert len(first) == train.steps * 4
    assert train.tokens == train.steps * 4 * 8 == np.count_nonzero(second_targets)
    assert first.tolist() != second.tolist()  # reshuffled each epoch
    starts = {tuple(stream[i:i + 8]): i for i in range(0, len(stream) - 8, 8)}
    for row in second:
        assert tuple(row) in starts  # every row is a stride-max_len slice of the stream
    np.testing.assert_array_equal(second_targets[:, :-1], second[:, 1:])


def test_packed_rows() -> None:
    stream = np.arange(1, 12, dtype=np.int32)  # 11 tokens: 10 targets
    kept = packed_rows(stream, 4, keep_remainder=True)
    assert kept.tolist() == [[1, 2, 3, 4, 5], [5, 6, 7, 8, 9], [9, 10, 11, 0, 0]]
    assert packed_rows(stream, 4, keep_remainder=False).tolist() == kept[:2].tolist()


def test_global_batch_and_mirrored_strategy(tmp_path: Path) -> None:
    _, _, datasets = build(tmp_path, num_replicas=2)
    assert datasets.global_batch_size == 8
    assert datasets.train.dataset.element_spec[0].shape.as_list() == [8, 8]
    policy = datasets.train.dataset.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    inputs, _ = next(iter(strategy.experimental_distribute_dataset(datasets.validation.dataset)))
    assert [t.shape.as_list() for t in strategy.experimental_local_results(inputs)] == [[4, 8]] * 2


def test_one_document_per_row(tmp_path: Path) -> None:
    corpus = make_corpus()
    short = Corpus(train=corpus.train, validation=["ab", "abcdefghijkl"], test=corpus.test,
                   source="generated", report={})
    corpus, tokenizer, datasets = build(tmp_path, corpus=short, packing=False)
    inputs, targets = batches(datasets.validation.dataset)
    assert inputs[:2, 0].tolist() == [2, 2]  # [BOS] first
    assert tokenizer.decode(targets[0]) == "ab" and targets[0, 2] == 3  # ..then [EOS], [PAD]s
    assert not targets[0, 3:].any()
    assert tokenizer.decode(targets[1]) == "abcdefgh"  # truncated: no [EOS] predicted
    assert not targets[2:].any()  # filler rows
    assert datasets.validation.tokens == 3 + 8
    assert datasets.validation.characters == 3 + 8
    train_inputs, _ = batches(datasets.train.dataset)
    assert (train_inputs[:, 0] == 2).all()


def test_last_token_objective(tmp_path: Path) -> None:
    _, _, datasets = build(tmp_path, objective="last_token")
    test = datasets.test
    inputs, targets = batches(test.dataset)
    stream = test.token_stream
    assert not targets[:, :-1].any()  # only the last position is trained
    mask = targets[:, -1] != 0
    assert targets[mask, -1].tolist() == stream[1:].tolist() and test.tokens == len(stream) - 1
    padded = np.concatenate([np.zeros(7, np.int32), stream])
    for i in range(len(stream) - 1):  # window i: the 8 tokens before target stream[i + 1]
        assert inputs[i].tolist() == padded[i:i + 8].tolist()
    train_inputs, train_targets = batches(datasets.train.dataset)
    assert len(train_inputs) == datasets.train.steps * 4 == datasets.train.tokens
    assert (train_targets[:, -1] != 0).all()


def test_empty_held_out_split(tmp_path: Path) -> None:
    corpus = make_corpus()
    no_test = Corpus(corpus.train, corpus.validation, [], "generated", {})
    _, _, datasets = build(tmp_path, corpus=no_test)
    assert (datasets.test.steps, datasets.test.tokens, datasets.test.documents) == (0, 0, 0)
    assert list(datasets.test.dataset) == []


def test_training_split_smaller_than_a_batch(tmp_path: Path) -> None:
    tiny = Corpus(["a b", "c d"], ["e"], ["f"], "generated", {})
    with pytest.raises(DataError, match="fewer than one global batch of 64: lower batch_size"):
        build(tmp_path, corpus=tiny, batch_size=64)
