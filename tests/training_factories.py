"""Small structured corpora, configs and datasets for the training tests (tests/test_training_*.py).

The text is learnable in seconds: each document is a run of the alphabet from a random letter,
so after one character the next is certain. A tiny model that learns anything beats the unigram
perplexity of the same text by far, which is how the tests show learning instead of assuming it.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import keras
import numpy as np

from data_pipeline.config import ExperimentConfig
from data_pipeline.corpus import Corpus
from data_pipeline.datasets import Datasets, build_datasets
from data_pipeline.tokenizer import TextTokenizer, fit_or_load_tokenizer
from model_architectures import FAMILIES

ALPHABET = string.ascii_lowercase

# Every registered family at its tiny size, without dropout and with a fast learning rate:
# seconds per epoch on 2 shared CPU cores.
TINY_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    name: {**family.tiny, "dropout": 0.0, "learning_rate": 1e-2} for name, family in FAMILIES.items()}


def alphabet_documents(count: int, seed: int = 0, length: int = 14) -> list[str]:
    """`count` runs of `length` consecutive letters (wrapping z -> a), each from a random start."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ALPHABET), size=count)
    return ["".join(ALPHABET[(start + i) % len(ALPHABET)] for i in range(length)) for start in starts]


def make_config(tmp_path: Path, **overrides: Any) -> ExperimentConfig:
    """A config for tiny char-level runs with every output path inside tmp_path."""
    settings: dict[str, Any] = {
        "tokenizer": "char",
        "vocab_size": 64,
        "tokenizer_path": str(tmp_path / "tokenizer.json"),
        "models_dir": str(tmp_path / "models"),
        "tuning_dir": str(tmp_path / "tuning"),
        "plots_dir": str(tmp_path / "plots"),
        "download_dir": str(tmp_path / "downloads"),
        "models_to_run": ["gru"],
        "hyperparameters": TINY_HYPERPARAMETERS,
        "max_len": 16,
        "batch_size": 8,
        "tuner": "none",
        "final_training_epochs": 2,
        "learning_rate_schedule": "constant",
        "mixed_precision": "float32",
        "strategy": "default",
        # tiny runs of tens of steps: an average trailing ~100 steps would still hold the initial weights
        "ema_momentum": None,
    }
    settings.update(overrides)
    return ExperimentConfig.from_dict(settings)


def make_corpus(documents: int = 240, seed: int = 0) -> Corpus:
    """Generated alphabet runs, split 80/10/10 by document."""
    texts = alphabet_documents(documents, seed=seed)
    cut_train, cut_validation = int(0.8 * documents), int(0.9 * documents)
    return Corpus(train=texts[:cut_train], validation=texts[cut_train:cut_validation],
                  test=texts[cut_validation:], source="generated", report={})


def make_data(config: ExperimentConfig, documents: int = 240, num_replicas: int = 1,
              seed: int = 0) -> tuple[TextTokenizer, Datasets]:
    """Tokenizer and Datasets from generated alphabet runs, split 80/10/10 by document."""
    corpus = make_corpus(documents, seed)
    tokenizer = fit_or_load_tokenizer(corpus.train, config)
    return tokenizer, build_datasets(corpus, tokenizer, config, num_replicas=num_replicas)


def unigram_perplexity(token_stream: np.ndarray) -> float:
    """Perplexity of the best unigram model of the stream's own targets (every token after the first)."""
    targets = token_stream[1:]
    _, counts = np.unique(targets, return_counts=True)
    probabilities = counts / counts.sum()
    return float(np.exp(-(counts * np.log(probabilities)).sum() / counts.sum()))


CONDITION_LETTERS = {"a": ALPHABET[:13], "b": ALPHABET[13:]}  # category -> the letters its text uses


def conditional_documents(count: int, seed: int = 0,
                          length: int = 5) -> tuple[list[str], list[tuple[str, ...]]]:
    """Texts whose letters depend on their category: "a" texts run through a..m (wrapping inside
    it) from a random start, "b" texts through n..z. Only the condition tells the first letter's
    half of the alphabet; after it, the rest of the text is certain."""
    rng = np.random.default_rng(seed)
    texts, conditions = [], []
    for category, start in zip(rng.choice(sorted(CONDITION_LETTERS), size=count),
                               rng.integers(0, 13, size=count)):
        letters = CONDITION_LETTERS[category]
        texts.append("".join(letters[(start + i) % len(letters)] for i in range(length)))
        conditions.append((str(category),))
    return texts, conditions


def make_conditional_corpus(documents: int = 400, seed: int = 0) -> Corpus:
    """conditional_documents split 80/10/10, with their `category` values beside them."""
    texts, conditions = conditional_documents(documents, seed)
    cuts = {"train": (0, int(0.8 * documents)),
            "validation": (int(0.8 * documents), int(0.9 * documents)),
            "test": (int(0.9 * documents), documents)}
    return Corpus(**{name: texts[a:b] for name, (a, b) in cuts.items()}, source="generated",
                  report={}, conditions={name: conditions[a:b] for name, (a, b) in cuts.items()})


class RecordEpochs(keras.callbacks.Callback):
    """The epochs a fit actually ran (0-based), to tell training from reuse or resume."""

    def __init__(self):
        super().__init__()
        self.epochs: list[int] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)
