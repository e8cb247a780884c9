"""The notebook runs top to bottom with a tiny CONFIG injected, and writes the table and the plots."""

import json
import random
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from training_assets.notebook import execute_notebook

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "Text_Synthesis_Comparison.ipynb"


def tiny_headlines_csv(path: Path, rows: int = 600) -> Path:
    """Headline-like rows with a date column: enough structure for tiny models to learn."""
    rng = random.Random(0)
    subjects = ["police", "council", "government", "farmers", "court", "minister"]
    verbs = ["probe", "plan", "reject", "welcome", "call for", "warn of"]
    objects = ["new road", "water plan", "fire risk", "rate rise", "drought aid", "budget cut"]
    lines = ["publish_date,headline_text"]
    for i in range(rows):
        day = 20030101 + (i % 28)
        lines.append(f"{day},{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {i % 7}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_config(tmp_path: Path) -> dict:
    small = {"embedding_dim": 16, "dropout": 0.0, "num_layers": 1, "learning_rate": [1e-2, 1e-3]}
    return {
        "data_file": str(tiny_headlines_csv(tmp_path / "headlines.csv")),
        "tokenizer_path": str(tmp_path / "models" / "tokenizer.json"),
        "vocab_size": 300, "max_len": 16, "batch_size": 8,
        "models_to_run": ["gru", "transformer"],
        "hyperparameters": {"gru": {**small, "units": 16},
                            "transformer": {**small, "num_heads": 2, "ff_dim": 32}},
        "tuner": "random", "tuning_trials": 2, "tuning_epochs": 1, "tuning_steps_per_epoch": 3,
        "final_training_epochs": 2, "steps_per_epoch": 6, "train_time_budget_seconds": None,
        "num_samples": 2, "max_new_tokens": 6,
        "decoding_sweep": True, "decoding_sweep_samples": 3, "decoding_sweep_temperatures": [0.8, 1.2],
        "decoding_sweep_top_p": [1.0],
        "plots_dir": str(tmp_path / "plots"), "models_dir": str(tmp_path / "models"),
        "tuning_dir": str(tmp_path / "tuning"),
        "ema_momentum": None,  # tiny runs: an average trailing ~100 steps would hold the initial weights
    }


@pytest.mark.slow
def test_notebook_runs_end_to_end_and_writes_table_and_plots(tmp_path):
    out = execute_notebook(NOTEBOOK, tmp_path / "executed.ipynb", tiny_config(tmp_path),
                           timeout_seconds=600)

    executed = nbformat.read(out, as_version=4)
    outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    plots = tmp_path / "plots"
    table = pd.read_csv(plots / "comparison.csv")
    mixed = set(table["model"]) - {"gru", "transformer", "kn_3gram"}
    assert len(table) == 4 and mixed in ({"gru+kn_3gram"}, {"transformer+kn_3gram"})
    for column in ["model", "parameters", "test_perplexity", "test_bits_per_char", "test_accuracy",
                   "train_seconds", "train_tokens_per_second", "generation_ms_per_token", "known_word_share"]:
        assert column in table.columns
    neural = table[table["model"].isin(["gru", "transformer"])]
    assert (neural["test_perplexity"] > 1).all() and (neural["test_perplexity"] < 300).all()
    assert (plots / "comparison.md").read_text().count("|") > 10
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert len(pngs) >= 4, pngs
    assert all((plots / name).stat().st_size > 5_000 for name in pngs)
    assert {"loss_by_position.png", "quality_diversity.png"} <= set(pngs)
    assert {"bleu_4", "self_bleu_4"} <= set(table.columns) and neural["longest_copied_words"].notna().all()
    for family in ("gru", "transformer"):
        assert (tmp_path / "models" / f"{family}.keras").is_file()
        manifest = json.loads((tmp_path / "models" / f"{family}.manifest.json").read_text())
        assert manifest["family"] == family
    # The tuning cell shows defaults vs best per family (3-step trials cannot rank), the evaluation cell lam.
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stdout")
    for family in ("gru", "transformer"):
        assert f"{family}: defaults val ppl" in printed
    assert printed.count("-> keeping defaults: search too short to rank") == 2
    # Headless, training logs one line per epoch: no progress bars, only the generation panel.
    widgets = [o["data"]["text/plain"] for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 1 and widgets[0].startswith("VBox(") and "IntProgress" not in printed
    assert "Epoch 2/2" in printed
    assert "fitted on validation" in printed
    # The conclusions cell names a best model only with a significant difference, else the tie,
    # with intervals either way; the table is shown with its intervals.
    text = json.dumps([o.get("data", {}).get("text/markdown", "") for o in outputs])
    assert ("Best model" in text) != ("No single winner" in text)
    assert "95% interval" in text and "chosen on validation" in text
    assert "| test_bits_per_char" in text or "test_bits_per_char " in text


def test_notebook_parameters_cell_is_tagged_and_holds_the_reference_keys():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    namespace: dict = {}
    exec(tagged[0].source, namespace)  # plain literals only
    # the keys a user edits; their values are the defaults (tests/test_runs.py)
    for key in ["run_name", "data_file", "text_column", "sample_size", "vocab_size", "max_len",
                "models_to_run", "train_time_budget_seconds", "sample_every_steps"]:
        assert key in namespace["CONFIG"]
    assert namespace["CONFIG_OVERRIDES"] == {}
    assert not [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
                if o.output_type == "error"]
