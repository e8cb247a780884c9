"""Benchmark helpers: the PyTorch GPT really has the Keras Transformer's shape, and the figures
derived from curves (bits/char, time to beat a bar, formulation speed-up) are computed right."""

import json
import math

import numpy as np
import pytest

from benchmarks import common
from benchmarks.throughput import load_torch_state_into, torch_state_of, training_flops_per_token
from benchmarks.time_to_quality import bits_per_char, compare_formulations, first_time_below
from model_architectures.registry import build_model

SHAPE = {"num_layers": 2, "num_heads": 2, "embedding_dim": 16, "ff_dim": 32, "dropout": 0.0,
         "tie_embeddings": True, "block": "gpt2"}


def test_torch_gpt_with_copied_weights_gives_the_keras_logits():
    torch = pytest.importorskip("torch")
    from benchmarks.torch_gpt import GPT, GPTConfig
    from benchmarks.torch_training import masked_cross_entropy

    keras_model = build_model("transformer", None, 23, 8, SHAPE)
    torch_model = GPT(GPTConfig(vocab_size=23, max_len=8, num_layers=2, num_heads=2,
                                embedding_dim=16, ff_dim=32))
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in torch_state_of(keras_model).items()})
    tokens = np.random.default_rng(0).integers(1, 23, (3, 8)).astype(np.int32)
    expected = np.asarray(keras_model(tokens))  # (3, 8, 23)
    got = torch_model(torch.from_numpy(tokens.astype(np.int64))).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    targets = torch.from_numpy(tokens.astype(np.int64))
    targets[:, -2:] = 0  # [PAD] targets are ignored
    kept = targets != 0
    by_hand = -torch.log_softmax(torch.from_numpy(expected), -1).gather(-1, targets[..., None])[..., 0][kept].mean()
    assert float(masked_cross_entropy(torch.from_numpy(expected), targets)) == pytest.approx(float(by_hand), rel=1e-5)


@pytest.mark.parametrize("cell, sizes", [
    ("lstm", {"embedding_dim": 8, "units": 12, "num_layers": 2}),  # two layers and a projection
    ("gru", {"embedding_dim": 8, "units": 12, "num_layers": 2}),
    ("gru", {"embedding_dim": 8, "units": 8, "num_layers": 1}),  # no projection
])
def test_torch_rnn_with_copied_weights_gives_the_keras_logits(cell, sizes):
    """Gate orders (GRU z, r, h vs r, z, n) and the two GRU bias rows map right: random weights
    everywhere, biases included, give the same logits in both frameworks."""
    torch = pytest.importorskip("torch")
    from benchmarks.recurrent_reference import keras_recurrent_variables
    from benchmarks.torch_rnn import RecurrentLM, RNNConfig, state_from_keras

    keras_model = build_model(cell, None, 23, 8, {**sizes, "dropout": 0.3})
    variables = keras_recurrent_variables(keras_model)
    assert len(variables) == len(keras_model.weights)  # every weight has a role
    rng = np.random.default_rng(1)
    for variable in variables.values():
        variable.assign(rng.normal(0, 0.5, variable.shape).astype(np.float32))
    config = RNNConfig(vocab_size=23, cell=cell, dropout=0.3, **sizes)
    torch_model = RecurrentLM(config).eval()
    torch_model.load_state_dict(state_from_keras({k: v.numpy() for k, v in variables.items()}, config))
    tokens = rng.integers(1, 23, (3, 8)).astype(np.int32)
    expected = np.asarray(keras_model(tokens))  # (3, 8, 23)
    got = torch_model(torch.from_numpy(tokens.astype(np.int64))).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_torch_rnn_trains_like_keras_on_equal_batches(cell):
    """Dropout off, same weights and batches: the project's compile (AdamW without decay on biases,
    per-tensor clipnorm, warmup then cosine) and torch_training.Trainer end at the same model."""
    torch = pytest.importorskip("torch")
    import tensorflow as tf

    from benchmarks.recurrent_reference import keras_recurrent_variables
    from benchmarks.torch_rnn import RecurrentLM, RNNConfig, state_from_keras
    from benchmarks.torch_training import Trainer
    from data_pipeline.config import ExperimentConfig
    from training_assets.compile import compile_model

    sizes, steps = {"embedding_dim": 8, "units": 12, "num_layers": 1, "dropout": 0.0}, 20  # warmup: 10% = 2
    keras_model = build_model(cell, None, 23, 8, sizes)
    config = RNNConfig(vocab_size=23, cell=cell, **sizes)
    torch_model = RecurrentLM(config)
    torch_model.load_state_dict(state_from_keras(
        {k: v.numpy() for k, v in keras_recurrent_variables(keras_model).items()}, config))
    recipe = ExperimentConfig(warmup_steps=2)
    compile_model(keras_model, recipe, 3e-2, steps, tf.distribute.get_strategy())
    trainer = Trainer(torch_model, 3e-2, total_steps=steps, warmup_steps=2,
                      weight_decay=recipe.weight_decay, clipnorm=recipe.clipnorm)
    rows = np.random.default_rng(2).integers(1, 23, (steps, 4, 9)).astype(np.int32)  # (steps, B, T+1)
    tokens = rows[0, :, :-1]
    initial = np.asarray(keras_model(tokens))  # (4, 8, 23)
    for batch in rows:
        keras_model.train_on_batch(batch[:, :-1], batch[:, 1:])
        trainer.step(*(torch.from_numpy(part.astype(np.int64)) for part in (batch[:, :-1], batch[:, 1:])))
    expected = np.asarray(keras_model(tokens))
    got = torch_model.eval()(torch.from_numpy(tokens.astype(np.int64))).detach().numpy()
    assert np.abs(expected - initial).max() > 0.1  # training moved the model
    np.testing.assert_allclose(got, expected, atol=2e-4)


def test_torch_schedule_fits_to_steps_like_the_keras_one():
    """warmup then cosine to 10%, whose end fit_to_steps moves (WarmupCosineDecay.fit_to_steps)."""
    torch = pytest.importorskip("torch")
    from benchmarks.torch_training import Trainer, warmup_cosine

    trainer = Trainer(torch.nn.Linear(2, 2), 1.0, total_steps=100, warmup_steps=10)
    assert warmup_cosine(5, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 100) == pytest.approx(0.1)
    trainer.fit_to_steps(40)
    assert trainer.schedule.lr_lambdas[0](40) == pytest.approx(0.1)
    assert trainer.schedule.lr_lambdas[0](25) == pytest.approx(0.55)


def test_recurrent_runs_alternate_frameworks_and_ratios_check_the_goal():
    from benchmarks.recurrent_reference import keras_over_torch_recurrent, run_order

    order = run_order(["demo"], ("gru",))
    assert [run["kind"] for run in order[:3]] == ["keras_rnn", "torch_rnn", "keras_rnn"]
    assert len(order) == 6 and {run["threads"] for run in order} == {1, 2}
    base = {"shape": "demo", "family": "gru", "threads": 1}
    runs = [{**base, "framework": "pytorch", "tokens_per_second": 100.0, "validation_loss": 5.0},
            {**base, "framework": "keras", "setting": "default", "xla": False,
             "tokens_per_second": 120.0, "validation_loss": 4.9},
            {**base, "framework": "keras", "setting": "xla", "xla": True,
             "tokens_per_second": 80.0, "validation_loss": 5.1}]
    default, xla = keras_over_torch_recurrent(runs)
    assert default["tokens_per_second_ratio"] == 1.2 and default["meets_goal"] is True
    assert xla["validation_loss_ratio"] == pytest.approx(1.02) and xla["meets_goal"] is False


def test_state_round_trips_into_another_keras_model():
    source = build_model("transformer", None, 23, 8, SHAPE)
    target = build_model("transformer", None, 23, 8, SHAPE)
    tokens = np.arange(1, 17, dtype=np.int32).reshape(2, 8)
    assert not np.allclose(np.asarray(source(tokens)), np.asarray(target(tokens)))
    load_torch_state_into(target, torch_state_of(source))
    np.testing.assert_allclose(np.asarray(target(tokens)), np.asarray(source(tokens)), atol=1e-6)


def test_training_flops_are_three_forward_passes_counting_the_tied_output_once_and_no_lookups():
    model = build_model("transformer", None, 23, 8, SHAPE)
    assert training_flops_per_token(model) == 3 * model.forward_flops_per_token()
    # The 6N rule over every weight but the position lookup; the contract leaves out biases and
    # LayerNorm scales, which multiply nothing.
    per_token = model.count_params() - 8 * 16
    assert training_flops_per_token(model) == pytest.approx(6 * per_token + 12 * 2 * 8 * 16, rel=0.1)
    assert training_flops_per_token(model) < 6 * per_token + 12 * 2 * 8 * 16
    untied = build_model("gru", None, 23, 8, {"tie_embeddings": False, "units": 8, "embedding_dim": 4})
    biases = 2 * 3 * 8 + 23  # GRU (reset_after: two bias rows) and the untied output layer
    assert training_flops_per_token(untied) == 6 * (untied.count_params() - 23 * 4 - biases)


def test_curve_figures():
    assert bits_per_char(math.exp(2.0), tokens=10, characters=20) == pytest.approx(1.0 / math.log(2))
    curve = [{"train_seconds": 5.0, "val_bits_per_char": 2.5}, {"train_seconds": 9.0, "val_bits_per_char": 1.9},
             {"train_seconds": 12.0, "val_bits_per_char": 1.8}]
    assert first_time_below(curve, 2.0) == 9.0
    assert first_time_below(curve, 1.0) is None
    reference = {"family": "gru", "curve": [{"train_seconds": 100.0, "val_bits_per_char": 2.4},
                                            {"train_seconds": 200.0, "val_bits_per_char": 2.0}]}
    comparison = compare_formulations({"curve": curve}, reference)
    assert comparison["causal_seconds_to_reach_it"] == 9.0
    assert comparison["speedup"] == pytest.approx(22.2)
    assert comparison["goal_met"] is True


def test_results_carry_the_machine_and_quick_runs_never_overwrite_real_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    quick = common.write_results("demo", {"rows": [1]}, quick=True, started=0.0)
    real = common.write_results("demo", {"rows": [2]}, quick=False, started=0.0)
    assert quick.name == "demo.quick.json" and real.name == "demo.json"
    document = json.loads(real.read_text())
    assert document["rows"] == [2] and document["machine"]["cpus"] >= 1
    assert len(document["machine"]["load_average_1m_5m_15m"]) == 3
    monkeypatch.setenv("BENCH_QUICK", "1")
    assert common.parse_args("demo", []).quick is True
    monkeypatch.setenv("BENCH_QUICK", "0")
    assert common.parse_args("demo", []).quick is False


def test_auto_xla_on_cpu_only_for_models_without_recurrent_layers():
    """benchmarks/throughput.py measured XLA faster for the Transformer, slower for LSTM/GRU on CPU."""
    import tensorflow as tf

    from data_pipeline.config import ExperimentConfig
    from training_assets.compile import resolve_jit_compile

    if any(d.device_type != "CPU" for d in tf.config.list_physical_devices()):
        pytest.skip("the CPU rule only applies on CPU-only machines")
    config, strategy = ExperimentConfig(deterministic=False), tf.distribute.get_strategy()
    assert resolve_jit_compile(config, strategy) is False  # model unknown: the safe choice
    assert resolve_jit_compile(config, strategy, build_model("transformer", None, 23, 8, SHAPE)) is True
    # Keras turns XLA off under op determinism, so "auto" says so itself
    assert resolve_jit_compile(ExperimentConfig(deterministic=True), strategy,
                               build_model("transformer", None, 23, 8, SHAPE)) is False
    assert resolve_jit_compile(config, strategy, build_model("gru", None, 23, 8, {"units": 8})) is False
    assert resolve_jit_compile(ExperimentConfig(jit_compile=False), strategy,
                               build_model("transformer", None, 23, 8, SHAPE)) is False


def test_determinism_cost_is_the_median_of_paired_rounds():
    from benchmarks.determinism import cost_per_family

    def run(mode, tokens_per_second, cpu_ms_per_step, losses):
        return {"family": "gru", "mode": mode, "tokens_per_second": tokens_per_second,
                "cpu_ms_per_step": cpu_ms_per_step, "losses": losses}

    # rounds: (deterministic, xla) = (100, 90), (50, 40) on a loaded round, (100, 95)
    runs = [run("deterministic", 100, 100, [2.0, 1.0]), run("xla", 90, 110, [2.0, 1.0]),
            run("xla", 40, 125, [2.0, 1.5]), run("deterministic", 50, 100, [2.0, 1.0]),
            run("deterministic", 100, 100, [2.0, 1.0]), run("xla", 95, 100, [2.0, 1.25])]
    rows = {row["mode"]: row for row in cost_per_family(runs) if row["runs"]}
    xla = rows["xla"]
    assert xla["runs"] == 3 and xla["over_deterministic"] == 0.9  # ratios 0.9, 0.8, 0.95
    assert xla["over_deterministic_range"] == [0.8, 0.95]
    assert xla["tokens_per_second"] == 90
    assert xla["cpu_over_deterministic"] == round(100 / 110, 3)  # CPU ratios 0.909, 0.8, 1.0
    # the first and last run of a mode are compared step by step
    assert xla["repeat_max_loss_difference"] == 0.25
    assert rows["deterministic"]["repeat_max_loss_difference"] == 0.0
