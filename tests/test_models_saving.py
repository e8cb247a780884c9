"""Saved models reload in a fresh process with safe_mode on and no custom_objects, same logits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

from model_architectures import FAMILIES, build_model, family_names

VOCAB, MAX_LEN = 40, 10
VARIANTS = {  # every registered family at its tiny size, plus the untied / two-layer paths
    **{family: (family, FAMILIES[family].tiny) for family in family_names()},
    "lstm_two_layers_untied": ("lstm", {**FAMILIES["lstm"].tiny, "num_layers": 2,
                                        "tie_embeddings": False}),
    "transformer_two_layers_untied": ("transformer", {**FAMILIES["transformer"].tiny, "num_layers": 2,
                                                      "tie_embeddings": False}),
}

RELOAD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    from model_architectures import register_model_classes
    register_model_classes()  # nothing else is needed to load
    folder, names = sys.argv[1], json.loads(sys.argv[2])
    tokens = np.load(f"{folder}/tokens.npy")
    for name in names:
        model = keras.saving.load_model(f"{folder}/{name}.keras")  # safe_mode on by default
        np.save(f"{folder}/{name}.after.npy", np.asarray(model(tokens)))
        logits, _ = model.call_with_cache(tokens[:, :3], model.build_cache(len(tokens), 10), 0)
        np.save(f"{folder}/{name}.cached.npy", np.asarray(logits))
        print(name, type(model).__name__)
""")


def test_every_family_reloads_in_a_fresh_process(tmp_path):
    tokens = np.random.default_rng(0).integers(0, VOCAB, size=(2, MAX_LEN)).astype("int32")
    np.save(tmp_path / "tokens.npy", tokens)
    before, classes = {}, {}
    for name, (family, overrides) in VARIANTS.items():
        model = build_model(family, None, VOCAB, MAX_LEN, overrides)
        before[name], classes[name] = np.asarray(model(tokens)), type(model).__name__
        model.save(tmp_path / f"{name}.keras")
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([sys.executable, "-c", RELOAD, str(tmp_path), json.dumps(list(VARIANTS))],
                          capture_output=True, text=True, env=environment, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in VARIANTS:
        assert f"{name} {classes[name]}" in done.stdout
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.after.npy"), before[name], atol=1e-5)
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.cached.npy"), before[name][:, :3],
                                   atol=1e-5)


def test_config_round_trip_rebuilds_the_same_architecture():
    for family, overrides in VARIANTS.values():
        model = build_model(family, None, VOCAB, MAX_LEN, overrides)
        clone = type(model).from_config(model.get_config())
        clone.build((None, MAX_LEN))
        assert clone.get_config() == model.get_config()
        assert clone.count_params() == model.count_params()
        assert keras.saving.get_registered_name(type(model)).startswith("text_synthesis>")
