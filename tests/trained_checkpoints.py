"""Checkpoints made by the real trainer, for the tests of what reads them (loading, the generate
CLI, evaluation, the table and the plots).

SAVING_CASES covers every family (each under its first objective), and every learning-rate schedule with and without weight
averaging: the optimizer state a checkpoint carries differs between them. The session fixture
`trained_checkpoints` (conftest.py) trains each case once, a few steps each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import keras
from training_factories import TINY_HYPERPARAMETERS, make_config, make_corpus

from data_pipeline.config import ExperimentConfig
from data_pipeline.datasets import build_datasets
from data_pipeline.tokenizer import fit_or_load_tokenizer
from model_architectures import FAMILIES, hyperparameters_for
from training_assets.experiment import PreparedData
from training_assets.strategy import select_strategy
from training_assets.trainer import TrainingResult, train_model

# A time budget resizes the cosine decay at every epoch's end to the steps that fit in the seconds
# left: with a budget of an hour and a decay planned over 10**7 epochs of 4 steps, the first resize
# shortens it (unless a step takes under 0.1 ms). Training ends after BUDGET_EPOCHS (StopAfterEpochs).
BUDGET_SECONDS, BUDGET_PLANNED_EPOCHS, BUDGET_STEPS_PER_EPOCH, BUDGET_EPOCHS = 3600.0, 10**7, 4, 3


@dataclass(frozen=True)
class SavingCase:
    """One way training writes a checkpoint."""

    family: str
    schedule: Literal["constant", "cosine", "budget"]  # budget: cosine resized by a time budget
    ema_momentum: float | None
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # beyond TINY_HYPERPARAMETERS
    epochs: int = 2  # budget cases: BUDGET_EPOCHS
    steps_per_epoch: int | None = 5  # None: full passes over the training split


# Every family; every schedule with and without ema_momentum; two-layer and untied models too.
SAVING_CASES: dict[str, SavingCase] = {
    "lstm": SavingCase("lstm", "cosine", 0.9, {"num_layers": 2, "tie_embeddings": False}),
    "gru": SavingCase("gru", "budget", None),
    "simple_rnn": SavingCase("simple_rnn", "constant", 0.9),
    "transformer": SavingCase("transformer", "cosine", None, {"num_layers": 1, "tie_embeddings": False}),
    # trained until its greedy continuations vary: a generation test runs it past its window
    "bilstm": SavingCase("bilstm", "constant", None, {"num_layers": 2}, steps_per_epoch=150),
    # trained until it has learnt the alphabet: generation tests continue it
    "gru_constant": SavingCase("gru", "constant", None, epochs=3, steps_per_epoch=None),
    "gru_budget_ema": SavingCase("gru", "budget", 0.9),
}


class OptimizerStateAtValidation(keras.callbacks.Callback):
    """The optimizer state each epoch's checkpoint saves: step count and learning-rate schedule.

    Recorded when validation ends, after which ModelCheckpoint saves and only then the budget
    callback may resize the schedule (the trainer's callback order).
    """

    def __init__(self):
        super().__init__()
        self.states: list[dict[str, Any]] = []

    def on_test_end(self, logs=None):
        optimizer = self.model.optimizer
        self.states.append({"iterations": int(keras.ops.convert_to_numpy(optimizer.iterations)),
                            "learning_rate": optimizer.get_config()["learning_rate"]})


class StopAfterEpochs(keras.callbacks.Callback):
    """Ends training after `epochs` epochs, whatever the config plans."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True


@dataclass(frozen=True)
class TrainedCheckpoint:
    """What train_model left for one case, and what the consumers need beside it."""

    name: str
    case: SavingCase
    config: ExperimentConfig
    training: TrainingResult
    data: PreparedData
    optimizer_states: list[dict[str, Any]]  # per epoch, as its checkpoint saved it

    @property
    def planned_steps(self) -> int:
        """Steps the cosine decay was built for (budget cases), before any resize."""
        return self.config.final_training_epochs * self.config.steps_per_epoch


def case_config(root: Path, name: str) -> ExperimentConfig:
    """Tiny config of one case: its own models folder, the tokenizer shared by all cases."""
    case = SAVING_CASES[name]
    budget = case.schedule == "budget"
    return make_config(
        root / name, models_to_run=[case.family], tokenizer_path=str(root / "tokenizer.json"),
        objective=FAMILIES[case.family].objectives[0],  # causal where the family allows it
        hyperparameters={**TINY_HYPERPARAMETERS,
                         case.family: {**TINY_HYPERPARAMETERS[case.family], **case.hyperparameters}},
        learning_rate_schedule="constant" if case.schedule == "constant" else "cosine",
        warmup_steps=0 if budget else 1, ema_momentum=case.ema_momentum,
        train_time_budget_seconds=BUDGET_SECONDS if budget else None,
        final_training_epochs=BUDGET_PLANNED_EPOCHS if budget else case.epochs,
        steps_per_epoch=BUDGET_STEPS_PER_EPOCH if budget else case.steps_per_epoch,
        early_stopping_patience=BUDGET_EPOCHS, cleaning="reference", num_samples=2, max_new_tokens=6,
        jit_compile=False)  # XLA would add ~20 s of compiling to the Transformer and change nothing saved


def train_checkpoints(root: Path) -> dict[str, TrainedCheckpoint]:
    """Train every case through train_model, on one corpus and tokenizer."""
    corpus = make_corpus()
    trained = {}
    for name, case in SAVING_CASES.items():
        config = case_config(root, name)
        tokenizer = fit_or_load_tokenizer(corpus.train, config)  # fitted once, then reused
        data = PreparedData(corpus, tokenizer, build_datasets(corpus, tokenizer, config))
        recorder = OptimizerStateAtValidation()
        hyperparameters = hyperparameters_for(case.family, config.hyperparameters[case.family])
        stop = [StopAfterEpochs(BUDGET_EPOCHS)] if case.schedule == "budget" else []
        keras.utils.set_random_seed(config.seed)
        training = train_model(case.family, hyperparameters, data.datasets, config,
                               select_strategy("default"), tokenizer, callbacks=[recorder, *stop])
        trained[name] = TrainedCheckpoint(name, case, config, training, data, recorder.states)
    return trained
