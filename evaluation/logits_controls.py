"""The generation controls as operations on next-token logits inside the compiled sampling loop.

Each reads the token buffer the keras-hub sampler already carries (prompt + tokens so far, with
static shapes), so none costs a model call: cached generation stays one model step per token.
What must persist between steps (each row's prompt length, the stop-string automaton states)
rides in the loop's cache, which the beam sampler repeats and reorders with its beams.
Shapes: B sequences, S buffer positions, V vocabulary, K stop strings, L+1 automaton states.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from data_pipeline.tokenizer import TextTokenizer
from evaluation.generation_controls import GenerationControls

NEVER = -1e9  # added to a logit: the token is never sampled
EOS_ID = TextTokenizer.eos_id


class LogitsControls:
    """Applies one GenerationControls to each step's logits; built once per compiled loop."""

    def __init__(self, controls: GenerationControls, vocab_size: int) -> None:
        self.controls = controls
        self.vocab_size = vocab_size
        self.eos = ops.arange(vocab_size) == EOS_ID  # (V,)
        self.not_eos = ~self.eos  # [EOS] is never penalised or banned
        self.uses_lengths = controls.min_new_tokens > 0 or bool(controls.stop_strings)

    def initial_state(self, lengths: Any, stop_table: Any) -> dict[str, Any]:
        """Loop state beside the model's cache: prompt lengths (B,), automaton states (B, K)."""
        state = {}
        if self.uses_lengths:
            state["lengths"] = ops.cast(lengths, "int32")
        if self.controls.stop_strings:
            state["stop"] = ops.zeros((ops.shape(lengths)[0], ops.shape(stop_table[1])[0]), "int32")
        return state

    def __call__(self, logits: Any, prompt: Any, index: Any, state: dict[str, Any],
                 stop_table: Any) -> tuple[Any, dict[str, Any]]:
        """(B, V) logits for position `index` of `prompt` (B, S) -> controlled logits, new state."""
        controls = self.controls
        if controls.repetition_penalty != 1.0:
            logits = self.penalise_repetition(logits, prompt, index)
        if controls.no_repeat_ngram_size > 0:
            logits = self.ban_repeated_ngrams(logits, prompt, index)
        if controls.min_new_tokens > 0:
            too_early = (index - state["lengths"]) < controls.min_new_tokens  # (B,) new so far
            logits = ops.where(too_early[:, None] & self.eos[None, :], NEVER, logits)
        if controls.stop_strings:
            state = {**state, "stop": self.advance_stop_states(prompt, index, state, stop_table)}
            table, matched_state = stop_table
            matched = ops.any(state["stop"] == matched_state[None, :], axis=-1)  # (B,)
            only_eos = ops.where(self.eos, 0.0, NEVER)[None, :]  # (1, V)
            logits = ops.where(matched[:, None], only_eos, logits)  # end the document now
        return logits, state

    def _scatter(self, tokens: Any, weights: Any) -> Any:
        """(B, N) token ids with (B, N) weights -> (B, V) weight summed per token."""
        batch, count = tokens.shape
        rows = ops.broadcast_to(ops.arange(batch)[:, None], (batch, count))
        indices = ops.reshape(ops.stack([rows, ops.cast(tokens, "int32")], axis=-1), (-1, 2))
        return ops.scatter(indices, ops.reshape(weights, (-1,)), (batch, self.vocab_size))

    def penalise_repetition(self, logits: Any, prompt: Any, index: Any) -> Any:
        before = ops.cast(ops.arange(prompt.shape[1]) < index, "float32")  # (S,) written so far
        counts = self._scatter(prompt, ops.broadcast_to(before[None, :], prompt.shape))  # (B, V)
        seen = (counts > 0) & self.not_eos[None, :]
        penalty = self.controls.repetition_penalty
        return ops.where(seen, ops.where(logits > 0, logits / penalty, logits * penalty), logits)

    def ban_repeated_ngrams(self, logits: Any, prompt: Any, index: Any) -> Any:
        n = self.controls.no_repeat_ngram_size
        batch, length = prompt.shape
        if length < n:
            return logits
        starts = length - n + 1
        windows = ops.stack([prompt[:, k: k + starts] for k in range(n)], axis=-1)  # (B, starts, n)
        complete = ops.arange(starts) + (n - 1) < index  # (starts,) n-gram written before `index`
        if n > 1:
            context = ops.slice(prompt, [0, ops.maximum(index - (n - 1), 0)], [batch, n - 1])
            same = ops.all(windows[:, :, : n - 1] == context[:, None, :], axis=-1)  # (B, starts)
            match = same & complete[None, :] & (index >= n - 1)
        else:
            match = ops.broadcast_to(complete[None, :], (batch, starts))
        counts = self._scatter(windows[:, :, n - 1], ops.cast(match, "float32"))  # (B, V)
        banned = (counts > 0) & self.not_eos[None, :]
        return ops.where(banned, NEVER, logits)

    def advance_stop_states(self, prompt: Any, index: Any, state: dict[str, Any],
                            stop_table: Any) -> Any:
        """Feed the token written at `index - 1` to every stop-string automaton of its row."""
        table, _ = stop_table  # (K, L+1, V)
        strings, states_per_string, vocab = table.shape
        token = ops.slice(prompt, [0, index - 1], [prompt.shape[0], 1])  # (B, 1)
        flat = ((ops.arange(strings)[None, :] * states_per_string + state["stop"]) * vocab
                + ops.cast(token, "int32"))  # (B, K) into the flattened table
        advanced = ops.take(ops.reshape(table, (-1,)), flat)
        generated = (index - 1) >= state["lengths"]  # (B,) the prompt does not count
        return ops.where(generated[:, None], advanced, state["stop"])
