"""LSTM and GRU against PyTorch references: tokens/s and validation loss at equal wall time.

Run through `python -m benchmarks.throughput --recurrent [--abc PATH] [--seconds 60]`. For each
shape (the demo's: built-in corpus, BPE 2,000, batch 16 x 128; with --abc, the ABC protocol's:
that CSV's headline_text, reference cleaning, ordered split, BPE 10,000, batch 32 x 64) and each
family at its default hyperparameters (recurrent_space.py: 128-wide tied embedding, 200 units,
dropout 0.4, learning rate 1e-2), it trains, one process per run, on 1 and 2 threads:
- Keras "default": the project's default CONFIG as training_assets applies it (seeds, no op
  determinism; jit_compile "auto" -> no XLA for recurrent models on CPU; off GPUs the LSTM and
  GRU run model_architectures/fused_recurrent.py's loop),
- Keras "xla": deterministic off and jit_compile forced on, for comparison,
- PyTorch (benchmarks/torch_rnn.py) from the same initial weights (the first Keras run's),
each for `--seconds` of wall time on the same batches in the same order, with the same recipe
(AdamW, per-tensor clipnorm, warmup then cosine decay fitted to the budget as
ScheduleToTimeBudget fits it; on equal batches without dropout both end at the same model,
tests/test_bench_helpers.py). Runs alternate Keras / PyTorch / Keras. Tokens/s count the steps
after the first `warm_steps` (tracing); the budget includes them, as a user's budget does. Then
each model's mean validation loss per token on the same rows.

On a machine shared with other jobs, PyTorch's OpenMP threads spin at every barrier while a
sibling thread waits for a core: 2 threads can then run 10x slower than 1. Export
OMP_WAIT_POLICY=PASSIVE there (the workers inherit it; each PyTorch row records it).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (limit_threads, load_average, markdown_table, peak_rss_mb, report, run_worker,
                               write_results)
from benchmarks.throughput import _keras_mean_loss, batch_order, packed_split_rows, step_clock

NAME = "throughput_recurrent"
FAMILIES = ("lstm", "gru")
THREADS = (1, 2)
SHAPES: dict[str, dict[str, Any]] = {
    "demo": {"batch": 16, "config": {"data_file": "fortunes", "vocab_size": 2000, "max_len": 128}},
    "abc": {"batch": 32, "config": {"text_column": "headline_text", "vocab_size": 10_000, "max_len": 64,
                                    "split": "ordered", "cleaning": "reference"}},
}
KERAS_SETTINGS = {"default": {}, "xla": {"deterministic": False, "jit_compile": True}}
MAX_STEPS_PER_SECOND = 50  # batch order drawn for this many steps a second (never reached)
FULL = {"warm_steps": 10, "val_rows": 512}
QUICK = {"warm_steps": 2, "val_rows": 48, "seconds": 4.0}


# --- shared by both workers ------------------------------------------------------------------
def shape_rows(arguments: dict[str, Any]) -> dict[str, np.ndarray]:
    """The shape's packed train/validation rows (R, max_len + 1), tokenized once (cached in workdir)."""
    settings = dict(SHAPES[arguments["shape"]]["config"])
    if arguments["shape"] == "abc":
        settings["data_file"] = arguments["abc"]
    return packed_split_rows(arguments["workdir"], f"{arguments['shape']}_rows", settings, arguments["quick"])


def planned_steps(arguments: dict[str, Any]) -> int:
    """Steps the batch order and the schedule are drawn for; the time budget stops far earlier."""
    return int(arguments["seconds"] * MAX_STEPS_PER_SECOND) + arguments["warm_steps"] + 1


def initial_weights_path(arguments: dict[str, Any]) -> Path:
    return Path(arguments["workdir"]) / f"initial_{arguments['shape']}_{arguments['family']}.npz"


def measured(arguments: dict[str, Any], wall: list[float], cpu: list[float], validation_loss: float,
             **extra: Any) -> dict[str, Any]:
    """One result row from the clock after every step (skipping the first warm_steps)."""
    warm, shape = arguments["warm_steps"], SHAPES[arguments["shape"]]
    tokens_per_step = shape["batch"] * shape["config"]["max_len"]
    steps = len(wall) - 1 - warm
    seconds = wall[-1] - wall[warm] if steps > 0 else float("nan")  # nan: the budget ended while warming
    return {"shape": arguments["shape"], "family": arguments["family"], **extra,
            "threads": arguments["threads"], "budget_seconds": arguments["seconds"], "steps": len(wall),
            "tokens_per_second": round(tokens_per_step * steps / seconds, 1),
            "ms_per_step": round(1000 * seconds / max(steps, 1), 2),
            "cpu_per_wall": round((cpu[-1] - cpu[warm]) / seconds, 2) if steps > 0 else float("nan"),
            "validation_loss": round(validation_loss, 4),
            "peak_rss_mb": round(peak_rss_mb()), "load_average": load_average()}


# --- Keras -----------------------------------------------------------------------------------
def keras_recurrent_variables(model: Any) -> dict[str, Any]:
    """A RecurrentLanguageModel's variables by role, the names benchmarks.torch_rnn maps from."""
    variables = {"embedding": model.token_embedding.embeddings}
    for index, layer in enumerate(model.recurrent_layers):
        for name in ("kernel", "recurrent_kernel", "bias"):
            variables[f"layer{index}.{name}"] = getattr(layer.cell, name)
    if model.output_projection is not None:
        variables["projection.kernel"] = model.output_projection.kernel
        variables["projection.bias"] = model.output_projection.bias
    return variables


def keras_rnn_worker(arguments: dict[str, Any]) -> dict[str, Any]:
    """One Keras run: the project's compile and time-budget callbacks, default hyperparameters."""
    limit_threads(arguments["threads"])
    import tensorflow as tf

    from data_pipeline.config import ExperimentConfig
    from model_architectures.registry import build_model, hyperparameters_for
    from training_assets.callbacks import time_budget_callbacks
    from training_assets.compile import compile_model, resolve_jit_compile
    from training_assets.reproducibility import seed_everything

    data, shape = shape_rows(arguments), SHAPES[arguments["shape"]]
    config = ExperimentConfig.from_dict(KERAS_SETTINGS[arguments["setting"]])
    seed_everything(config)
    strategy = tf.distribute.get_strategy()
    hp = hyperparameters_for(arguments["family"])
    model = build_model(arguments["family"], hp, int(data["vocab_size"]), shape["config"]["max_len"])
    variables = keras_recurrent_variables(model)
    initial = initial_weights_path(arguments)
    if initial.exists():  # every run starts from the first run's weights
        for name, value in np.load(initial).items():
            variables[name].assign(value)
    else:
        np.savez(initial, **{name: variable.numpy() for name, variable in variables.items()})
    steps = planned_steps(arguments)
    schedule = compile_model(model, config, hp.get("learning_rate"), steps, strategy)
    _, budget = time_budget_callbacks(arguments["seconds"], schedule, steps, clock="wall")
    rows = tf.constant(data["train"])  # (R, T+1)
    dataset = (tf.data.Dataset.from_tensor_slices(batch_order(len(data["train"]), steps, shape["batch"]))
               .map(lambda index: tf.gather(rows, index))  # (B, T+1)
               .map(lambda batch: (batch[:, :-1], batch[:, 1:])).prefetch(2))
    clock = step_clock()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, callbacks=[clock, *budget], verbose=0)
    loss = _keras_mean_loss(model, data["validation"][:arguments["val_rows"]])
    return measured(arguments, clock.wall, clock.cpu, loss, framework="keras", setting=arguments["setting"],
                    xla=bool(resolve_jit_compile(config, strategy, model)),
                    learning_rate=hp.get("learning_rate"), dropout=hp.get("dropout"),
                    warmup_steps=int(schedule.warmup_steps))


# --- PyTorch ---------------------------------------------------------------------------------
def torch_rnn_worker(arguments: dict[str, Any]) -> dict[str, Any]:
    """One PyTorch run from the Keras run's initial weights, same batches, same recipe."""
    import torch

    from benchmarks.torch_rnn import RecurrentLM, RNNConfig, state_from_keras
    from benchmarks.torch_training import Trainer, train_for_seconds
    from model_architectures.recurrent_space import RECURRENT_SPACE

    torch.set_num_threads(arguments["threads"])
    torch.manual_seed(0)
    data, shape = shape_rows(arguments), SHAPES[arguments["shape"]]
    hp = {name: dimension.default for name, dimension in RECURRENT_SPACE.items()}  # the Keras defaults
    config = RNNConfig(vocab_size=int(data["vocab_size"]), cell=arguments["family"],
                       **{key: hp[key] for key in ("embedding_dim", "units", "num_layers", "dropout")})
    model = RecurrentLM(config)
    model.load_state_dict(state_from_keras(dict(np.load(initial_weights_path(arguments))), config))
    steps = planned_steps(arguments)
    trainer = Trainer(model, hp["learning_rate"], total_steps=steps, **_default_recipe(steps))
    rows = torch.from_numpy(data["train"].astype(np.int64))  # (R, T+1)
    order = torch.from_numpy(batch_order(len(data["train"]), steps, shape["batch"]))  # (steps, B)
    wall, cpu = train_for_seconds(trainer, lambda step: rows[order[step]], arguments["seconds"], steps)
    loss = trainer.mean_loss(data["validation"][:arguments["val_rows"]], 64)
    return measured(arguments, wall, cpu, loss, framework="pytorch", setting="eager", xla=None,
                    learning_rate=hp["learning_rate"], dropout=hp["dropout"],
                    warmup_steps=trainer.warmup_steps, torch=torch.__version__,
                    # libgomp spins at barriers by default: on a busy machine 2 threads then crawl
                    omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"))


def _default_recipe(steps: int) -> dict[str, float]:
    """The optimizer settings of the project's default CONFIG, without importing TensorFlow."""
    from data_pipeline.config import ExperimentConfig

    config = ExperimentConfig()
    return {"warmup_steps": min(config.warmup_steps, steps // 10),  # learning_rate_schedule's 10% cap
            "weight_decay": config.weight_decay, "clipnorm": config.clipnorm}


WORKERS = {"keras_rnn": keras_rnn_worker, "torch_rnn": torch_rnn_worker}


# --- the comparison --------------------------------------------------------------------------
def run_order(shapes: list[str], families: tuple[str, ...] = FAMILIES) -> list[dict[str, Any]]:
    """Alternating runs: per shape, family and thread count Keras default, PyTorch, Keras XLA.

    A Keras run comes first: it writes the initial weights the others load.
    """
    order = []
    for shape in shapes:
        for family in families:
            for threads in THREADS:
                for kind, setting in (("keras_rnn", "default"), ("torch_rnn", None), ("keras_rnn", "xla")):
                    order.append({"kind": kind, "setting": setting, "shape": shape, "family": family,
                                  "threads": threads})
    return order


def keras_over_torch_recurrent(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each Keras setting / the PyTorch run of the same shape, family and threads, with the goal:
    tokens/s ratio >= 1.0 and validation loss ratio <= 1.00 (None: a run ended while warming up)."""
    ratios = []
    for reference in (run for run in runs if run["framework"] == "pytorch"):
        where = {key: reference[key] for key in ("shape", "family", "threads")}
        for keras_run in (run for run in runs if run["framework"] == "keras"
                          and all(run[key] == value for key, value in where.items())):
            speed = keras_run["tokens_per_second"] / reference["tokens_per_second"]
            loss = keras_run["validation_loss"] / reference["validation_loss"]
            ratios.append(where | {
                "keras_setting": keras_run["setting"], "keras_xla": keras_run["xla"],
                "tokens_per_second_ratio": round(speed, 3),
                "keras_validation_loss": keras_run["validation_loss"],
                "pytorch_validation_loss": reference["validation_loss"],
                "validation_loss_ratio": round(loss, 4),
                "meets_goal": None if math.isnan(speed) else speed >= 1.0 and loss <= 1.0})
    return ratios


def run_recurrent(abc: str | None, seconds: float, quick: bool, started: float) -> None:
    """Every run of run_order in its own process, then the table, the ratios and the JSON."""
    settings = {**FULL, "seconds": seconds, **(QUICK if quick else {})}
    abc = str(Path(abc).resolve()) if abc else None  # workers run from the repository root
    shapes = ["demo"] + (["abc"] if abc else [])
    notes = [] if abc else ["ABC shape skipped: pass --abc PATH (the headlines CSV)"]
    runs = []
    with tempfile.TemporaryDirectory() as workdir:
        for run in run_order(shapes):
            runs.append(run_worker("throughput", {**run, **settings, "workdir": workdir, "abc": abc,
                                                  "quick": quick}))
            print(runs[-1], flush=True)
    ratios = keras_over_torch_recurrent(runs)
    command = (f"python -m benchmarks.throughput --recurrent --seconds {seconds:g}"
               + (f" --abc {Path(abc).name}" if abc else "") + (" --quick" if quick else ""))
    path = write_results(NAME, {"runs": runs, "keras_over_pytorch": ratios, "settings": settings,
                                "shapes": SHAPES, "abc_file": Path(abc).name if abc else None,
                                "cpus": os.cpu_count()}, quick, started, command=command)
    report(NAME, runs, path, notes + ["Keras / PyTorch (goal: tokens/s ratio >= 1, loss ratio <= 1):",
                                      markdown_table(ratios)])
