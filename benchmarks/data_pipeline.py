"""Data pipeline speed: near-duplicate audit, tokenizer fit, encode MB/s, tf.data batches per second.

Run `python -m benchmarks.data_pipeline [--quick]`. Measures the built-in corpus and, when it is
there, the ABC headlines sample beside the repo, each with the BPE and the character tokenizer.
Encode, audit and iteration figures are the best of a few runs (the least disturbed on a shared
machine). The near-duplicate audit (data_pipeline.splitting.near_duplicate_flags) is timed on the
split load_corpus kept (goal: <= 2 s on the built-in corpus).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.common import ABC_HEADLINES, best_of, load_average, parse_args, report, write_results
from data_pipeline.config import ExperimentConfig
from data_pipeline.corpus import load_corpus
from data_pipeline.datasets import build_datasets
from data_pipeline.splitting import near_duplicate_flags
from data_pipeline.tokenizer import fit_or_load_tokenizer

NAME = "data_pipeline"
FULL = {"repeats": 3, "max_batches": 2000}  # enough for a stable batches/s on any corpus size
QUICK = {"repeats": 1, "max_batches": 50}


def batches_per_second(dataset: Any, limit: int) -> tuple[float, int]:
    """One full pass that fills the cache, then a timed pass (at most `limit` batches)."""
    for _ in dataset:
        pass
    start, count = time.perf_counter(), 0
    for _ in dataset.take(limit):
        count += 1
    return count / (time.perf_counter() - start), count


def measure(corpus_name: str, data_file: str, tokenizer_kind: str, workdir: Path,
            settings: dict[str, int]) -> dict[str, Any]:
    config = ExperimentConfig.from_dict({
        "data_file": data_file, "tokenizer": tokenizer_kind,
        "tokenizer_path": str(workdir / f"{corpus_name}-{tokenizer_kind}.json")})
    start = time.perf_counter()
    corpus = load_corpus(config)
    load_seconds = time.perf_counter() - start
    audit_seconds = best_of(lambda: near_duplicate_flags(corpus.train, corpus.validation, corpus.test,
                                                         config.near_duplicate_words),
                            settings["repeats"]).wall_seconds

    start = time.perf_counter()
    tokenizer = fit_or_load_tokenizer(corpus.train, config)
    fit_seconds = time.perf_counter() - start

    megabytes = sum(len(text.encode("utf-8")) for text in corpus.train) / 1e6
    encode_seconds = best_of(lambda: tokenizer.encode_batch(corpus.train), settings["repeats"]).wall_seconds

    start = time.perf_counter()
    datasets = build_datasets(corpus, tokenizer, config)
    build_seconds = time.perf_counter() - start
    rate, measured = batches_per_second(datasets.train.dataset, settings["max_batches"])
    tokens_per_batch = datasets.train.tokens / max(datasets.train.steps, 1)
    return {
        "corpus": corpus_name,
        "tokenizer": tokenizer_kind,
        "documents": corpus.report["documents"],
        "train_megabytes": round(megabytes, 3),
        "vocab_size": tokenizer.vocab_size,
        "load_clean_split_s": round(load_seconds, 3),
        "near_duplicate_audit_s": round(audit_seconds, 3),
        "validation_near_duplicates": corpus.report["validation_near_duplicates"],
        "test_near_duplicates": corpus.report["test_near_duplicates"],
        "tokenizer_fit_s": round(fit_seconds, 3),
        "encode_mb_per_s": round(megabytes / encode_seconds, 2),
        "build_datasets_s": round(build_seconds, 3),
        "train_batches_per_s": round(rate, 1),
        "train_tokens_per_s": round(rate * tokens_per_batch),
        "batches_timed": measured,
        "batch_shape": f"{datasets.global_batch_size}x{datasets.max_len}",
        "load_average": load_average(),
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    started = time.perf_counter()
    settings = QUICK if args.quick else FULL
    corpora = {"fortunes": "fortunes"}
    if ABC_HEADLINES.is_file() and not args.quick:
        corpora["abc_headlines"] = str(ABC_HEADLINES)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name, data_file in corpora.items():
            for kind in ("bpe", "char"):
                rows.append(measure(name, data_file, kind, Path(workdir), settings))
    path = write_results(NAME, {"results": rows}, args.quick, started)
    report(NAME, rows, path)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
