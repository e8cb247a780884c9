"""The notebook's generation panel: one prompt, one set of sampling settings, one sample from every
trained model side by side, with the Kneser-Ney n-gram model as a baseline and ms per token.

Each model is checked and sampled with the functions the command line uses
(evaluation.generate: manifest, tokenizer, CONFIG; evaluation.generation.generate_timed), so the
panel and `python -m evaluation.generate` give the same text for the same settings and seed.
The widgets (ipywidgets) are built from CONTROLS; everything else here works without them.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from data_pipeline.cleaning import clean_text
from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import DataError
from data_pipeline.tokenizer import TextTokenizer
from evaluation.generate import experiment_config, find_tokenizer, read_manifest


@dataclass(frozen=True)
class Control:
    """One sampling setting: a keyword of generate_timed and an ExperimentConfig key (its default)."""

    name: str
    kind: Literal["choice", "int", "float", "lines"]  # lines: a list of strings, one per line
    low: float = 0
    high: float = 0
    step: float = 1
    options: tuple[str, ...] = ()


# The panel's settings, in display order. A new generation setting that generate_timed (or
# GenerationControls) takes and ExperimentConfig defines is one line here.
CONTROLS: tuple[Control, ...] = (
    Control("sampler", "choice", options=("greedy", "random", "top_k", "top_p", "beam")),
    Control("temperature", "float", 0.05, 2.0, 0.05),
    Control("top_k", "int", 1, 1000),
    Control("top_p", "float", 0.01, 1.0, 0.01),
    Control("beam_width", "int", 1, 16),
    Control("max_new_tokens", "int", 1, 1024),
    Control("seed", "int", 0, 2**31 - 1),
    Control("repetition_penalty", "float", 0.1, 10.0, 0.05),
    Control("no_repeat_ngram_size", "int", 0, 64),
    Control("min_new_tokens", "int", 0, 1024),
    Control("stop_strings", "lines"),
)


@dataclass(frozen=True)
class PanelSample:
    """One model's sample for the panel's columns."""

    model: str
    text: str
    ms_per_token: float
    note: str = ""


@dataclass
class PanelModel:
    """One column: a trained checkpoint, or the n-gram baseline over the same tokenizer."""

    name: str
    tokenizer: TextTokenizer
    config: ExperimentConfig  # the CONFIG it was trained with: prompt cleaning, document start
    path: Path | None = None  # None: the n-gram model
    ngram: Any = None  # evaluation.baselines.KneserNeyLM for the baseline column
    _loaded: Any = field(default=None, repr=False)


def panel_models(model_paths: Sequence[str | Path], ngram: Any = None,
                 tokenizer_path: str | None = None) -> list[PanelModel]:
    """Every checkpoint checked as the CLI checks it (file, manifest, tokenizer), no TensorFlow yet,
    then the n-gram model (if given) over the first checkpoint's tokenizer and CONFIG."""
    if not model_paths:
        raise DataError("no trained model for the generation panel: train one first (the cells "
                        "above, or python -m training_assets.run)")
    from evaluation.runs import model_files

    models = []
    for path in [found for spec in model_paths for found in model_files(spec)]:
        if not path.is_file():
            raise DataError(f"model file {str(path)!r} does not exist: train it first or drop it "
                            "from the panel's list")
        manifest = read_manifest(path)
        models.append(PanelModel(path.stem, find_tokenizer(path, manifest, tokenizer_path),
                                 experiment_config(manifest), path))
    if ngram is not None:
        first = models[0]
        if ngram.vocab_size != first.tokenizer.vocab_size:
            raise DataError(f"the n-gram model has vocab_size={ngram.vocab_size} but "
                            f"{str(first.path)!r} uses {first.tokenizer.vocab_size}: fit it on "
                            "this experiment's datasets (evaluation.baselines.fit_kneser_ney)")
        models.append(PanelModel(f"kn_{ngram.order}gram", first.tokenizer, first.config, ngram=ngram))
    return models


def default_settings(config: ExperimentConfig) -> dict[str, Any]:
    """Each control's starting value: the experiment's CONFIG."""
    return {control.name: getattr(config, control.name) for control in CONTROLS}


def condition_options(tokenizer: TextTokenizer) -> dict[str, list[tuple[str, str]]]:
    """Column -> its (label, value) choices: a bucket shown with its range, "q2 (3 to 7)"."""
    return {column: list(zip(tokenizer.condition_choices[column], values))
            for column, values in tokenizer.known_conditions.items()}


def sample_side_by_side(models: Sequence[PanelModel], prompt: str, settings: Mapping[str, Any],
                        conditions: Mapping[str, str] | None = None) -> list[PanelSample]:
    """One sample per model for `prompt` ("" starts a new document), in the models' order."""
    from evaluation.generation import document_start_id, generate_timed
    from evaluation.generation_controls import CONTROL_KEYS, GenerationControls
    from evaluation.ngram_sampling import generate_ngram
    from model_architectures.saving import load_trained_model

    sampling = {name: value for name, value in settings.items() if name not in CONTROL_KEYS}
    samples = []
    for entry in models:
        cleaned = clean_text(prompt, entry.config.cleaning_steps)  # as the training text was
        start_id = document_start_id(entry.config)
        if entry.ngram is None:
            if entry._loaded is None:
                entry._loaded = load_trained_model(entry.path)  # without the optimizer, as the CLI
            controls = GenerationControls.from_settings(settings, entry.config.cleaning_steps)
            done = generate_timed(entry._loaded, entry.tokenizer, [cleaned], start_id=start_id,
                                  conditions=conditions or None, controls=controls, **sampling)
            samples.append(PanelSample(entry.name, done.texts[0], done.ms_per_token))
            continue
        sampled = generate_ngram(entry.ngram, entry.tokenizer, [cleaned], settings["max_new_tokens"],
                                 settings["sampler"], settings["temperature"], settings["top_k"],
                                 settings["top_p"], settings["seed"], start_id, conditions or None)
        note = "; ".join(filter(None, [sampled.note, "generation controls apply to the neural models only"
                                       if GenerationControls.from_settings(settings).active else ""]))
        samples.append(PanelSample(entry.name, sampled.texts[0], sampled.ms_per_token, note))
    return samples


def samples_html(samples: Sequence[PanelSample], seed: int | None = None) -> str:
    """The samples as columns side by side, each headed by its model and ms per token."""
    columns = []
    for sample in samples:
        text = html.escape(sample.text) if sample.text else "<i>(empty: it ended the document at once)</i>"
        note = f"<div><small>{html.escape(sample.note)}</small></div>" if sample.note else ""
        columns.append(
            f'<div class="panel-sample" data-model="{html.escape(sample.model)}" '
            'style="flex:1;min-width:180px;border:1px solid #ccc;border-radius:4px;padding:6px">'
            f"<b>{html.escape(sample.model)}</b> <small>{sample.ms_per_token:.2f} ms/token</small>"
            f'{note}<div style="white-space:pre-wrap;margin-top:4px">{text}</div></div>')
    caption = f"<small>seed {seed}</small>" if seed is not None else ""
    return f'<div style="display:flex;gap:8px;flex-wrap:wrap">{"".join(columns)}</div>{caption}'


def error_html(error: Exception) -> str:
    """A bad setting or prompt as one line, not a traceback."""
    return f'<div class="panel-error" style="color:#b00">error: {html.escape(str(error))}</div>'


def show_generation_panel(model_paths: Sequence[str | Path], ngram: Any = None,
                          defaults: ExperimentConfig | None = None) -> Any:
    """Display the panel (ipywidgets) in the running cell and return its widget box.

    `defaults`: the starting settings (the notebook's CONFIG); else the first model's CONFIG.
    """
    import ipywidgets as widgets
    from IPython.display import display

    models = panel_models(model_paths, ngram)
    settings = default_settings(defaults or models[0].config)
    prompt = widgets.Text(value="", placeholder="prompt ('' starts a new document)",
                          description="prompt", layout=widgets.Layout(width="60%"))
    controls = {control.name: _widget(widgets, control, settings[control.name]) for control in CONTROLS}
    conditions = {column: widgets.Dropdown(options=options, description=column)
                  for column, options in condition_options(models[0].tokenizer).items()}
    button = widgets.Button(description="Generate side by side", button_style="primary",
                            layout=widgets.Layout(width="220px"))
    result = widgets.HTML(value="")

    def on_click(_: Any) -> None:
        button.disabled = True
        result.value = "<i>sampling...</i>"
        chosen = {name: widget.value for name, widget in controls.items()}
        chosen["stop_strings"] = tuple(line for line in chosen["stop_strings"].splitlines() if line)
        try:
            samples = sample_side_by_side(models, prompt.value, chosen,
                                          {column: w.value for column, w in conditions.items()})
            result.value = samples_html(samples, chosen["seed"])
            controls["seed"].value = chosen["seed"] + 1  # the next click draws new samples
        except (DataError, ValueError) as error:
            result.value = error_html(error)
        finally:
            button.disabled = False

    button.on_click(on_click)
    inputs = list(controls.values())
    rows = [prompt, widgets.HBox(inputs[:4]), widgets.HBox(inputs[4:7]), widgets.HBox(inputs[7:]),
            *([widgets.HBox(list(conditions.values()))] if conditions else []), button, result]
    panel = widgets.VBox(rows)
    display(panel)
    return panel


def _widget(widgets: Any, control: Control, value: Any) -> Any:
    """The ipywidgets input for one control, starting at `value`."""
    common = {"value": value, "description": control.name, "style": {"description_width": "initial"}}
    if control.kind == "choice":
        return widgets.Dropdown(options=control.options, **common)
    if control.kind == "lines":
        return widgets.Textarea(**{**common, "value": "\n".join(value)}, placeholder="one per line")
    if control.kind == "int":
        return widgets.BoundedIntText(min=int(control.low), max=int(control.high),
                                      step=int(control.step), **common)
    return widgets.BoundedFloatText(min=control.low, max=control.high, step=control.step, **common)
