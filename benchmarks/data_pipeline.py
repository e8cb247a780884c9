"""Data pipeline speed: near-duplicate audit, tokenizer fit, encode MB/s, tf.data batches per second.

Run `python -m benchmarks.data_pipeline [--quick]`. Measures the built-in corpus and, when it is
there, the ABC headlines sample beside the repo, each with the BPE and the character tokenizer.
Encode, audit and iteration figures are the best of a few runs (the least disturbed on a shared
machine). The near-duplicate audit (data_pipeline.splitting.near_duplicate_flags) is timed on the
split load_corpus kept (goal: <= 2 s on the built-in corpus).

`python -m benchmarks.data_pipeline --large 72,300,1000` measures streaming preparation instead:
for each size (MB) it writes a corpus of the built-in texts, one per line, each with a numbered
suffix so that de-duplication keeps it (into benchmarks/results/large_corpus/, ignored by git,
deleted afterwards), prepares it in a child process with data_preparation='streaming' and
reports MB/s per stage and the child's peak resident memory. It then compares training steps/s
of a small GRU fed from token shards with the same rows fed from memory (paired rounds, one
process). Goals: >= 20 MB/s end to end, peak RSS <= 2 GB at 1 GB, steps/s within 2%.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.common import (ABC_HEADLINES, MEASURED_DEFAULTS, best_of, load_average, parse_args, report, run_worker,
                               served_as_worker, write_results)
from data_pipeline.config import ExperimentConfig
from data_pipeline.corpus import load_corpus
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
    from data_pipeline.datasets import build_datasets  # TensorFlow: not in the streaming worker
    config = ExperimentConfig.from_dict({
        **MEASURED_DEFAULTS, "data_file": data_file, "tokenizer": tokenizer_kind,
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


LARGE_DIR = Path(__file__).resolve().parent / "results" / "large_corpus"
GOALS = {"end_to_end_mb_per_s": 20.0, "peak_rss_mb_at_1gb": 2048, "steps_overhead": 0.02}


def write_large_corpus(path: Path, megabytes: float) -> int:
    """The built-in texts, one per line, numbered so each is distinct, until `megabytes`."""
    from data_pipeline.sources import read_fortunes

    texts = [" ".join(text.split()) for text in read_fortunes().texts]
    target, written, number = megabytes * 1e6, 0, 0
    with path.open("w", encoding="utf-8") as handle:
        while written < target:
            block = "".join(f"{text} ~{number + i:x}\n" for i, text in enumerate(texts))
            number += len(texts)
            handle.write(block)
            written += len(block.encode("utf-8"))
    return written


def streaming_worker(arguments: dict[str, Any]) -> dict[str, Any]:
    """Prepare one corpus by streaming, in its own process (so its peak memory is its own)."""
    from data_pipeline.streaming import data_fingerprint, prepare_streamed

    workdir, data_file = Path(arguments["workdir"]), arguments["data_file"]
    config = ExperimentConfig.from_dict({
        **MEASURED_DEFAULTS, "data_file": data_file, "data_preparation": "streaming",
        "shards_dir": str(workdir / "shards"), "tokenizer_path": str(workdir / "tokenizer.json"),
        # The numbered copies share their word runs: audit and count them, keep them.
        "drop_near_duplicates": False})
    start = time.perf_counter()
    data_fingerprint(config, Path(data_file))
    fingerprint_seconds = time.perf_counter() - start
    start = time.perf_counter()
    streamed = prepare_streamed(config)
    total = time.perf_counter() - start
    megabytes = Path(data_file).stat().st_size / 1e6
    report_ = streamed.corpus.report
    stages = {key.removeprefix("seconds_"): value for key, value in report_.items()
              if key.startswith("seconds_")}
    row = {"megabytes": round(megabytes), "documents": report_["documents"],
           "end_to_end_mb_per_s": round(megabytes / total, 2), "end_to_end_s": round(total, 1),
           "fingerprint_mb_per_s": round(megabytes / fingerprint_seconds, 1)}
    row.update({f"{stage}_mb_per_s": round(megabytes / max(value, 1e-9), 2)
                for stage, value in stages.items()})
    row.update({"shard_dtype": streamed.shards.dtype.name,
                "train_tokens": streamed.shards.split("train")["tokens"],
                "peak_rss_mb": round(_status_mb("VmHWM")), "load_average": load_average()})
    return row


def steps_worker(arguments: dict[str, Any]) -> dict[str, Any]:
    """Training steps/s of one model fed from shards and from memory: the same rows, paired rounds."""
    import statistics

    import tensorflow as tf

    from data_pipeline.datasets import build_datasets, build_shard_datasets
    from data_pipeline.streaming import prepare_streamed
    from model_architectures.registry import build_model
    from training_assets.compile import compile_model

    workdir, rounds, steps = Path(arguments["workdir"]), arguments["rounds"], arguments["steps"]
    config = ExperimentConfig.from_dict({
        **MEASURED_DEFAULTS, "data_file": "fortunes", "split": "ordered", "data_preparation": "streaming",
        "shards_dir": str(workdir / "shards"), "tokenizer_path": str(workdir / "steps-tokenizer.json")})
    streamed = prepare_streamed(config)
    memory = build_datasets(load_corpus(config.model_copy(update={"data_preparation": "memory"})),
                            streamed.tokenizer, config)
    shards = build_shard_datasets(streamed.shards, streamed.tokenizer, config)
    model = build_model("gru", None, shards.vocab_size, shards.max_len)
    compile_model(model, config, 1e-3, 10_000, tf.distribute.get_strategy())
    feeds = {"shards": shards.train.dataset.repeat(), "memory": memory.train.dataset.repeat()}
    for dataset in feeds.values():  # trace and warm both
        model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
    seconds: dict[str, list[float]] = {name: [] for name in feeds}
    for _ in range(rounds):
        for name, dataset in feeds.items():
            start = time.perf_counter()
            model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
            seconds[name].append((time.perf_counter() - start) / steps)
    paired = [shard / memory - 1 for shard, memory in zip(seconds["shards"], seconds["memory"])]
    return {"model": "gru (default size)", "batch": f"{shards.global_batch_size}x{shards.max_len}",
            "shards_steps_per_s": round(1 / min(seconds["shards"]), 2),
            "memory_steps_per_s": round(1 / min(seconds["memory"]), 2),
            "shards_overhead_median": round(statistics.median(paired), 4),
            "rounds": rounds, "steps_per_round": steps, "load_average": load_average()}


def _status_mb(field: str) -> float:
    """A /proc/self/status memory figure (VmHWM: this process's peak resident memory)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def large(sizes: list[float], quick: bool, started: float) -> None:
    LARGE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=LARGE_DIR) as workdir:
        steps = run_worker(NAME, {"task": "steps", "workdir": workdir,
                                  "rounds": 2 if quick else 8, "steps": 5 if quick else 20})
        print(steps, flush=True)
    rows = []
    for megabytes in sizes:
        with tempfile.TemporaryDirectory(dir=LARGE_DIR) as workdir:
            data_file = Path(workdir) / f"corpus-{megabytes:g}mb.txt"
            write_large_corpus(data_file, megabytes)
            rows.append(run_worker(NAME, {"task": "streaming", "workdir": workdir,
                                          "data_file": str(data_file)}, timeout=7200))
            print(rows[-1], flush=True)
    path = write_results(f"{NAME}_large", {"goals": GOALS, "results": rows, "steps": steps},
                         quick, started)
    report(f"{NAME}_large", rows + [steps], path, [f"goals: {GOALS}"])


def main(argv: Sequence[str] | None = None) -> None:
    if served_as_worker(argv, lambda arguments: {"streaming": streaming_worker,
                                                 "steps": steps_worker}[arguments["task"]](arguments)):
        return
    args = parse_args(__doc__.splitlines()[0], argv, extra=lambda parser: parser.add_argument(
        "--large", default="", metavar="MB,MB,...",
        help="streaming preparation of generated corpora of these sizes, e.g. 72,300,1000"))
    started = time.perf_counter()
    if args.large:
        large([float(size) for size in args.large.split(",")], args.quick, started)
        return
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
