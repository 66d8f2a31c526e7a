"""What a check makes of each case, and how a metric is aggregated over cases.

Plain data shared by the checks that produce it and the statistics that consume it (bootstrap
intervals, gate evidence), so neither has to import the other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """What a check made of one case."""

    output: str
    scores: dict[str, float]
    passed: bool | None = None
    expected: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # Checks that make their own cases at run time (`CheckType.own_cases`, e.g. lm_eval's
    # documents) name each outcome's case here; planned checks leave them None.
    case_id: str | None = None
    prompt: str | None = None


@dataclass(frozen=True)
class Ratio:
    """A metric aggregated as transform(sum(numerator) / sum(denominator)) over cases.

    The mean of per-case scores is the common case (denominator 1); perplexity is
    exp(sum(-logprob) / sum(tokens)). The same form gives vectorised bootstrap intervals.
    """

    numerator: Callable[[Outcome], float]
    denominator: Callable[[Outcome], float] = lambda _: 1.0
    transform: Callable[[Any], Any] = lambda x: x


def _not_a_ratio(_: Outcome) -> float:
    raise TypeError(
        "a Corpus metric has no per-case numerator; use harness.evaluation._stats.estimate"
    )


@dataclass(frozen=True, kw_only=True)
class Corpus(Ratio):
    """A metric computed over all cases at once: corpus BLEU, MCC, F1, Pearson, Spearman.

    `stats(outcome)` gives each case's row of numbers (e.g. n-gram match counts, or
    [prediction, gold]); `compute(array)` maps an array of shape (..., cases, k) to the metric
    (shape (...)), so one call scores every bootstrap resample at once. It subclasses Ratio only
    so that code typed for Ratio keeps working; harness.evaluation._stats.estimate dispatches on it.
    """

    numerator: Callable[[Outcome], float] = _not_a_ratio
    stats: Callable[[Outcome], Sequence[float]]
    compute: Callable[[Any], Any]


def finite(value: float | None) -> float | None:
    """The value, or None when it is missing, NaN or infinite (JSON and charts have neither)."""
    return None if value is None or not math.isfinite(value) else value
