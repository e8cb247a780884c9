"""Tokenizers fitted on the training split only, saved as JSON and reused while their data matches.

Two kinds share one interface (`TextTokenizer`):
- "bpe": Hugging Face `tokenizers` byte-level BPE, so any text round-trips exactly
  (decode(encode(t)) == t) and there is never an unknown token;
- "char": one id per character seen in training, unseen characters -> [UNK]. Plain Python dict
  lookups: measured ~10x faster than tokenizers' WordLevel over a per-character Split
  (19 vs 1.7 MB/s on the fortunes corpus).
Special ids are fixed for every kind: [PAD]=0 (masked by loss and metrics), [UNK]=1, [BOS]=2,
[EOS]=3 (the document separator in token streams). With CONFIG's condition_columns, the
condition tokens (`<category=computers>`, data_pipeline/conditions.py) follow as special tokens
4, 5, ... (a preset's tokenizer appends them after its vocabulary instead): never split, never
produced by encoding text, and part of the fingerprint, like the bucket edges of numeric columns.

A manifest beside the JSON (`<path>.manifest.json`) holds the fingerprint: sha256 of the training
text and the settings. The file is reused only when the fingerprint matches, refitted otherwise;
a tokenizer file without a manifest belongs to someone else and is never overwritten.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from data_pipeline.conditions import (UNKNOWN_VALUE, BucketEdges, Conditions, condition_token,
                                      condition_vocabulary, describe_conditions, known_values)
from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import DataError
from data_pipeline.manifests import read_json, write_json, write_text_atomically

log = logging.getLogger("data_pipeline")

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")  # ids 0..3, in this order
FORMAT_VERSION = 1  # bump when fitting changes, so old files stop matching their fingerprint
BPE_MIN_FREQUENCY = 2  # a pair seen once is noise, not a merge worth a vocabulary slot


class TextTokenizer:
    """Text <-> token ids; use `fit_or_load_tokenizer` or `TextTokenizer.load` to get one."""

    pad_id = 0
    unk_id = 1
    bos_id = 2
    eos_id = 3
    kind = ""

    def __init__(self, fingerprint: str = "", path: str | None = None,
                 condition_tokens: Sequence[str] = (),
                 condition_start: int = len(SPECIAL_TOKENS)) -> None:
        self.fingerprint = fingerprint
        self.path = path
        self.condition_tokens = tuple(condition_tokens)  # consecutive ids from condition_start
        self._condition_ids = {token: i for i, token in
                               enumerate(self.condition_tokens, start=condition_start)}
        self._condition_start = condition_start
        # numeric condition column -> its bucket edges (fitted on train), kept in the manifest
        self.condition_edges: BucketEdges = {}

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """Every special token, in id order: SPECIAL_TOKENS, then the condition tokens."""
        return SPECIAL_TOKENS + self.condition_tokens

    @property
    def condition_id_range(self) -> tuple[int, int]:
        """[first, end) of the condition tokens' ids: targets in it are masked like [PAD]."""
        first = self._condition_start
        return first, first + len(self.condition_tokens)

    @property
    def condition_ids(self) -> dict[str, int]:
        """Condition token -> its id."""
        return dict(self._condition_ids)

    @property
    def known_conditions(self) -> dict[str, list[str]]:
        """Condition column -> the values seen in train; empty for an unconditional tokenizer."""
        return known_values(self.condition_tokens)

    @property
    def condition_choices(self) -> dict[str, list[str]]:
        """known_conditions as condition lists show them: a bucket with its range, "q2 (3 to 7)"."""
        return describe_conditions(self.known_conditions, self.condition_edges)

    def encode_conditions(self, columns: Sequence[str],
                          values: Sequence[Conditions]) -> list[list[int]]:
        """Each document's condition ids; a value not seen in train gets its column's `?` id."""
        ids = self._condition_ids
        return [[ids.get(condition_token(column, value),
                         ids[condition_token(column, UNKNOWN_VALUE)])
                 for column, value in zip(columns, document)] for document in values]

    @property
    def special_ids(self) -> list[int]:
        """The ids of special_tokens, in the same order."""
        return [*range(len(SPECIAL_TOKENS)), *self._condition_ids.values()]

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self.decode_batch([ids], skip_special_tokens)[0]

    def decode_batch(self, list_of_ids: Iterable[Iterable[int]],
                     skip_special_tokens: bool = True) -> list[str]:
        raise NotImplementedError

    def to_json(self) -> str:
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> None:
        """Write the JSON and its manifest (atomically); refuse to replace a foreign file."""
        path = Path(path)
        _refuse_foreign_file(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        manifest = {"kind": self.kind, "vocab_size": self.vocab_size,
                    "fingerprint": self.fingerprint, "format_version": FORMAT_VERSION,
                    "special_tokens": list(self.special_tokens),
                    "conditions": self.known_conditions,
                    "condition_edges": self.condition_edges,
                    "library": f"tokenizers {tokenizers.__version__}"}
        write_text_atomically(path, self.to_json())
        write_json(manifest_path(path), manifest)
        self.path = str(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TextTokenizer":
        """Read a file written by `save` (the manifest supplies the fingerprint)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"tokenizer file {str(path)!r} does not exist: fit one with "
                            "fit_or_load_tokenizer or check tokenizer_path")
        text = path.read_text(encoding="utf-8")
        manifest = read_manifest(path) or {}
        fingerprint = str(manifest.get("fingerprint", ""))
        try:
            content = json.loads(text)
            if content.get("kind") == CharTokenizer.kind:
                tokenizer: TextTokenizer = CharTokenizer(
                    content["characters"], fingerprint,
                    condition_tokens=content["special_tokens"][len(SPECIAL_TOKENS):])
            else:
                tokenizer = BpeTokenizer(tokenizers.Tokenizer.from_str(text), fingerprint)
        except Exception as error:  # JSON or tokenizers parse errors of a damaged file
            raise DataError(f"tokenizer file {str(path)!r} cannot be read ({error}): delete it "
                            "and its manifest so it is refitted") from None
        tokenizer.path = str(path)
        tokenizer.condition_edges = dict(manifest.get("condition_edges") or {})
        return tokenizer

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(vocab_size={self.vocab_size}, "
                f"fingerprint={self.fingerprint[:12]!r}, path={self.path!r})")


class BpeTokenizer(TextTokenizer):
    """Byte-level BPE: any text round-trips, so [UNK] never occurs."""

    kind = "bpe"

    def __init__(self, backend: tokenizers.Tokenizer, fingerprint: str = "",
                 path: str | None = None) -> None:
        added = backend.get_added_tokens_decoder()  # id -> AddedToken: the special tokens
        conditions = sorted(added)[len(SPECIAL_TOKENS):]  # ids 4.. (a preset's: after its vocabulary)
        super().__init__(fingerprint, path, condition_tokens=[added[i].content for i in conditions],
                         condition_start=conditions[0] if conditions else len(SPECIAL_TOKENS))
        # "[EOS]" typed inside a document is text, not the separator: keeps the round trip exact.
        backend.encode_special_tokens = True
        self._backend = backend

    @classmethod
    def fit(cls, documents: Sequence[str], vocab_size: int, fingerprint: str = "",
            condition_tokens: Sequence[str] = ()) -> "BpeTokenizer":
        backend = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=BPE_MIN_FREQUENCY,
            special_tokens=[*SPECIAL_TOKENS, *condition_tokens],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        backend.train_from_iterator(documents, trainer=trainer, length=len(documents))
        # A freshly trained BPE model encodes without its word cache; reloading it from its own
        # JSON gives the default cache: measured 2-3x faster encoding.
        return cls(tokenizers.Tokenizer.from_str(backend.to_str()), fingerprint)

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size()

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        # encode_batch_fast: parallel over texts, skips the character offsets we never use.
        encodings = self._backend.encode_batch_fast(list(texts), add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def decode_batch(self, list_of_ids: Iterable[Iterable[int]],
                     skip_special_tokens: bool = True) -> list[str]:
        return self._backend.decode_batch([[int(i) for i in ids] for ids in list_of_ids],
                                          skip_special_tokens=skip_special_tokens)

    def token_bytes(self) -> list[bytes]:
        """The bytes each id decodes to (b"" for special tokens): what stop strings match."""
        byte_of = byte_level_alphabet()
        special = set(self.special_ids)
        return [b"" if i in special else bytes(byte_of[c] for c in self._backend.id_to_token(i))
                for i in range(self.vocab_size)]

    def to_json(self) -> str:
        return self._backend.to_str(pretty=False)


class CharTokenizer(TextTokenizer):
    """One id per character seen in training (the most frequent, up to vocab_size)."""

    kind = "char"

    def __init__(self, characters: Sequence[str], fingerprint: str = "",
                 path: str | None = None, condition_tokens: Sequence[str] = ()) -> None:
        super().__init__(fingerprint, path, condition_tokens)
        self._characters = list(characters)
        self._ids = {c: i for i, c in enumerate(self._characters, start=len(self.special_tokens))}
        self._tokens = list(self.special_tokens) + self._characters  # id -> text

    @classmethod
    def fit(cls, documents: Sequence[str], vocab_size: int, fingerprint: str = "",
            condition_tokens: Sequence[str] = ()) -> "CharTokenizer":
        counts: collections.Counter[str] = collections.Counter()
        for text in documents:
            counts.update(text)
        # Most frequent first (ties by character) for the cut, then sorted so ids are stable.
        frequent = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        kept = sorted(c for c, _ in frequent[:vocab_size - len(SPECIAL_TOKENS) - len(condition_tokens)])
        return cls(kept, fingerprint, condition_tokens=condition_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        lookup, unk = self._ids.get, self.unk_id
        return [[lookup(c, unk) for c in text] for text in texts]

    def decode_batch(self, list_of_ids: Iterable[Iterable[int]],
                     skip_special_tokens: bool = True) -> list[str]:
        first_char, size = len(self.special_tokens), len(self._tokens)
        texts = []
        for ids in list_of_ids:
            ids = [int(i) for i in ids]
            if skip_special_tokens:
                texts.append("".join(self._tokens[i] for i in ids if first_char <= i < size))
            else:
                texts.append("".join(self._tokens[i] if 0 <= i < size else "[UNK]" for i in ids))
        return texts

    def token_bytes(self) -> list[bytes]:
        """The UTF-8 bytes of each id's text (b"" for special tokens): what stop strings match."""
        first_char = len(self.special_tokens)
        return [b"" if i < first_char else token.encode("utf-8")
                for i, token in enumerate(self._tokens)]

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "format_version": FORMAT_VERSION,
                           "special_tokens": list(self.special_tokens), "characters": self._characters},
                          ensure_ascii=False)


def byte_level_alphabet() -> dict[str, int]:
    """Character -> byte of byte-level BPE's vocabulary (GPT-2's printable stand-ins for bytes)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1),
                 *range(ord("\xae"), ord("\xff") + 1)]
    characters, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            characters[chr(byte)] = byte
        else:  # the others move past 255 in byte order
            characters[chr(256 + shifted)] = byte
            shifted += 1
    return characters


TOKENIZER_KINDS: dict[str, type[TextTokenizer]] = {"bpe": BpeTokenizer, "char": CharTokenizer}


def fit_or_load_tokenizer(train_documents: list[str], config: ExperimentConfig,
                          train_conditions: Sequence[Conditions] | None = None,
                          condition_edges: BucketEdges | None = None) -> TextTokenizer:
    """Reuse config.tokenizer_path when its fingerprint matches the training text, else (re)fit.

    With config.condition_columns, `train_conditions` (one per document) give the condition
    tokens: one per value seen in train, and one unknown per column; `condition_edges` the
    bucket edges of numeric ones (Corpus.condition_edges), kept with the tokenizer.
    """
    if not train_documents:
        raise DataError("the training split is empty, so there is nothing to fit a tokenizer on: "
                        "check data_file and split_fractions")
    path = Path(config.tokenizer_path)
    if path.is_dir():
        raise DataError(f"tokenizer_path {str(path)!r} is a directory: set it to a .json file "
                        "path, e.g. 'trained_models/tokenizer.json'")
    _refuse_foreign_file(path)  # before the slow fit, not after
    condition_tokens = _condition_tokens(config, train_conditions)
    edges = dict(condition_edges or {})
    fingerprint = training_fingerprint(train_documents, config.tokenizer, config.vocab_size,
                                       condition_tokens, edges)
    manifest = read_manifest(path)
    if manifest is not None and path.is_file():
        if manifest.get("fingerprint") == fingerprint:
            log.info("tokenizer %s reused: fingerprint %s matches", path, fingerprint[:12])
            return TextTokenizer.load(path)
        log.info("tokenizer %s refitted: training text or settings changed (fingerprint %s -> %s)",
                 path, str(manifest.get("fingerprint"))[:12], fingerprint[:12])
    else:
        log.info("tokenizer %s fitted (%s, vocab_size %d) on %d training documents",
                 path, config.tokenizer, config.vocab_size, len(train_documents))
    tokenizer = TOKENIZER_KINDS[config.tokenizer].fit(train_documents, config.vocab_size,
                                                      fingerprint, condition_tokens)
    tokenizer.condition_edges = edges
    tokenizer.save(path)
    return tokenizer


def training_fingerprint(documents: Iterable[str], kind: str, vocab_size: int,
                         condition_tokens: Sequence[str] = (),
                         condition_edges: BucketEdges | None = None) -> str:
    """sha256 of the settings and every training document (length-prefixed: no ambiguity)."""
    settings = {"kind": kind, "vocab_size": vocab_size, "format_version": FORMAT_VERSION,
                "special_tokens": [*SPECIAL_TOKENS, *condition_tokens],
                "min_frequency": BPE_MIN_FREQUENCY if kind == "bpe" else None}
    if condition_edges:  # only then: fingerprints of tokenizers without them stay as they were
        settings["condition_edges"] = condition_edges
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for text in documents:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def condition_tokens_of(config: ExperimentConfig,
                        train_conditions: Sequence[Conditions] | None) -> list[str]:
    """CONFIG's condition vocabulary from the train values; [] without condition_columns."""
    if not config.condition_columns:
        return []
    if train_conditions is None:
        raise ValueError("condition_columns are set but no train conditions were passed: pass "
                         "corpus.conditions_of('train') and corpus.condition_edges")
    return condition_vocabulary(config.condition_columns, train_conditions)


def _condition_tokens(config: ExperimentConfig,
                      train_conditions: Sequence[Conditions] | None) -> list[str]:
    """The condition vocabulary from train; a DataError when it would crowd out the text."""
    tokens = condition_tokens_of(config, train_conditions)
    room = config.vocab_size - len(SPECIAL_TOKENS) - (256 if config.tokenizer == "bpe" else 0)
    if len(tokens) > room // 2:
        raise DataError(f"condition_columns {list(config.condition_columns)} have {len(tokens)} "
                        f"distinct train values (with one unknown per column), more than half of "
                        f"the vocab_size={config.vocab_size} left for text: bucket the column "
                        "(e.g. ':year'), drop it from condition_columns or raise vocab_size")
    return tokens


def manifest_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".manifest.json")


def read_manifest(path: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest beside a tokenizer file, or None when there is none (or it is unreadable)."""
    return read_json(manifest_path(path))


def _refuse_foreign_file(path: Path) -> None:
    if path.exists() and read_manifest(path) is None:
        raise DataError(f"tokenizer_path {str(path)!r} exists without the manifest "
                        f"{manifest_path(path).name!r}, so it was not written by this pipeline "
                        "and will not be overwritten: delete it or set another tokenizer_path")
