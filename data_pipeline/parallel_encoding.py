"""Bulk encoding on every core, overlapped with whatever produces the texts.

tiktoken holds the GIL while it encodes, so threads do not add speed: worker processes do. Each
worker builds the fast encoder once (pool initializer) and returns numpy arrays (ids in the
shard dtype, and lengths), which cross the process boundary far cheaper than lists of ints.
Jobs are pulled from the caller's iterator only as results are taken, at most IN_FLIGHT_PER_WORKER
per worker ahead, so the caller's reading and auditing run while the workers encode and memory
stays bounded. Workers start from a fresh interpreter ('forkserver', else 'spawn'): forking a
parent that has loaded TensorFlow, or used HF tokenizers' threads, is not safe.
"""

from __future__ import annotations

import collections
import itertools
import logging
import multiprocessing
import os
import time
from typing import Any, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from data_pipeline.fast_bpe import FastBpeSettings, encode_arrays
from data_pipeline.tokenizer import TextTokenizer

log = logging.getLogger("data_pipeline")

Key = TypeVar("Key")
IN_FLIGHT_PER_WORKER = 2  # one job encoding, one queued: workers never wait for the reader's next
JOB_CHARACTERS = 1_000_000  # texts per job: small enough to spread a chunk over the workers
WORKER_START_SECONDS = 60  # a worker answers in ~1 s; minutes only on a badly overloaded machine

_worker_encoder: Any = None  # each worker process's encoder, built once by _start_worker
_worker_dtype: np.dtype | None = None


def worker_count() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def job_parts(texts: Sequence[str]) -> Iterator[Sequence[str]]:
    """`texts` cut into consecutive parts of about JOB_CHARACTERS characters: one job each."""
    start, characters = 0, 0
    for end, text in enumerate(texts, start=1):
        characters += len(text)
        if characters >= JOB_CHARACTERS:
            yield texts[start:end]
            start, characters = end, 0
    if start < len(texts):
        yield texts[start:]


def encode_in_order(jobs: Iterable[tuple[Key, Sequence[str]]], tokenizer: TextTokenizer,
                    settings: FastBpeSettings | None, dtype: np.dtype, workers: int,
                    seconds: dict[str, float]) -> Iterator[tuple[Key, np.ndarray, np.ndarray]]:
    """(key, ids (N,) of dtype, lengths (D,)) for each job, in job order.

    With `settings` (a checked fast encoder) on `workers` processes (in this one when 1);
    without, by tokenizer.encode_batch here. `seconds` gains "encode" (this process encoding or
    waiting for encoded jobs) and "encode_workers" (time spent encoding, summed over workers).
    """
    if settings is not None and workers > 1:
        pool = _started_pool(settings, dtype, workers)
        if pool is not None:
            yield from _pooled(pool, jobs, workers, seconds)
            return
    if settings is not None:
        encoder = settings.encoder()
        encode = lambda texts: encode_arrays(encoder, texts, dtype)  # noqa: E731
    else:
        encode = lambda texts: _arrays(tokenizer.encode_batch(texts), dtype)  # noqa: E731
    for key, texts in jobs:
        started = time.perf_counter()
        ids, lengths = encode(texts)
        spent = time.perf_counter() - started
        seconds["encode"] = seconds.get("encode", 0.0) + spent
        seconds["encode_workers"] = seconds.get("encode_workers", 0.0) + spent
        yield key, ids, lengths


def _started_pool(settings: FastBpeSettings, dtype: np.dtype, workers: int) -> Any:
    """A pool whose workers answered, or None (and one log line why).

    A worker that fails while starting is restarted by the pool forever; waiting for one answer
    turns that into a fallback instead of a hang.
    """
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    pool = multiprocessing.get_context(method).Pool(workers, initializer=_start_worker,
                                                    initargs=(settings, dtype.str))
    try:
        pool.apply_async(_encode_job, ([""],)).get(timeout=WORKER_START_SECONDS)
        return pool
    except Exception as error:  # a timeout, or the worker's own error
        pool.terminate()
        pool.join()
        log.info("encoding in this process only: worker processes did not start within %d s (%s); "
                 "a script that prepares data must run it under `if __name__ == '__main__':`",
                 WORKER_START_SECONDS, type(error).__name__)
        return None


def _pooled(pool: Any, jobs: Iterable[tuple[Key, Sequence[str]]], workers: int,
            seconds: dict[str, float]) -> Iterator[tuple[Key, np.ndarray, np.ndarray]]:
    pending: collections.deque[tuple[Key, Any]] = collections.deque()
    finished = False
    try:
        for key, texts in itertools.chain(jobs, [(None, None)]):
            if texts is not None:
                pending.append((key, pool.apply_async(_encode_job, (list(texts),))))
            while pending and (texts is None or len(pending) >= workers * IN_FLIGHT_PER_WORKER):
                done_key, result = pending.popleft()
                started = time.perf_counter()
                ids, lengths, spent = result.get()
                seconds["encode"] = seconds.get("encode", 0.0) + time.perf_counter() - started
                seconds["encode_workers"] = seconds.get("encode_workers", 0.0) + spent
                yield done_key, ids, lengths
        finished = True
    finally:
        if finished:
            pool.close()
        else:  # an error (or the caller stopped early): drop the queued jobs
            pool.terminate()
        pool.join()


def _start_worker(settings: FastBpeSettings, dtype: str) -> None:
    global _worker_encoder, _worker_dtype
    _worker_encoder, _worker_dtype = settings.encoder(), np.dtype(dtype)


def _encode_job(texts: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
    started = time.perf_counter()
    ids, lengths = encode_arrays(_worker_encoder, texts, _worker_dtype)
    return ids, lengths, time.perf_counter() - started


def _arrays(encoded: Sequence[Sequence[int]], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter(map(len, encoded), np.int64, count=len(encoded))  # (D,)
    ids = np.fromiter(itertools.chain.from_iterable(encoded), dtype, count=int(lengths.sum()))  # (N,)
    return ids, lengths
