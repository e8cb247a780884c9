"""train_model on tiny real models: learning is shown against the unigram bar, outputs and stops are checked."""

import json
import math

import keras
import numpy as np
import pytest
from training_factories import RecordEpochs, TINY_HYPERPARAMETERS, make_config, make_data, unigram_perplexity

from model_architectures.registry import FAMILIES, family_names, hyperparameters_for
from training_assets.callbacks import ResumableEarlyStopping
from training_assets.strategy import select_strategy
from training_assets.trainer import read_history, train_model


def train(config, family="gru", strategy=None, callbacks=(), replicas=1, hyperparameters=None):
    strategy = strategy or select_strategy("default")
    tokenizer, datasets = make_data(config, num_replicas=replicas)
    hp = hyperparameters_for(family, hyperparameters or config.hyperparameters[family])
    result = train_model(family, hp, datasets, config, strategy, tokenizer, callbacks=callbacks)
    return result, datasets, tokenizer


@pytest.mark.parametrize("family", family_names(brings_tokenizer=False, likelihood=True))  # the GAN: tests/test_models_gan.py
def test_every_family_learns_below_unigram_perplexity(tmp_path, family):
    # Each under its first objective; last_token epochs (a window per token) are cut to 120 steps.
    objective = FAMILIES[family].objectives[0]
    config = make_config(tmp_path, models_to_run=[family], final_training_epochs=2, objective=objective,
                         steps_per_epoch=None if objective == "causal" else 120)
    result, datasets, tokenizer = train(config, family)

    bar = unigram_perplexity(datasets.validation.token_stream)
    best = min(result.history["val_perplexity"])
    assert best < 0.5 * bar, f"{family}: val perplexity {best:.2f} vs unigram {bar:.2f}"
    assert result.history["perplexity"][-1] < result.history["perplexity"][0]
    assert len(result.epoch_seconds) == 2 and result.train_seconds == pytest.approx(sum(result.epoch_seconds))
    assert result.train_tokens_per_second > 0 and result.parameters > 0
    assert not result.diverged and result.stopped_reason == "completed 2 of 2 epochs"

    # The checkpoint is the best epoch, reloads as is, and its manifest says how to use it.
    model = keras.saving.load_model(result.checkpoint_path)
    assert model.evaluate(datasets.validation.dataset, return_dict=True, verbose=0)["perplexity"] == \
        pytest.approx(best, rel=1e-4)
    manifest = json.loads((tmp_path / "models" / f"{family}.manifest.json").read_text())
    assert manifest["family"] == family and manifest["vocab_size"] == datasets.vocab_size
    assert manifest["tokenizer_fingerprint"] == tokenizer.fingerprint
    assert manifest["tokenizer_path"] == config.tokenizer_path and manifest["parameters"] == result.parameters
    assert manifest["config"]["max_len"] == 16 and manifest["training"]["best_epoch"] in (1, 2)
    assert manifest["hyperparameters"] == result.hyperparameters
    assert not (tmp_path / "models" / ".backup" / family).exists()  # removed after a finished run


@pytest.mark.parametrize("ema_momentum", [None, 0.9])  # averaged weights are swapped on every replica
def test_mirrored_strategy_over_two_cpus_fits_and_evaluates(tmp_path, ema_momentum):
    strategy = select_strategy("mirrored")
    config = make_config(tmp_path, strategy="mirrored", batch_size=4, final_training_epochs=2,
                         ema_momentum=ema_momentum)
    result, datasets, _ = train(config, "gru", strategy=strategy, replicas=2)
    assert datasets.global_batch_size == 8
    assert min(result.history["val_perplexity"]) < 0.5 * unigram_perplexity(datasets.validation.token_stream)
    with strategy.scope():
        model = keras.saving.load_model(result.checkpoint_path)
    logs = model.evaluate(datasets.validation.dataset, return_dict=True, verbose=0)
    assert logs["perplexity"] == pytest.approx(min(result.history["val_perplexity"]), rel=1e-4)


def test_time_budget_stops_after_the_step_that_passes_it_and_steps_are_capped(tmp_path):
    config = make_config(tmp_path, train_time_budget_seconds=1e-3, final_training_epochs=3, steps_per_epoch=5)
    result, _, _ = train(config)
    assert result.stopped_reason.startswith("time budget of 0.001 CPU s reached")  # auto: cpu, no GPU here
    rows = read_history(tmp_path / "models" / "gru.history.csv")
    assert len(rows) == 1 and rows[0]["epoch_steps"] == 1  # stopped after one step, epoch still validated
    assert math.isfinite(result.history["val_perplexity"][0])

    config = make_config(tmp_path / "capped", final_training_epochs=1, steps_per_epoch=5, tensorboard=True)
    train(config)
    assert read_history(tmp_path / "capped" / "models" / "gru.history.csv")[0]["epoch_steps"] == 5
    assert any((tmp_path / "capped" / "models" / "tensorboard" / "gru").rglob("events.out.tfevents.*"))


class LearningRateLog(keras.callbacks.Callback):
    """The optimizer's learning rate after every training step."""

    def on_train_begin(self, logs=None):
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def test_cosine_schedule_decays_by_the_end_of_a_time_budget(tmp_path):
    # 1,000 planned epochs, stopped by an 8 s budget: the decay must end with the budget, not the epochs.
    # (8 s, not less: compiling and validating take part of it, and slow CI machines still need 100+ steps.)
    peak = TINY_HYPERPARAMETERS["gru"]["learning_rate"]
    config = make_config(tmp_path, learning_rate_schedule="cosine", warmup_steps=0, train_time_budget_seconds=8,
                         final_training_epochs=1000, steps_per_epoch=50, early_stopping_patience=1000,
                         budget_clock="wall")
    log = LearningRateLog()
    result, _, _ = train(config, callbacks=[log])
    assert result.stopped_reason.startswith("time budget of 8 wall s reached")
    steps = len(log.rates)
    assert steps > 100, steps  # enough steps for the schedule to be re-estimated many times
    assert log.rates[0] == pytest.approx(peak, rel=0.02)
    assert log.rates[steps // 2] < 0.9 * peak  # decaying mid-way (an epoch-sized cosine is still at ~peak)
    assert 0.1 * peak <= log.rates[-1] < 0.25 * peak, log.rates[-10:]  # near the 10% floor at the end
    assert keras.saving.load_model(result.checkpoint_path) is not None  # the schedule serialises


class RawWeights(keras.callbacks.Callback):
    """The model's own (not averaged) weights after the last training step."""

    def on_train_batch_end(self, batch, logs=None):
        self.weights = [np.array(v) for v in self.model.trainable_variables]


def test_weight_averaging_validates_and_checkpoints_the_averaged_weights(tmp_path):
    config = make_config(tmp_path, ema_momentum=0.9, final_training_epochs=2, early_stopping_patience=5)
    raw = RawWeights()
    result, datasets, _ = train(config, callbacks=[raw])
    model = keras.saving.load_model(result.checkpoint_path)
    optimizer_config = model.optimizer.get_config()
    assert optimizer_config["use_ema"] and optimizer_config["ema_momentum"] == pytest.approx(0.9)
    # What was validated is what the checkpoint holds: the reloaded model scores the recorded best.
    logs = model.evaluate(datasets.validation.dataset, return_dict=True, verbose=0)
    assert logs["perplexity"] == pytest.approx(min(result.history["val_perplexity"]), rel=1e-4)
    # ...and it is the average, not the last raw weights (which the same evaluation would score differently).
    assert int(np.argmin(result.history["val_perplexity"])) == 1  # the last epoch, whose raw weights we kept
    assert any(not np.allclose(a, b) for a, b in zip(raw.weights, model.trainable_weights))
    manifest = json.loads((tmp_path / "models" / "gru.manifest.json").read_text())
    assert manifest["ema_momentum"] == 0.9


class PoisonWeights(keras.callbacks.Callback):
    """Makes training diverge: NaN weights after the 3rd step of the 2nd epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch == 2:
            variable = self.model.trainable_variables[0]
            variable.assign(np.full(variable.shape, np.nan, variable.dtype))


def test_divergence_stops_training_and_keeps_the_best_checkpoint(tmp_path):
    config = make_config(tmp_path, final_training_epochs=3)
    result, datasets, _ = train(config, callbacks=[PoisonWeights()])
    assert result.diverged and result.stopped_reason.startswith("diverged: loss became nan at epoch 2")
    assert len(result.history["val_perplexity"]) == 2 and math.isnan(result.history["val_perplexity"][1])
    model = keras.saving.load_model(result.checkpoint_path)  # epoch 1's model, finite
    logs = model.evaluate(datasets.validation.dataset, return_dict=True, verbose=0)
    assert logs["perplexity"] == pytest.approx(result.history["val_perplexity"][0], rel=1e-4)


def test_a_checkpoint_of_another_run_is_moved_aside_not_overwritten(tmp_path):
    config = make_config(tmp_path, final_training_epochs=1)
    train(config)
    models = tmp_path / "models"
    first_bytes = (models / "gru.keras").read_bytes()

    different = {**TINY_HYPERPARAMETERS["gru"], "units": 24}
    train(config, hyperparameters=different)
    moved = sorted(path.name for path in models.iterdir() if ".moved-" in path.name)
    assert [name.split(".moved-")[0] for name in moved] == ["gru.history.csv", "gru.keras", "gru.manifest.json"]
    assert (models / next(name for name in moved if name.startswith("gru.keras"))).read_bytes() == first_bytes
    assert json.loads((models / "gru.manifest.json").read_text())["hyperparameters"]["units"] == 24


def test_finished_training_of_the_same_run_is_reused_and_retrain_forces_it(tmp_path):
    config = make_config(tmp_path, final_training_epochs=2)
    first, _, _ = train(config)
    checkpoint = tmp_path / "models" / "gru.keras"
    first_bytes, first_mtime = checkpoint.read_bytes(), checkpoint.stat().st_mtime_ns

    epochs = RecordEpochs()
    again, _, _ = train(config, callbacks=[epochs])
    assert again.reused and not first.reused
    assert epochs.epochs == []  # not one epoch ran
    assert checkpoint.stat().st_mtime_ns == first_mtime and checkpoint.read_bytes() == first_bytes
    assert again.history == first.history and again.stopped_reason == first.stopped_reason
    assert again.parameters == first.parameters and again.hyperparameters == first.hyperparameters

    forced, _, _ = train(make_config(tmp_path, final_training_epochs=2, retrain=True), callbacks=[epochs])
    assert not forced.reused and epochs.epochs == [0, 1]

    # A changed training setting is another run: its files are moved aside, then it trains.
    epochs.epochs.clear()
    changed, _, _ = train(make_config(tmp_path, final_training_epochs=3), callbacks=[epochs])
    assert not changed.reused and epochs.epochs == [0, 1, 2]
    moved = [path.name for path in (tmp_path / "models").iterdir() if path.name.startswith("gru.keras.moved-")]
    assert len(moved) == 1


def test_early_stopping_state_survives_a_restart(tmp_path):
    """After a resume at epoch 3 with history [5, 4, 4.5] and patience 1, a worse epoch 3 stops training."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    saved = [np.full(w.shape, 7.0, w.dtype) for w in model.get_weights()]
    stopper = ResumableEarlyStopping(monitor="val_perplexity", mode="min", patience=1, restore_best_weights=True,
                                     resume_history=[5.0, 4.0, 4.5], best_weights_loader=lambda: saved)
    stopper.set_model(model)
    stopper.on_train_begin()
    assert (stopper.best, stopper.best_epoch, stopper.wait) == (4.0, 1, 1)
    stopper.on_epoch_end(3, {"val_perplexity": 4.6})
    assert model.stop_training and "after epoch 2" in stopper.reason
    stopper.on_train_end()
    assert np.all(model.get_weights()[0] == 7.0)  # best epoch's weights, read from the checkpoint


def test_capped_epochs_never_run_out_of_batches(tmp_path):
    """With steps_per_epoch below one pass, later epochs still get all their steps (repeat)."""
    config = make_config(tmp_path, final_training_epochs=4, early_stopping_patience=10)
    tokenizer, datasets = make_data(config)
    steps = max(1, (datasets.train.steps * 2) // 3)  # 4 epochs x 2/3 of a pass > one pass
    config = make_config(tmp_path, final_training_epochs=4, early_stopping_patience=10,
                         steps_per_epoch=steps)
    strategy = select_strategy("default")
    train_model("gru", hyperparameters_for("gru", config.hyperparameters["gru"]), datasets, config,
                strategy, tokenizer)
    rows = read_history(tmp_path / "models" / "gru.history.csv")
    assert [row["epoch_steps"] for row in rows] == [steps] * 4
