"""Streaming preparation for corpora larger than memory: documents in chunks -> token shards.

Two passes over data_file, each holding one chunk of documents (a few MB) at a time:
1. read and clean every document; keep a 64-bit hash of each (for the exact-duplicate audit) and
   seeded random samples of the text (tokenizer_sample_mb for the tokenizer, audit_sample_mb for
   the near-duplicate index). Then the split is decided by document with today's sizes
   (split_sizes, seeded shuffle of the split labels) before anything is fitted, and the
   tokenizer is fitted on the training part of its sample only.
2. read and clean again; validation/test documents are checked against every train hash (exact)
   and the sampled shingle index (near), dropped as CONFIG says, and the kept documents are
   encoded and appended to their shard. A BPE tokenizer whose ids tiktoken reproduces (checked on
   the samples, data_pipeline/fast_bpe.py) encodes on worker processes while this one reads on
   (data_pipeline/parallel_encoding.py); otherwise the tokenizer's own batch encoding does.
Memory: 9 bytes per document (hash, split label), the two samples, one chunk and a few jobs.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from data_pipeline.cleaning import clean_text
from data_pipeline.config import ExperimentConfig
from data_pipeline.corpus import Corpus
from data_pipeline.errors import DataError
from data_pipeline.fast_bpe import checked_fast_encoder
from data_pipeline.near_duplicates import ShingleIndex
from data_pipeline.parallel_encoding import encode_in_order, job_parts, worker_count
from data_pipeline.shards import (SPLITS, ShardWriter, TokenShards, find_shards, partial_folder,
                                  publish, token_dtype)
from data_pipeline.sources import (BUILTIN_CORPORA, check_local_file, download, python_encoding,
                                   read_fortunes, with_text_column)
from data_pipeline.splitting import split_sizes
from data_pipeline.tokenizer import TextTokenizer, fit_or_load_tokenizer, read_manifest

log = logging.getLogger("data_pipeline")

CHUNK_BYTES = 8_000_000  # text read, cleaned and encoded at a time
CSV_CHUNK_ROWS = 200_000
AUDIT_ADD_DOCUMENTS = 20_000  # sampled documents indexed at a time (their word lists are large)
QUALITY_SAMPLE_TOKENS = 1_000_000  # train tokens decoded back into Corpus.train (sample metrics)


@dataclass(frozen=True)
class StreamedData:
    """What streaming preparation hands on: the shards, their tokenizer, and a Corpus whose
    `train` is a sample of training documents (validation/test live only in the shards)."""

    corpus: Corpus
    tokenizer: TextTokenizer
    shards: TokenShards


def streaming_problem(config: ExperimentConfig) -> str | None:
    """Why CONFIG cannot be prepared by streaming (a setting and its fix), or None."""
    if config.condition_columns:
        return ("condition_columns are not supported by streaming preparation: set "
                "condition_columns=[] or data_preparation='memory'")
    if config.split == "chronological":
        return ("split='chronological' sorts every document by date, which streaming preparation "
                "does not: use split='random' or 'ordered', or data_preparation='memory'")
    if config.sample_size is not None and config.sample_strategy == "random":
        return ("sample_strategy='random' is not supported by streaming preparation: use "
                "sample_strategy='first' or data_preparation='memory'")
    if config.objective != "causal" or not config.packing:
        return ("streaming preparation trains on packed causal rows only: set objective='causal' "
                "and packing=True, or data_preparation='memory'")
    return None


def uses_streaming(config: ExperimentConfig) -> bool:
    """Whether CONFIG's data is prepared by streaming: asked for, or 'auto' and a large local file.

    Raises a DataError when streaming is asked for but a setting rules it out.
    """
    problem = streaming_problem(config)
    if config.data_preparation == "streaming":
        if problem:
            raise DataError(f"data_preparation='streaming': {problem}")
        return True
    if config.data_preparation == "memory" or problem or config.data_file in BUILTIN_CORPORA:
        return False
    path = Path(config.data_file)
    return path.is_file() and path.stat().st_size >= config.streaming_min_mb * 1e6


def prepare_streamed(config: ExperimentConfig) -> StreamedData:
    """Token shards and tokenizer for CONFIG, reused when the data and tokenizer still match."""
    check_streamed_source(config)
    source, path = _local_source(config)
    config = with_text_column(config, path)  # guessed once, before the fingerprint
    fingerprint = data_fingerprint(config, path)
    existing = _matching_shards(config, fingerprint)
    if existing is not None:
        log.info("token shards %s reused: data and tokenizer fingerprints match", existing.folder)
        tokenizer = TextTokenizer.load(config.tokenizer_path)
        return StreamedData(_sample_corpus(existing, tokenizer), tokenizer, existing)
    shards, tokenizer = _prepare(config, source, path, fingerprint)
    return StreamedData(_sample_corpus(shards, tokenizer), tokenizer, shards)


def check_streamed_source(config: ExperimentConfig) -> None:
    """The fast checks of prepare_streamed (settings, file, CSV column), before anything slow."""
    problem = streaming_problem(config)
    if problem:
        raise DataError(f"data_preparation='streaming': {problem}")
    _local_source(config)


def data_fingerprint(config: ExperimentConfig, path: Path | None) -> str:
    """sha256 of the file's bytes and every setting that shapes the shards."""
    settings = {key: config.to_dict()[key] for key in (
        "text_column", "encoding", "cleaning", "sample_size", "sample_strategy", "split",
        "split_fractions", "seed", "drop_cross_split_duplicates", "near_duplicate_words",
        "drop_near_duplicates", "tokenizer", "vocab_size", "tokenizer_sample_mb",
        "audit_sample_mb")}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    if path is None:  # the built-in corpus: its texts
        for text in read_fortunes().texts:
            digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    else:
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def _matching_shards(config: ExperimentConfig, fingerprint: str) -> TokenShards | None:
    """Shards from this data made with the tokenizer now at tokenizer_path, if both exist."""
    manifest = read_manifest(config.tokenizer_path)
    if manifest is None or not Path(config.tokenizer_path).is_file():
        return None
    return find_shards(config.shards_dir, fingerprint, str(manifest.get("fingerprint", "")))


def _local_source(config: ExperimentConfig) -> tuple[str, Path | None]:
    """(the name reports use, the local file to read; None for the built-in corpus)."""
    data_file = config.data_file
    if data_file in BUILTIN_CORPORA:
        return data_file, None
    if data_file.startswith(("http://", "https://")):
        check = Path(urlsplit(data_file).path)
        if check.suffix.lower() not in (".csv", ".txt"):
            raise DataError(f"data_file {data_file!r} has suffix {check.suffix!r}; supported are "
                            "['.csv', '.txt']")
        return data_file, download(data_file, config)
    if "://" in data_file:
        raise DataError(f"data_file {data_file!r}: only http:// and https:// URLs can be "
                        "downloaded; download it yourself and give the local path")
    path = Path(data_file)
    check_local_file(path, data_file)
    if path.suffix.lower() == ".csv":
        columns = pd.read_csv(path, nrows=0, encoding=python_encoding(config.encoding)).columns
        if config.text_column is not None and config.text_column not in columns:
            raise DataError(f"data_file {data_file!r} has no column text_column="
                            f"{config.text_column!r}; its columns are {list(columns)}: set "
                            "CONFIG['text_column'] to one of them")
    return data_file, path


class _Reader:
    """Cleaned documents in file order, one chunk at a time, counting what was dropped."""

    def __init__(self, config: ExperimentConfig, source: str, path: Path | None) -> None:
        self.config, self.source, self.path = config, source, path
        self.rows_read = self.empty_rows = self.empty_after_cleaning = 0

    def chunks(self) -> Iterator[list[str]]:
        steps, limit, kept = self.config.cleaning_steps, self.config.sample_size, 0
        self.rows_read = self.empty_rows = self.empty_after_cleaning = 0
        for rows in self._raw_chunks():
            self.rows_read += len(rows)
            present = [text for text in rows if text.strip()]
            self.empty_rows += len(rows) - len(present)
            cleaned = [clean_text(text, steps) for text in present]
            documents = [text for text in cleaned if text]
            self.empty_after_cleaning += len(cleaned) - len(documents)
            if limit is not None:
                documents = documents[:limit - kept]
            kept += len(documents)
            if documents:
                yield documents
            if limit is not None and kept >= limit:
                return

    def _raw_chunks(self) -> Iterator[list[str]]:
        if self.path is None:  # the built-in corpus is small: one list, cut into chunks
            texts = read_fortunes().texts
            for start in range(0, len(texts), 20_000):
                yield texts[start:start + 20_000]
        elif self.path.suffix.lower() == ".csv":
            yield from self._csv_chunks()
        else:
            yield from self._line_chunks()

    def _line_chunks(self) -> Iterator[list[str]]:
        """One document per line (split on "\\n" only, "\\r" dropped), as sources.read_file."""
        decoder = codecs.getincrementaldecoder(python_encoding(self.config.encoding))()
        carry, offset = "", 0
        with self.path.open("rb") as handle:
            while True:
                block = handle.read(CHUNK_BYTES)
                try:
                    text = carry + decoder.decode(block, final=not block)
                except UnicodeDecodeError as error:
                    raise DataError(f"data_file {self.source!r} is not valid {self.config.encoding} "
                                    f"(near byte offset {offset + error.start}): set "
                                    "CONFIG['encoding'] to the file's encoding, e.g. 'latin-1'") from None
                offset += len(block)
                lines = text.split("\n")
                carry = lines.pop() if block else ""
                if not block and lines and lines[-1] == "":
                    lines.pop()  # the newline that ends the last line starts no document
                yield [line.removesuffix("\r") for line in lines]
                if not block:
                    return

    def _csv_chunks(self) -> Iterator[list[str]]:
        try:
            reader = pd.read_csv(self.path, dtype=str, encoding=python_encoding(self.config.encoding),
                                 keep_default_na=False, na_values=[""], usecols=[self.config.text_column],
                                 chunksize=CSV_CHUNK_ROWS)
            for frame in reader:
                yield frame[self.config.text_column].fillna("").tolist()
        except UnicodeDecodeError:
            raise DataError(f"data_file {self.source!r} is not valid {self.config.encoding}: set "
                            "CONFIG['encoding'] to the file's encoding, e.g. 'latin-1'") from None
        except pd.errors.ParserError as error:
            raise DataError(f"data_file {self.source!r} is not a readable CSV "
                            f"({str(error).strip()}): check its quoting and delimiters") from None


def _prepare(config: ExperimentConfig, source: str, path: Path | None,
             fingerprint: str) -> tuple[TokenShards, TextTokenizer]:
    reader = _Reader(config, source, path)
    total_bytes = path.stat().st_size if path is not None else 5e6
    tokenizer_share = min(1.0, config.tokenizer_sample_mb * 1e6 / total_bytes)
    audit_share = min(1.0, config.audit_sample_mb * 1e6 / total_bytes)

    # Pass 1: a hash per document, and the seeded samples (index, draw, text).
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    hash_chunks, samples, count = [], [], 0
    for documents in reader.chunks():
        hash_chunks.append(np.fromiter(map(hash, documents), np.int64, count=len(documents)))
        draws = rng.random(len(documents))
        for i in np.flatnonzero(draws < max(tokenizer_share, audit_share)):
            samples.append((count + int(i), float(draws[i]), documents[i]))
        count += len(documents)
    if count == 0:
        raise DataError(f"all {reader.rows_read} documents of {source!r} are empty after "
                        f"cleaning={config.cleaning!r}: use cleaning='none' or another data_file")

    # The split, by document, before anything is fitted: today's sizes, a seeded order.
    sizes = split_sizes(count, config.split_fractions)
    labels = np.repeat(np.arange(3, dtype=np.uint8), sizes)  # (N,) 0 train, 1 validation, 2 test
    if config.split == "random":
        np.random.default_rng(config.seed).shuffle(labels)
    hashes = np.concatenate(hash_chunks)
    del hash_chunks
    train_hashes = np.unique(hashes[labels == 0])
    before_test_hashes = np.unique(hashes[labels <= 1])
    del hashes

    def sampled(split: int, share: float) -> list[str]:
        return [text for index, draw, text in samples if labels[index] == split and draw < share]

    seconds["read_clean_split"] = time.perf_counter() - started
    started = time.perf_counter()
    tokenizer = fit_or_load_tokenizer(sampled(0, tokenizer_share), config)
    seconds["tokenizer_fit"] = time.perf_counter() - started
    started = time.perf_counter()
    train_index, validation_index = ShingleIndex(config.near_duplicate_words), ShingleIndex(config.near_duplicate_words)
    train_audit = sampled(0, audit_share)
    for index, documents in ((train_index, train_audit), (validation_index, sampled(1, audit_share))):
        for first in range(0, len(documents), AUDIT_ADD_DOCUMENTS):  # bounds the word lists
            index.add(documents[first:first + AUDIT_ADD_DOCUMENTS])
    audited_train_documents = len(train_audit)
    tokenizer_documents = len(sampled(0, tokenizer_share))
    seconds["audit_index"] = time.perf_counter() - started
    started = time.perf_counter()
    fast = checked_fast_encoder(tokenizer, [text for _, _, text in samples], config.seed)
    del samples, train_audit
    seconds["encode_check"] = time.perf_counter() - started
    started = time.perf_counter()

    # Pass 2: audit held-out documents, encode and append every kept one to its shard. This
    # process reads and audits the next chunk while worker processes encode the last ones.
    folder = partial_folder(config.shards_dir)
    dtype = token_dtype(tokenizer.vocab_size)
    writers = {name: ShardWriter(folder / f"{name}.bin", dtype, tokenizer.eos_id) for name in SPLITS}
    audit = {name: {"exact": 0, "near": 0, "near_characters": 0, "characters": 0, "kept": 0}
             for name in SPLITS[1:]}

    def encode_jobs() -> Iterator[tuple[tuple[str, int], list[str]]]:
        """((split name, characters), texts) of every kept document, in file order per split."""
        start = 0
        for documents in reader.chunks():
            chunk_labels = labels[start:start + len(documents)]
            start += len(documents)
            chunk_hashes = np.fromiter(map(hash, documents), np.int64, count=len(documents))
            for split, name in enumerate(SPLITS):
                chosen = np.flatnonzero(chunk_labels == split)
                texts = [documents[i] for i in chosen]
                if split > 0 and texts:
                    auditing = time.perf_counter()
                    texts = _audited(texts, chunk_hashes[chosen], split, train_hashes,
                                     before_test_hashes, train_index, validation_index, config,
                                     audit[name])
                    seconds["held_out_audit"] = (seconds.get("held_out_audit", 0.0)
                                                 + time.perf_counter() - auditing)
                for part in job_parts(texts):
                    yield (name, sum(map(len, part))), part

    workers = worker_count() if fast is not None else 1
    for (name, characters), ids, lengths in encode_in_order(encode_jobs(), tokenizer, fast, dtype,
                                                            workers, seconds):
        writers[name].write_ids(ids, lengths, characters)
    written = {name: writer.close() for name, writer in writers.items()}
    for split, name in enumerate(SPLITS[1:], start=1):
        if sizes[split] and not written[name]["documents"]:
            raise DataError(f"every {name} document repeats or shares a run of "
                            f"{config.near_duplicate_words} words with an earlier split, so "
                            "dropping duplicates leaves it empty: add distinct documents or set "
                            "drop_cross_split_duplicates/drop_near_duplicates=False")

    seconds["reread_audit_encode_write"] = time.perf_counter() - started
    report = _report(config, source, reader, count, sizes, written, audit,
                     audited_train_documents, tokenizer_documents)
    report["encoder"] = f"tiktoken, {workers} process(es)" if fast is not None else "tokenizers"
    report.update({f"seconds_{stage}": round(value, 3) for stage, value in seconds.items()})
    log.info("corpus %s", report)
    shards = publish(folder, {"data_fingerprint": fingerprint,
                              "tokenizer_fingerprint": tokenizer.fingerprint,
                              "dtype": dtype.name, "vocab_size": tokenizer.vocab_size,
                              "splits": written, "report": report})
    log.info("token shards written to %s (%s)", shards.folder, dtype.name)
    return shards, tokenizer


def _audited(texts: list[str], hashes: np.ndarray, split: int, train_hashes: np.ndarray,
             before_test_hashes: np.ndarray, train_index: ShingleIndex,
             validation_index: ShingleIndex, config: ExperimentConfig,
             counts: dict[str, int]) -> list[str]:
    """The held-out texts CONFIG keeps; exact and near-duplicates counted in `counts`."""
    reference = train_hashes if split == 1 else before_test_hashes
    exact = _in_sorted(hashes, reference)
    near = train_index.matches(texts)
    if split == 2:  # test is also checked against validation, as in memory
        near |= validation_index.matches(texts)
    near &= ~exact
    lengths = np.fromiter(map(len, texts), np.int64, count=len(texts))
    counts["exact"] += int(exact.sum())
    counts["near"] += int(near.sum())
    counts["near_characters"] += int(lengths[near].sum())
    counts["characters"] += int(lengths.sum())
    dropped = exact & config.drop_cross_split_duplicates | near & config.drop_near_duplicates
    counts["kept"] += int((~dropped).sum())
    return [text for text, drop in zip(texts, dropped) if not drop]


def _in_sorted(values: np.ndarray, sorted_reference: np.ndarray) -> np.ndarray:
    if not len(sorted_reference):
        return np.zeros(len(values), bool)
    slots = np.minimum(np.searchsorted(sorted_reference, values), len(sorted_reference) - 1)
    return sorted_reference[slots] == values


def _report(config: ExperimentConfig, source: str, reader: _Reader, count: int,
            sizes: tuple[int, int, int], written: dict[str, dict[str, Any]],
            audit: dict[str, dict[str, int]], audited_train: int,
            tokenizer_documents: int) -> dict[str, int | float | str]:
    """The corpus report of load_corpus, plus how much of train the samples covered."""
    exact = sum(counts["exact"] for counts in audit.values())
    near = sum(counts["near"] for counts in audit.values())
    share = lambda name: round(audit[name]["near_characters"] / max(audit[name]["characters"], 1), 4)  # noqa: E731
    return {
        "source": source,
        "preparation": "streaming",
        "rows_read": reader.rows_read,
        "empty_rows_dropped": reader.empty_rows,
        "empty_after_cleaning_dropped": reader.empty_after_cleaning,
        "not_sampled": 0,
        "documents": count,
        "cleaning": ",".join(config.cleaning_steps) or "none",
        "split": config.split,
        "train_documents": written["train"]["documents"],
        "validation_documents": written["validation"]["documents"],
        "test_documents": written["test"]["documents"],
        "cross_split_duplicates_found": exact,
        "cross_split_duplicates_dropped": exact if config.drop_cross_split_duplicates else 0,
        "near_duplicate_words": config.near_duplicate_words,
        "near_duplicate_audit_train_documents": audited_train,
        "validation_near_duplicates": audit["validation"]["near"],
        "validation_near_duplicate_character_share": share("validation"),
        "test_near_duplicates": audit["test"]["near"],
        "test_near_duplicate_character_share": share("test"),
        "near_duplicates_dropped": near if config.drop_near_duplicates else 0,
        "tokenizer_sample_documents": tokenizer_documents,
    }


def _sample_corpus(shards: TokenShards, tokenizer: TextTokenizer) -> Corpus:
    """A Corpus for the sample-based quality metrics: train documents decoded from the start of
    the train shard; validation and test are read from their shards, never held as text."""
    stream = np.asarray(shards.stream("train")[:QUALITY_SAMPLE_TOKENS], np.int64)
    ends = np.flatnonzero(stream == tokenizer.eos_id)  # (D+1,) document boundaries
    pieces = [stream[a + 1:b] for a, b in zip(ends[:-1], ends[1:])]
    report = dict(shards.manifest["report"])
    report["quality_sample_documents"] = len(pieces)
    return Corpus(train=tokenizer.decode_batch(pieces), validation=[], test=[],
                  source=str(report["source"]), report=report)
