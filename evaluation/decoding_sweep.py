"""The decoding sweep: how each model trades sample quality for diversity over top-p settings.

Every point of the grid temperature x top_p samples the same seeded prompts and scores them with
Texygen's pair, BLEU-4 against the test documents (quality) and self-BLEU-4 (diversity, lower is
more diverse): a model whose points lie higher for the same self-BLEU writes better text at that
variety, whatever sampling setting the table's own row happened to use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import pandas as pd

from data_pipeline.config import ExperimentConfig
from data_pipeline.tokenizer import TextTokenizer
from evaluation.baselines import KneserNeyLM
from evaluation.bleu import BleuReferences, bleu_4, self_bleu_4
from evaluation.generation import document_start_id, generate
from evaluation.ngram_sampling import generate_ngram
from model_architectures.contract import LanguageModel


@dataclass(frozen=True)
class SweepPoint:
    """One sampling setting's scores."""

    temperature: float
    top_p: float
    bleu_4: float
    self_bleu_4: float


def decoding_sweep(model: LanguageModel | KneserNeyLM, tokenizer: TextTokenizer, config: ExperimentConfig,
                   references: Sequence[str] | BleuReferences,
                   conditions: Mapping[str, str] | None = None) -> list[SweepPoint]:
    """BLEU-4 and self-BLEU-4 of decoding_sweep_samples top-p samples (the prompts in turn) at
    every grid point; `model` may be the n-gram baseline, sampled the same way."""
    count = config.decoding_sweep_samples
    if not isinstance(references, BleuReferences):
        references = BleuReferences(references)  # indexed once for every point
    prompts = (list(config.prompts) * count)[:count]
    points = []
    for temperature in config.decoding_sweep_temperatures:
        for top_p in config.decoding_sweep_top_p:
            settings = {"max_new_tokens": config.max_new_tokens, "sampler": "top_p",
                        "temperature": temperature, "top_p": top_p, "seed": config.seed,
                        "start_id": document_start_id(config), "conditions": conditions}
            texts = (generate_ngram(model, tokenizer, prompts, **settings).texts
                     if isinstance(model, KneserNeyLM) else
                     generate(model, tokenizer, prompts, **settings))
            points.append(SweepPoint(temperature, top_p, bleu_4(texts, references),
                                     self_bleu_4(texts)))
    return points


def sweep_table(sweeps: Mapping[str, Sequence[SweepPoint]]) -> pd.DataFrame:
    """One row per model and grid point: model, temperature, top_p, bleu_4, self_bleu_4."""
    return pd.DataFrame([{"model": model, **asdict(point)}
                         for model, points in sweeps.items() for point in points],
                        columns=["model", "temperature", "top_p", "bleu_4", "self_bleu_4"])
