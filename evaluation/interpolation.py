"""A neural model interpolated with the Kneser-Ney model: what the network adds beyond n-grams.

Per token, p(w | ctx) = lam * p_nn(w | ctx) + (1 - lam) * p_kn(w | ctx): a proper distribution for
any lam in [0, 1], since both parts are. lam is fitted on the validation split by maximising its
log-likelihood L(lam) = sum_i ln(lam a_i + (1 - lam) b_i) (a_i, b_i: each part's probability of
the i-th target). L is concave, so its maximum over [0, 1] is an end point or the one root of
L'(lam) = sum_i (a_i - b_i) / (lam a_i + (1 - lam) b_i), which falls with lam: bisection finds
it. The fitted mixture's validation log-likelihood is therefore never below either part's
(lam = 1 and lam = 0 are candidates). The test split is only scored, with that lam.

Both parts must score the same targets in the same order: the neural model's predicted targets in
dataset order (evaluation.evaluate.token_log_probs) and the n-gram model's scores of the split's
token stream after its first token (KneserNeyLM.log_probs). That holds for packed causal rows,
whose targets are exactly that stream; `pairing_problem` names the layouts where it does not.
Accuracy would need the mixture's argmax over the whole vocabulary at every position, which the
n-gram side cannot give cheaply, so the row leaves it empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from evaluation.evaluate import DocumentScores, EvaluationResult, token_log_probs

if TYPE_CHECKING:
    import keras

    from data_pipeline.config import ExperimentConfig
    from data_pipeline.datasets import SplitData
    from evaluation.baselines import KneserNeyLM
    from evaluation.report import ModelReport

WEIGHT_TOLERANCE = 1e-7  # bisection stops when the bracket on lam is this narrow


def pairing_problem(config: "ExperimentConfig") -> str | None:
    """Why the neural and n-gram models would not score the same targets, or None if they do."""
    if config.objective != "causal":
        return (f"objective={config.objective!r} predicts one target per window, not every token "
                "of the stream; use objective='causal'")
    if config.condition_columns:
        return ("condition_columns put condition tokens into the stream, which the n-gram model "
                "would score as text; use condition_columns=[] for this row")
    if not config.packing:
        return ("packing=False starts each document in its own row with [BOS] and truncates it at "
                "max_len, so its targets are not the n-gram model's token stream; use packing=True")
    return None


def mixture_log_probs(weight: float, neural_log_probs: np.ndarray, kn_log_probs: np.ndarray) -> np.ndarray:
    """ln(weight * exp(neural) + (1 - weight) * exp(kn)), elementwise: per-token scores or whole
    distributions alike. weight 0 or 1 gives one part exactly (ln 0 = -inf drops the other)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"mixture weight {weight!r} must lie in [0, 1]")
    log_weight = math.log(weight) if weight > 0 else -math.inf
    log_rest = math.log1p(-weight) if weight < 1 else -math.inf
    return np.logaddexp(log_weight + np.asarray(neural_log_probs, np.float64),
                        log_rest + np.asarray(kn_log_probs, np.float64))


def fit_mixture_weight(neural_log_probs: np.ndarray, kn_log_probs: np.ndarray) -> float:
    """The lam in [0, 1] that maximises sum ln(lam a + (1 - lam) b) (module docstring)."""
    neural, kn = _paired(neural_log_probs, kn_log_probs)
    # a_i / b_i in log space, so tiny probabilities neither underflow nor divide by zero
    log_ratio = np.clip(neural - kn, -700.0, 700.0)  # (N,) ln(a_i / b_i)
    ratio_minus_one = np.expm1(log_ratio)  # (N,) a/b - 1

    def slope(weight: float) -> float:  # L'(lam) = sum (a/b - 1) / (1 + lam (a/b - 1))
        with np.errstate(divide="ignore", over="ignore"):  # a ~ 0 at lam = 1: -inf, the right sign
            return float(np.sum(ratio_minus_one / (1.0 + weight * ratio_minus_one)))

    if slope(0.0) <= 0:
        return 0.0
    if slope(1.0) >= 0:
        return 1.0
    low, high = 0.0, 1.0
    while high - low > WEIGHT_TOLERANCE:
        middle = (low + high) / 2
        low, high = (middle, high) if slope(middle) > 0 else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class Interpolation:
    """A neural model mixed with the n-gram model: its weight, validation fit and test figures."""

    model: str  # e.g. "gru+kn_3gram"
    weight: float  # lam: the neural model's share of each token's probability
    neural_validation_perplexity: float
    kn_validation_perplexity: float
    validation: EvaluationResult  # the mixture on the validation split (accuracy: NaN)
    test: EvaluationResult  # the mixture on the test split (accuracy: NaN)
    parameters: int  # the neural model's parameters + the n-gram model's stored n-grams
    seed: int | None = None  # the neural model's training seed

    def report(self) -> "ModelReport":
        """The comparison table's row (no training time, speed or samples of its own)."""
        from evaluation.report import ModelReport  # report imports evaluate only; no cycle

        return ModelReport(model=self.model, evaluation=self.test, parameters=self.parameters,
                           seed=self.seed)

    def summary(self) -> str:
        """One line for the log and the notebook."""
        neural, kn = self.model.split("+", 1)
        return (f"{self.model}: lam {self.weight:.3f} fitted on validation (val ppl {neural} "
                f"{self.neural_validation_perplexity:.1f}, {kn} {self.kn_validation_perplexity:.1f}, "
                f"mixture {self.validation.perplexity:.1f}); test ppl {self.test.perplexity:.1f}, "
                f"{self.test.bits_per_char:.3f} bits/char")


def interpolate(neural_name: str, model: "keras.Model", parameters: int, language_model: "KneserNeyLM",
                validation: "SplitData", test: "SplitData", seed: int | None = None) -> Interpolation:
    """Fit lam on `validation`, score the mixture on `test` (both packed causal splits)."""
    kn_name = f"kn_{language_model.order}gram"
    neural_validation = _neural_scores(model, validation)
    kn_validation = _kn_scores(language_model, validation, len(neural_validation))
    weight = fit_mixture_weight(neural_validation, kn_validation)
    neural_test = _neural_scores(model, test)
    kn_test = _kn_scores(language_model, test, len(neural_test))
    return Interpolation(
        model=f"{neural_name}+{kn_name}", weight=weight,
        neural_validation_perplexity=math.exp(-neural_validation.mean()),
        kn_validation_perplexity=math.exp(-kn_validation.mean()),
        validation=_result(mixture_log_probs(weight, neural_validation, kn_validation), validation),
        test=_result(mixture_log_probs(weight, neural_test, kn_test), test),
        parameters=int(parameters) + language_model.num_ngrams, seed=seed)


def _neural_scores(model: "keras.Model", split: "SplitData") -> np.ndarray:
    """The neural model's ln p of the split's stream after its first token, checked to be exactly those."""
    log_probs, targets = token_log_probs(model, split)
    expected = np.asarray(split.token_stream[1:])
    if len(targets) != len(expected) or not np.array_equal(targets, expected):
        raise ValueError(f"the neural model predicts {len(targets)} targets but the split's token stream "
                         f"has {len(expected)} after its first token (or they differ): the split is not "
                         "packed causal rows, so the two models cannot be mixed token by token")
    return log_probs


def _kn_scores(language_model: "KneserNeyLM", split: "SplitData", count: int) -> np.ndarray:
    log_probs = language_model.log_probs(split.token_stream)
    if len(log_probs) != count:
        raise ValueError(f"the n-gram model scores {len(log_probs)} tokens, the neural model {count}")
    return log_probs


def _paired(neural_log_probs: np.ndarray, kn_log_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    neural, kn = np.asarray(neural_log_probs, np.float64), np.asarray(kn_log_probs, np.float64)
    if neural.shape != kn.shape or neural.ndim != 1 or not len(neural):
        raise ValueError(f"need one score per token from each model, got shapes {neural.shape} and {kn.shape}")
    return neural, kn


def _result(log_probs: np.ndarray, split: "SplitData") -> EvaluationResult:
    documents = DocumentScores.summed(-log_probs, split.document_targets, split.document_characters)
    return EvaluationResult.from_totals(-float(np.sum(log_probs)), len(log_probs), math.nan,
                                        split.characters, documents=documents)
