"""Generation controls: the settings users ask for besides the sampler, checked without TensorFlow.

- `repetition_penalty` (CTRL, Keskar et al. 2019, as Hugging Face applies it): the logit of a
  token already in the text (prompt included) is divided by the penalty if positive, multiplied
  if negative; 1.0 is off, > 1 discourages repeats.
- `no_repeat_ngram_size` n: a token that would complete an n-gram already in the text is banned
  (0 is off).
- `stop_strings`: a continuation ends when its text contains one; the text is cut before it.
- `min_new_tokens`: the end of the document cannot be sampled before this many new tokens.
[EOS] is never penalised or banned: the [EOS] every prompt starts with must not stop the model
ending its document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from data_pipeline.cleaning import clean_fragment
from data_pipeline.errors import DataError

MAX_STOP_STRINGS, MAX_STOP_STRING_BYTES = 16, 256  # the in-loop table has strings x bytes x vocab


@dataclass(frozen=True)
class GenerationControls:
    """Every control off by default; bad values fail here with the setting's name."""

    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    stop_strings: tuple[str, ...] = ()
    min_new_tokens: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop_strings", tuple(self.stop_strings))
        if not self.repetition_penalty > 0:
            raise DataError(f"repetition_penalty={self.repetition_penalty}: must be > 0 "
                            "(1.0 is off, e.g. 1.2 discourages repeats)")
        if self.no_repeat_ngram_size < 0:
            raise DataError(f"no_repeat_ngram_size={self.no_repeat_ngram_size}: must be >= 0 "
                            "(0 is off, e.g. 3 never repeats a trigram)")
        if self.min_new_tokens < 0:
            raise DataError(f"min_new_tokens={self.min_new_tokens}: must be >= 0 (0 is off)")
        if len(self.stop_strings) > MAX_STOP_STRINGS:
            raise DataError(f"{len(self.stop_strings)} stop strings: give at most {MAX_STOP_STRINGS}")
        for text in self.stop_strings:
            if not isinstance(text, str) or not text:
                raise DataError(f"stop string {text!r}: give non-empty text, e.g. '.'")
            if len(text.encode("utf-8")) > MAX_STOP_STRING_BYTES:
                raise DataError(f"stop string {text[:20]!r}...: at most {MAX_STOP_STRING_BYTES} "
                                "bytes of UTF-8")

    @property
    def active(self) -> bool:
        """True when any control changes the logits or the stopping."""
        return self != GenerationControls()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any],
                      cleaning_steps: Sequence[str] = ()) -> "GenerationControls":
        """From CONTROL_KEYS (a CONFIG dict or the CLI's settings); stop strings cleaned like the corpus."""
        return cls(repetition_penalty=float(settings.get("repetition_penalty", 1.0)),
                   no_repeat_ngram_size=int(settings.get("no_repeat_ngram_size", 0)),
                   stop_strings=clean_stop_strings(settings.get("stop_strings", ()), cleaning_steps),
                   min_new_tokens=int(settings.get("min_new_tokens", 0)))


CONTROL_KEYS = ("repetition_penalty", "no_repeat_ngram_size", "stop_strings", "min_new_tokens")


def clean_stop_strings(stop_strings: Sequence[str], cleaning_steps: Sequence[str]) -> tuple[str, ...]:
    """Stop strings cleaned like the training text (a lowercased corpus never writes "Police").

    Leading and trailing spaces are kept (" the" is a word boundary); a string the cleaning
    empties (e.g. "." under strip_punctuation) is an error, since the model never writes it.
    """
    cleaned = []
    for text in stop_strings:
        result = clean_fragment(text, cleaning_steps)
        if not result:
            raise DataError(f"stop string {text!r} is empty after the corpus cleaning "
                            f"{list(cleaning_steps)}: the model never writes it; choose text "
                            "that survives the cleaning")
        cleaned.append(result)
    return tuple(cleaned)


def cut_at_stop_strings(text: str, stop_strings: Sequence[str], start: int = 0) -> str:
    """`text` up to (without) the first stop string found at or after `start`."""
    found = [position for position in (text.find(s, start) for s in stop_strings) if position >= 0]
    return text[: min(found)] if found else text
