"""tf.data splits for causal language modelling, built from numpy arrays of token rows.

Each split's documents become one token stream, [EOS] d1 [EOS] d2 ... dn [EOS], and rows of
max_len + 1 tokens with stride max_len: inputs = row[:-1], targets = row[1:], so every token after
the first is a target exactly once per pass. Validation and test cover all their tokens (the last
row and the last batch are filled with [PAD]=0, whose targets the loss and metrics ignore); train
drops the remainder and reshuffles each epoch. Shapes are static, so XLA compiles once.

Two other layouts, same (inputs, targets) contract:
- packing=False: one document per row, [BOS] d [EOS], truncated to max_len + 1, [PAD]-filled;
- objective="last_token" (the reference's formulation): windows of max_len + 1 with stride 1,
  every target [PAD] except the last, so the same model and masked loss learn only the last
  token. It ignores `packing`: its windows run over the stream.

Token shards (data_pipeline.shards, written by streaming preparation) give the same packed rows
and counts through build_shard_datasets, read from the files as training needs them.

With condition_columns each document's condition tokens come first ([EOS] <category=a> d1 [EOS]
...). They are inputs, never targets: their targets become [PAD], so loss, perplexity and
bits/char count the text (and its closing [EOS]) only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import tensorflow as tf

from data_pipeline.conditions import Conditions
from data_pipeline.config import ExperimentConfig
from data_pipeline.corpus import Corpus
from data_pipeline.errors import DataError
from data_pipeline.document_layout import stream_document_targets
from data_pipeline.fast_bpe import encode_documents
from data_pipeline.tokenizer import TextTokenizer

if TYPE_CHECKING:
    from data_pipeline.shards import TokenShards

SHARD_BLOCK_ROWS = 128  # rows read from a shard file at a time

log = logging.getLogger("data_pipeline")


@dataclass(frozen=True)
class SplitData:
    """One split: its batches and the counts that turn summed losses into per-token figures."""

    dataset: tf.data.Dataset = field(repr=False)  # (inputs int32 (B,T), targets int32 (B,T))
    token_stream: np.ndarray = field(repr=False)  # int32 [EOS] d1 [EOS] d2 ... [EOS]
    documents: int
    tokens: int  # non-[PAD] targets in one pass over `dataset`
    characters: int  # characters of the documents covered + one separator per document
    steps: int  # batches per pass
    # makes `dataset` anew; its argument, when given, replaces CONFIG's seed as the shuffle seed
    rebuild: Callable[[int | None], tf.data.Dataset] = field(repr=False, compare=False)
    # Validation and test: the non-[PAD] targets of each document in dataset order, and its
    # characters (+1 separator), so evaluation can sum a model's NLL per document for the
    # bootstrap (evaluation.intervals). Empty for train. (D,) int64 each.
    document_targets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False,
                                         compare=False)
    document_characters: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64),
                                            repr=False, compare=False)

    def fresh_dataset(self, shuffle_seed: int | None = None) -> tf.data.Dataset:
        """The same batches as `dataset` in a new object, whose shuffle starts again from the seed.

        Each pass over one dataset object reshuffles it; a fit that starts from a fresh object sees
        the same order whatever was trained on the split before it (another family, a trial).
        `shuffle_seed`: another data order for the same rows (a family's second training seed).
        """
        return self.rebuild(shuffle_seed)


@dataclass(frozen=True)
class Datasets:
    train: SplitData
    validation: SplitData
    test: SplitData
    vocab_size: int
    max_len: int
    per_replica_batch_size: int
    global_batch_size: int
    pad_id: int = 0
    condition_id_range: tuple[int, int] = (0, 0)  # [first, end) ids whose targets are masked


def build_datasets(corpus: Corpus, tokenizer: TextTokenizer, config: ExperimentConfig,
                   num_replicas: int = 1) -> Datasets:
    """Encode every split and batch it with the global batch (per-replica batch x replicas)."""
    if num_replicas < 1:
        raise ValueError(f"num_replicas={num_replicas}: must be at least 1")
    global_batch = config.batch_size * num_replicas
    splits = {}
    for name in ("train", "validation", "test"):
        documents = getattr(corpus, name)
        splits[name] = build_split(documents, tokenizer, config, global_batch,
                                   training=name == "train", conditions=corpus.conditions_of(name))
        log.info("%s: %d documents, %d target tokens, %d characters, %d batches of %d",
                 name, splits[name].documents, splits[name].tokens, splits[name].characters,
                 splits[name].steps, global_batch)
    return Datasets(**splits, vocab_size=tokenizer.vocab_size, max_len=config.max_len,
                    per_replica_batch_size=config.batch_size, global_batch_size=global_batch,
                    pad_id=tokenizer.pad_id, condition_id_range=tokenizer.condition_id_range)


def build_split(documents: Sequence[str], tokenizer: TextTokenizer, config: ExperimentConfig,
                global_batch: int, training: bool,
                conditions: Sequence[Conditions] | None = None) -> SplitData:
    """One split's SplitData; raises DataError when training data fills no batch.

    `conditions`: condition_columns' values per document (required when they are set).
    """
    max_len = config.max_len
    encoded = encode_documents(tokenizer, documents, config.seed)  # tiktoken where checked equal
    if config.condition_columns:
        if conditions is None or len(conditions) != len(documents):
            raise ValueError("condition_columns are set: pass one tuple of values per document "
                             "(Corpus.conditions_of(split))")
        prefixes = tokenizer.encode_conditions(config.condition_columns, conditions)
        encoded = [prefix + ids for prefix, ids in zip(prefixes, encoded)]
    masked = tokenizer.condition_id_range
    stream = token_stream(encoded, tokenizer.eos_id)  # (L,)
    all_targets = len(stream) - 1 - _count_in(stream[1:], masked)
    all_characters = sum(len(text) for text in documents) + len(documents)

    rows = None  # last_token gathers its windows per batch instead
    document_targets = np.asarray([len(ids) + 1 - _count_in(np.asarray(ids, np.int64), masked)
                                   for ids in encoded], np.int64)  # its ids and the closing [EOS]
    document_characters = np.asarray([len(text) + 1 for text in documents], np.int64)
    if config.objective == "last_token":
        count, tokens = len(stream) - 1, all_targets  # one window per target
        characters = all_characters
    elif config.packing:
        rows = packed_rows(stream, max_len, keep_remainder=not training)  # (R, T+1)
        count = len(rows)
        tokens = int(np.count_nonzero(rows[:, 1:])) - _count_in(rows[:, 1:], masked)
        characters = round(all_characters * tokens / max(all_targets, 1))  # train: tail cut
    else:
        rows = document_rows(encoded, max_len, tokenizer.bos_id, tokenizer.eos_id)  # (D, T+1)
        count = len(rows)
        tokens = int(np.count_nonzero(rows[:, 1:])) - _count_in(rows[:, 1:], masked)
        characters = _covered_characters(documents, encoded, max_len, tokenizer)
        document_targets = (np.count_nonzero(rows[:, 1:], axis=1)
                            - _count_in_rows(rows[:, 1:], masked)).astype(np.int64)  # truncated
        document_characters = np.asarray([_covered_characters([text], [ids], max_len, tokenizer)
                                          for text, ids in zip(documents, encoded)], np.int64)

    if training:
        steps = count // global_batch
        if steps == 0:
            raise DataError(f"the training split makes {count} rows of max_len+1={max_len + 1} "
                            f"tokens ({all_targets} tokens in {len(documents)} documents), fewer "
                            f"than one global batch of {global_batch}: lower batch_size or "
                            "max_len, or add documents")
        # One pass drops the last partial batch (different rows each epoch): expected counts.
        used = steps * global_batch / count
        tokens, characters = round(tokens * used), round(characters * used)
    else:
        steps = -(-count // global_batch)

    def rebuild(shuffle_seed: int | None = None) -> tf.data.Dataset:
        seed = config.seed if shuffle_seed is None else shuffle_seed
        made = (_last_token_dataset(stream, max_len, global_batch, training, seed, config, masked)
                if rows is None else _rows_dataset(rows, global_batch, training, seed, config, masked))
        return made.with_options(_options())

    layout = {} if training else {"document_targets": document_targets,
                                  "document_characters": document_characters}
    return SplitData(dataset=rebuild(), token_stream=stream, documents=len(documents),
                     tokens=int(tokens), characters=int(characters), steps=int(steps),
                     rebuild=rebuild, **layout)


def token_stream(encoded: Sequence[Sequence[int]], eos_id: int) -> np.ndarray:
    """[EOS] d1 [EOS] d2 ... dn [EOS] as int32: [EOS] both separates and starts a document."""
    flat = [eos_id]
    for ids in encoded:
        flat.extend(ids)
        flat.append(eos_id)
    return np.asarray(flat, dtype=np.int32)


def packed_rows(stream: np.ndarray, max_len: int, keep_remainder: bool) -> np.ndarray:
    """Rows of max_len + 1 tokens, stride max_len; the tail is [PAD]-filled or dropped."""
    targets = len(stream) - 1
    count = -(-targets // max_len) if keep_remainder else targets // max_len
    padded = np.zeros(count * max_len + 1, dtype=np.int32)  # (R*T + 1,) [PAD]-filled tail
    used = min(len(stream), len(padded))
    padded[:used] = stream[:used]
    starts = np.arange(count)[:, None] * max_len  # (R, 1)
    return padded[starts + np.arange(max_len + 1)]  # (R, T+1)


def document_rows(encoded: Sequence[Sequence[int]], max_len: int, bos_id: int,
                  eos_id: int) -> np.ndarray:
    """One row per document: [BOS] ids [EOS], truncated to max_len + 1, then [PAD]=0."""
    rows = np.zeros((len(encoded), max_len + 1), dtype=np.int32)  # (D, T+1)
    for row, ids in zip(rows, encoded):
        tokens = [bos_id, *ids, eos_id][:max_len + 1]
        row[:len(tokens)] = tokens
    return rows


def _covered_characters(documents: Sequence[str], encoded: Sequence[Sequence[int]], max_len: int,
                        tokenizer: TextTokenizer) -> int:
    """Characters predicted in document rows: a truncated document counts its kept part only."""
    total = 0
    for text, ids in zip(documents, encoded):
        if len(ids) + 1 <= max_len:  # its targets: all ids and the closing [EOS] (a separator)
            total += len(text) + 1
        else:  # targets are ids[:max_len]; the [EOS] was cut off
            total += len(tokenizer.decode(ids[:max_len]))
    return total


def _count_in(ids: np.ndarray, id_range: tuple[int, int]) -> int:
    """How many of `ids` lie in [first, end)."""
    first, end = id_range
    return int(np.count_nonzero((ids >= first) & (ids < end))) if end > first else 0


def _count_in_rows(rows: np.ndarray, id_range: tuple[int, int]) -> np.ndarray:
    """How many ids of each row lie in [first, end): (R,)."""
    first, end = id_range
    if end <= first:
        return np.zeros(len(rows), np.int64)
    return np.count_nonzero((rows >= first) & (rows < end), axis=1)


def _masked(targets: tf.Tensor, id_range: tuple[int, int]) -> tf.Tensor:
    """Targets with ids in [first, end) (condition tokens) replaced by [PAD]."""
    first, end = id_range
    if end <= first:
        return targets
    return tf.where((targets >= first) & (targets < end), tf.zeros_like(targets), targets)


def _rows_dataset(rows: np.ndarray, global_batch: int, training: bool, seed: int,
                  config: ExperimentConfig, masked: tuple[int, int] = (0, 0)) -> tf.data.Dataset:
    """(inputs, targets) batches from a (R, T+1) array of rows."""
    if not training:
        filler = -len(rows) % global_batch
        rows = np.concatenate([rows, np.zeros((filler, rows.shape[1]), np.int32)])  # all-[PAD]
    dataset = tf.data.Dataset.from_tensor_slices(rows)
    if training:
        dataset = dataset.cache().shuffle(min(config.shuffle_buffer, len(rows)), seed=seed,
                                          reshuffle_each_iteration=True)
    dataset = dataset.batch(global_batch, drop_remainder=True)  # (B, T+1)

    def inputs_and_targets(rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return rows[:, :-1], _masked(rows[:, 1:], masked)  # (B, T), (B, T)

    return dataset.map(inputs_and_targets, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)


def _last_token_dataset(stream: np.ndarray, max_len: int, global_batch: int, training: bool,
                        seed: int, config: ExperimentConfig,
                        masked: tuple[int, int] = (0, 0)) -> tf.data.Dataset:
    """Stride-1 windows gathered per batch from the stream (never materialised: ~T x its size).

    The stream is left-padded with max_len - 1 [PAD]s so the first window already predicts the
    token after the first [EOS]: the same targets as causal packing, one per window.
    """
    windows = len(stream) - 1
    # (T-1 pads) stream (T+1 pads): the trailing pads make an all-[PAD] window for batch filling.
    padded = np.concatenate([np.zeros(max_len - 1, np.int32), stream,
                             np.zeros(max_len + 1, np.int32)])
    starts = np.arange(windows, dtype=np.int64)
    if not training:
        filler = -windows % global_batch
        starts = np.concatenate([starts, np.full(filler, max_len - 1 + len(stream), np.int64)])
    padded_tokens = tf.constant(padded)
    offsets = tf.range(max_len + 1, dtype=tf.int64)

    def windows_of(batch_starts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        rows = tf.gather(padded_tokens, batch_starts[:, None] + offsets)  # (B, T+1)
        targets = tf.concat([tf.zeros_like(rows[:, 1:-1]), rows[:, -1:]], axis=1)  # (B, T)
        return rows[:, :-1], _masked(targets, masked)

    dataset = tf.data.Dataset.from_tensor_slices(starts)
    if training:
        dataset = dataset.cache().shuffle(min(config.shuffle_buffer, max(windows, 1)),
                                          seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(global_batch, drop_remainder=True).map(
        windows_of, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return dataset


def _options() -> tf.data.Options:
    """Shard by data, not by file: the arrays are in memory, so file sharding cannot apply."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def build_shard_datasets(shards: "TokenShards", tokenizer: TextTokenizer, config: ExperimentConfig,
                         num_replicas: int = 1) -> Datasets:
    """build_datasets for token shards on disk: the same packed causal rows and counts, read
    from the files as they are needed, so memory does not grow with the corpus."""
    if num_replicas < 1:
        raise ValueError(f"num_replicas={num_replicas}: must be at least 1")
    global_batch = config.batch_size * num_replicas
    splits = {name: shard_split(shards, name, tokenizer, config, global_batch, name == "train")
              for name in ("train", "validation", "test")}
    for name, split in splits.items():
        log.info("%s (shard): %d documents, %d target tokens, %d characters, %d batches of %d",
                 name, split.documents, split.tokens, split.characters, split.steps, global_batch)
    return Datasets(**splits, vocab_size=tokenizer.vocab_size, max_len=config.max_len,
                    per_replica_batch_size=config.batch_size, global_batch_size=global_batch,
                    pad_id=tokenizer.pad_id, condition_id_range=tokenizer.condition_id_range)


def shard_split(shards: "TokenShards", name: str, tokenizer: TextTokenizer,
                config: ExperimentConfig, global_batch: int, training: bool) -> SplitData:
    """One split read from its shard: rows of max_len + 1 tokens, stride max_len, as packed_rows."""
    max_len, info = config.max_len, shards.split(name)
    stream = shards.stream(name)  # (L,) memory-mapped
    all_targets = len(stream) - 1
    count = all_targets // max_len if training else -(-all_targets // max_len)
    tokens = count * max_len if training else all_targets  # a shard holds no [PAD]
    characters = round(info["characters"] * tokens / max(all_targets, 1))
    if training:
        steps = count // global_batch
        if steps == 0:
            raise DataError(f"the training shard {str(shards.path(name))!r} makes {count} rows of "
                            f"max_len+1={max_len + 1} tokens, fewer than one global batch of "
                            f"{global_batch}: lower batch_size or max_len, or add documents")
        used = steps * global_batch / count
        tokens, characters = round(tokens * used), round(characters * used)
    else:
        steps = -(-count // global_batch)

    def rebuild(shuffle_seed: int | None = None) -> tf.data.Dataset:
        rows = _shard_rows(shards, name, stream, count, max_len)
        if training:
            seed = config.seed if shuffle_seed is None else shuffle_seed
            rows = rows.shuffle(min(config.shuffle_buffer, count), seed=seed,
                                reshuffle_each_iteration=True)  # bounded: a buffer of rows
        else:
            filler = -count % global_batch
            rows = rows.concatenate(tf.data.Dataset.from_tensors(
                tf.zeros(max_len + 1, tf.int32)).repeat(filler))  # all-[PAD] rows
        masked = tokenizer.condition_id_range

        def inputs_and_targets(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return batch[:, :-1], _masked(batch[:, 1:], masked)  # (B, T), (B, T)

        # File readers leave the length unknown; Keras needs it to see where an epoch ends.
        return (rows.batch(global_batch, drop_remainder=True)
                .apply(tf.data.experimental.assert_cardinality(steps))
                .map(inputs_and_targets, num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE).with_options(_options()))

    layout = {} if training else _stream_layout(stream, tokenizer)
    return SplitData(dataset=rebuild(), token_stream=stream, documents=info["documents"],
                     tokens=int(tokens), characters=int(characters), steps=int(steps),
                     rebuild=rebuild, **layout)


def _stream_layout(stream: np.ndarray, tokenizer: TextTokenizer) -> dict[str, np.ndarray]:
    """A shard's document layout: targets from its [EOS] positions, characters by decoding each
    document (a shard keeps no text)."""
    stream = np.asarray(stream, np.int64)
    ends = np.flatnonzero(stream[1:] == tokenizer.eos_id) + 1
    starts = np.concatenate([[1], ends[:-1] + 1])
    texts = tokenizer.decode_batch([stream[a:b].tolist() for a, b in zip(starts, ends)])
    return {"document_targets": stream_document_targets(stream, tokenizer.condition_id_range),
            "document_characters": np.asarray([len(text) + 1 for text in texts], np.int64)}


def _shard_rows(shards: "TokenShards", name: str, stream: np.ndarray, count: int,
                max_len: int) -> tf.data.Dataset:
    """`count` rows (T+1,) int32 from a shard file, as packed_rows makes them from a stream.

    The file is read in blocks of SHARD_BLOCK_ROWS x T tokens; a block plus the first token of
    the next one frames into its rows (row j = tokens jT .. jT+T), so the per-row work is one
    slice. Rows the whole blocks do not cover (at most a block and a bit) come from the memory
    map, [PAD]-filled at the end of the stream.
    """
    itemsize, block_tokens = shards.dtype.itemsize, SHARD_BLOCK_ROWS * max_len
    whole_blocks = len(stream) // block_tokens
    from_file = min(count, max(0, whole_blocks - 1) * SHARD_BLOCK_ROWS)
    wire_type = tf.uint16 if itemsize == 2 else tf.int32  # uint32 ids < 2^31 read as int32

    tail_start = from_file * max_len
    tail = np.zeros((count - from_file) * max_len + 1, np.int32)  # (r*T + 1,)
    piece = np.asarray(stream[tail_start:tail_start + len(tail)], np.int32)
    tail[:len(piece)] = piece
    starts = np.arange(count - from_file)[:, None] * max_len
    tail_rows = tf.data.Dataset.from_tensor_slices(tail[starts + np.arange(max_len + 1)])  # (r, T+1)
    if from_file == 0:
        return tail_rows

    def decode(record: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.io.decode_raw(record, wire_type, little_endian=True), tf.int32)  # (K*T,)

    def rows_of(block: tf.Tensor, following: tf.Tensor) -> tf.Tensor:
        tokens = tf.concat([block, following[:1]], axis=0)  # (K*T + 1,)
        return tf.signal.frame(tokens, max_len + 1, max_len)  # (K, T+1)

    blocks = tf.data.FixedLengthRecordDataset(
        str(shards.path(name)), block_tokens * itemsize,
        footer_bytes=(len(stream) - whole_blocks * block_tokens) * itemsize).map(
            decode, num_parallel_calls=tf.data.AUTOTUNE)
    rows = (tf.data.Dataset.zip(blocks, blocks.skip(1))
            .map(rows_of, num_parallel_calls=tf.data.AUTOTUNE)
            .unbatch().take(from_file))  # (T+1,) in file order
    return rows.concatenate(tail_rows)
