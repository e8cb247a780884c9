"""A tiny GPT-2 preset saved by the test itself (2 layers, 32 wide, a byte-level vocabulary with
merges learnt from the test's own text), so the pretrained family is tested offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import keras
import keras_hub
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

END_TOKEN = "<|endoftext|>"


def byte_level_vocabulary(texts: Sequence[str], vocab_size: int) -> tuple[dict[str, int], list[str]]:
    """GPT-2 style vocabulary and merges ("a b" rules) learnt from `texts`: the 256 byte symbols,
    the merges, and the end token last, as in GPT-2."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer=trainer)
    model = json.loads(backend.to_str())["model"]
    vocabulary = dict(model["vocab"])
    vocabulary[END_TOKEN] = len(vocabulary)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return vocabulary, merges


def save_tiny_gpt2_preset(directory: Path, texts: Sequence[str], vocab_size: int = 300,
                          seed: int = 0) -> Path:
    """A randomly initialised GPT-2 (2 layers, 32 wide, 64 positions) and its tokenizer,
    written with save_to_preset into `directory`."""
    vocabulary, merges = byte_level_vocabulary(texts, vocab_size)
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=len(vocabulary), num_layers=2,
                                             num_heads=2, hidden_dim=32, intermediate_dim=64,
                                             max_sequence_length=64, dropout=0.0)
    tokenizer = keras_hub.tokenizers.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)
    backbone.save_to_preset(str(directory))
    tokenizer.save_to_preset(str(directory))
    return directory
