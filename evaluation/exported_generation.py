"""The `generate` function an exported SavedModel serves: token ids in, token ids out, one graph.

Built from the model-family contract and plain TensorFlow ops only, so the traced graph runs
wherever TensorFlow does (tf.saved_model.load, TF Serving) with nothing of this project. It
decodes like evaluation/generation.py: a document-start id before each prompt, a prefill of all
but the last token of the shortest prompt, then a tf.while_loop with one model step per new token
(`call_with_cache`: carried state or key/value cache); a family without a cache re-encodes its
last max_len tokens per step. [PAD] is never sampled, a row ends at its first [EOS] after the
prompt, and sampling is stateless (seeded by the `seed` input and the position), so a request
gives the same ids every time.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from model_architectures.contract import LanguageModel

PAD_ID, EOS_ID = 0, 3  # data_pipeline.tokenizer.TextTokenizer's fixed special ids
NEVER = -1e9  # added to the logits of tokens that must not be sampled

# The signature's inputs, in order; TF Serving's REST "inputs" object uses these names.
GENERATE_SIGNATURE = (
    tf.TensorSpec([None, None], tf.int32, name="prompt_ids"),  # (B, P) right-padded with [PAD]=0
    tf.TensorSpec([], tf.int32, name="max_new_tokens"),  # >= 1; clipped to the model's positions
    tf.TensorSpec([], tf.float32, name="temperature"),  # 0: greedy (argmax), else sampling
    tf.TensorSpec([], tf.int32, name="top_k"),  # 0: no top-k cut
    tf.TensorSpec([], tf.float32, name="top_p"),  # 1.0: no nucleus cut
    tf.TensorSpec([], tf.int32, name="seed"),
)


def make_generate(model: LanguageModel, start_id: int) -> Callable[..., dict[str, tf.Tensor]]:
    """generate(prompt_ids, max_new_tokens, temperature, top_k, top_p, seed) ->
    {"token_ids": (B, T) prompt + new ids, [PAD] after each row's end; "lengths": (B,)}.

    `start_id` is the id before a document's first token in training ([EOS] or [BOS]).
    """
    vocab_size = int(model.vocab_size)
    limit = model.max_sequence_length  # None: no positional limit (recurrent state)
    window = int(model.max_len)
    never_pad = tf.one_hot(PAD_ID, vocab_size, on_value=NEVER, off_value=0.0)  # (V,)

    def step_logits(buffer, cache, index):
        """Logits (B, V) for the token at `index`, from the tokens before it."""
        if model.has_cache:
            tokens = buffer[:, index - 1: index]  # (B, 1)
            logits, cache = model.call_with_cache(tokens, cache, index - 1)  # (B, 1, V)
        else:
            batch = tf.shape(buffer)[0]
            padded = tf.concat([tf.fill([batch, window], PAD_ID), buffer], axis=1)
            logits = model.call_last(padded[:, index: index + window])  # the window before index
        return tf.cast(logits[:, -1, :], tf.float32) + never_pad, cache

    def generate(prompt_ids, max_new_tokens, temperature, top_k, top_p, seed):
        lengths = 1 + tf.reduce_sum(tf.cast(prompt_ids != PAD_ID, tf.int32), axis=1)  # (B,)
        longest = tf.reduce_max(lengths)
        checks = _check_inputs(prompt_ids, max_new_tokens, temperature, top_k, top_p, vocab_size)
        if limit is not None:
            checks.append(tf.debugging.assert_less(longest, limit, message=(
                f"a prompt (with the document-start token) must have fewer than {limit} tokens "
                "(the model's positions): shorten it")))
            max_new_tokens = tf.minimum(max_new_tokens, limit - longest)  # as sample_ids clips
        with tf.control_dependencies(checks):  # refuse before the model reads a bad id
            prompt_ids = tf.identity(prompt_ids)
        batch = tf.shape(prompt_ids)[0]
        total = longest + max_new_tokens  # buffer length: start id + prompt + new tokens
        buffer = tf.concat([tf.fill([batch, 1], start_id), prompt_ids,
                            tf.zeros([batch, max_new_tokens], tf.int32)], axis=1)[:, :total]
        ends = tf.minimum(lengths + max_new_tokens, total)  # (B,) first position not generated
        start = tf.reduce_min(lengths)  # first position the loop may write

        # A key/value cache as long as this request's tokens (a carried state ignores the length).
        cache = model.build_cache(batch, total) if model.has_cache else tf.zeros([])
        if model.has_cache:
            full = cache
            cache = tf.cond(start > 1,
                            lambda: model.call_with_cache(buffer[:, : start - 1], full, 0)[1],
                            lambda: full)

        def keep_going(index, buffer, cache, finished):
            return tf.logical_and(index < total, tf.logical_not(tf.reduce_all(finished)))

        def step(index, buffer, cache, finished):
            logits, cache = step_logits(buffer, cache, index)
            sampled = _pick(logits, temperature, top_k, top_p, tf.stack([seed, index]))  # (B,)
            in_prompt = index < lengths
            token = tf.where(in_prompt, buffer[:, index], sampled)
            at_index = tf.one_hot(index, total, on_value=True, off_value=False)[None, :]
            buffer = tf.where(at_index, token[:, None], buffer)
            finished = finished | (~in_prompt & (token == EOS_ID)) | (index + 1 >= ends)
            return index + 1, buffer, cache, finished

        index, buffer, _, _ = tf.while_loop(
            keep_going, step, (start, buffer, cache, tf.zeros([batch], tf.bool)))

        positions = tf.range(total)[None, :]  # (1, S)
        is_end = (positions >= lengths[:, None]) & (buffer == EOS_ID) & (positions < index)
        ends = tf.minimum(ends, tf.reduce_min(tf.where(is_end, positions, total), axis=1))
        kept = tf.where(positions < ends[:, None], buffer, PAD_ID)
        return {"token_ids": kept[:, 1:], "lengths": ends - 1}  # without the start id

    return generate


def _check_inputs(prompt_ids, max_new_tokens, temperature, top_k, top_p,
                  vocab_size: int) -> list[tf.Operation]:
    """Asserts that fail a bad request with a message naming the input (TF Serving runs them too)."""
    return [
        tf.debugging.assert_greater_equal(max_new_tokens, 1, message="max_new_tokens must be >= 1"),
        tf.debugging.assert_greater_equal(temperature, 0.0,
                                          message="temperature must be >= 0 (0: greedy)"),
        tf.debugging.assert_greater_equal(top_k, 0, message="top_k must be >= 0 (0: no cut)"),
        tf.debugging.assert_greater(top_p, 0.0, message="top_p must be in (0, 1] (1: no cut)"),
        tf.debugging.assert_less_equal(top_p, 1.0, message="top_p must be in (0, 1] (1: no cut)"),
        tf.debugging.assert_non_negative(prompt_ids, message="prompt_ids must be >= 0"),
        tf.debugging.assert_less(prompt_ids, vocab_size, message=(
            f"prompt_ids must be < vocab_size={vocab_size}: encode prompts with the "
            "tokenizer.json exported beside the model")),
    ]


def _pick(logits, temperature, top_k, top_p, seed):
    """Next id per row (B,): argmax at temperature 0, else a seeded draw after top-k / top-p cuts."""

    def draw():
        scaled = logits / temperature  # (B, V)

        def top_k_cut():
            k = tf.minimum(top_k, tf.shape(scaled)[-1])
            kth = tf.math.top_k(scaled, k).values[:, -1:]  # (B, 1)
            return tf.where(scaled < kth, NEVER, scaled)

        # Each cut sorts the vocabulary, so it runs only when asked for.
        scaled = tf.cond(top_k > 0, top_k_cut, lambda: scaled)

        def nucleus():  # keep the most likely tokens until their probability reaches top_p
            ordered = tf.sort(scaled, axis=-1, direction="DESCENDING")
            before = tf.cumsum(tf.nn.softmax(ordered), axis=-1, exclusive=True)
            lowest = tf.reduce_min(tf.where(before < top_p, ordered, -NEVER), axis=-1, keepdims=True)
            return tf.where(scaled < lowest, NEVER, scaled)

        scaled = tf.cond(top_p < 1.0, nucleus, lambda: scaled)
        return tf.random.stateless_categorical(scaled, 1, seed=seed, dtype=tf.int32)[:, 0]

    greedy = lambda: tf.argmax(logits, axis=-1, output_type=tf.int32)  # noqa: E731
    return tf.cond(temperature > 0.0, draw, greedy)
