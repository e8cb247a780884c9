"""A pretrained GPT-2 (KerasHub preset) fine-tuned on the corpus, fully or through LoRA adapters.

The backbone comes from CONFIG `pretrained_preset`: a KerasHub preset name (downloaded on first
use) or a local preset directory. It reads the preset's own byte-level BPE
(data_pipeline/preset_tokenizer.py), whose ids follow the project's four special ids; this model
maps them to the preset's ids on the way in and its logits back on the way out, so the loss,
metrics, datasets and samplers stay the project's. The checkpoint holds the backbone's config and
weights: it reloads without the preset, offline.

With `lora_rank`, KerasHub's `enable_lora` adds rank-r adapters to every attention query and value
projection and freezes the rest (and we freeze those projections' biases too, as LoRA does), so
only the adapters train. Keras folds the adapters into the kernels when it saves.

With condition_columns, the tokenizer appends one token per condition value after the preset's
vocabulary (data_pipeline/preset_tokenizer.py) and this model resizes the embedding for them: a
table of `condition_tokens` new rows (GPT-2's initialisation), trainable also under LoRA, whose
logits are never sampled. Chosen over a text prefix ("category: zippy | ...") by measurement:
benchmarks/condition_layout.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import keras
import keras_hub
from keras import ops

from data_pipeline.errors import ConfigError
from data_pipeline.preset_tokenizer import end_token_id, preset_tokenizer, save_or_reuse
from data_pipeline.conditions import BucketEdges, Conditions
from data_pipeline.tokenizer import SPECIAL_TOKENS, TextTokenizer, condition_tokens_of
from model_architectures.contract import LanguageModel, matmul_weights
from model_architectures.gpt2_space import GPT2_SPACE
from model_architectures.saving import RestoresTrainingState
from model_architectures.search_space import declare
from model_architectures.transformer import blocks_with_cache

if TYPE_CHECKING:
    import keras_tuner as kt

    from data_pipeline.config import ExperimentConfig

NEVER = -1e9  # the logit of [PAD], [UNK] and [BOS]: the preset never predicts them


@keras.saving.register_keras_serializable(package="text_synthesis")
class Gpt2LanguageModel(RestoresTrainingState, LanguageModel):
    """Project token ids (B, T) -> next-token logits (B, T, V) over the project's ids."""

    def __init__(self, backbone: keras_hub.models.GPT2Backbone, max_len: int, end_token_id: int,
                 lora_rank: int | None = None, condition_tokens: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backbone = backbone
        self.max_len, self.end_token_id = int(max_len), int(end_token_id)
        self.lora_rank = None if lora_rank is None else int(lora_rank)
        # The preset's vocabulary without its end token, after the project's special ids; then
        # the condition tokens.
        self.preset_vocab_size = backbone.vocabulary_size - 1 + len(SPECIAL_TOKENS)
        self.condition_tokens = int(condition_tokens)
        self.vocab_size = self.preset_vocab_size + self.condition_tokens
        self.condition_embedding = None
        if self.condition_tokens:
            self.condition_embedding = keras.layers.Embedding(
                self.condition_tokens, backbone.hidden_dim, name="condition_embedding",
                embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02),
                dtype=backbone.token_embedding.dtype_policy)
            self.condition_embedding.build((None, None))
        if self.max_len > backbone.max_sequence_length:
            raise ConfigError(f"CONFIG['max_len'] = {self.max_len}: the preset has "
                              f"{backbone.max_sequence_length} positions; lower max_len")
        if self.lora_rank:
            backbone.enable_lora(self.lora_rank)
            for layer in backbone._flatten_layers(include_self=False):
                if getattr(layer, "lora_enabled", False) and getattr(layer, "bias", None) is not None:
                    layer.bias.trainable = False  # LoRA adapts the kernel only

    @property
    def max_sequence_length(self) -> int | None:
        """The preset's learned positions (GPT-2: 1024), beyond the training window."""
        return int(self.backbone.max_sequence_length)

    def build(self, input_shape: tuple) -> None:
        self.built = True  # the backbone is built with its preset

    def _preset_ids(self, token_ids):
        """Project ids -> the preset's: specials (and condition ids) -> its end token, the rest
        shift back down."""
        ids = ops.cast(token_ids, "int32")  # (B, T)
        shifted = ids - len(SPECIAL_TOKENS)
        shifted = shifted + ops.cast(shifted >= self.end_token_id, "int32")
        outside = (ids < len(SPECIAL_TOKENS)) | (ids >= self.preset_vocab_size)
        return ops.where(outside, self.end_token_id, shifted)

    def _embed(self, token_ids, start_index=0, training: bool = False):
        backbone = self.backbone
        tokens = backbone.token_embedding(self._preset_ids(token_ids))  # (B, T, E)
        if self.condition_tokens:  # condition ids take their rows of the new table
            offset = ops.cast(token_ids, "int32") - self.preset_vocab_size  # (B, T)
            extra = self.condition_embedding(ops.clip(offset, 0, self.condition_tokens - 1))
            tokens = ops.where(ops.expand_dims(offset >= 0, -1), extra, tokens)  # (B, T, E)
        positions = backbone.position_embedding(tokens, start_index=start_index)  # (B, T, E)
        return backbone.embeddings_dropout(backbone.embeddings_add((tokens, positions)),
                                           training=training)

    def hidden_states(self, token_ids, training: bool = False):
        x = self._embed(token_ids, training=training)
        for block in self.backbone.transformer_layers:
            x = block(x, training=training)  # causal mask applied by the decoder block
        return x  # (B, T, E), before the final LayerNorm (part of the head)

    def output_logits(self, hidden):
        x = self.backbone.layer_norm(hidden)  # (B, t, E)
        logits = ops.cast(self.backbone.token_embedding(x, reverse=True), "float32")  # (B, t, Vp)
        end = self.end_token_id
        never = ops.full(ops.shape(logits)[:-1] + (len(SPECIAL_TOKENS) - 1,), NEVER, "float32")
        conditions = ops.full(ops.shape(logits)[:-1] + (self.condition_tokens,), NEVER, "float32")
        # project order: [PAD] [UNK] [BOS], [EOS] = the end token, the rest in preset order, then
        # the condition tokens (inputs only, never predicted)
        return ops.concatenate([never, logits[..., end:end + 1], logits[..., :end],
                                logits[..., end + 1:], conditions], axis=-1)  # (B, t, V)

    def forward_flops_per_token(self) -> float:
        """Block and output matmuls, plus attention scores and mixing over the training window."""
        backbone = self.backbone
        weights = sum(matmul_weights(block) for block in backbone.transformer_layers)
        output = backbone.vocabulary_size * backbone.hidden_dim
        attention = 4.0 * backbone.num_layers * self.max_len * backbone.hidden_dim
        return 2.0 * (weights + output) + attention

    def build_cache(self, batch_size: int, max_length: int):
        """Empty key/value cache: (B, num_layers, 2, max_length, num_heads, head_dim)."""
        backbone = self.backbone
        # A traced (tensor) length cannot be checked here: its caller clips it to the positions.
        if isinstance(max_length, int) and max_length > backbone.max_sequence_length:
            raise ValueError(f"max_length={max_length} exceeds the preset's "
                             f"{backbone.max_sequence_length} positions")
        shape = (batch_size, backbone.num_layers, 2, max_length, backbone.num_heads,
                 backbone.hidden_dim // backbone.num_heads)
        return ops.zeros(shape, dtype=self.compute_dtype)

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """Process token_ids (B, t) at positions index.., writing their keys/values into the cache."""
        x = self._embed(token_ids, start_index=cache_update_index)  # (B, t, E)
        x, cache = blocks_with_cache(self.backbone.transformer_layers, x, cache, cache_update_index)
        return self.output_logits(x), cache  # (B, t, V), (B, L, 2, S, H, D)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"backbone": keras.saving.serialize_keras_object(self.backbone),
                       "max_len": self.max_len, "end_token_id": self.end_token_id,
                       "lora_rank": self.lora_rank, "condition_tokens": self.condition_tokens})
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Gpt2LanguageModel":
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def build_gpt2(hp: kt.HyperParameters, vocab_size: int, max_len: int,
               overrides: Mapping[str, Any] | None = None, *, pretrained_preset: str,
               lora_rank: int | None = None) -> keras.Model:
    """Declare the fine-tuning space on `hp`; return the preset's GPT-2 with its pretrained weights.

    `vocab_size` must be the preset tokenizer's (the datasets were built with it): the tokens
    past the preset's vocabulary are condition tokens, which get new embedding rows.
    """
    values = declare(hp, "gpt2", GPT2_SPACE, overrides)
    backbone = _load(keras_hub.models.GPT2Backbone.from_preset, pretrained_preset,
                     dropout=values["dropout"])
    tokenizer = _load(keras_hub.tokenizers.GPT2Tokenizer.from_preset, pretrained_preset)
    preset_size = backbone.vocabulary_size - 1 + len(SPECIAL_TOKENS)
    model = Gpt2LanguageModel(backbone, max_len, end_token_id(tokenizer.vocabulary, tokenizer.end_token),
                              lora_rank, condition_tokens=max(0, vocab_size - preset_size),
                              name="gpt2_language_model")
    if model.vocab_size != vocab_size:
        raise ConfigError(f"the datasets have vocab_size={vocab_size} but the preset "
                          f"{pretrained_preset!r} has {model.vocab_size} tokens in the project's ids: "
                          "build this family's datasets with its own tokenizer (family_tokenizer)")
    return model


def gpt2_tokenizer(family: str, config: ExperimentConfig,
                   train_conditions: Sequence[Conditions] | None = None,
                   condition_edges: BucketEdges | None = None) -> TextTokenizer:
    """The preset's byte-level BPE in project ids, with CONFIG's condition tokens after its
    vocabulary, kept as `<models_dir>/<family>.tokenizer.json` beside the checkpoint (reused while
    the preset's vocabulary and merges and the conditions are the same)."""
    tokenizer = _load(keras_hub.tokenizers.GPT2Tokenizer.from_preset, config.pretrained_preset)
    bpe = preset_tokenizer(dict(tokenizer.vocabulary), list(tokenizer.merges), tokenizer.end_token,
                           condition_tokens_of(config, train_conditions), condition_edges)
    return save_or_reuse(bpe, Path(config.models_dir) / f"{family}.tokenizer.json")


def _load(loader: Any, preset: str, **kwargs: Any) -> Any:
    """`loader(preset)`, with one line naming CONFIG's key when the preset cannot be found."""
    try:
        return loader(preset, **kwargs)
    except (ValueError, FileNotFoundError, OSError) as error:
        raise ConfigError(f"CONFIG['pretrained_preset'] = {preset!r} could not be loaded "
                          f"({str(error).splitlines()[0] if str(error) else type(error).__name__}): "
                          "give a KerasHub preset name such as 'gpt2_base_en' (downloaded once, "
                          "needs internet) or a local directory saved with save_to_preset") from None
