"""The generation panel's logic on checkpoints the trainer wrote: every model side by side plus the
n-gram baseline, the CLI's text for the same settings, its checks, and the HTML it shows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data_pipeline.errors import DataError
from evaluation.baselines import fit_kneser_ney
from evaluation.generate import main as generate_cli
from evaluation.ngram_sampling import next_token_probabilities, sample_ngram
from evaluation.panel import (CONTROLS, PanelSample, default_settings, panel_models,
                              sample_side_by_side, samples_html)


@pytest.fixture(scope="module")
def alphabet(trained_checkpoints):
    """The GRU that learnt the alphabet, a second family's checkpoint, and the trigram of its data."""
    gru = trained_checkpoints["gru_constant"]
    paths = [gru.training.checkpoint_path, trained_checkpoints["transformer"].training.checkpoint_path]
    return gru, paths, fit_kneser_ney(gru.data.datasets, 3)


def test_one_button_samples_every_model_and_the_ngram_side_by_side(alphabet):
    gru, paths, trigram = alphabet
    models = panel_models(paths, trigram)
    assert [m.name for m in models] == ["gru", "transformer", "kn_3gram"]
    settings = {**default_settings(gru.config), "sampler": "greedy", "max_new_tokens": 6}

    samples = sample_side_by_side(models, "CDE", settings)  # cleaned like training: lowercase

    assert [s.model for s in samples] == ["gru", "transformer", "kn_3gram"]
    assert samples[0].text == "cdefghijk"  # the GRU learnt the alphabet
    assert samples[2].text == "cdefghijk"  # so does the trigram: after "de" comes "f"
    assert samples[1].text.startswith("cde")
    assert all(math.isfinite(s.ms_per_token) and s.ms_per_token > 0 for s in samples)


def test_panel_and_command_line_give_the_same_sample(alphabet, capsys):
    gru, paths, _ = alphabet
    settings = {**default_settings(gru.config), "sampler": "top_p", "top_p": 0.9,
                "temperature": 1.5, "max_new_tokens": 8, "seed": 7}
    panel = sample_side_by_side(panel_models(paths[:1]), "k", settings)[0].text
    assert generate_cli(["--model", paths[0], "--prompt", "k", "--sampler", "top_p", "--top-p", "0.9",
                         "--temperature", "1.5", "--max-new-tokens", "8", "--seed", "7", "-n", "1"]) == 0
    assert capsys.readouterr().out.strip() == panel


def test_panel_controls_give_the_command_line_text(alphabet, capsys):
    gru, paths, _ = alphabet
    settings = {**default_settings(gru.config), "sampler": "greedy", "max_new_tokens": 8,
                "min_new_tokens": 3, "stop_strings": ("h",)}
    panel = sample_side_by_side(panel_models(paths[:1]), "CDE", settings)[0].text
    assert panel == "cdefg"  # the alphabet, cut before the stop string
    assert generate_cli(["--model", paths[0], "--prompt", "CDE", "--sampler", "greedy",
                         "--max-new-tokens", "8", "--min-new-tokens", "3", "--stop-string", "h",
                         "-n", "1"]) == 0
    assert capsys.readouterr().out.strip() == panel


def test_every_control_is_a_config_key_and_a_keyword_of_generate_timed(alphabet):
    import inspect

    from evaluation.generation import generate_timed
    from evaluation.generation_controls import CONTROL_KEYS

    gru, _, _ = alphabet
    keywords = set(inspect.signature(generate_timed).parameters) | set(CONTROL_KEYS)
    assert all(control.name in keywords for control in CONTROLS)
    assert set(CONTROL_KEYS) <= {control.name for control in CONTROLS}
    defaults = default_settings(gru.config)
    assert defaults["sampler"] == gru.config.sampler and defaults["seed"] == gru.config.seed


def test_missing_model_or_foreign_ngram_fails_in_one_line_before_loading(alphabet, tmp_path):
    _, paths, _ = alphabet
    with pytest.raises(DataError, match="does not exist"):
        panel_models([tmp_path / "lstm.keras"])
    with pytest.raises(DataError, match="no trained model"):
        panel_models([])
    foreign = fit_kneser_ney_like(vocab_size=7)
    with pytest.raises(DataError, match="vocab_size=7"):
        panel_models(paths, foreign)


def fit_kneser_ney_like(vocab_size: int):
    from evaluation.baselines import KneserNeyLM

    return KneserNeyLM(2, vocab_size=vocab_size).fit([3, 4, 5, 6, 3, 4, 5])


def test_ngram_samplers_cut_the_distribution_as_named():
    p = np.array([0.05, 0.1, 0.5, 0.35])
    assert next_token_probabilities(p, "greedy", 1.0, 2, 0.9).tolist() == [0, 0, 1, 0]
    top_k = next_token_probabilities(p, "top_k", 1.0, 2, 0.9)
    assert np.count_nonzero(top_k) == 2 and top_k[2] == pytest.approx(0.5 / 0.85)
    top_p = next_token_probabilities(p, "top_p", 1.0, 2, 0.8)
    assert np.flatnonzero(top_p).tolist() == [2, 3]  # 0.5 + 0.35 reaches 0.8
    hot = next_token_probabilities(p, "random", 100.0, 2, 0.9)
    assert hot.sum() == pytest.approx(1) and hot.max() - hot.min() < 0.01  # high temperature: flat


def test_ngram_sampling_stops_at_the_end_of_a_document():
    model = fit_kneser_ney_like(vocab_size=8)  # "[EOS] 4 5 6 [EOS] 4 5": 6 is followed by [EOS]
    sampled = sample_ngram(model, [3, 4], 10, sampler="greedy")
    assert sampled.token_ids == [5, 6] and sampled.ms_per_token > 0
    assert "greedy" in sample_ngram(model, [3, 4], 3, sampler="beam").note


def test_samples_html_shows_one_escaped_column_per_model():
    page = samples_html([PanelSample("gru", "a <b> & c", 1.234), PanelSample("kn_3gram", "", 0.5)], seed=3)
    assert page.count('class="panel-sample"') == 2
    assert "a &lt;b&gt; &amp; c" in page and "1.23 ms/token" in page and "ended the document" in page
    assert "seed 3" in page
