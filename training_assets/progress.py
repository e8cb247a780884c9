"""Live progress in a notebook: a per-step bar with the loss and tokens/s of tuning and training.

Keras prints one line per epoch (`verbose=2`) everywhere, and that stays the record in logs and
headless runs. In a Jupyter kernel with ipywidgets (and `live_progress` on) a bar is added that
moves with the steps; it is redrawn at most every `interval` seconds, so drawing costs training
nothing measurable even at hundreds of steps per second.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import keras

from data_pipeline.config import ExperimentConfig


@dataclass(frozen=True)
class ProgressState:
    """Where one fit call is: what the bar shows."""

    label: str
    epoch: int  # 1-based
    epochs: int
    step: int  # steps finished in this epoch
    steps: int  # steps per epoch (0 when Keras does not know)
    loss: float
    tokens_per_second: float  # this epoch's, from the end of its first step (tracing excluded); nan before
    validation_perplexity: float | None = None  # after the epoch's validation

    def text(self) -> str:
        """One line: "gru  epoch 2/5  step 120/400  loss 3.412  20,393 tokens/s"."""
        steps = f"/{self.steps}" if self.steps else ""
        speed = f"{self.tokens_per_second:,.0f} tokens/s" if math.isfinite(self.tokens_per_second) else "- tokens/s"
        parts = [self.label, f"epoch {self.epoch}/{self.epochs}", f"step {self.step}{steps}",
                 f"loss {self.loss:.3f}", speed]
        if self.validation_perplexity is not None:
            parts.append(f"val perplexity {self.validation_perplexity:.2f}")
        return "  ".join(part for part in parts if part)


class ProgressView(Protocol):
    """Where the states go: a widget bar in a notebook, anything with these two methods in a test."""

    def start(self) -> None: ...

    def show(self, state: ProgressState) -> None: ...


class WidgetBar:
    """An ipywidgets progress bar with a text line, displayed in the running cell at `start`."""

    def __init__(self) -> None:
        self._bar = self._line = None  # made at start: keras-tuner deep-copies callbacks per trial

    def start(self) -> None:
        import ipywidgets
        from IPython.display import display

        self._bar = ipywidgets.IntProgress(value=0, min=0, max=1, bar_style="info",
                                           layout=ipywidgets.Layout(width="260px"))
        self._line = ipywidgets.Label(value="starting")
        display(ipywidgets.HBox([self._bar, self._line]))

    def show(self, state: ProgressState) -> None:
        self._bar.max = max(state.steps, state.step, 1)
        self._bar.value = state.step
        self._line.value = state.text()


class StepProgress(keras.callbacks.Callback):
    """Sends the loss and tokens/s to a view after each step, at most every `interval` seconds,
    and always after the last step of an epoch and after its validation."""

    def __init__(self, view: ProgressView, tokens_per_step: float, label: str = "",
                 interval: float = 0.25):
        super().__init__()
        self.view, self.tokens_per_step = view, float(tokens_per_step)
        self.label, self.interval = label, float(interval)

    def on_train_begin(self, logs=None):
        self.view.start()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._warm_at, self._drawn_at, self._loss = epoch + 1, None, -math.inf, math.nan
        self._step = 0

    def on_train_batch_end(self, batch, logs=None):
        now, self._step = time.perf_counter(), batch + 1  # batch: index of the last batch run
        self._loss = float((logs or {}).get("loss", math.nan))
        if self._warm_at is None:
            self._warm_at = (now, self._step)  # the first step pays for tracing: timed from here
        if now - self._drawn_at >= self.interval or self._step == self._steps():
            self._drawn_at = now
            self.view.show(self._state(now))

    def on_epoch_end(self, epoch, logs=None):
        perplexity = (logs or {}).get("val_perplexity")
        self.view.show(self._state(time.perf_counter(),
                                   None if perplexity is None else float(perplexity)))

    def _steps(self) -> int:
        return int((self.params or {}).get("steps") or 0)

    def _state(self, now: float, validation_perplexity: float | None = None) -> ProgressState:
        rate = math.nan
        if self._warm_at is not None and self._step > self._warm_at[1] and now > self._warm_at[0]:
            rate = (self._step - self._warm_at[1]) * self.tokens_per_step / (now - self._warm_at[0])
        return ProgressState(self.label, self._epoch, int((self.params or {}).get("epochs") or 0),
                             self._step, self._steps(), self._loss, rate, validation_perplexity)


def notebook_widgets_available() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython, not plain Python) with ipywidgets."""
    try:
        from IPython import get_ipython
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def live_progress(config: ExperimentConfig, tokens_per_step: float,
                  label: str) -> list[keras.callbacks.Callback]:
    """[a StepProgress with a widget bar] in a notebook with `live_progress` on, else []."""
    if not config.live_progress or not notebook_widgets_available():
        return []
    return [StepProgress(WidgetBar(), tokens_per_step, label)]
