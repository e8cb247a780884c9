"""The Transformer's block choice: the modern block's cache, its switches and saving, and that
checkpoints saved before `block` existed still load and generate as the gpt2 block."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from data_pipeline.errors import ConfigError
from evaluation.generation import sample_ids
from model_architectures import build_model
from model_architectures.registry import hyperparameters_for
from model_architectures.saving import load_trained_model
from model_architectures.transformer import RECIPE_KEYS
from model_architectures.transformer_space import TRANSFORMER_TINY

VOCAB, MAX_LEN = 30, 12
# zero_init off (the default): blocks that start as the identity would hide a wrong cache
MODERN = {**TRANSFORMER_TINY, "block": "modern", "zero_init": False, "qk_norm": True}
VARIANTS = {
    "modern": MODERN,
    "modern, every switch flipped": {**MODERN, "norm": "layer", "rotary": False, "qk_norm": False,
                                     "feed_forward": "swiglu", "logit_softcap": 5.0,
                                     "tie_embeddings": False},
    "modern, gelu, two layers": {**MODERN, "feed_forward": "gelu", "num_layers": 2},
}


def tiny(hyperparameters: dict, seed: int = 1) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_model("transformer", None, VOCAB, MAX_LEN, hyperparameters)


def tokens(rows: int = 2) -> np.ndarray:
    return np.random.default_rng(0).integers(1, VOCAB, size=(rows, MAX_LEN)).astype("int32")


def cached_logits(model: keras.Model, ids: np.ndarray, prefill: int) -> np.ndarray:
    """Prefill `prefill` tokens, then one token per call: (B, T, V) logits from the cache."""
    cache = model.build_cache(len(ids), MAX_LEN)
    logits, cache = model.call_with_cache(ids[:, :prefill], cache, 0)
    steps = [np.asarray(logits)]
    for index in range(prefill, ids.shape[1]):
        logits, cache = model.call_with_cache(ids[:, index:index + 1], cache, index)
        steps.append(np.asarray(logits))
    return np.concatenate(steps, axis=1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_logits_equal_the_full_forward_pass(variant):
    model = tiny(VARIANTS[variant])
    ids = tokens()
    np.testing.assert_allclose(cached_logits(model, ids, prefill=5), np.asarray(model(ids)), atol=1e-5)


def test_modern_parts_are_where_the_switches_say():
    model = tiny(MODERN)
    paths = {v.path.split("/", 1)[1] for v in model.weights}
    assert "position_embedding/embeddings" not in paths  # rotary instead
    assert {"block_0/query_norm/scale", "final_norm/scale"} <= paths
    assert not any(name.endswith("bias") for name in paths)
    started = tiny({**TRANSFORMER_TINY, "block": "modern", "zero_init": True})  # identity blocks
    for block in started.blocks:
        assert not np.any(np.asarray(block.attention_output.kernel))
        assert not np.any(np.asarray(block.mlp_down.kernel))
    capped = tiny({**MODERN, "logit_softcap": 0.5})
    assert np.abs(np.asarray(capped(tokens()))).max() < 0.5


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis")  # a 1-token recompute
def test_greedy_generation_with_the_modern_block_equals_recomputing():
    model = tiny(MODERN)
    prompts = [[3], [3, 5, 6, 7]]
    generated = sample_ids(model, prompts, 6, "greedy", stop_at_end=False).token_ids
    for prompt, new in zip(prompts, generated):
        ids = list(prompt)
        for _ in new:
            logits = np.array(model(np.array([ids], "int32")))[0, -1]
            logits[0] = -np.inf  # [PAD] is never generated
            ids.append(int(logits.argmax()))
        assert ids[len(prompt):] == new


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis")
def test_the_modern_block_exports_a_savedmodel_that_generates_the_same_ids(tmp_path):
    import tensorflow as tf

    from evaluation.exported_generation import GENERATE_SIGNATURE, make_generate

    model = tiny(MODERN)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("generate", make_generate(model, 3), input_signature=list(GENERATE_SIGNATURE))
    archive.write_out(str(tmp_path / "exported"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "exported"))
    out = served.generate(tf.constant([[5, 6, 7]], tf.int32), tf.constant(6), tf.constant(0.0),
                          tf.constant(0), tf.constant(1.0), tf.constant(0))
    ids = out["token_ids"].numpy()[0, :int(out["lengths"].numpy()[0])].tolist()
    expected = sample_ids(model, [[3, 5, 6, 7]], 6, "greedy").token_ids[0]
    assert ids == [5, 6, 7, *expected]


def test_modern_model_saves_and_reloads(tmp_path):
    model = tiny(VARIANTS["modern, every switch flipped"])
    ids = tokens()
    path = tmp_path / "modern.keras"
    model.save(path)
    restored = load_trained_model(path)
    assert {key: restored.get_config()[key] for key in RECIPE_KEYS} == {
        key: model.get_config()[key] for key in RECIPE_KEYS}
    np.testing.assert_allclose(np.asarray(restored(ids)), np.asarray(model(ids)), atol=1e-6)


def without_recipe_keys(path: Path, older: Path) -> None:
    """A copy of the .keras file at `path` whose model config has none of RECIPE_KEYS: what
    checkpoints saved before the block choice hold."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(older, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                assert set(RECIPE_KEYS) <= set(config["config"])
                config["config"] = {k: v for k, v in config["config"].items() if k not in RECIPE_KEYS}
                data = json.dumps(config).encode()
            target.writestr(item, data)


def test_a_checkpoint_without_the_block_key_loads_and_generates_as_before(tmp_path):
    # a checkpoint of the gpt2 block (the default before the modern one) with the recipe keys removed
    model = tiny({**TRANSFORMER_TINY, "block": "gpt2", "tie_embeddings": True})
    path, older = tmp_path / "now.keras", tmp_path / "older.keras"
    model.save(path)
    without_recipe_keys(path, older)
    restored = load_trained_model(older)
    assert restored.block == "gpt2" and restored.logit_softcap == 0.0
    ids = tokens()
    np.testing.assert_allclose(np.asarray(restored(ids)), np.asarray(model(ids)), atol=1e-6)
    np.testing.assert_allclose(cached_logits(restored, ids, 4), cached_logits(model, ids, 4), atol=1e-6)
    prompts = [[3, 5, 6]]
    assert (sample_ids(restored, prompts, 5, "greedy", stop_at_end=False).token_ids
            == sample_ids(model, prompts, 5, "greedy", stop_at_end=False).token_ids)


def test_recipe_switches_are_fixed_unless_config_lists_them_and_are_checked():
    hp = hyperparameters_for("transformer", {"block": "modern"})
    assert hp.get("block") == "modern" and hp.get("rotary") is True
    assert hp.get("feed_forward") == "relu2"
    assert len(hyperparameters_for("transformer").space) == len(hyperparameters_for(
        "transformer", {"block": "gpt2", "norm": "rms"}).space)
    listed = hyperparameters_for("transformer", {"feed_forward": ["relu2", "swiglu"]})
    assert [p for p in listed.space if p.name == "feed_forward"][0].values == ["relu2", "swiglu"]
    with pytest.raises(ConfigError, match=r"use one of \['gpt2', 'modern'\]"):
        hyperparameters_for("transformer", {"block": "llama"})
    with pytest.raises(ConfigError, match="not a range"):
        hyperparameters_for("transformer", {"norm": {"min": 0}})
