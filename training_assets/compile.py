"""One compile step for every model family: optimizer, schedule, masked loss, metrics, XLA and precision.

Call `configure_precision(config, strategy)` BEFORE building a model (Keras layers read the global
dtype policy when they are created), then `compile_model(...)` on the built model.

XLA (`config.jit_compile`):
- "auto" resolves to False under any tf.distribute strategy other than the default one (Keras
  would do the same; forcing XLA under MirroredStrategy fails) and on CPU-only machines: a quick
  measurement here (2 shared, busy CPU cores; the registry's default models, batch 32 x 64
  tokens, vocab 2000; ms per training step without / with XLA) found XLA slower for every family:
  LSTM 149 / 1024, GRU 142 / 1025, SimpleRNN 87 / 511, Transformer 159 / 255.
  With a GPU or TPU under the default strategy "auto" is handed to Keras, which compiles with
  XLA unless a layer opts out: Keras LSTM/GRU layers that run on cuDNN set `supports_jit=False`
  (cuDNN kernels are not XLA ops), so recurrent models on GPU keep cuDNN and run without XLA.
- Exception, measured later with `python -m benchmarks.throughput` on a quiet 2-core CPU (vocab
  10k, batch 32 x 64, default sizes): XLA makes the Transformer 1.21x faster (9.1k vs 7.5k
  tokens/s; 1.30x at the nanoGPT baby-GPT shape, 18.6k vs 14.3k) but LSTM 0.75x, GRU 0.79x and
  SimpleRNN 0.64x. So when compile_model knows the model, "auto" on a CPU-only machine turns XLA
  on for models without recurrent layers whose layers all support it (not the GAN).
- True is honoured under the default strategy only; under other strategies it is turned off with a
  warning (TPUStrategy compiles every step with XLA anyway).
- Off whenever config.deterministic is set (not by default): Keras refuses XLA under TensorFlow op
  determinism (not every XLA op has a deterministic version), so the decision is made here,
  visibly, and ExperimentConfig rejects jit_compile=True with deterministic=True.
Steps per execution (`config.steps_per_execution`): "auto" is 32 on TPU (fewer host round trips)
and 1 elsewhere; it is forced to 1 under Mirrored/MultiWorker strategies, where Keras fails with >1.
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import tensorflow as tf

from data_pipeline.config import ExperimentConfig
from evaluation.metrics import MaskedAccuracy, Perplexity, masked_loss
from training_assets.strategy import is_default_strategy, is_tpu_strategy

logger = logging.getLogger("training_assets")

COSINE_FINAL_FRACTION = 0.1  # cosine decay ends at 10% of the peak learning rate
MAX_WARMUP_FRACTION = 0.1  # warmup never takes more than 10% of a run's steps
TPU_STEPS_PER_EXECUTION = 32
# biases and LayerNorm/RMSNorm scales and offsets (nanoGPT's rule)
NO_WEIGHT_DECAY = ["bias", "gamma", "beta", "scale"]
# Muon's own rules send every non-2-D variable (biases, norms, keras_hub's 3-D attention kernels)
# and every variable whose path contains "embedding" (token and position tables, the untied
# ReversibleEmbedding output) to AdamW; these are the other output matrices (the recurrent and
# bidirectional families' Dense "logits", the GAN discriminator's score) and the 2-D biases a GRU
# with reset_after keeps, (2, 3 x units).
MUON_ADAMW_LAYERS = [r"/logits/", r"/discriminator_output/", r"/bias$"]


def configure_precision(config: ExperimentConfig, strategy: tf.distribute.Strategy) -> str:
    """Set Keras' global dtype policy from config.mixed_precision and return its name.

    "auto": mixed_bfloat16 on TPU, mixed_float16 when every GPU has compute capability >= 7.0
    (tensor cores), float32 otherwise (CPU: mixed precision is slower there). Models keep float32
    logits, so the loss and the metrics stay float32 either way.
    """
    policy = config.mixed_precision
    if policy == "auto":
        policy = _automatic_precision(strategy)
    elif policy != "float32" and not (tf.config.list_physical_devices("GPU") or is_tpu_strategy(strategy)):
        logger.warning("mixed_precision=%r on a CPU-only machine: it runs, but slower than float32", policy)
    keras.mixed_precision.set_dtype_policy(policy)
    logger.info("dtype policy: %s", policy)
    return policy


def _automatic_precision(strategy: tf.distribute.Strategy) -> str:
    if is_tpu_strategy(strategy):
        return "mixed_bfloat16"
    gpus = tf.config.list_physical_devices("GPU")
    capabilities = [tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
                    for gpu in gpus]
    if capabilities and all(tuple(capability) >= (7, 0) for capability in capabilities):
        return "mixed_float16"
    return "float32"


def resolve_jit_compile(config: ExperimentConfig, strategy: tf.distribute.Strategy,
                        model: keras.Model | None = None) -> bool | str:
    """The `jit_compile` argument for model.compile (see the module docstring for the rules)."""
    if config.deterministic:
        return False
    if not is_default_strategy(strategy):
        if config.jit_compile is True:
            logger.warning("jit_compile=True ignored under %s: Keras cannot force XLA under a "
                           "distribution strategy (TPUs compile with XLA anyway)", type(strategy).__name__)
        return False
    if config.jit_compile == "auto":
        accelerators = [d for d in tf.config.list_physical_devices() if d.device_type != "CPU"]
        if accelerators:
            return "auto"
        return (model is not None and not _has_recurrent_layers(model)
                and all(layer.supports_jit for layer in model._flatten_layers()))
    return config.jit_compile


def _has_recurrent_layers(model: keras.Model) -> bool:
    """XLA compiles Keras' recurrent loops into slower CPU code than TensorFlow's own kernels."""
    return any(isinstance(layer, keras.layers.RNN) for layer in model._flatten_layers())


def resolve_steps_per_execution(config: ExperimentConfig, strategy: tf.distribute.Strategy) -> int:
    """Batches per compiled call: >1 only under the default strategy or on TPU."""
    allowed = is_default_strategy(strategy) or is_tpu_strategy(strategy)
    if config.steps_per_execution == "auto":
        return TPU_STEPS_PER_EXECUTION if is_tpu_strategy(strategy) else 1
    if config.steps_per_execution > 1 and not allowed:
        logger.warning("steps_per_execution=%d ignored under %s (Keras fails with >1 there); using 1",
                       config.steps_per_execution, type(strategy).__name__)
        return 1
    return config.steps_per_execution


@keras.saving.register_keras_serializable(package="training_assets")
class WarmupCosineDecay(keras.optimizers.schedules.CosineDecay):
    """Keras' warmup + cosine decay whose length can change during training.

    The decay length lives in a variable so that `fit_to_steps` can stretch or shrink it while
    the compiled train step keeps running: a run stopped by a time budget long before its last
    epoch would otherwise train at the peak rate until it is cut off (see ScheduleToTimeBudget).
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, **kwargs: Any):
        super().__init__(initial_learning_rate, decay_steps, **kwargs)
        self.decay_steps = keras.Variable(float(decay_steps), dtype="float32", trainable=False,
                                          name="cosine_decay_steps")

    @property
    def total_steps(self) -> int:
        """Warmup + decay steps: the step at which the rate reaches its floor."""
        return int(keras.ops.convert_to_numpy(self.decay_steps)) + int(self.warmup_steps)

    def fit_to_steps(self, total_steps: int) -> None:
        """End the decay at `total_steps` (warmup unchanged)."""
        self.decay_steps.assign(float(max(int(total_steps) - int(self.warmup_steps), 1)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "decay_steps": int(keras.ops.convert_to_numpy(self.decay_steps))}


def learning_rate_schedule(config: ExperimentConfig, learning_rate: float,
                           total_steps: int) -> float | WarmupCosineDecay:
    """Constant, or linear warmup from 0 to `learning_rate` then cosine decay to 10% of it at total_steps.

    total_steps counts batches (the optimizer's step counter advances every batch, also with
    gradient accumulation). Warmup is capped at 10% of total_steps (logged), so short runs such as
    tuning trials spend most of their steps at the peak rate instead of warming up.
    """
    if config.learning_rate_schedule == "constant":
        return float(learning_rate)
    total_steps = max(int(total_steps), 1)
    warmup = min(config.warmup_steps, int(total_steps * MAX_WARMUP_FRACTION))
    if warmup < config.warmup_steps:
        logger.info("warmup_steps=%d capped at %d (10%% of %d total steps)", config.warmup_steps, warmup, total_steps)
    if warmup == 0:
        return WarmupCosineDecay(float(learning_rate), decay_steps=total_steps, alpha=COSINE_FINAL_FRACTION)
    return WarmupCosineDecay(
        initial_learning_rate=0.0, decay_steps=max(total_steps - warmup, 1), alpha=COSINE_FINAL_FRACTION,
        warmup_target=float(learning_rate), warmup_steps=warmup)


def build_optimizer(config: ExperimentConfig,
                    learning_rate: float | WarmupCosineDecay) -> keras.optimizers.Optimizer:
    """Adam, AdamW or Muon (decoupled weight decay, not on biases/norms), clipped, optionally
    accumulating.

    Muon (keras.optimizers.Muon) orthogonalises the momentum of each 2-D hidden matrix (attention
    and MLP kernels, recurrent input and recurrent kernels) by Newton-Schulz iterations and runs
    AdamW on the rest (MUON_ADAMW_LAYERS). `learning_rate` keeps its AdamW meaning for both
    groups: adam_lr_ratio=1, and Keras' Moonlight scaling (rms_rate=0.2: each Muon update is
    scaled by 0.2 * sqrt(max(rows, cols))) gives Muon updates the RMS size of AdamW's, so one
    learning rate and one schedule serve both (Liu et al. 2025, arXiv:2502.16982).
    Under a distribution strategy Keras clips each replica's gradients before they are summed.
    """
    common = dict(
        learning_rate=learning_rate,
        clipnorm=config.clipnorm,
        gradient_accumulation_steps=(config.gradient_accumulation_steps
                                     if config.gradient_accumulation_steps > 1 else None),
    )
    if config.ema_momentum:  # validated and saved through weight_averaging(config)
        common.update(use_ema=True, ema_momentum=config.ema_momentum)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(**common)
    if config.optimizer == "muon":
        optimizer = keras.optimizers.Muon(
            weight_decay=config.weight_decay, adam_weight_decay=config.weight_decay,
            exclude_embeddings=True, exclude_layers=list(MUON_ADAMW_LAYERS), adam_lr_ratio=1.0,
            **common)
        optimizer.exclude_from_weight_decay(var_names=NO_WEIGHT_DECAY)
        return optimizer
    optimizer = keras.optimizers.AdamW(weight_decay=config.weight_decay, **common)
    optimizer.exclude_from_weight_decay(var_names=NO_WEIGHT_DECAY)
    return optimizer


def weight_averaging(config: ExperimentConfig) -> list[keras.callbacks.Callback]:
    """With `ema_momentum`: validation, checkpoints and early stopping see the averaged weights.

    Put it before ModelCheckpoint: at each epoch's end it swaps the average into the model (and
    back at the next epoch's start), so the checkpoint holds the weights that were validated.
    """
    return [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.ema_momentum else []


def compile_model(model: keras.Model, config: ExperimentConfig, learning_rate: float, total_steps: int,
                  strategy: tf.distribute.Strategy) -> float | WarmupCosineDecay:
    """Compile `model` (built under `strategy.scope()`) for masked causal LM training.

    Returns the learning rate or schedule it used (a time budget fits the schedule's length).
    """
    with strategy.scope():
        schedule = learning_rate_schedule(config, learning_rate, total_steps)
        model.compile(
            optimizer=build_optimizer(config, schedule),
            loss=masked_loss(),
            metrics=[Perplexity(), MaskedAccuracy()],
            jit_compile=resolve_jit_compile(config, strategy, model),
            steps_per_execution=resolve_steps_per_execution(config, strategy),
        )
    return schedule
