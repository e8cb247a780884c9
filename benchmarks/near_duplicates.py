"""Near-duplicates and the figures: the demo's trained models and the trigram, test split with and without them.

Run after `make demo`: `python -m benchmarks.near_duplicates`. It reads the notebook's CONFIG, splits
the corpus twice (drop_near_duplicates false / true: the training split and the tokenizer are the
same), and scores the checkpoints in `models_dir` and a freshly fitted Kneser-Ney model on both test
splits. Held-out documents that share a run of words with a training document reward memorising.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from benchmarks.common import REPO_ROOT, parse_args, report, write_results

NAME = "near_duplicates"


def notebook_config() -> dict:
    """The CONFIG dict of the notebook's cell tagged "parameters" (plain literals only)."""
    import nbformat

    notebook = nbformat.read(REPO_ROOT / "Text_Synthesis_Comparison.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    namespace: dict = {}
    exec(cell.source, namespace)
    return namespace["CONFIG"]


def score(drop: bool, settings: dict) -> dict:
    from data_pipeline.config import ExperimentConfig
    from data_pipeline.corpus import load_corpus
    from data_pipeline.datasets import build_datasets
    from data_pipeline.tokenizer import fit_or_load_tokenizer
    from evaluation.baselines import fit_kneser_ney
    from evaluation.evaluate import evaluate_model
    from model_architectures.saving import load_trained_model

    demo = ExperimentConfig.from_dict(settings)  # the demo's run: its checkpoints and tokenizer
    config = ExperimentConfig.from_dict({**settings, "run_name": demo.run_name,
                                         "drop_near_duplicates": drop})
    corpus = load_corpus(config)
    tokenizer = fit_or_load_tokenizer(corpus.train, config, corpus.conditions_of("train"))
    datasets = build_datasets(corpus, tokenizer, config)
    test = datasets.test
    row = {"drop_near_duplicates": drop, "test_documents": test.documents,
           f"kn_{config.kn_order}gram": round(fit_kneser_ney(datasets, config.kn_order).evaluate(
               test.token_stream, test.characters).bits_per_char, 4)}
    for family in config.models_to_run:
        checkpoint = Path(config.models_dir) / f"{family}.keras"
        if checkpoint.is_file():
            row[family] = round(evaluate_model(load_trained_model(checkpoint), test).bits_per_char, 4)
    return row


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    started = time.perf_counter()
    settings = notebook_config()
    rows = [score(drop, settings) for drop in (False, True)]
    path = write_results(NAME, {"rows": rows}, args.quick, started)
    report(NAME, rows, path, [])


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
