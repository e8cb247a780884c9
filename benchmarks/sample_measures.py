"""Cost of the sample measures: bleu_4, self_bleu_4 and longest_copied_words on the built-in corpus.

Run `python -m benchmarks.sample_measures [--quick]`. Stand-in samples are test documents cut to
30 words (a sample of 40 BPE tokens holds about that many), a seeded choice; references are the
test split (all, and a bleu_references cap of 500), copies are looked up in the training split.
Seconds are the best of a few runs (the least disturbed on a shared machine).

`--config experiment.json` (a finished run's CONFIG) also times the decoding sweep of each of its
trained models, as the experiment runs it (decoding_sweep_temperatures x decoding_sweep_top_p,
decoding_sweep_samples each): generation, its compiling, and BLEU.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.common import MEASURED_DEFAULTS, best_of, load_average, parse_args, report, write_results
from data_pipeline.config import ExperimentConfig
from data_pipeline.corpus import load_corpus
from evaluation.bleu import BleuReferences, bleu_4, reference_sample, self_bleu_4
from evaluation.quality import longest_copied_words

NAME = "sample_measures"
FULL = {"repeats": 3, "samples": (8, 64), "reference_caps": (None, 500)}
QUICK = {"repeats": 1, "samples": (8,), "reference_caps": (500,)}
SAMPLE_WORDS = 30


def sweep_seconds(config_path: str) -> list[dict[str, Any]]:
    """Seconds of one decoding sweep per trained model of the run `config_path` describes."""
    from data_pipeline.tokenizer import fit_or_load_tokenizer
    from evaluation.decoding_sweep import decoding_sweep
    from model_architectures.saving import load_trained_model

    config = ExperimentConfig.from_file(config_path)
    corpus = load_corpus(config)
    tokenizer = fit_or_load_tokenizer(corpus.train, config)
    references = BleuReferences(reference_sample(corpus.test, config.bleu_references, config.seed))
    rows = []
    for family in config.models_to_run:
        checkpoint = Path(config.models_dir) / f"{family}.keras"
        if not checkpoint.is_file():
            print(f"{checkpoint}: no trained model, skipped")
            continue
        model = load_trained_model(checkpoint)
        started, cpu_started = time.perf_counter(), time.process_time()
        points = decoding_sweep(model, tokenizer, config, references)
        cpu_seconds = time.process_time() - cpu_started  # less disturbed by other jobs than wall time
        rows.append({"model": family, "settings": len(points),
                     "samples_per_setting": config.decoding_sweep_samples,
                     "max_new_tokens": config.max_new_tokens,
                     "sweep_s": round(time.perf_counter() - started, 1),
                     "sweep_cpu_s": round(cpu_seconds, 1),
                     "load_average": load_average()})
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv, extra=lambda parser: parser.add_argument(
        "--config", help="a finished run's experiment file: also time its decoding sweep"))
    started = time.perf_counter()
    settings = QUICK if args.quick else FULL
    config = ExperimentConfig.from_dict(MEASURED_DEFAULTS)
    corpus = load_corpus(config)
    rows = []
    for count in settings["samples"]:
        samples = [" ".join(text.split()[:SAMPLE_WORDS])
                   for text in random.Random(config.seed).sample(corpus.test, count)]
        copied = best_of(lambda: longest_copied_words(samples, corpus.train), settings["repeats"])
        diversity = best_of(lambda: self_bleu_4(samples), settings["repeats"])
        for cap in settings["reference_caps"]:
            references = reference_sample(corpus.test, cap, config.seed)
            quality = best_of(lambda: bleu_4(samples, references), settings["repeats"])
            indexing = best_of(lambda: BleuReferences(references), settings["repeats"])
            rows.append({"samples": count, "references": len(references),
                         "training_documents": len(corpus.train),
                         "bleu_4_s": round(quality.wall_seconds, 3),  # indexing included
                         "index_references_s": round(indexing.wall_seconds, 3),
                         "self_bleu_4_s": round(diversity.wall_seconds, 3),
                         "longest_copied_words_s": round(copied.wall_seconds, 3),
                         "load_average": load_average()})
    sweeps = sweep_seconds(args.config) if args.config else []
    path = write_results(NAME, {"results": rows, "sweeps": sweeps}, args.quick, started)
    report(NAME, rows, path)
    if sweeps:
        report(f"{NAME}: decoding sweep", sweeps, path)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
