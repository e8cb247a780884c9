"""Whether text follows its conditions: the trained model used as its own classifier.

A document is scored under every known value of a condition column (the others kept at the
document's own values): its likelihood under each value, and the value with the highest is the
model's answer. `condition_accuracy` is the balanced accuracy of those answers on test documents
(the mean over values of the share of their documents recovered), so a corpus where one value
dominates cannot score high by always answering it; chance is 1 / number of values. The same
classifier applied to samples generated under each value gives `sample_condition_accuracy`:
whether what the model writes under a value reads as that value to the model. With several
columns, each figure is the mean over the columns. No extra model is trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from data_pipeline.conditions import Conditions
from data_pipeline.config import ExperimentConfig
from data_pipeline.datasets import build_split
from data_pipeline.tokenizer import TextTokenizer
from evaluation.evaluate import evaluate_model

if TYPE_CHECKING:
    import keras

MAX_DOCUMENTS = 1000  # test documents classified (a seeded choice when there are more): K passes each
SAMPLES_PER_VALUE = 8  # samples generated under each value of a column for the sample figure


@dataclass(frozen=True)
class ConditionAccuracy:
    """Balanced accuracies (means over condition columns) and the chance level beside them."""

    accuracy: float  # test documents' own values recovered
    chance: float  # mean over columns of 1 / its number of values
    sample_accuracy: float = math.nan  # the values samples were generated under, recovered


def balanced_accuracy(truth: Sequence[int], predicted: Sequence[int]) -> float:
    """Mean over the values present in `truth` of the share of their items predicted as them."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    if not len(truth):
        return math.nan
    return float(np.mean([np.mean(predicted[truth == value] == value)
                          for value in np.unique(truth)]))


def likelihood_answers(model: "keras.Model", texts: Sequence[str],
                       conditions: Sequence[Conditions], position: int, values: Sequence[str],
                       tokenizer: TextTokenizer, config: ExperimentConfig,
                       global_batch: int) -> np.ndarray:
    """Index into `values` of the value under which each text is most likely: (D,) int."""
    nll = []
    for value in values:  # one pass over the texts per value: (K, D) summed NLL
        given = [(*c[:position], value, *c[position + 1:]) for c in conditions]
        split = build_split(list(texts), tokenizer, config, global_batch, training=False,
                            conditions=given)
        scores = evaluate_model(model, split).documents
        if scores is None:
            raise ValueError("condition accuracy needs per-document scores; this split layout "
                             "has none (use objective='causal')")
        nll.append(scores.nll_nats)
    return np.argmin(np.stack(nll), axis=0)


def condition_accuracy(model: "keras.Model", texts: Sequence[str],
                       conditions: Sequence[Conditions], tokenizer: TextTokenizer,
                       config: ExperimentConfig, global_batch: int,
                       samples: Mapping[str, Mapping[str, list[str]]] | None = None,
                       sample_conditions: Mapping[str, Mapping[str, Conditions]] | None = None
                       ) -> ConditionAccuracy:
    """condition_accuracy of `model` on `texts` (test documents with their `conditions`).

    `samples`: column -> value -> texts generated under it, `sample_conditions` the full values
    they were generated under (sample_accuracy: NaN without them). Documents whose value was
    not seen in training are left out.
    """
    texts, conditions = _seeded_choice(texts, conditions, config.seed)
    known = tokenizer.known_conditions
    accuracies, chances, sample_accuracies = [], [], []
    for position, column in enumerate(config.condition_columns):
        values = known[column]
        index = {value: i for i, value in enumerate(values)}
        kept = [i for i, c in enumerate(conditions) if c[position] in index]
        answers = likelihood_answers(model, [texts[i] for i in kept], [conditions[i] for i in kept],
                                     position, values, tokenizer, config, global_batch)
        accuracies.append(balanced_accuracy([index[conditions[i][position]] for i in kept], answers))
        chances.append(1 / len(values))
        if samples and column in samples:
            written = [(value, text) for value, texts_of in samples[column].items()
                       for text in texts_of]
            given = [sample_conditions[column][value] for value, _ in written]
            answers = likelihood_answers(model, [text for _, text in written], given, position,
                                         values, tokenizer, config, global_batch)
            sample_accuracies.append(balanced_accuracy([index[v] for v, _ in written], answers))
    mean = lambda figures: float(np.mean(figures)) if figures else math.nan  # noqa: E731
    return ConditionAccuracy(mean(accuracies), mean(chances), mean(sample_accuracies))


def conditions_to_sample(tokenizer: TextTokenizer, config: ExperimentConfig,
                         typical: Mapping[str, str]) -> dict[str, dict[str, Conditions]]:
    """column -> value -> the full conditions to generate under: that value, the other columns
    at their `typical` (most frequent train) value."""
    known = tokenizer.known_conditions
    return {column: {value: tuple(value if other == column else typical[other]
                                  for other in config.condition_columns)
                     for value in known[column]}
            for column in config.condition_columns}


def generate_under_each_value(model: "keras.Model", tokenizer: TextTokenizer,
                              config: ExperimentConfig, typical: Mapping[str, str]
                              ) -> tuple[dict[str, dict[str, list[str]]],
                                         dict[str, dict[str, Conditions]]]:
    """SAMPLES_PER_VALUE new documents under each value of each column, with CONFIG's sampler
    and seed: (column -> value -> texts, the conditions each was generated under)."""
    from evaluation.generation import document_start_id, generate

    given = conditions_to_sample(tokenizer, config, typical)
    samples = {column: {value: generate(
        model, tokenizer, [""] * SAMPLES_PER_VALUE, max_new_tokens=config.max_new_tokens,
        sampler=config.sampler, temperature=config.temperature, top_k=config.top_k,
        top_p=config.top_p, beam_width=config.beam_width, seed=config.seed,
        start_id=document_start_id(config),
        conditions=dict(zip(config.condition_columns, values)))
        for value, values in by_value.items()} for column, by_value in given.items()}
    return samples, given


def _seeded_choice(texts: Sequence[str], conditions: Sequence[Conditions],
                   seed: int) -> tuple[list[str], list[Conditions]]:
    """At most MAX_DOCUMENTS of the documents, a seeded choice in their order."""
    if len(texts) <= MAX_DOCUMENTS:
        return list(texts), list(conditions)
    chosen = np.sort(np.random.default_rng(seed).choice(len(texts), MAX_DOCUMENTS, replace=False))
    return [texts[i] for i in chosen], [conditions[i] for i in chosen]
