"""Streaming preparation: token shards on disk, the tf.data read from them, and their reuse."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from data_factories import documents, make_config

from data_pipeline.corpus import load_corpus
from data_pipeline.datasets import build_datasets, build_shard_datasets, packed_rows, token_stream
from data_pipeline.errors import DataError
from data_pipeline.shards import ShardWriter, publish, partial_folder, token_dtype
from data_pipeline.streaming import prepare_streamed, uses_streaming
from data_pipeline.tokenizer import fit_or_load_tokenizer


def write_corpus(path, texts):
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def streaming_config(tmp_path, data_file, **overrides):
    return make_config(tmp_path, data_file=str(data_file), data_preparation="streaming",
                       shards_dir=str(tmp_path / "shards"), **overrides)


def all_batches(dataset):
    inputs, targets = zip(*dataset.as_numpy_iterator())
    return np.concatenate(inputs), np.concatenate(targets)  # (R, T) each


def test_shards_hold_the_same_tokens_and_batches_as_memory(tmp_path):
    # An ordered split and a tokenizer sample larger than the file: both paths fit on the same
    # training documents, so every split must match token for token.
    data_file = write_corpus(tmp_path / "corpus.txt", documents(600, words=7))
    streamed = prepare_streamed(streaming_config(tmp_path, data_file, split="ordered"))
    memory_config = make_config(tmp_path / "memory", data_file=str(data_file), split="ordered")
    corpus = load_corpus(memory_config)
    tokenizer = fit_or_load_tokenizer(corpus.train, memory_config)
    assert tokenizer.fingerprint == streamed.tokenizer.fingerprint
    config = streaming_config(tmp_path, data_file, split="ordered")
    in_memory = build_datasets(corpus, tokenizer, config)
    on_disk = build_shard_datasets(streamed.shards, streamed.tokenizer, config)
    assert streamed.shards.dtype == np.uint16
    for name in ("train", "validation", "test"):
        memory_split, shard_split = getattr(in_memory, name), getattr(on_disk, name)
        np.testing.assert_array_equal(np.asarray(shard_split.token_stream), memory_split.token_stream)
        assert (shard_split.documents, shard_split.tokens, shard_split.characters, shard_split.steps) == \
            (memory_split.documents, memory_split.tokens, memory_split.characters, memory_split.steps)
    for name in ("validation", "test"):  # unshuffled: identical batches, every target once
        for got, want in zip(all_batches(getattr(on_disk, name).dataset),
                             all_batches(getattr(in_memory, name).dataset)):
            np.testing.assert_array_equal(got, want)
    # Train is shuffled: one pass holds steps x batch distinct rows of the packed stream.
    inputs, targets = all_batches(on_disk.train.dataset)
    rows = {tuple(row) for row in packed_rows(in_memory.train.token_stream, config.max_len, False)}
    read = {tuple(np.append(x, y[-1])) for x, y in zip(inputs, targets)}
    assert len(inputs) == on_disk.train.steps * config.batch_size and read <= rows


def test_uint32_shards_read_back_every_id(tmp_path):
    assert token_dtype(65_535) == np.uint16 and token_dtype(65_536) == np.uint32
    rng = np.random.default_rng(0)
    encoded = [list(rng.integers(70_000, 90_000, size=n)) for n in rng.integers(1, 30, size=2000)]  # many blocks
    folder = partial_folder(tmp_path / "shards")
    written = {}
    for name in ("train", "validation", "test"):
        writer = ShardWriter(folder / f"{name}.bin", token_dtype(100_000), eos_id=3)
        writer.write(encoded, characters=0)
        written[name] = writer.close()
    shards = publish(folder, {"data_fingerprint": "d" * 64, "tokenizer_fingerprint": "t" * 64,
                              "dtype": "uint32", "splits": written, "report": {}})
    np.testing.assert_array_equal(shards.stream("test"), token_stream(encoded, eos_id=3))

    from data_pipeline.datasets import shard_split
    from data_pipeline.tokenizer import CharTokenizer

    config = make_config(tmp_path, max_len=16, batch_size=4)
    split = shard_split(shards, "test", CharTokenizer([]), config, global_batch=4, training=False)
    _, targets = all_batches(split.dataset)
    np.testing.assert_array_equal(targets.reshape(-1)[:split.tokens], shards.stream("test")[1:])
    assert not targets.reshape(-1)[split.tokens:].any()  # the filling is [PAD]


def test_split_is_leak_free_and_duplicates_are_audited(tmp_path):
    # "Ω" occurs only in the last documents, which an ordered split puts in test: a char
    # tokenizer fitted on train only must not know it.
    texts = documents(400, words=9)
    held_out = [f"{text} Ω" for text in documents(40, seed=1, words=9)]
    repeats = texts[:5]  # exact duplicates of train documents, at the end (test)
    near = [texts[10].replace("item10", "another ending")]  # 9 shared words, then different
    data_file = write_corpus(tmp_path / "corpus.txt", texts + held_out + repeats + near)
    config = streaming_config(tmp_path, data_file, split="ordered", tokenizer="char",
                              vocab_size=64, split_fractions=[0.8, 0.0, 0.2])
    streamed = prepare_streamed(config)
    report = streamed.corpus.report
    assert report["documents"] == 446 and report["train_documents"] == 357
    assert report["cross_split_duplicates_found"] == 5 == report["cross_split_duplicates_dropped"]
    assert report["test_near_duplicates"] == 1 and report["test_documents"] == 89 - 6
    assert streamed.tokenizer.encode("Ω") == [streamed.tokenizer.unk_id]
    test_stream = np.asarray(streamed.shards.stream("test"))
    assert np.count_nonzero(test_stream == streamed.tokenizer.unk_id) >= 1


def test_shards_are_reused_and_never_overwritten(tmp_path):
    data_file = write_corpus(tmp_path / "corpus.txt", documents(300))
    first = prepare_streamed(streaming_config(tmp_path, data_file))
    written = {path: path.stat().st_mtime_ns for path in first.shards.folder.iterdir()}
    again = prepare_streamed(streaming_config(tmp_path, data_file))
    assert again.shards.folder == first.shards.folder
    assert {path: path.stat().st_mtime_ns for path in first.shards.folder.iterdir()} == written
    other = prepare_streamed(streaming_config(tmp_path, data_file, vocab_size=280))
    assert other.shards.folder != first.shards.folder
    assert {path: path.stat().st_mtime_ns for path in first.shards.folder.iterdir()} == written


def test_unsupported_settings_fail_in_one_line_before_reading(tmp_path):
    data_file = write_corpus(tmp_path / "corpus.txt", documents(50))
    with pytest.raises(DataError, match=r"condition_columns.*data_preparation='memory'"):
        uses_streaming(streaming_config(tmp_path, data_file, condition_columns=["category"]))
    with pytest.raises(DataError, match="absent.txt"):
        prepare_streamed(streaming_config(tmp_path, tmp_path / "absent.txt"))
    assert not (tmp_path / "shards").exists()
    # 'auto' streams only a local file of at least streaming_min_mb
    assert not uses_streaming(make_config(tmp_path, data_file=str(data_file)))
    assert uses_streaming(make_config(tmp_path, data_file=str(data_file), streaming_min_mb=1e-4))


def test_until_data_prints_the_split_summary_and_trains_nothing(tmp_path):
    from training_assets.run import main

    data_file = write_corpus(tmp_path / "corpus.txt", documents(300))
    path = tmp_path / "experiment.json"
    config = streaming_config(tmp_path, data_file).to_dict()
    config.update(models_dir=str(tmp_path / "models"), plots_dir=str(tmp_path / "plots"),
                  tuning_dir=str(tmp_path / "tuning"))
    path.write_text(json.dumps(config))
    result = subprocess.run([sys.executable, "-m", "training_assets.run", "--config", str(path),
                             "--until", "data"], capture_output=True, text=True, env=os.environ)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = result.stdout.splitlines()
    assert summary[0].split() == ["documents", "tokens", "characters", "batches", "characters_per_token"]
    assert [line.split()[0] for line in summary[2:]] == ["train", "validation", "test"]
    assert not any((tmp_path / name).exists() for name in ("models", "plots", "tuning"))
    assert main(["--config", str(path), "--until", "data", "--set", "condition_columns=[\"x\"]"]) == 2


PEAK_MEMORY = """
import sys
from pathlib import Path
import data_pipeline.streaming as streaming
from data_pipeline.config import ExperimentConfig
# chunks and the decoded quality sample far smaller than the corpus, as on a large one
streaming.CHUNK_BYTES, streaming.QUALITY_SAMPLE_TOKENS = 200_000, 20_000
folder = Path(sys.argv[1])
def status_kb(field):  # VmHWM: this process's peak (ru_maxrss would include the parent's)
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])
config = ExperimentConfig.from_dict({"data_file": sys.argv[2], "data_preparation": "streaming",
    "shards_dir": str(folder / "shards"), "tokenizer_path": str(folder / "tokenizer.json"),
    "vocab_size": 300, "tokenizer_sample_mb": 0.2, "audit_sample_mb": 0.2})
before = status_kb("VmRSS")
streaming.prepare_streamed(config)
print(status_kb("VmHWM") - before)
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_corpus(tmp_path):
    growth = {}
    for scale in (1, 4):
        data_file = write_corpus(tmp_path / f"corpus{scale}.txt", documents(12_000 * scale, words=10))
        result = subprocess.run([sys.executable, "-c", PEAK_MEMORY, str(tmp_path / str(scale)),
                                 str(data_file)], capture_output=True, text=True, env=os.environ)
        assert result.returncode == 0, result.stderr[-2000:]
        growth[scale] = int(result.stdout.split()[-1]) * 1024, data_file.stat().st_size
    extra_text = growth[4][1] - growth[1][1]
    # In memory a byte of text costs ~50 bytes of RAM; streamed, the extra text may cost < 8
    # (9 bytes per document of hashes and split labels, allocator slack).
    assert growth[4][0] - growth[1][0] < 8 * extra_text, (growth, extra_text)


def test_a_model_trains_and_the_baseline_fits_from_shards(tmp_path):
    from training_factories import alphabet_documents, unigram_perplexity
    from training_factories import make_config as training_config

    from evaluation.baselines import kneser_ney_report
    from evaluation.evaluate import evaluate_model
    from model_architectures.registry import hyperparameters_for
    from model_architectures.saving import load_trained_model
    from training_assets.strategy import select_strategy
    from training_assets.trainer import train_model

    data_file = write_corpus(tmp_path / "alphabet.txt", alphabet_documents(300))
    config = training_config(tmp_path, data_file=str(data_file), data_preparation="streaming",
                             shards_dir=str(tmp_path / "shards"), final_training_epochs=1,
                             kn_max_train_tokens=1000, drop_cross_split_duplicates=False,
                             drop_near_duplicates=False)  # 26 distinct alphabet runs
    streamed = prepare_streamed(config)
    datasets = build_shard_datasets(streamed.shards, streamed.tokenizer, config)
    result = train_model("gru", hyperparameters_for("gru", config.hyperparameters["gru"]), datasets,
                         config, select_strategy("default"), streamed.tokenizer)
    evaluation = evaluate_model(load_trained_model(result.checkpoint_path), datasets.test)
    assert evaluation.tokens == datasets.test.tokens and math.isfinite(evaluation.perplexity)
    baseline = kneser_ney_report(datasets, order=3, max_train_tokens=config.kn_max_train_tokens)
    assert baseline.model.startswith("kn_3gram (on ") and baseline.evaluation.tokens == datasets.test.tokens
    # alphabet runs are near-certain after one letter: both models must be far below the unigram
    bar = unigram_perplexity(np.asarray(datasets.test.token_stream)) / 3
    assert evaluation.perplexity < bar and baseline.evaluation.perplexity < bar


@pytest.mark.slow
def test_the_experiment_runs_end_to_end_on_a_streamed_csv(tmp_path):
    from test_notebook import tiny_config

    from training_assets.experiment import run_experiment

    config = tiny_config(tmp_path)
    config.update(models_to_run=["gru"], tuner="none", final_training_epochs=1,
                  data_preparation="streaming", shards_dir=str(tmp_path / "shards"),
                  # the tiny headlines repeat their 8-word runs: keep them (still counted)
                  drop_near_duplicates=False, drop_cross_split_duplicates=False)
    result = run_experiment(config)
    assert result.data.corpus.report["preparation"] == "streaming"
    assert set(result.table["model"]) == {"gru", "kn_3gram", "gru+kn_3gram"}
    assert result.data.datasets.test.tokens == result.runs[0].report.evaluation.tokens
    assert (tmp_path / "plots" / "comparison.csv").is_file()


def test_multi_worker_auto_sharding_splits_shard_batches_between_workers(tmp_path):
    # The rewrite MultiWorkerMirroredStrategy applies to each worker's input (DATA policy):
    # the workers' batches must be disjoint and together the whole split.
    from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

    data_file = write_corpus(tmp_path / "corpus.txt", documents(400))
    config = streaming_config(tmp_path, data_file)
    streamed = prepare_streamed(config)
    test = build_shard_datasets(streamed.shards, streamed.tokenizer, config).test
    whole = [x.tobytes() for x, _ in test.dataset.as_numpy_iterator()]
    workers = [[x.tobytes() for x, _ in _AutoShardDataset(test.fresh_dataset(), 2, index)
                .as_numpy_iterator()] for index in (0, 1)]
    assert len(whole) == test.steps and workers[0] and workers[1]
    assert sorted(workers[0] + workers[1]) == sorted(whole)  # each batch on exactly one worker
