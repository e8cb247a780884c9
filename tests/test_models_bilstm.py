"""The bidirectional LSTM family: last_token only, reads its window both ways, generates by
re-encoding the last max_len tokens."""

from __future__ import annotations

import numpy as np
import pytest
from training_factories import make_config

from data_pipeline.errors import ConfigError
from evaluation.generation import sample_ids
from model_architectures import FAMILIES, build_model
from model_architectures.saving import load_trained_model


def test_causal_objective_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError) as refused:
        make_config(tmp_path, models_to_run=["lstm", "bilstm"])  # objective "causal" by default
    message = str(refused.value)
    assert "\n" not in message and "'bilstm'" in message
    assert "would see the future" in message and "CONFIG['objective'] = 'last_token'" in message
    assert make_config(tmp_path, models_to_run=["lstm", "bilstm"], objective="last_token").objective \
        == "last_token"


def test_every_position_reads_the_whole_window():
    model = build_model("bilstm", None, 20, 8, FAMILIES["bilstm"].tiny)
    tokens = np.random.default_rng(0).integers(1, 20, size=(2, 8)).astype("int32")
    changed = tokens.copy()
    changed[:, -1] = changed[:, -1] % 19 + 1
    # The first position's features change with the last token: a causal objective would let it
    # read the token it predicts.
    first, first_changed = np.asarray(model(tokens))[:, 0], np.asarray(model(changed))[:, 0]
    assert np.abs(first - first_changed).max() > 1e-4
    assert not model.has_cache and model.max_sequence_length is None


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis")
def test_generation_past_the_window_re_encodes_the_last_max_len_tokens(trained_checkpoints):
    trained = trained_checkpoints["bilstm"]
    model = load_trained_model(trained.training.checkpoint_path)
    window, prompts, steps = model.max_len, [[3], [3, 5, 6, 7]], model.max_len + 6
    result = sample_ids(model, prompts, steps, "greedy", stop_at_end=False)
    for prompt, generated in zip(prompts, result.token_ids):
        ids = list(prompt)
        for _ in range(steps):
            window_ids = ([0] * window + ids)[-window:]  # [PAD]-filled on the left, as in training
            logits = np.array(model(np.array([window_ids], dtype="int32")))[0, -1]
            logits[0] = -np.inf  # [PAD] is never generated
            ids.append(int(logits.argmax()))
        assert generated == ids[len(prompt):]
    # A trained model: what it generates depends on the window, not one token throughout.
    assert len({token for generated in result.token_ids for token in generated}) > 2
    assert result.ms_per_token > 0
