"""Callbacks of the final training and of tuning trials: timing, time budget, divergence, resumable
early stopping. Each one records why it stopped training, so the result can say so.

Order matters in the callback list: BackupAndRestore first (it restores weights and the epoch in
on_train_begin, before the others look at the model), EpochClock before CSVLogger (it adds its
timings to the epoch logs that CSVLogger and History then record).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

import keras
import keras_tuner as kt

from training_assets.budget_clock import CLOCK_UNITS, clock_seconds
from training_assets.compile import WarmupCosineDecay
from training_assets.multi_worker import any_worker, mean_over_workers

logger = logging.getLogger("training_assets")

TIMING_KEYS = ("epoch_seconds", "epoch_cpu_seconds", "epoch_train_seconds", "epoch_steps", "epoch_cold_start")


class EpochClock(keras.callbacks.Callback):
    """Wall time of each epoch (training + validation), of its training part alone, and its steps.

    Adds them to the epoch logs as `epoch_seconds`, `epoch_train_seconds` and `epoch_steps`, with
    the process's CPU seconds of the epoch as `epoch_cpu_seconds` (what a "cpu" budget counts), so
    the CSV history of a resumed run still holds the timings of the epochs before the restart;
    `epoch_cold_start` is 1 for the first epoch of a fit call (it includes tracing/compiling).
    """

    def on_train_begin(self, logs=None):
        self._cold = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start, self._epoch_cpu_start = time.perf_counter(), time.process_time()
        self._train_end = None
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps = batch + 1  # batch is the index of the last batch run (steps_per_execution-safe)

    def on_test_begin(self, logs=None):
        if getattr(self, "_train_end", 0) is None:  # validation inside fit: training part ends here
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        end, cpu_end = time.perf_counter(), time.process_time()
        if logs is not None:
            logs["epoch_seconds"] = end - self._epoch_start
            logs["epoch_cpu_seconds"] = cpu_end - self._epoch_cpu_start
            logs["epoch_train_seconds"] = (self._train_end or end) - self._epoch_start
            logs["epoch_steps"] = self._steps
            logs["epoch_cold_start"] = int(self._cold)
        self._cold = False


class TimeBudget(keras.callbacks.Callback):
    """Stop at the end of the step that passes `seconds` of training in this process on `clock`.

    `clock` returns seconds (time.perf_counter: wall, time.process_time: this process's CPU);
    `unit` names them in the stop reason. Keras then finishes the epoch as usual (validation,
    checkpoint), so nothing is lost.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.perf_counter, unit: str = "wall s"):
        super().__init__()
        self.seconds, self.clock, self.unit = float(seconds), clock, unit
        self.reason: str | None = None

    def on_train_begin(self, logs=None):
        self._start = self.clock()
        self.reason = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        elapsed = self.clock() - self._start
        # every worker of a cluster must stop at the same step: any worker's clock decides for all
        if self.reason is None and any_worker(elapsed >= self.seconds, self.model.distribute_strategy):
            self.reason = (f"time budget of {self.seconds:g} {self.unit} reached after "
                           f"{elapsed:.1f} {self.unit} "
                           f"(epoch {self._epoch + 1}, step {batch + 1})")
            logger.info("stopping: %s", self.reason)
            self.model.stop_training = True


class ScheduleToTimeBudget(keras.callbacks.Callback):
    """Ends a cosine schedule's decay when the time budget ends, not at the last epoch.

    A schedule sized in epochs never decays when a time budget stops training long before them.
    Every `every` steps and at each epoch end this estimates the steps that fit in the seconds
    left (measured seconds per training step after the first, compiling, step, plus the last
    validation's seconds spread over an epoch's steps) and moves the decay's end there, never
    past the steps the schedule was built for. Workers of a cluster use their mean estimate.
    Every second here is on the budget's `clock`, so the estimate is in the seconds it counts.
    """

    def __init__(self, schedule: WarmupCosineDecay, seconds: float, steps_per_epoch: int, every: int = 16,
                 clock: Callable[[], float] = time.perf_counter):
        super().__init__()
        self.schedule, self.seconds, self.every, self.clock = schedule, float(seconds), int(every), clock
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        self.planned_steps = schedule.total_steps  # the epochs' length: the decay never ends later

    def on_train_begin(self, logs=None):
        self._start = self.clock()
        self._warm: tuple[float, int, float] | None = None  # (time, step, validation s) after step 1
        self._validation_seconds = self._last_validation = 0.0
        self._steps_since_update = 0

    def on_train_batch_end(self, batch, logs=None):
        if self._warm is None:
            self._warm = (self.clock(), self._step(), self._validation_seconds)
            return
        self._steps_since_update += 1
        if self._steps_since_update >= self.every:
            self._update()

    def on_test_begin(self, logs=None):
        self._test_start = self.clock()

    def on_test_end(self, logs=None):
        self._last_validation = self.clock() - self._test_start
        self._validation_seconds += self._last_validation

    def on_epoch_end(self, epoch, logs=None):
        if self._warm is not None:
            self._update()

    def _step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _update(self) -> None:
        self._steps_since_update = 0
        now, step = self.clock(), self._step()
        warm_time, warm_step, warm_validation = self._warm
        if step <= warm_step:
            return
        step_seconds = (now - warm_time - (self._validation_seconds - warm_validation)) / (step - warm_step)
        cost_per_step = step_seconds + self._last_validation / self.steps_per_epoch
        steps_left = max(self.seconds - (now - self._start), 0.0) / cost_per_step
        steps_left = mean_over_workers(steps_left, self.model.distribute_strategy)
        self.schedule.fit_to_steps(min(step + max(int(steps_left), 1), self.planned_steps))


def time_budget_callbacks(seconds: float | None, schedule: float | WarmupCosineDecay, steps_per_epoch: int,
                          clock: str = "wall") -> tuple[TimeBudget | None, list[keras.callbacks.Callback]]:
    """The budget's stop and, for a cosine schedule, its decay fitted to the budget (none without one).

    `clock` is a resolved budget clock, "wall" or "cpu" (training_assets.budget_clock.resolve_clock).
    """
    if not seconds:
        return None, []
    seconds_now = clock_seconds(clock)
    budget = TimeBudget(seconds, seconds_now, CLOCK_UNITS[clock])
    if isinstance(schedule, WarmupCosineDecay):
        return budget, [budget, ScheduleToTimeBudget(schedule, budget.seconds, steps_per_epoch,
                                                     clock=seconds_now)]
    return budget, [budget]


class TrialSteps(keras.callbacks.Callback):
    """Counts the training steps a tuning trial's weights have had: `steps`, and `trial_steps` in
    each epoch's logs.

    The search uses the count to tell trials too short to rank (training_assets.tuner). A
    Hyperband trial that continues an earlier one from `initial_epoch` counts those epochs as
    full epochs of `steps_per_epoch`.
    """

    def __init__(self, steps_per_epoch: int):
        super().__init__()
        self.steps_per_epoch = int(steps_per_epoch)
        self.steps = 0

    def on_train_begin(self, logs=None):
        self._first_epoch = True
        self.steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch:  # epochs before this fit call's first one were another call's
            self.steps, self._first_epoch = epoch * self.steps_per_epoch, False
        self._epoch_steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._epoch_steps = batch + 1  # batch is the index of the last batch run

    def on_epoch_end(self, epoch, logs=None):
        self.steps += self._epoch_steps
        if logs is not None:
            logs["trial_steps"] = self.steps


class DivergenceGuard(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that remembers where the loss stopped being finite."""

    def __init__(self):
        super().__init__()
        self.reason: str | None = None

    def on_train_begin(self, logs=None):
        self.reason = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.reason is None and loss is not None and not math.isfinite(float(loss)):
            self.reason = (f"diverged: loss became {float(loss)} at epoch {self._epoch + 1}, "
                           f"step {batch + 1}")
            logger.error("training %s; stopping, the best checkpoint so far is kept", self.reason)
        super().on_batch_end(batch, logs)

    @property
    def diverged(self) -> bool:
        return self.reason is not None


class FailTrialOnNaN(keras.callbacks.Callback):
    """In a tuning trial, a non-finite loss fails the trial (keras-tuner records it and moves on)
    instead of reporting a NaN objective that the oracle would have to rank."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise kt.errors.FailedTrialError(f"trial diverged: loss {float(loss)} at step {batch + 1}")


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose state (best value, best epoch, epochs without improvement, best weights)
    survives a restart: BackupAndRestore brings back the weights and the epoch, this brings back
    what EarlyStopping had learnt from the epochs before the kill (read from the CSV history).
    """

    def __init__(self, *args, resume_history: list[float] | None = None,
                 best_weights_loader: Callable[[], list] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.resume_history = list(resume_history or [])  # monitored value of each finished epoch
        self.best_weights_loader = best_weights_loader

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        finite = [(value, epoch) for epoch, value in enumerate(self.resume_history) if math.isfinite(value)]
        if not finite:
            return
        self.best, self.best_epoch = min(finite) if self.mode != "max" else max(finite)
        self.wait = len(self.resume_history) - 1 - self.best_epoch
        if self.restore_best_weights and self.best_weights_loader is not None:
            self.best_weights = self.best_weights_loader()

    @property
    def reason(self) -> str | None:
        if self.stopped_epoch <= 0:
            return None
        return (f"early stopping: {self.monitor} did not improve for {self.patience} epoch(s) "
                f"after epoch {self.best_epoch + 1}")


class PrintSamples(keras.callbacks.Callback):
    """A few samples from the model being trained, at the first validation after every
    `every_steps` training steps (CONFIG `sample_every_steps`), so a user watching sees the text
    improve. The sampling runs in this process, so a CPU-second budget counts it."""

    def __init__(self, family: str, tokenizer: Any, config: Any, steps_per_epoch: int,
                 samples: int = 2, printer: Callable[[str], None] = print) -> None:
        super().__init__()
        self.family, self.tokenizer, self.config = family, tokenizer, config
        self.every, self.steps_per_epoch = config.sample_every_steps, steps_per_epoch
        self.samples, self.printer = samples, printer
        self.steps_done = self.last_printed = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.steps_done = (epoch + 1) * self.steps_per_epoch  # epochs restored on resume count
        if self.steps_done // self.every <= self.last_printed // self.every:
            return
        self.last_printed = self.steps_done
        from evaluation.generation import document_start_id, generate

        config = self.config
        try:
            texts = generate(self.model, self.tokenizer, [config.prompts[0]] * self.samples,
                             max_new_tokens=config.max_new_tokens, sampler=config.sampler,
                             temperature=config.temperature, top_k=config.top_k,
                             top_p=config.top_p, beam_width=config.beam_width, seed=config.seed,
                             start_id=document_start_id(config))
        except ValueError as error:  # e.g. a model trained with conditions needs their values
            self.printer(f"{self.family}: no samples during training ({error})")
            self.every = 10**12
            return
        perplexity = (logs or {}).get("val_perplexity")
        shown = f", validation perplexity {perplexity:.2f}" if perplexity is not None else ""
        self.printer(f"{self.family} after {self.steps_done} steps{shown}:\n"
                     + "\n".join(f"  - {text}" for text in texts))
