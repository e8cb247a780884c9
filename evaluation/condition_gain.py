"""What a model's conditions are worth: test bits/char with each document's own condition values
against the same documents and model with the values shuffled across them (seeded).

The shuffled split has the same text, tokens and characters as the test split; only the control
tokens before each document move, so the difference is the information the model draws from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from data_pipeline.conditions import Conditions
from data_pipeline.config import ExperimentConfig
from data_pipeline.datasets import build_split
from data_pipeline.tokenizer import TextTokenizer
from evaluation.evaluate import EvaluationResult, evaluate_model

if TYPE_CHECKING:
    import keras

    from data_pipeline.corpus import Corpus


def shuffled_conditions(conditions: Sequence[Conditions], seed: int) -> list[Conditions]:
    """The same values, permuted across documents by a generator seeded with `seed`."""
    order = np.random.default_rng(seed).permutation(len(conditions))
    return [conditions[i] for i in order]


def shuffled_condition_evaluation(model: "keras.Model", corpus: "Corpus",
                                  tokenizer: TextTokenizer, config: ExperimentConfig,
                                  global_batch: int) -> EvaluationResult | None:
    """The model's test evaluation with shuffled conditions; None without condition_columns."""
    test_conditions = corpus.conditions_of("test")
    if not config.condition_columns or test_conditions is None:
        return None
    split = build_split(corpus.test, tokenizer, config, global_batch, training=False,
                        conditions=shuffled_conditions(test_conditions, config.seed))
    return evaluate_model(model, split)
