"""LSTM and GRU layers whose CPU path runs the recurrence with a hand-written backward pass.

Keras' generic RNN loop lets TensorFlow differentiate every time step on its own: each step runs
two small matmuls forward (inputs and state) and four backward (two for the gradients of inputs
and state, two accumulating the weights' gradients), each too small to keep the cores busy.
PyTorch's CPU LSTM instead multiplies the inputs of all steps at once, runs one matmul per step
each way, and forms the recurrent weights' gradient in one matmul after the loop. These layers do
the same wherever Keras would run its generic loop (CPUs, TPUs); on GPUs they are Keras' own layers
(cuDNN). Weights, their names and the math are Keras' (gate orders i, f, c, o and z, r, h with
reset_after), so checkpoints load into either and give the same outputs.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import activations, ops


def _fused_path_applies(layer: keras.layers.RNN, mask) -> bool:
    """Keras' cuDNN-compatible settings without a mask, off GPUs (where cuDNN is faster)."""
    cell = layer.cell
    return (keras.backend.backend() == "tensorflow" and mask is None and not layer.go_backwards
            and not layer.unroll and not cell.dropout and not cell.recurrent_dropout
            and cell.use_bias and cell.activation is activations.tanh
            and cell.recurrent_activation is activations.sigmoid
            and not tf.config.list_logical_devices("GPU"))


def _zeros_if_none(gradient, like):
    return tf.zeros_like(like) if gradient is None else gradient


def _previous(initial, sequence):
    """The value before each step: (T, B, U) from the initial value (B, U) and steps 0..T-2."""
    return tf.concat([initial[tf.newaxis], sequence[:-1]], axis=0)


@tf.custom_gradient
def lstm_sequence(projected_inputs, h0, c0, recurrent_kernel):
    """LSTM over projected_inputs (T, B, 4U) = inputs·kernel + bias: -> (hs (T, B, U), h_T, c_T)."""
    units = recurrent_kernel.shape[0]

    def step(carry, projected):
        h, c, _ = carry  # (B, U), (B, U)
        z = projected + tf.matmul(h, recurrent_kernel)  # (B, 4U)
        i, f, g, o = tf.split(z, 4, axis=-1)
        i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
        c = f * c + i * g
        return o * tf.tanh(c), c, tf.concat([i, f, g, o], axis=-1)

    gates0 = tf.zeros_like(projected_inputs[0])
    hs, cs, gates = tf.scan(step, projected_inputs, initializer=(h0, c0, gates0))

    def gradient(d_hs, d_h_last, d_c_last):
        d_hs = _zeros_if_none(d_hs, hs)
        c_previous = _previous(c0, cs)

        def back(carry, elements):
            d_h_next, d_c_next, _ = carry
            d_h_out, c, c_before, gate = elements
            i, f, g, o = tf.split(gate, 4, axis=-1)
            d_h = d_h_out + d_h_next
            tanh_c = tf.tanh(c)
            d_c = d_c_next + d_h * o * (1.0 - tanh_c * tanh_c)
            d_z = tf.concat([d_c * g * i * (1.0 - i), d_c * c_before * f * (1.0 - f),
                             d_c * i * (1.0 - g * g), d_h * tanh_c * o * (1.0 - o)], axis=-1)
            return tf.matmul(d_z, recurrent_kernel, transpose_b=True), d_c * f, d_z

        start = (_zeros_if_none(d_h_last, h0), _zeros_if_none(d_c_last, c0), gates0)
        d_h_before, d_c_before, d_z = tf.scan(back, (d_hs, cs, c_previous, gates),
                                              initializer=start, reverse=True)
        h_previous = tf.reshape(_previous(h0, hs), (-1, units))  # (T*B, U)
        d_recurrent = tf.matmul(h_previous, tf.reshape(d_z, (-1, 4 * units)), transpose_a=True)
        return d_z, d_h_before[0], d_c_before[0], d_recurrent

    return (hs, hs[-1], cs[-1]), gradient


@tf.custom_gradient
def gru_sequence(projected_inputs, h0, recurrent_kernel, recurrent_bias):
    """GRU (reset_after) over projected_inputs (T, B, 3U) = inputs·kernel + input bias:
    -> (hs (T, B, U), h_T)."""
    units = recurrent_kernel.shape[0]

    def step(carry, projected):
        h, _ = carry  # (B, U)
        x_z, x_r, x_h = tf.split(projected, 3, axis=-1)
        r_z, r_r, r_h = tf.split(tf.matmul(h, recurrent_kernel) + recurrent_bias, 3, axis=-1)
        z, r = tf.sigmoid(x_z + r_z), tf.sigmoid(x_r + r_r)
        candidate = tf.tanh(x_h + r * r_h)
        return z * h + (1.0 - z) * candidate, tf.concat([z, r, candidate, r_h], axis=-1)

    saved0 = tf.zeros_like(h0)
    saved0 = tf.concat([saved0] * 4, axis=-1)  # (B, 4U)
    hs, saved = tf.scan(step, projected_inputs, initializer=(h0, saved0))

    def gradient(d_hs, d_h_last):
        d_hs = _zeros_if_none(d_hs, hs)
        h_previous = _previous(h0, hs)

        def back(carry, elements):
            d_h_next, _, _ = carry
            d_h_out, h_before, kept = elements
            z, r, candidate, r_h = tf.split(kept, 4, axis=-1)
            d_h = d_h_out + d_h_next
            d_a_h = d_h * (1.0 - z) * (1.0 - candidate * candidate)
            d_a_z = d_h * (h_before - candidate) * z * (1.0 - z)
            d_a_r = d_a_h * r_h * r * (1.0 - r)
            d_projected = tf.concat([d_a_z, d_a_r, d_a_h], axis=-1)  # (B, 3U)
            d_inner = tf.concat([d_a_z, d_a_r, d_a_h * r], axis=-1)  # (B, 3U): of h·R + bias
            d_h_before = d_h * z + tf.matmul(d_inner, recurrent_kernel, transpose_b=True)
            return d_h_before, d_projected, d_inner

        zeros = tf.zeros_like(projected_inputs[0])
        start = (_zeros_if_none(d_h_last, h0), zeros, zeros)
        d_h_before, d_projected, d_inner = tf.scan(back, (d_hs, h_previous, saved),
                                                   initializer=start, reverse=True)
        d_inner_rows = tf.reshape(d_inner, (-1, 3 * units))  # (T*B, 3U)
        d_recurrent = tf.matmul(tf.reshape(h_previous, (-1, units)), d_inner_rows, transpose_a=True)
        return d_projected, d_h_before[0], d_recurrent, tf.reduce_sum(d_inner_rows, axis=0)

    return (hs, hs[-1]), gradient


class FusedLSTM(keras.layers.LSTM):
    """keras.layers.LSTM with the fused CPU path (see the module docstring)."""

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not _fused_path_applies(self, mask):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        h0, c0 = initial_state  # each (B, U)
        projected = ops.matmul(sequences, self.cell.kernel) + self.cell.bias  # (B, T, 4U)
        hs, h, c = lstm_sequence(tf.transpose(projected, (1, 0, 2)), h0, c0,
                                 tf.convert_to_tensor(self.cell.recurrent_kernel))
        return h, tf.transpose(hs, (1, 0, 2)), [h, c]  # Keras' (last output, outputs, states)


class FusedGRU(keras.layers.GRU):
    """keras.layers.GRU (reset_after) with the fused CPU path (see the module docstring)."""

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not (self.cell.reset_after and _fused_path_applies(self, mask)):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        h0 = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        bias = tf.convert_to_tensor(self.cell.bias)  # (2, 3U): input bias, recurrent bias
        projected = ops.matmul(sequences, self.cell.kernel) + bias[0]  # (B, T, 3U)
        hs, h = gru_sequence(tf.transpose(projected, (1, 0, 2)), h0,
                             tf.convert_to_tensor(self.cell.recurrent_kernel), bias[1])
        return h, tf.transpose(hs, (1, 0, 2)), [h]
