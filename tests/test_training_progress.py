"""The notebook's per-step progress: what it shows during a real train_model run, how often it
redraws, and that outside a Jupyter kernel nothing but Keras's epoch lines is added."""

import math

from training_factories import make_config, make_data

from model_architectures.registry import hyperparameters_for
from training_assets.progress import (ProgressState, StepProgress, WidgetBar, live_progress,
                                      notebook_widgets_available)
from training_assets.strategy import select_strategy
from training_assets.trainer import tokens_per_step, train_model


class RecordingView:
    """A view that keeps every state it is sent (the notebook's is a widget bar)."""

    def __init__(self):
        self.started, self.states = 0, []

    def start(self):
        self.started += 1

    def show(self, state):
        self.states.append(state)


def train_with(tmp_path, view, interval):
    config = make_config(tmp_path, final_training_epochs=2, steps_per_epoch=12)
    tokenizer, datasets = make_data(config)
    progress = StepProgress(view, tokens_per_step(datasets), "gru", interval=interval)
    train_model("gru", hyperparameters_for("gru", config.hyperparameters["gru"]), datasets, config,
                select_strategy("default"), tokenizer, callbacks=[progress])
    return datasets


def test_every_step_shows_loss_and_tokens_per_second_and_each_epoch_ends_with_validation(tmp_path):
    view = RecordingView()
    datasets = train_with(tmp_path, view, interval=0.0)

    assert view.started == 1
    for epoch in (1, 2):
        states = [s for s in view.states if s.epoch == epoch]
        assert [s.step for s in states] == [*range(1, 13), 12]  # each step, then the epoch's end
        assert all(s.steps == 12 and s.epochs == 2 and s.label == "gru" for s in states)
        assert all(math.isfinite(s.loss) and s.loss > 0 for s in states)
        assert math.isnan(states[0].tokens_per_second)  # the first step only starts the clock
        assert all(s.tokens_per_second > 0 for s in states[1:])
        assert states[-1].validation_perplexity > 1 and states[-2].validation_perplexity is None
    assert datasets.train.tokens / datasets.train.steps == tokens_per_step(datasets) > 0
    line = view.states[-1].text()
    assert line.startswith("gru  epoch 2/2  step 12/12  loss ") and "tokens/s" in line
    assert "val perplexity" in line


def test_redraws_are_throttled_but_each_epoch_shows_its_last_step(tmp_path):
    view = RecordingView()
    train_with(tmp_path, view, interval=3600.0)
    # per epoch: its first step, its last step (always), the epoch's end with validation
    assert [(s.epoch, s.step) for s in view.states] == [(1, 1), (1, 12), (1, 12), (2, 1), (2, 12), (2, 12)]


def test_outside_a_jupyter_kernel_only_the_epoch_lines_remain(tmp_path):
    config = make_config(tmp_path, live_progress=True)
    assert not notebook_widgets_available()  # pytest: no IPython kernel
    assert live_progress(config, 100.0, "gru") == []
    assert live_progress(make_config(tmp_path, live_progress=False), 100.0, "gru") == []


def test_widget_bar_holds_the_state_it_was_shown(capsys):
    bar = WidgetBar()
    bar.start()
    state = ProgressState("lstm trial", 1, 3, 40, 400, 4.25, 12345.6)
    bar.show(state)
    assert (bar._bar.value, bar._bar.max) == (40, 400)
    assert bar._line.value == "lstm trial  epoch 1/3  step 40/400  loss 4.250  12,346 tokens/s"
