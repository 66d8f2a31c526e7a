"""A metric's value and its 95% interval: point estimates and seeded, vectorised bootstrap intervals.

What a gate can conclude from the cases (bounds, tests, cases needed) is harness.evaluation._evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.core.scores import Corpus, Outcome, Ratio
from harness.evaluation._evidence import corpus_resamples

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
    if isinstance(ratio, Corpus):
        return corpus_estimate(outcomes, ratio, seed=seed, confidence=confidence)
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


def corpus_estimate(
    outcomes: list[Outcome], corpus: Corpus, *, seed: int = 0, confidence: float = 0.95
) -> Estimate:
    """A corpus-level metric (BLEU, MCC, F1, correlations) with the same percentile bootstrap."""
    n = len(outcomes)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    stats = np.array([list(corpus.stats(o)) for o in outcomes], dtype=float)
    value = float(corpus.compute(stats[None])[0])
    index = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP_SAMPLES, n))
    samples = corpus_resamples(stats, index, corpus)
    alpha = (1 - confidence) / 2
    low, high = (
        np.nanquantile(samples, [alpha, 1 - alpha])
        if np.isfinite(samples).any()
        else (
            float("nan"),
            float("nan"),
        )
    )
    return Estimate(value, float(low), float(high), n)
