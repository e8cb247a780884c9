"""The fused LSTM/GRU loop computes what Keras' own layers compute: outputs, states and every
gradient, from the same weights (so checkpoints load into either)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from model_architectures.fused_recurrent import FusedGRU, FusedLSTM, _fused_path_applies

PAIRS = {"lstm": (FusedLSTM, keras.layers.LSTM, 2), "gru": (FusedGRU, keras.layers.GRU, 1)}


@pytest.mark.parametrize("cell", sorted(PAIRS))
def test_fused_layer_matches_keras_in_outputs_states_and_gradients(cell):
    fused_class, keras_class, state_count = PAIRS[cell]
    rng = np.random.default_rng(0)
    inputs = tf.constant(rng.normal(size=(3, 7, 5)), "float32")  # (B, T, E)
    states = [tf.constant(rng.normal(size=(3, 6)), "float32") for _ in range(state_count)]
    weights_of_outputs = tf.constant(rng.normal(size=(3, 7, 6)), "float32")
    layers = [layer_class(6, return_sequences=True, return_state=True, name="recurrent")
              for layer_class in (fused_class, keras_class)]
    for layer in layers:
        layer.build(inputs.shape)
    assert [w.path for w in layers[0].weights] == [w.path for w in layers[1].weights]
    for fused_weight, keras_weight in zip(*(layer.weights for layer in layers)):
        value = rng.normal(size=fused_weight.shape).astype("float32") * 0.5
        fused_weight.assign(value)
        keras_weight.assign(value)
    assert _fused_path_applies(layers[0], None)  # on this CPU the fused loop is what runs

    results = []
    for layer in layers:
        with tf.GradientTape() as tape:
            tape.watch([inputs, *states])
            sequence, *last_states = layer(inputs, initial_state=states)
            # every output reaches the loss: the sequence, the last output (= h) and each state
            loss = tf.reduce_sum(sequence * weights_of_outputs) + sum(
                (index + 0.5) * tf.reduce_sum(state) for index, state in enumerate(last_states))
        gradients = tape.gradient(loss, [inputs, *states, *layer.trainable_weights])
        results.append([sequence, *last_states, *gradients])
    for fused_value, keras_value in zip(*results):
        np.testing.assert_allclose(fused_value.numpy(), keras_value.numpy(), atol=2e-5)


def test_masked_or_dropout_layers_keep_keras_loop():
    layer = FusedGRU(4, dropout=0.1)
    layer.build((2, 3, 5))
    assert not _fused_path_applies(layer, None)
    assert not _fused_path_applies(FusedLSTM(4), tf.ones((2, 3), bool))
