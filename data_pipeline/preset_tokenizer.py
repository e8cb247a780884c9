"""A pretrained preset's byte-level BPE (GPT-2's vocabulary and merges) in the project's id layout.

The project fixes [PAD]=0, [UNK]=1, [BOS]=2, [EOS]=3 (loss masking, generation and the datasets
rely on them). A preset numbers its own tokens from 0 and ends documents with its end token
(GPT-2: `<|endoftext|>`). So the preset's tokens keep their order but move up to follow the four
special ids, and its end token becomes [EOS]: project id = preset id + 4 below the end token,
+ 3 above it. The model side of the same mapping is `preset_id_layout` (model_architectures/gpt2.py
applies it to its inputs and logits). The result is a plain `BpeTokenizer`, saved, loaded and
fingerprinted like the project's own; its fingerprint is that of the vocabulary and merges.

Condition tokens (CONFIG's condition_columns) are appended after the preset's vocabulary as new
special tokens, ids V, V+1, ...: the model gives them new embedding rows
(model_architectures/gpt2.py), and their targets are masked like the project tokenizer's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Mapping, Sequence

import tokenizers
from tokenizers import decoders, models, pre_tokenizers

from data_pipeline.conditions import BucketEdges
from data_pipeline.errors import DataError
from data_pipeline.tokenizer import (FORMAT_VERSION, SPECIAL_TOKENS, BpeTokenizer, TextTokenizer,
                                     read_manifest)

log = logging.getLogger("data_pipeline")

PRESET_KIND = "preset_bpe"  # part of the fingerprint: never confused with a fitted BPE


def end_token_id(vocabulary: Mapping[str, int], end_token: str) -> int:
    """The preset's id of its document-end token; DataError when the vocabulary lacks it."""
    if end_token not in vocabulary:
        raise DataError(f"the preset's vocabulary has no {end_token!r} token, which ends its "
                        "documents: use a GPT-2 preset (e.g. 'gpt2_base_en') or a directory "
                        "saved from one")
    return int(vocabulary[end_token])


def project_id(preset_id: int, end_id: int) -> int:
    """Where a preset token (not the end token) lands among the project's ids."""
    return preset_id + len(SPECIAL_TOKENS) - (1 if preset_id > end_id else 0)


def preset_fingerprint(vocabulary: Mapping[str, int], merges: Sequence[str], end_token: str,
                       condition_tokens: Sequence[str] = (),
                       condition_edges: BucketEdges | None = None) -> str:
    """sha256 of the vocabulary, merges, end token and conditions: equal exactly when the ids
    mean the same."""
    settings = {"kind": PRESET_KIND, "format_version": FORMAT_VERSION, "end_token": end_token,
                "special_tokens": [*SPECIAL_TOKENS, *condition_tokens]}
    if condition_edges:  # only then: fingerprints without conditions stay as they were
        settings["condition_edges"] = condition_edges
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(json.dumps(sorted(vocabulary.items(), key=lambda item: item[1])).encode())
    digest.update("\n".join(merges).encode())
    return digest.hexdigest()


def preset_tokenizer(vocabulary: Mapping[str, int], merges: Sequence[str],
                     end_token: str = "<|endoftext|>", condition_tokens: Sequence[str] = (),
                     condition_edges: BucketEdges | None = None) -> BpeTokenizer:
    """The preset's byte-level BPE with project ids: text encodes to the same tokens as the
    preset's own tokenizer (GPT-2's pre-tokenizing regex), and decode(encode(t)) == t.
    `condition_tokens` follow the vocabulary; `condition_edges` are kept with them."""
    end_id = end_token_id(vocabulary, end_token)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({token: project_id(int(i), end_id) for token, i in vocabulary.items()
                  if token != end_token})
    pairs = [tuple(merge.split(" ")) for merge in merges]
    backend = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=pairs))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))  # already in vocab: they keep ids 0..3
    backend.add_special_tokens(list(condition_tokens))  # new: ids len(vocab), len(vocab) + 1, ...
    tokenizer = BpeTokenizer(backend, preset_fingerprint(vocabulary, merges, end_token,
                                                         condition_tokens, condition_edges))
    tokenizer.condition_edges = dict(condition_edges or {})
    return tokenizer


def save_or_reuse(tokenizer: BpeTokenizer, path: str | os.PathLike) -> TextTokenizer:
    """The file at `path` when its fingerprint matches, else `tokenizer` written there (with its
    manifest): generation then finds the preset's tokenizer beside the model, offline."""
    path = Path(path)
    manifest = read_manifest(path)
    if path.is_file() and manifest is not None and manifest.get("fingerprint") == tokenizer.fingerprint:
        return TextTokenizer.load(path)
    log.info("preset tokenizer (vocab_size %d) written to %s", tokenizer.vocab_size, path)
    tokenizer.save(path)
    return tokenizer
