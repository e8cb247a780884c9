"""Token shards: each split's token stream written once to disk, then memory-mapped.

A split is one binary file of token ids, [EOS] d1 [EOS] d2 ... dn [EOS] (the layout of
datasets.token_stream), as uint16 when the vocabulary fits and uint32 otherwise, so a token costs
2 or 4 bytes of disk and nothing of RAM until it is read. A manifest beside the files holds the
data and tokenizer fingerprints and the counts the datasets need; a folder is reused only when
both fingerprints match, and a new fingerprint gets a new folder, so nothing is overwritten.
"""

from __future__ import annotations

import itertools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from data_pipeline.manifests import read_json, write_json

SPLITS = ("train", "validation", "test")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1  # bump when the file layout changes, so old folders stop matching


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 for vocabularies up to 65,535 ids, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 65_535 else np.uint32)


class ShardWriter:
    """Appends encoded documents to one split's file, each followed by [EOS]."""

    def __init__(self, path: Path, dtype: np.dtype, eos_id: int) -> None:
        self.path, self.dtype, self.eos_id = path, dtype, eos_id
        self._file = path.open("wb")
        np.asarray([eos_id], dtype).tofile(self._file)  # [EOS] also opens the stream
        self.tokens, self.documents, self.characters = 1, 0, 0

    def write(self, encoded: Sequence[Sequence[int]], characters: int) -> None:
        """Append documents' ids; `characters`: their characters (the separators are added here)."""
        lengths = np.fromiter(map(len, encoded), np.int64, count=len(encoded))  # (D,)
        ids = np.fromiter(itertools.chain.from_iterable(encoded), self.dtype, count=int(lengths.sum()))
        self.write_ids(ids, lengths, characters)

    def write_ids(self, ids: np.ndarray, lengths: np.ndarray, characters: int) -> None:
        """Append documents given end to end: ids (N,) and each document's id count (D,)."""
        if not len(lengths):
            return
        chunk = np.full(len(ids) + len(lengths), self.eos_id, self.dtype)  # (N + D,)
        is_text = np.ones(len(chunk), bool)
        is_text[np.cumsum(lengths + 1) - 1] = False  # the [EOS] after each document
        chunk[is_text] = ids
        chunk.tofile(self._file)
        self.tokens += len(chunk)
        self.documents += len(lengths)
        self.characters += characters + len(lengths)  # one separator per document, as in memory

    def close(self) -> dict[str, Any]:
        self._file.close()
        return {"file": self.path.name, "tokens": self.tokens, "documents": self.documents,
                "characters": self.characters}


@dataclass(frozen=True)
class TokenShards:
    """A finished shard folder: where its files are and what its manifest says."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.manifest["dtype"])

    def split(self, name: str) -> dict[str, Any]:
        """{"file", "tokens", "documents", "characters"} of one split."""
        return self.manifest["splits"][name]

    def path(self, name: str) -> Path:
        return self.folder / self.split(name)["file"]

    def stream(self, name: str) -> np.ndarray:
        """The split's token stream, memory-mapped: (L,) read from disk as it is touched."""
        return np.memmap(self.path(name), dtype=self.dtype, mode="r", shape=(self.split(name)["tokens"],))


def find_shards(shards_dir: str | os.PathLike, data_fingerprint: str,
                tokenizer_fingerprint: str) -> TokenShards | None:
    """The finished folder made from this data with this tokenizer, or None."""
    folder = Path(shards_dir) / shard_folder_name(data_fingerprint, tokenizer_fingerprint)
    manifest = read_json(folder / MANIFEST)
    if (manifest and manifest.get("data_fingerprint") == data_fingerprint
            and manifest.get("tokenizer_fingerprint") == tokenizer_fingerprint
            and manifest.get("format_version") == FORMAT_VERSION
            and all((folder / manifest["splits"][name]["file"]).is_file() for name in SPLITS)):
        return TokenShards(folder, manifest)
    return None


def shard_folder_name(data_fingerprint: str, tokenizer_fingerprint: str) -> str:
    return f"{data_fingerprint[:16]}-{tokenizer_fingerprint[:16]}"


def partial_folder(shards_dir: str | os.PathLike) -> Path:
    """A private folder to write into; `publish` renames it when every file is complete."""
    folder = Path(shards_dir) / f".partial-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)  # this process's own leftover, never another's
    folder.mkdir(parents=True)
    return folder


def publish(partial: Path, manifest: dict[str, Any]) -> TokenShards:
    """Write the manifest, then move the folder to its fingerprint name (atomic on one disk)."""
    manifest = {**manifest, "format_version": FORMAT_VERSION}
    write_json(partial / MANIFEST, manifest)
    final = partial.parent / shard_folder_name(manifest["data_fingerprint"],
                                               manifest["tokenizer_fingerprint"])
    if final.exists():  # finished meanwhile by another process from the same data: keep theirs
        shutil.rmtree(partial)
        return TokenShards(final, read_json(final / MANIFEST) or manifest)
    os.replace(partial, final)
    return TokenShards(final, manifest)
