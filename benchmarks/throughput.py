"""Training throughput: tokens/s per family (XLA on/off), model FLOPs utilisation, Keras vs PyTorch.

Run `python -m benchmarks.throughput [--quick] [--profile DIR]`, or with `--recurrent [--abc PATH]
[--seconds 60]` for part 3 alone.

1. Families at their default sizes (vocab 10k, batch 32 x 64, compiled by the framework's
   compile_model), XLA on and off, all cores: tokens/s and model FLOPs utilisation (MFU) against
   an fp32 matmul peak measured in the same process with the same threads.
2. The nanoGPT CPU "baby GPT" shape (4 layers, 4 heads, 128 wide, ff 512, block 64, batch 12,
   dropout 0, character vocabulary of the benchmark corpus) as the project's Transformer (Keras)
   and as benchmarks/torch_gpt.py (PyTorch eager), from the SAME initial weights on the SAME
   batches: tokens/s on one thread and on all cores, and both validation losses after equal steps.
   Skipped with a message when torch is not installed (requirements-bench.txt).
3. `--recurrent`: LSTM and GRU at their defaults against PyTorch references of the same layout
   (benchmarks/torch_rnn.py), same initial weights, same batches, 1 and 2 threads, tokens/s and
   validation loss after equal wall time, at the demo's shape and the ABC protocol's
   (benchmarks/recurrent_reference.py); written to benchmarks/results/throughput_recurrent.json.
Every setting runs in its own process: thread counts are fixed when TensorFlow/PyTorch start.

Model FLOPs per token: 3 x the family's own `forward_flops_per_token()` (the model-family
contract: 2 x the weights that multiply each token, tied output counted once, lookups not
counted, plus attention over the full T x T scores, as PaLM's MFU counts them); training is
forward + backward, the usual 6N rule.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.common import (MEASURED_DEFAULTS, limit_threads, load_average, parse_args, peak_rss_mb,
                               report, run_worker, served_as_worker,
                               write_results)
from model_architectures.registry import family_names

NAME = "throughput"
FAMILIES = family_names(brings_tokenizer=False, likelihood=True)  # from scratch, by perplexity
VOCAB, MAX_LEN, BATCH = 10_000, 64, 32  # the time-to-quality protocol's shapes
GPT_SHAPE = {"num_layers": 4, "num_heads": 4, "embedding_dim": 128, "ff_dim": 512, "dropout": 0.0,
             "tie_embeddings": True, "block": "gpt2"}
GPT_MAX_LEN, GPT_BATCH = 64, 12  # nanoGPT's CPU example: --block_size=64 --batch_size=12
GPT_LEARNING_RATE, GPT_WARMUP = 1e-3, 100
FULL = {"family_steps": 30, "gpt_steps": 400, "warm_steps": 20, "val_rows": 512}
QUICK = {"family_steps": 3, "gpt_steps": 12, "warm_steps": 4, "val_rows": 48}
MATMUL_SIZE = 1024


# --- figures shared by both frameworks -----------------------------------------------------------
def training_flops_per_token(model: Any) -> float:
    """3 x the model's forward FLOPs per predicted token (see the module docstring)."""
    return 3.0 * model.forward_flops_per_token()


def tf_matmul_peak_gflops(size: int = MATMUL_SIZE, repeats: int = 20) -> float:
    """Best fp32 GFLOP/s of a (size x size) @ (size x size) matmul with this process's threads."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    matmul(a, b).numpy()
    best = min(_seconds(lambda: matmul(a, b).numpy()) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def torch_matmul_peak_gflops(size: int = MATMUL_SIZE, repeats: int = 20) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(_seconds(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def step_clock():
    """A Keras callback stamping the end of every training batch (wall and CPU seconds)."""
    import keras

    class StepClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.wall, self.cpu = [], []

        def on_train_batch_end(self, batch, logs=None):
            self.wall.append(time.perf_counter())
            self.cpu.append(time.process_time())

        def rate(self, tokens_per_step: float, skip: int) -> dict[str, float]:
            """tokens/s over the batches after the first `skip` (tracing/compiling)."""
            steps = len(self.wall) - 1 - skip
            wall = self.wall[-1] - self.wall[skip]
            cpu = self.cpu[-1] - self.cpu[skip]
            return {"tokens_per_second": tokens_per_step * steps / wall,
                    "ms_per_step": 1000 * wall / steps, "cpu_per_wall": cpu / wall}

    return StepClock()


def _training_config(jit_compile: bool, total_steps: int):
    from data_pipeline.config import ExperimentConfig

    return ExperimentConfig.from_dict({**MEASURED_DEFAULTS, "jit_compile": jit_compile, "strategy": "default",
                                       "deterministic": False,  # XLA is what is measured
                                       "warmup_steps": GPT_WARMUP, "steps_per_execution": 1})


# --- workers ---------------------------------------------------------------------------------------
def family_worker(arguments: dict[str, Any]) -> dict[str, Any]:
    """Tokens/s and MFU of one family at its default size, with the framework's compile."""
    limit_threads(arguments["threads"])
    import tensorflow as tf

    from model_architectures.registry import build_model
    from training_assets.compile import compile_model

    steps, warm = arguments["steps"], arguments["warm_steps"]
    model = build_model(arguments["family"], None, VOCAB, MAX_LEN)
    compile_model(model, _training_config(arguments["jit_compile"], steps + warm), 1e-3,
                  steps + warm, tf.distribute.get_strategy())
    rows = np.random.default_rng(0).integers(1, VOCAB, (BATCH * 8, MAX_LEN + 1), dtype=np.int32)
    dataset = tf.data.Dataset.from_tensor_slices((rows[:, :-1], rows[:, 1:])).batch(BATCH).repeat()
    clock = step_clock()
    model.fit(dataset, steps_per_epoch=steps + warm + 1, epochs=1, callbacks=[clock], verbose=0)
    rate = clock.rate(BATCH * MAX_LEN, warm)
    peak = tf_matmul_peak_gflops()
    flops = training_flops_per_token(model)
    return {"family": arguments["family"], "xla": arguments["jit_compile"],
            "threads": arguments["threads"] or os.cpu_count(), "parameters": model.count_params(),
            **{key: round(value, 3) for key, value in rate.items()},
            "gflops_per_token": round(flops / 1e9, 5),
            "model_gflops_per_second": round(rate["tokens_per_second"] * flops / 1e9, 2),
            "matmul_peak_gflops": round(peak, 1),
            "mfu": round(rate["tokens_per_second"] * flops / 1e9 / peak, 4),
            "peak_rss_mb": round(peak_rss_mb()), "load_average": load_average()}


def gpt_data(workdir: str, quick: bool) -> dict[str, np.ndarray]:
    """Packed char-level rows of the benchmark corpus (train, validation), cached as .npz."""
    from benchmarks.common import benchmark_data_file

    _, data_file = benchmark_data_file()
    return packed_split_rows(workdir, "gpt_rows", {"data_file": data_file, "tokenizer": "char",
                                                   "split": "ordered", "max_len": GPT_MAX_LEN}, quick)


def packed_split_rows(workdir: str, name: str, settings: dict[str, Any],
                      quick: bool) -> dict[str, np.ndarray]:
    """Train and validation rows (R, max_len + 1) packed as training packs them, and vocab_size.

    `settings` are CONFIG keys (data_file, tokenizer, vocab_size, max_len, split, cleaning...);
    the corpus is loaded, split and tokenized by data_pipeline, once per workdir (<name>.npz).
    """
    cache = Path(workdir) / f"{name}.npz"
    if cache.exists():
        return dict(np.load(cache))
    from data_pipeline.config import ExperimentConfig
    from data_pipeline.corpus import load_corpus
    from data_pipeline.datasets import packed_rows, token_stream
    from data_pipeline.tokenizer import fit_or_load_tokenizer

    config = ExperimentConfig.from_dict({**MEASURED_DEFAULTS, **settings,
                                         **({"sample_size": 2000} if quick else {}),
                                         "tokenizer_path": str(Path(workdir) / f"{name}_tokenizer.json")})
    corpus = load_corpus(config)
    tokenizer = fit_or_load_tokenizer(corpus.train, config)
    rows = {split: packed_rows(token_stream(tokenizer.encode_batch(getattr(corpus, split)), tokenizer.eos_id),
                               config.max_len, keep_remainder=False)
            for split in ("train", "validation")}
    rows["vocab_size"] = np.array(tokenizer.vocab_size)
    np.savez(cache, **rows)
    return rows


def batch_order(train_rows: int, steps: int, batch: int = GPT_BATCH) -> np.ndarray:
    """The same (steps, batch) row indices for both frameworks."""
    return np.random.default_rng(0).integers(0, train_rows, (steps, batch))


def keras_gpt_worker(arguments: dict[str, Any]) -> dict[str, Any]:
    """The project's Transformer at the baby-GPT shape; writes its initial weights for PyTorch."""
    limit_threads(arguments["threads"])
    import keras
    import tensorflow as tf

    from model_architectures.registry import build_model
    from training_assets.compile import compile_model

    data = gpt_data(arguments["workdir"], arguments["quick"])
    steps, warm = arguments["steps"], arguments["warm_steps"]
    keras.utils.set_random_seed(0)
    model = build_model("transformer", None, int(data["vocab_size"]), GPT_MAX_LEN, GPT_SHAPE)
    initial = Path(arguments["workdir"]) / "initial_gpt.npz"
    if not initial.exists():
        np.savez(initial, **torch_state_of(model))
    else:
        load_torch_state_into(model, dict(np.load(initial)))
    compile_model(model, _training_config(arguments["jit_compile"], steps), GPT_LEARNING_RATE, steps,
                  tf.distribute.get_strategy())
    batches = data["train"][batch_order(len(data["train"]), steps)]  # (steps, B, T+1)
    dataset = tf.data.Dataset.from_tensor_slices(batches).map(lambda rows: (rows[:, :-1], rows[:, 1:]))
    clock = step_clock()
    model.fit(dataset.prefetch(2), epochs=1, callbacks=[clock], verbose=0)
    rate = clock.rate(GPT_BATCH * GPT_MAX_LEN, warm)
    peak = tf_matmul_peak_gflops()
    flops = training_flops_per_token(model)
    return {"framework": "keras", "xla": arguments["jit_compile"],
            "threads": arguments["threads"] or os.cpu_count(), "steps": steps,
            **{key: round(value, 3) for key, value in rate.items()},
            "validation_loss": round(_keras_mean_loss(model, data["validation"][:arguments["val_rows"]]), 4),
            "mfu": round(rate["tokens_per_second"] * flops / 1e9 / peak, 4),
            "matmul_peak_gflops": round(peak, 1), "parameters": model.count_params(),
            "peak_rss_mb": round(peak_rss_mb()), "load_average": load_average()}


def _keras_mean_loss(model: Any, rows: np.ndarray) -> float:
    import tensorflow as tf

    total, count = 0.0, 0
    for start in range(0, len(rows), 64):
        batch = rows[start:start + 64]
        logits = model(batch[:, :-1], training=False)
        targets = batch[:, 1:]
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits).numpy()
        total += float(nll[targets != 0].sum())
        count += int((targets != 0).sum())
    return total / max(count, 1)


def torch_gpt_worker(arguments: dict[str, Any]) -> dict[str, Any]:
    import torch

    from benchmarks.torch_gpt import GPT, GPTConfig
    from benchmarks.torch_training import Trainer

    threads = arguments["threads"] or os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = gpt_data(arguments["workdir"], arguments["quick"])
    steps, warm = arguments["steps"], arguments["warm_steps"]
    config = GPTConfig(vocab_size=int(data["vocab_size"]), max_len=GPT_MAX_LEN,
                       **{key: value for key, value in GPT_SHAPE.items() if key != "tie_embeddings"})
    model = GPT(config)
    model.load_state_dict({key: torch.from_numpy(value) for key, value in
                           np.load(Path(arguments["workdir"]) / "initial_gpt.npz").items()})
    trainer = Trainer(model, GPT_LEARNING_RATE, total_steps=steps,
                      warmup_steps=min(GPT_WARMUP, steps // 10))
    batches = torch.from_numpy(data["train"][batch_order(len(data["train"]), steps)].astype(np.int64))
    stamps, cpu = [], []
    for rows in batches:
        trainer.step(rows[:, :-1], rows[:, 1:])
        stamps.append(time.perf_counter())
        cpu.append(time.process_time())
    wall = stamps[-1] - stamps[warm]
    tokens_per_second = GPT_BATCH * GPT_MAX_LEN * (steps - 1 - warm) / wall
    peak = torch_matmul_peak_gflops()
    flops = 6.0 * (sum(p.numel() for p in model.parameters()) - GPT_MAX_LEN * config.embedding_dim) \
        + 12.0 * config.num_layers * GPT_MAX_LEN * config.embedding_dim
    return {"framework": "pytorch", "xla": None, "threads": threads, "steps": steps,
            "tokens_per_second": round(tokens_per_second, 3),
            "ms_per_step": round(1000 * wall / (steps - 1 - warm), 3),
            "cpu_per_wall": round((cpu[-1] - cpu[warm]) / wall, 3),
            "validation_loss": round(trainer.mean_loss(data["validation"][:arguments["val_rows"]], 64), 4),
            "mfu": round(tokens_per_second * flops / 1e9 / peak, 4),
            "matmul_peak_gflops": round(peak, 1),
            "parameters": sum(p.numel() for p in model.parameters()),
            "peak_rss_mb": round(peak_rss_mb()), "load_average": load_average(),
            "torch": torch.__version__}


# --- Keras <-> PyTorch weights (numpy only, so neither side imports the other framework) ------
def torch_state_of(keras_model: Any) -> dict[str, np.ndarray]:
    """The Keras Transformer's weights under benchmarks.torch_gpt.GPT's state_dict names."""
    width = keras_model.embedding_dim
    state = {"token_embedding.weight": keras_model.token_embedding.embeddings.numpy(),
             "position_embedding.weight": keras_model.position_embedding.position_embeddings.numpy(),
             "final_norm.weight": keras_model.final_norm.gamma.numpy(),
             "final_norm.bias": keras_model.final_norm.beta.numpy()}
    for index, block in enumerate(keras_model.blocks):
        prefix = f"blocks.{index}."
        attention = block._self_attention_layer
        qkv = (attention._query_dense, attention._key_dense, attention._value_dense)
        state[prefix + "attention.qkv.weight"] = np.concatenate(
            [dense.kernel.numpy().reshape(width, width) for dense in qkv], axis=1).T  # (3E, E)
        state[prefix + "attention.qkv.bias"] = np.concatenate([d.bias.numpy().reshape(width) for d in qkv])
        state[prefix + "attention.projection.weight"] = attention._output_dense.kernel.numpy().reshape(width, width).T
        state[prefix + "attention.projection.bias"] = attention._output_dense.bias.numpy()
        for name, norm in (("attention_norm", block._self_attention_layer_norm),
                           ("feedforward_norm", block._feedforward_layer_norm)):
            state[prefix + name + ".weight"] = norm.gamma.numpy()
            state[prefix + name + ".bias"] = norm.beta.numpy()
        for name, dense in (("intermediate", block._feedforward_intermediate_dense),
                            ("output", block._feedforward_output_dense)):
            state[prefix + name + ".weight"] = dense.kernel.numpy().T
            state[prefix + name + ".bias"] = dense.bias.numpy()
    return {key: np.ascontiguousarray(value, dtype=np.float32) for key, value in state.items()}


def load_torch_state_into(keras_model: Any, state: dict[str, np.ndarray]) -> None:
    """The inverse of torch_state_of (the all-cores Keras run starts from the same weights)."""
    width, heads = keras_model.embedding_dim, keras_model.num_heads
    keras_model.token_embedding.embeddings.assign(state["token_embedding.weight"])
    keras_model.position_embedding.position_embeddings.assign(state["position_embedding.weight"])
    keras_model.final_norm.gamma.assign(state["final_norm.weight"])
    keras_model.final_norm.beta.assign(state["final_norm.bias"])
    for index, block in enumerate(keras_model.blocks):
        prefix = f"blocks.{index}."
        attention = block._self_attention_layer
        kernels = np.split(state[prefix + "attention.qkv.weight"].T, 3, axis=1)
        biases = np.split(state[prefix + "attention.qkv.bias"], 3)
        for dense, kernel, bias in zip((attention._query_dense, attention._key_dense,
                                        attention._value_dense), kernels, biases):
            dense.kernel.assign(kernel.reshape(width, heads, width // heads))
            dense.bias.assign(bias.reshape(heads, width // heads))
        attention._output_dense.kernel.assign(
            state[prefix + "attention.projection.weight"].T.reshape(heads, width // heads, width))
        attention._output_dense.bias.assign(state[prefix + "attention.projection.bias"])
        for name, norm in (("attention_norm", block._self_attention_layer_norm),
                           ("feedforward_norm", block._feedforward_layer_norm)):
            norm.gamma.assign(state[prefix + name + ".weight"])
            norm.beta.assign(state[prefix + name + ".bias"])
        for name, dense in (("intermediate", block._feedforward_intermediate_dense),
                            ("output", block._feedforward_output_dense)):
            dense.kernel.assign(state[prefix + name + ".weight"].T)
            dense.bias.assign(state[prefix + name + ".bias"])


def profile_keras_gpt(directory: str, workdir: str) -> None:
    """A TensorFlow profiler trace of 10 baby-GPT training steps (open with TensorBoard)."""
    import keras
    import tensorflow as tf

    from model_architectures.registry import build_model
    from training_assets.compile import compile_model

    data = gpt_data(workdir, quick=False)
    model = build_model("transformer", None, int(data["vocab_size"]), GPT_MAX_LEN, GPT_SHAPE)
    compile_model(model, _training_config(True, 40), GPT_LEARNING_RATE, 40, tf.distribute.get_strategy())
    batches = data["train"][batch_order(len(data["train"]), 40)]
    dataset = tf.data.Dataset.from_tensor_slices(batches).map(lambda rows: (rows[:, :-1], rows[:, 1:]))
    model.fit(dataset.take(20), epochs=1, verbose=0)
    tf.profiler.experimental.start(directory)
    model.fit(dataset.skip(20).take(10), epochs=1, verbose=0, callbacks=[keras.callbacks.Callback()])
    tf.profiler.experimental.stop()


WORKERS = {"family": family_worker, "keras_gpt": keras_gpt_worker, "torch_gpt": torch_gpt_worker}


def serve_worker(arguments: dict[str, Any]) -> dict[str, Any]:
    """Run the worker named by arguments["kind"] (the recurrent ones live in their own module)."""
    kind = arguments.pop("kind")
    if kind in WORKERS:
        return WORKERS[kind](arguments)
    from benchmarks.recurrent_reference import WORKERS as RECURRENT_WORKERS

    return RECURRENT_WORKERS[kind](arguments)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", metavar="DIR",
                        help="also write a TF profiler trace of the Keras GPT to DIR")
    parser.add_argument("--recurrent", action="store_true",
                        help="only LSTM and GRU against PyTorch references (tokens/s, loss at equal time)")
    parser.add_argument("--abc", metavar="PATH",
                        help="with --recurrent: the ABC headlines CSV (adds its shape)")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="with --recurrent: wall-clock training seconds of every run (default 60)")


def main(argv: Sequence[str] | None = None) -> None:
    if served_as_worker(argv, serve_worker):
        return
    args = parse_args(__doc__.splitlines()[0], argv, options)
    started = time.perf_counter()
    if args.recurrent:
        from benchmarks.recurrent_reference import run_recurrent

        run_recurrent(args.abc, args.seconds, args.quick, started)
        return
    settings = QUICK if args.quick else FULL
    families = []
    for family in (("gru", "transformer") if args.quick else FAMILIES):
        for jit_compile in (True, False):
            families.append(run_worker(NAME, {"kind": "family", "family": family, "jit_compile": jit_compile,
                                              "threads": None, "steps": settings["family_steps"],
                                              "warm_steps": settings["warm_steps"]}))
            print(families[-1], flush=True)

    gpt: list[dict[str, Any]] = []
    notes = []
    try:
        import torch  # noqa: F401
        has_torch = True
    except ImportError:
        has_torch = False
        notes.append("PyTorch comparison skipped: torch is not installed "
                     "(pip install -r requirements-bench.txt)")
    with tempfile.TemporaryDirectory() as workdir:
        common = {"workdir": workdir, "quick": args.quick, "steps": settings["gpt_steps"],
                  "warm_steps": settings["warm_steps"], "val_rows": settings["val_rows"]}
        runs = [("keras_gpt", threads, jit) for threads in (1, None) for jit in (True, False)]
        if has_torch:
            runs += [("torch_gpt", threads, None) for threads in (1, None)]
        for kind, threads, jit in runs:
            gpt.append(run_worker(NAME, {"kind": kind, "threads": threads, "jit_compile": jit, **common}))
            print(gpt[-1], flush=True)
        if args.profile:
            profile_keras_gpt(args.profile, workdir)
            notes.append(f"profiler trace: tensorboard --logdir {args.profile}")
    ratios = keras_over_torch(gpt)
    path = write_results(NAME, {"families": families, "gpt": gpt, "keras_over_pytorch": ratios,
                                "gpt_shape": {**GPT_SHAPE, "max_len": GPT_MAX_LEN, "batch": GPT_BATCH}},
                         args.quick, started)
    report(NAME, families + gpt, path, notes + [f"Keras/PyTorch: {ratios}"])


def keras_over_torch(gpt: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best Keras setting / PyTorch, per thread count: tokens/s ratio and the two losses."""
    ratios = []
    for threads in sorted({run["threads"] for run in gpt}):
        torch_runs = [r for r in gpt if r["framework"] == "pytorch" and r["threads"] == threads]
        keras_runs = [r for r in gpt if r["framework"] == "keras" and r["threads"] == threads]
        if not torch_runs or not keras_runs:
            continue
        best = max(keras_runs, key=lambda r: r["tokens_per_second"])
        ratios.append({"threads": threads, "keras_xla": best["xla"],
                       "tokens_per_second_ratio": round(best["tokens_per_second"]
                                                        / torch_runs[0]["tokens_per_second"], 3),
                       "keras_validation_loss": best["validation_loss"],
                       "pytorch_validation_loss": torch_runs[0]["validation_loss"]})
    return ratios


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
