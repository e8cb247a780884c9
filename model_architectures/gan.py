"""Experimental: a GAN text generator, trained adversarially, placed beside the language models.

Generator: token embedding + learned positions -> `num_layers` keras-hub TransformerDecoder blocks
whose cross-attention reads a noise memory: the noise block (Dense -> GELU -> Dense -> LayerNorm)
turns one global noise vector z (B, Z) into `noise_slots` vectors (B, M, E). Tokens come one step
at a time with a self-attention cache, as in the Transformer family; the cache carries z, so a
sample keeps its noise vector from its first token to its last.

Discriminator: soft token distributions (B, K, V) through its own embedding matrix (a matmul, so
one-hot real text and Gumbel-softmax generated text take the same path), learned positions,
TransformerEncoder blocks, mean pooling, one logit.

Training (`train_step`, two optimisers): per batch a fresh z per row; the generator rolls out
`adversarial_length` tokens after each real window's first token (the discriminator compares
them with the window's next as many real tokens), feeding each step's Gumbel-softmax
distribution (not its argmax) back through its embedding matrix, so gradients reach it through
the discriminator. Losses are the non-saturating GAN losses. For the first `pretrain_steps`
generator steps its loss is the teacher-forced negative log-likelihood of the real window
instead (maximum-likelihood pre-training, as SeqGAN and RelGAN do); the discriminator trains
from the start. The model assigns text no likelihood (z is integrated over, never inferred), so
`has_likelihood` is False: evaluation leaves perplexity and bits/char empty and judges samples.
`call` uses z = 0, the prior's mean; generation draws a fresh z per sample after
`seed_generation`.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

import keras
import keras_hub
import keras_tuner as kt
import numpy as np
import tensorflow as tf
from keras import ops

from model_architectures.contract import LanguageModel, matmul_weights
from model_architectures.gan_space import GAN_OBJECTIVES, GAN_SPACE
from model_architectures.modern_block import normal
from model_architectures.saving import TRAINING_OBJECTS_MODULE, RestoresTrainingState
from model_architectures.search_space import declare
from model_architectures.transformer import gpt_blocks

PAD_ID = 0  # [PAD]: never generated, never a target


def twin_optimizer(optimizer: keras.optimizers.Optimizer, name: str) -> keras.optimizers.Optimizer:
    """A second optimizer with the same settings and the same learning-rate schedule object, so a
    time budget that resizes the schedule (ScheduleToTimeBudget) resizes both."""
    config = optimizer.get_config()
    schedule = getattr(optimizer, "_learning_rate", None)  # the schedule itself, not its value
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        config["learning_rate"] = schedule
    return type(optimizer).from_config({**config, "name": name})


@keras.saving.register_keras_serializable(package="text_synthesis")
class GanLanguageModel(RestoresTrainingState, LanguageModel):
    """Generator (noise -> tokens, one step at a time) and discriminator in one Keras model."""

    objectives = GAN_OBJECTIVES
    has_likelihood = False

    def __init__(self, vocab_size: int, max_len: int, embedding_dim: int = 128, num_layers: int = 2,
                 num_heads: int = 4, ff_dim: int = 256, dropout: float = 0.2, noise_dim: int = 32,
                 noise_slots: int = 4, discriminator_layers: int = 1, gumbel_temperature: float = 0.5,
                 adversarial_length: int = 16, pretrain_steps: int = 200, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The Gumbel-softmax rollout's loop does not compile with XLA (no fixed list size).
        self.supports_jit = False
        self.vocab_size, self.max_len = int(vocab_size), int(max_len)
        self.embedding_dim, self.num_layers = int(embedding_dim), int(num_layers)
        self.num_heads, self.ff_dim, self.dropout = int(num_heads), int(ff_dim), float(dropout)
        self.noise_dim, self.noise_slots = int(noise_dim), int(noise_slots)
        self.discriminator_layers = int(discriminator_layers)
        self.gumbel_temperature, self.pretrain_steps = float(gumbel_temperature), int(pretrain_steps)
        self.adversarial_length = int(adversarial_length)
        self.rollout_length = min(self.adversarial_length, self.max_len)  # K below
        if self.embedding_dim < self.num_heads:
            raise ValueError(f"embedding_dim={self.embedding_dim} must be >= num_heads={self.num_heads}")
        self.head_dim = self.embedding_dim // self.num_heads
        self._noise_rng: np.random.Generator | None = None  # None: z = 0 (see seed_generation)

        # generator
        self.token_embedding = keras.layers.ReversibleEmbedding(
            self.vocab_size, self.embedding_dim, tie_weights=True,
            embeddings_initializer=normal(0.02), reverse_dtype="float32", name="token_embedding")
        self.position_embedding = keras_hub.layers.PositionEmbedding(
            sequence_length=self.max_len, initializer=normal(0.02), name="position_embedding")
        self.embedding_dropout = keras.layers.Dropout(self.dropout, name="embedding_dropout")
        self.noise_hidden = keras.layers.Dense(self.ff_dim, activation="gelu", name="noise_hidden")
        self.noise_memory = keras.layers.Dense(self.noise_slots * self.embedding_dim, name="noise_memory")
        self.noise_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="noise_norm")
        self.blocks = gpt_blocks(self.num_layers, self.ff_dim, self.num_heads, self.dropout)
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")
        # discriminator
        self.discriminator_embedding = keras.layers.Dense(
            self.embedding_dim, use_bias=False, kernel_initializer=normal(0.02),
            name="discriminator_embedding")  # (V, E): soft distributions @ embedding matrix
        self.discriminator_positions = keras_hub.layers.PositionEmbedding(
            sequence_length=self.max_len, initializer=normal(0.02), name="discriminator_positions")
        self.discriminator_blocks = [
            keras_hub.layers.TransformerEncoder(
                intermediate_dim=self.ff_dim, num_heads=self.num_heads, dropout=self.dropout,
                activation="gelu", normalize_first=True, layer_norm_epsilon=1e-5,
                kernel_initializer=normal(0.02), name=f"discriminator_block_{index}")
            for index in range(self.discriminator_layers)
        ]
        self.discriminator_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="discriminator_norm")
        self.discriminator_output = keras.layers.Dense(1, dtype="float32", name="discriminator_output")

        self.noise_seed = keras.random.SeedGenerator(name="noise_seed")  # training's z and Gumbel noise
        self.trackers = {name: keras.metrics.Mean(name=name) for name in
                         ("loss", "generator_loss", "discriminator_loss", "generator_nll")}
        self.discriminator_optimizer: keras.optimizers.Optimizer | None = None

    @property
    def max_sequence_length(self) -> int | None:
        return self.max_len

    def build(self, input_shape: tuple) -> None:
        batch, length = input_shape[0], input_shape[1]
        hidden_shape = (batch, length, self.embedding_dim)
        memory_shape = (batch, self.noise_slots, self.embedding_dim)
        self.token_embedding.build((batch, length))
        self.position_embedding.build(hidden_shape)
        self.noise_hidden.build((batch, self.noise_dim))
        self.noise_memory.build((batch, self.ff_dim))
        self.noise_norm.build(memory_shape)
        for block in self.blocks:
            block.build(hidden_shape, memory_shape)
        self.final_norm.build(hidden_shape)
        self.discriminator_embedding.build((batch, length, self.vocab_size))
        self.discriminator_positions.build(hidden_shape)
        for block in self.discriminator_blocks:
            block.build(hidden_shape)
        self.discriminator_norm.build(hidden_shape)
        self.discriminator_output.build((batch, self.embedding_dim))
        self.built = True

    # --- generator ------------------------------------------------------------------------------

    def _generator_layers(self) -> list[keras.layers.Layer]:
        return [self.token_embedding, self.position_embedding, self.noise_hidden, self.noise_memory,
                self.noise_norm, *self.blocks, self.final_norm]

    def _discriminator_layers(self) -> list[keras.layers.Layer]:
        return [self.discriminator_embedding, self.discriminator_positions, *self.discriminator_blocks,
                self.discriminator_norm, self.discriminator_output]

    def _memory(self, noise, training: bool = False):
        """(B, Z) -> (B, M, E): the noise block's memory slots the decoder blocks cross-attend to."""
        x = self.noise_memory(self.noise_hidden(noise))  # (B, M*E)
        return self.noise_norm(ops.reshape(x, (-1, self.noise_slots, self.embedding_dim)))

    def _zero_noise(self, batch):
        return ops.zeros((batch, self.noise_dim), dtype=self.compute_dtype)

    def _positioned(self, embedded, start_index=0, training: bool = False):
        positions = self.position_embedding(embedded, start_index=start_index)  # (B, t, E)
        return self.embedding_dropout(embedded + positions, training=training)

    def _decode(self, token_ids, memory, training: bool = False):
        return self._blocks(self._positioned(self.token_embedding(token_ids), training=training),
                            memory, training)  # (B, T, E)

    def _blocks(self, x, memory, training: bool = False):
        for block in self.blocks:
            x = block(x, encoder_sequence=memory, training=training)  # causal self-attention
        return x

    def _cached_blocks(self, x, cache, index, memory, training: bool = False):
        """x (B, t, E) at positions index.. -> (hidden (B, t, E), cache (B, L, 2, S, H, D))."""
        # The memory is a few slots: its keys/values are recomputed each step (update index 0).
        cross = ops.zeros((ops.shape(x)[0], 2, self.noise_slots, self.num_heads, self.head_dim),
                          dtype=x.dtype)
        caches = []
        for layer, block in enumerate(self.blocks):
            x, layer_cache, _ = block(
                x, encoder_sequence=memory, self_attention_cache=cache[:, layer, ...],
                self_attention_cache_update_index=index, cross_attention_cache=cross,
                cross_attention_cache_update_index=0, training=training)
            caches.append(layer_cache)  # (B, 2, S, H, D)
        return x, ops.stack(caches, axis=1)

    def hidden_states(self, token_ids, training: bool = False):
        """(B, T) -> (B, T, E) with z = 0, the noise prior's mean."""
        return self._decode(token_ids, self._memory(self._zero_noise(ops.shape(token_ids)[0])), training)

    def output_logits(self, hidden):
        x = self.final_norm(hidden)  # (B, t, E)
        return ops.cast(self.token_embedding(x, reverse=True), "float32")  # (B, t, V)

    def seed_generation(self, seed: int | None) -> None:
        """From now on every `build_cache` row gets a fresh z ~ N(0, I) from this seed."""
        self._noise_rng = np.random.default_rng(seed)

    def build_cache(self, batch_size: int, max_length: int):
        """(empty key/value cache (B, L, 2, S, H, D), z (B, Z)): z = 0 until `seed_generation`."""
        if max_length > self.max_len:
            raise ValueError(f"max_length={max_length} exceeds the model's learned positions "
                             f"(max_len={self.max_len})")
        shape = (batch_size, self.num_layers, 2, max_length, self.num_heads, self.head_dim)
        if self._noise_rng is None:
            noise = self._zero_noise(batch_size)
        else:
            noise = ops.convert_to_tensor(
                self._noise_rng.standard_normal((batch_size, self.noise_dim)), dtype=self.compute_dtype)
        return ops.zeros(shape, dtype=self.compute_dtype), noise

    def call_with_cache(self, token_ids, cache, cache_update_index):
        key_values, noise = cache
        x = self._positioned(self.token_embedding(token_ids), start_index=cache_update_index)
        x, key_values = self._cached_blocks(x, key_values, cache_update_index, self._memory(noise))
        return self.output_logits(x), (key_values, noise)

    def _soft_rollout(self, first_tokens, memory, gumbel, training: bool):
        """Generate K = rollout_length soft tokens after `first_tokens` (B, 1): -> (B, K, V).

        Each step's Gumbel-softmax distribution goes back in through the embedding matrix, so the
        whole rollout is differentiable; `gumbel` (B, K, V) is the Gumbel noise of every step.
        Each step re-runs the blocks over all K positions (the causal mask hides those not yet
        written): the key/value cache updates in place, which TensorFlow cannot differentiate
        outside XLA, so training pays K passes over K positions where sampling pays one step per
        token. K is `adversarial_length`, not max_len, for that reason.
        """
        length = self.rollout_length
        never = ops.cast(ops.arange(self.vocab_size) == PAD_ID, "float32") * -1e9  # (V,)
        embeddings = ops.cast(self.token_embedding.embeddings, self.compute_dtype)  # (V, E)
        first = ops.cast(self.token_embedding(first_tokens), self.compute_dtype)  # (B, 1, E)
        written = ops.pad(first, ((0, 0), (0, length - 1), (0, 0)))  # (B, T, E) zeros after 0
        outputs = ops.zeros((ops.shape(first_tokens)[0], length, self.vocab_size), dtype="float32")

        def step(index, state):
            written, outputs = state
            hidden = self._blocks(self._positioned(written, training=training), memory, training)
            current = ops.expand_dims(ops.take(hidden, index, axis=1), 1)  # (B, 1, E)
            logits = self.output_logits(current) + never  # (B, 1, V)
            noise = ops.expand_dims(ops.take(gumbel, index, axis=1), 1)  # (B, 1, V)
            soft = ops.softmax((logits + noise) / self.gumbel_temperature, axis=-1)  # (B, 1, V)
            here = ops.reshape(ops.one_hot(index, length), (1, length, 1))  # position `index`
            after = ops.reshape(ops.one_hot(index + 1, length), (1, length, 1))  # zeros past the end
            outputs = outputs + here * soft
            written = written + ops.cast(after, self.compute_dtype) * ops.matmul(
                ops.cast(soft, self.compute_dtype), embeddings)
            return written, outputs

        return ops.fori_loop(0, length, step, (written, outputs))[1]

    # --- discriminator --------------------------------------------------------------------------

    def discriminate(self, token_distributions, training: bool = False):
        """(B, K, V) soft or one-hot tokens -> (B, 1) float32 logit that the text is real."""
        x = self.discriminator_embedding(ops.cast(token_distributions, self.compute_dtype))  # (B, K, E)
        x = x + self.discriminator_positions(x)
        for block in self.discriminator_blocks:
            x = block(x, training=training)
        return ops.cast(self.discriminator_output(ops.mean(self.discriminator_norm(x), axis=1)), "float32")

    # --- training -------------------------------------------------------------------------------

    def compile(self, optimizer: Any = "adam", **kwargs: Any) -> None:
        """`optimizer` trains the generator; a twin of it (same settings and schedule) the
        discriminator. Loss and metrics arguments are accepted and unused: train_step has its own."""
        super().compile(optimizer=optimizer, **kwargs)
        self.discriminator_optimizer = twin_optimizer(self.optimizer, "discriminator_optimizer")
        if self.built:  # built now, so a checkpoint's optimizer state has somewhere to load
            self.optimizer.build(self._variables(self._generator_layers()))
            self.discriminator_optimizer.build(self._variables(self._discriminator_layers()))

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """A checkpoint's compiled state through this class's `compile` (Keras skips a custom
        compile), after importing the training objects it names."""
        importlib.import_module(TRAINING_OBJECTS_MODULE)
        self.compile(**keras.saving.deserialize_keras_object(config))

    @staticmethod
    def _variables(layers: list[keras.layers.Layer]) -> list:
        return [variable for layer in layers for variable in layer.trainable_variables]

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    def _gan_losses(self, inputs, targets, training: bool) -> dict[str, Any]:
        batch = ops.shape(inputs)[0]
        noise = keras.random.normal((batch, self.noise_dim), seed=self.noise_seed)  # fresh z per row
        uniform = keras.random.uniform((batch, self.rollout_length, self.vocab_size), minval=1e-7,
                                       maxval=1.0, seed=self.noise_seed)
        memory = self._memory(ops.cast(noise, self.compute_dtype), training)
        logits = self.output_logits(self._decode(inputs, memory, training))  # (B, T, V) teacher forced
        mask = ops.cast(ops.not_equal(targets, PAD_ID), "float32")
        nll = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)  # (B, T)
        nll = ops.sum(nll * mask) / ops.maximum(ops.sum(mask), 1.0)
        fake = self._soft_rollout(inputs[:, :1], memory, -ops.log(-ops.log(uniform)), training)
        real = targets[:, : self.rollout_length]  # the real tokens after the same first token
        real_score = self.discriminate(ops.one_hot(real, self.vocab_size), training)
        fake_score = self.discriminate(fake, training)
        return {"generator_nll": nll,
                "generator_loss": ops.mean(ops.softplus(-fake_score)),  # non-saturating
                "discriminator_loss": ops.mean(ops.softplus(-real_score)) + ops.mean(ops.softplus(fake_score))}

    def _generator_objective(self, losses: dict[str, Any]):
        """The pre-training NLL for the first pretrain_steps generator steps, then the GAN loss."""
        adversarial = ops.cast(self.optimizer.iterations >= self.pretrain_steps, "float32")
        return (1.0 - adversarial) * losses["generator_nll"] + adversarial * losses["generator_loss"]

    def _logs(self, losses: dict[str, Any], objective) -> dict[str, Any]:
        for name, value in {**losses, "loss": objective}.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        inputs, targets = data[0], data[1]
        generator_variables = self._variables(self._generator_layers())
        discriminator_variables = self._variables(self._discriminator_layers())
        with tf.GradientTape() as generator_tape, tf.GradientTape() as discriminator_tape:
            losses = self._gan_losses(inputs, targets, training=True)
            objective = self._generator_objective(losses)
        self.optimizer.apply(generator_tape.gradient(objective, generator_variables), generator_variables)
        self.discriminator_optimizer.apply(
            discriminator_tape.gradient(losses["discriminator_loss"], discriminator_variables),
            discriminator_variables)
        return self._logs(losses, objective)

    def test_step(self, data):
        losses = self._gan_losses(data[0], data[1], training=False)
        return self._logs(losses, self._generator_objective(losses))

    def forward_flops_per_token(self) -> float:
        """A training token's forward pass: the generator step (blocks, cross-attention to the
        noise slots, causal attention over the window, the tied head) and the discriminator's read
        of it (embedding matmul, blocks, attention over the window)."""
        generator = sum(matmul_weights(block) for block in self.blocks)
        discriminator = sum(matmul_weights(block) for block in self.discriminator_blocks)
        matrices = generator + discriminator + 2 * self.vocab_size * self.embedding_dim
        attention = 4.0 * self.embedding_dim * (self.num_layers * (self.max_len + self.noise_slots)
                                                + self.discriminator_layers * self.rollout_length)
        return 2.0 * matrices + attention

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "vocab_size": self.vocab_size, "max_len": self.max_len,
            "embedding_dim": self.embedding_dim, "num_layers": self.num_layers,
            "num_heads": self.num_heads, "ff_dim": self.ff_dim, "dropout": self.dropout,
            "noise_dim": self.noise_dim, "noise_slots": self.noise_slots,
            "discriminator_layers": self.discriminator_layers,
            "gumbel_temperature": self.gumbel_temperature, "pretrain_steps": self.pretrain_steps,
            "adversarial_length": self.adversarial_length,
        })
        return config


def build_gan(hp: kt.HyperParameters, vocab_size: int, max_len: int,
              overrides: Mapping[str, Any] | None = None) -> keras.Model:
    """Declare the GAN's search space on `hp` and return an uncompiled model."""
    values = declare(hp, "gan", GAN_SPACE, overrides)
    return GanLanguageModel(vocab_size=vocab_size, max_len=max_len, name="gan_language_model",
                            **{name: value for name, value in values.items() if name != "learning_rate"})
