"""Command line: export a trained model as a TensorFlow SavedModel that serves without this project.

    python -m evaluation.export --model RUN --out exported/RUN/1   (a run's model chosen on validation)
    python -m evaluation.export --model trained_models/RUN/gru.keras --out exported/gru/1

--out receives the SavedModel (signature `generate`, also `serving_default`: token ids in,
token ids out, see evaluation/exported_generation.py), `tokenizer.json` (the tokenizer the model
was trained with, found like evaluation.generate finds it) and `export.json` (the special ids,
the prompt cleaning, the condition ids and the signature's inputs, for the client that encodes
and decodes). A conditional model takes its conditions as ids at the start of `prompt_ids`, one
per condition column in training's order (export.json's "condition_ids"). The
tokenizer stays outside the graph: the project's byte-level BPE in TensorFlow ops (keras-hub's
BytePairTokenizer) needs tensorflow-text's custom ops, which a plain TensorFlow process cannot
load, and encodes a prompt ~70x slower than the `tokenizers` library (`benchmarks/export.py`).

Every check runs before TensorFlow is imported; --out must not exist or be empty (nothing is
ever overwritten), and the export is written to a temporary folder beside it and renamed into
place only when complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from data_pipeline.config import ConfigError, ExperimentConfig
from data_pipeline.errors import DataError
from data_pipeline.tokenizer import TextTokenizer
from evaluation.generate import experiment_config, find_tokenizer, read_manifest
from evaluation.runs import model_files
from model_architectures.registry import FAMILIES

EXPORT_FORMAT = "text-synthesis-export/1"
TOKENIZER_FILE = "tokenizer.json"
DESCRIPTION_FILE = "export.json"
SIGNATURE_NAME = "generate"


@dataclass(frozen=True)
class ExportJob:
    """One model to export, with everything checked before TensorFlow is imported."""

    model_path: Path
    out: Path
    tokenizer: TextTokenizer
    config: ExperimentConfig
    manifest: dict[str, Any]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m evaluation.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help="a .keras file written by training, or a run (its name or "
                             "trained_models/<run> folder: its model chosen on validation)")
    parser.add_argument("--out", required=True,
                        help="folder for the SavedModel; must not exist or be empty (for TF "
                             "Serving, a version folder such as exported/gru/1)")
    parser.add_argument("--tokenizer", help="tokenizer JSON (default: tokenizer_path in the manifest)")
    return parser.parse_args(argv)


def prepare(model_path: Path, out: Path, tokenizer_override: str | None = None) -> ExportJob:
    """Check the model, its manifest and tokenizer, and --out; DataError naming what is wrong."""
    if not model_path.is_file():
        raise DataError(f"model file {str(model_path)!r} does not exist: train one first "
                        "(python -m training_assets.run) or check --model")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"--out {str(out)!r} exists and is not an empty folder: an export never "
                        "overwrites; choose a new folder (for TF Serving, the next version "
                        "number, e.g. exported/gru/2)")
    manifest = read_manifest(model_path)
    family = manifest.get("family", model_path.stem)
    if family in FAMILIES and not FAMILIES[family].likelihood:
        raise DataError(f"{str(model_path)!r} is a {family!r} model: it samples from a noise vector "
                        "drawn per sample, which the exported graph does not carry; export a "
                        "family with a likelihood, or sample it with python -m evaluation.generate")
    tokenizer = find_tokenizer(model_path, manifest, tokenizer_override)
    if "vocab_size" in manifest and manifest["vocab_size"] != tokenizer.vocab_size:
        raise DataError(f"tokenizer {tokenizer.path!r} has vocab_size={tokenizer.vocab_size} but "
                        f"{str(model_path)!r} was trained with vocab_size={manifest['vocab_size']}: "
                        "use the tokenizer named in its manifest")
    return ExportJob(model_path, out, tokenizer, experiment_config(manifest), manifest)


def describe(job: ExportJob, family: str, max_sequence_length: int | None,
             start_id: int) -> dict[str, Any]:
    """export.json: what a client needs to build requests and read the answers."""
    tokenizer = job.tokenizer
    return {
        "format": EXPORT_FORMAT,
        "signature": SIGNATURE_NAME,
        "family": family,
        "source_model": job.model_path.name,
        "vocab_size": tokenizer.vocab_size,
        "max_sequence_length": max_sequence_length,  # prompt + new tokens + 1; null: no limit
        "tokenizer": TOKENIZER_FILE,
        "tokenizer_kind": tokenizer.kind,
        "special_ids": {"pad": tokenizer.pad_id, "unk": tokenizer.unk_id,
                        "bos": tokenizer.bos_id, "eos": tokenizer.eos_id},
        "document_start_id": start_id,  # added by the graph before every prompt
        "prompt_cleaning": list(job.config.cleaning_steps),  # apply before encoding, in order
        # a conditional model's prompts start with one of these per column, in this order (the
        # document-start id goes before them); "<column=?>" is a value not seen in training
        "condition_ids": tokenizer.condition_ids,
        "condition_columns": tokenizer.condition_choices,  # values, buckets with their ranges
        "condition_edges": tokenizer.condition_edges,  # numeric columns: q1 below the first edge
        "inputs": {
            "prompt_ids": "int32 [batch, length]: encoded prompts, right-padded with 0 ([PAD]); "
                          "a row of zeros starts a new document; condition ids (if any) first",
            "max_new_tokens": "int32 scalar >= 1",
            "temperature": "float32 scalar: 0 = greedy (argmax), > 0 = sampling",
            "top_k": "int32 scalar: 0 = no top-k cut",
            "top_p": "float32 scalar in (0, 1]: 1 = no nucleus cut",
            "seed": "int32 scalar: same seed and inputs, same ids",
        },
        "outputs": {
            "token_ids": "int32 [batch, length]: prompt + new ids up to (without) [EOS], then 0",
            "lengths": "int32 [batch]: ids per row before the padding",
        },
    }


def export_model(job: ExportJob) -> Path:
    """Write the SavedModel, tokenizer.json and export.json into job.out; returns job.out."""
    import keras
    import tensorflow as tf

    from evaluation.exported_generation import GENERATE_SIGNATURE, make_generate
    from evaluation.generation import check_tokenizer, document_start_id
    from model_architectures.saving import load_trained_model

    model = load_trained_model(job.model_path)  # without the optimizer: inference only
    check_tokenizer(model, job.tokenizer)
    start_id = document_start_id(job.config)
    family = job.manifest.get("family", job.model_path.stem)  # training names it <family>.keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE_NAME, make_generate(model, start_id),
                         input_signature=list(GENERATE_SIGNATURE))
    job.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{job.out.name}.partial-", dir=job.out.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp's 0o700 would hide the model from a serving user
        archive.write_out(str(staging), verbose=False)
        shutil.copyfile(job.tokenizer.path, staging / TOKENIZER_FILE)
        description = describe(job, family, model.max_sequence_length, start_id)
        description["exported_with"] = {"tensorflow": tf.__version__, "keras": keras.__version__}
        (staging / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2) + "\n",
                                                encoding="utf-8")
        if job.out.is_dir():
            job.out.rmdir()  # empty (checked in prepare); fails if something appeared since
        os.rename(staging, job.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return job.out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        job = prepare(model_files(args.model, best_only=True)[0], Path(args.out), args.tokenizer)
        out = export_model(job)
    except (DataError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported {job.model_path} to {out} (signature '{SIGNATURE_NAME}', {TOKENIZER_FILE}, "
          f"{DESCRIPTION_FILE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
