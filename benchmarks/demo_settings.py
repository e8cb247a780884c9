"""Demo settings: one family on the built-in corpus at a fixed number of steps, against the trigram.

Run `python -m benchmarks.demo_settings --family gru --config '{"max_len": 128, "batch_size": 16}'
--hyperparameters '{"dropout": 0.0, "learning_rate": 0.02}'`. The demo's CONFIG was chosen with it:
each run trains `--steps` optimizer steps (default 1,200 of 2,048 tokens, what the GRU manages in
~100 s on a quiet 2-core machine) with the cosine decay over those steps, then prints the
validation bits/char after every 150 steps, the test bits/char of the best checkpoint and the
Kneser-Ney trigram's on the same test tokens. Steps, not seconds, so settings compare fairly on a
shared machine; the tokens/s beside them says what a time budget would buy.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Sequence

from benchmarks.common import RESULTS_DIR, parse_args, report, write_results

NAME = "demo_settings"
VALIDATION_EVERY = 150  # steps


def run(family: str, config_overrides: dict, hyperparameters: dict, steps: int) -> dict:
    from data_pipeline.config import ExperimentConfig
    from evaluation.baselines import KneserNeyLM
    from evaluation.evaluate import evaluate_model
    from model_architectures.registry import hyperparameters_for
    from model_architectures.saving import load_trained_model
    from training_assets import experiment
    from training_assets.trainer import train_model

    with tempfile.TemporaryDirectory() as work:
        settings = {"data_file": "fortunes", "vocab_size": 2000, "max_len": 64, "batch_size": 32,
                    "tokenizer_path": f"{work}/tokenizer.json", "models_dir": f"{work}/models",
                    "tuning_dir": f"{work}/tuning", "plots_dir": f"{work}/plots",
                    "models_to_run": [family], "tuner": "none", "early_stopping_patience": 1000,
                    "hyperparameters": {family: hyperparameters}, **config_overrides}
        tokens_per_step = settings["batch_size"] * settings["max_len"]
        epochs = max(1, round(steps * 2048 / tokens_per_step / VALIDATION_EVERY))
        settings.update(final_training_epochs=epochs, steps_per_epoch=VALIDATION_EVERY,
                        train_time_budget_seconds=None)
        config = ExperimentConfig.from_dict(settings)
        environment = experiment.setup_environment(config)
        data = experiment.prepare_data(config, environment)
        trained = train_model(family, hyperparameters_for(family, config.hyperparameters.get(family)),
                              data.datasets, config, environment.strategy, data.tokenizer)
        test = evaluate_model(load_trained_model(trained.checkpoint_path), data.datasets.test)
        validation = data.datasets.validation
        curve = [round(math.log(p) * validation.tokens / validation.characters / math.log(2), 4)
                 for p in trained.history["val_perplexity"]]
        trigram = KneserNeyLM(3, vocab_size=data.datasets.vocab_size).fit(data.datasets.train.token_stream)
        return {"family": family, "config": config_overrides, "hyperparameters": hyperparameters,
                "steps": epochs * VALIDATION_EVERY, "parameters": trained.parameters,
                "train_tokens_per_second": round(trained.train_tokens_per_second),
                "val_bits_per_char_curve": curve, "test_bits_per_char": round(test.bits_per_char, 4),
                "trigram_test_bits_per_char": round(trigram.evaluate(
                    data.datasets.test.token_stream, data.datasets.test.characters).bits_per_char, 4)}


def main(argv: Sequence[str] | None = None) -> None:
    def options(parser):
        parser.add_argument("--family", default="gru")
        parser.add_argument("--config", type=json.loads, default={}, metavar="JSON")
        parser.add_argument("--hyperparameters", type=json.loads, default={}, metavar="JSON")
        parser.add_argument("--steps", type=int, default=1200)

    args = parse_args(__doc__.splitlines()[0], argv, options)
    started = time.perf_counter()
    result = run(args.family, args.config, args.hyperparameters, 150 if args.quick else args.steps)
    earlier = RESULTS_DIR / (f"{NAME}.quick.json" if args.quick else f"{NAME}.json")
    runs = json.loads(earlier.read_text())["runs"] if earlier.is_file() else []  # one file, every setting tried
    path = write_results(NAME, {"runs": [*runs, result]}, args.quick, started)
    report(NAME, [result], path, [])


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
