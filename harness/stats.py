"""Statistics over per-case results: point estimates and seeded, vectorised bootstrap intervals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.checks import Outcome, Ratio

BOOTSTRAP_SAMPLES = 1000


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float
    n: int


def estimate(
    outcomes: list[Outcome], ratio: Ratio, *, seed: int = 0, confidence: float = 0.95
) -> Estimate:
    """transform(sum(num)/sum(den)) with a percentile bootstrap interval over cases."""
    numerators = np.array([ratio.numerator(o) for o in outcomes], dtype=float)
    denominators = np.array([ratio.denominator(o) for o in outcomes], dtype=float)
    n = len(outcomes)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    value = float(ratio.transform(numerators.sum() / denominators.sum()))
    samples = _bootstrap(numerators, denominators, ratio, seed)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    return Estimate(value, float(low), float(high), n)


def _bootstrap(numerators: Any, denominators: Any, ratio: Ratio, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(numerators), size=(BOOTSTRAP_SAMPLES, len(numerators)))
    return ratio.transform(numerators[index].sum(axis=1) / denominators[index].sum(axis=1))
