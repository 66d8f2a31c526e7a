"""Statistics over per-case results: point estimates and seeded, vectorised bootstrap intervals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.checks import Corpus, Outcome, Ratio

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


# --- Paired comparisons of a candidate with its base, over the same cases --------------------

Z_POWER = 0.8416212335729143  # standard normal quantile for 80% power


@dataclass(frozen=True)
class PairedDelta:
    """How far a candidate moved from the base on one metric, with its uncertainty.

    `gain` is signed so that positive is better (a perplexity that fell is a gain). `low`/`high`
    bound the gain one-sidedly at the given confidence; `mde` is the smallest change the test
    detects with 80% power.
    """

    gain: float
    low: float
    high: float
    p_value: float | None
    method: str  # "mcnemar_exact" (pass/fail cases) or "paired_bootstrap"
    mde: float
    n: int


def _per_case(outcomes: list[Outcome], ratio: Ratio) -> tuple[Any, Any]:
    numerators = np.array([ratio.numerator(o) for o in outcomes], dtype=float)
    denominators = np.array([ratio.denominator(o) for o in outcomes], dtype=float)
    return numerators, denominators


def is_pass_fail(numerators: Any, denominators: Any) -> bool:
    return bool(np.all(denominators == 1.0) and np.all(np.isin(numerators, (0.0, 1.0))))


def paired_delta(
    base: list[Outcome],
    candidate: list[Outcome],
    ratio: Ratio,
    *,
    lower_is_better: bool = False,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDelta:
    """Exact McNemar for pass/fail scores (a mean of 0/1), a paired bootstrap otherwise."""
    if len(base) != len(candidate) or not base:
        raise ValueError(
            f"paired cases needed, got {len(base)} base and {len(candidate)} candidate"
        )
    if isinstance(ratio, Corpus):  # BLEU, MCC, F1, correlations: no per-case numerator
        return corpus_paired_delta(base, candidate, ratio, lower_is_better, confidence, seed)
    b_num, b_den = _per_case(base, ratio)
    c_num, c_den = _per_case(candidate, ratio)
    if is_pass_fail(b_num, b_den) and is_pass_fail(c_num, c_den) and not lower_is_better:
        return mcnemar_delta(b_num.astype(bool), c_num.astype(bool), confidence)
    return bootstrap_delta((b_num, b_den), (c_num, c_den), ratio, lower_is_better, confidence, seed)


def mcnemar_delta(base: Any, candidate: Any, confidence: float) -> PairedDelta:
    """Exact (conditional) McNemar on the discordant pairs.

    Given m discordant cases, the share that improved is binomial; its Clopper-Pearson bounds
    give bounds on the gain = (improved - worsened) / n. With no margin this is the exact
    McNemar test, whose two-sided p-value is binomtest(improved, m, 0.5).
    """
    from scipy import stats as scipy_stats

    n = len(base)
    improved = int(np.sum(~base & candidate))
    worsened = int(np.sum(base & ~candidate))
    discordant = improved + worsened
    alpha = 1 - confidence
    if discordant == 0:
        low = high = 0.0
        p_value = 1.0
    else:
        theta_low = scipy_stats.beta.ppf(alpha, improved, worsened + 1) if improved else 0.0
        theta_high = scipy_stats.beta.ppf(1 - alpha, improved + 1, worsened) if worsened else 1.0
        low = discordant / n * (2 * theta_low - 1)
        high = discordant / n * (2 * theta_high - 1)
        p_value = float(scipy_stats.binomtest(improved, discordant, 0.5).pvalue)
    gain = (improved - worsened) / n
    sd = float(np.sqrt(max(discordant / n - gain**2, 0.0)))
    return PairedDelta(
        gain,
        float(low),
        float(high),
        p_value,
        "mcnemar_exact",
        _mde(sd, discordant > 0, base, n, confidence),
        n,
    )


def bootstrap_delta(
    base: tuple[Any, Any],
    candidate: tuple[Any, Any],
    ratio: Ratio,
    lower_is_better: bool,
    confidence: float,
    seed: int,
) -> PairedDelta:
    """Resample the same case indices for both models; the spread of the gain bounds it."""
    rng = np.random.default_rng(seed)
    n = len(base[0])
    index = rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n))

    def statistic(parts: tuple[Any, Any], rows: Any) -> Any:
        numerators, denominators = parts
        return ratio.transform(numerators[rows].sum(axis=-1) / denominators[rows].sum(axis=-1))

    sign = -1.0 if lower_is_better else 1.0
    gain = sign * float(statistic(candidate, np.arange(n)) - statistic(base, np.arange(n)))
    samples = sign * (statistic(candidate, index) - statistic(base, index))
    alpha = 1 - confidence
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    # two-sided bootstrap p-value for "no change": how often the resampled gain crosses zero
    p_value = float(min(1.0, 2 * min(np.mean(samples <= 0), np.mean(samples >= 0))))
    per_case_base = base[0] / np.maximum(base[1], 1e-12)
    differences = candidate[0] / np.maximum(candidate[1], 1e-12) - per_case_base
    changed = bool(np.any(differences != 0))
    paired_sd = float(np.std(differences))
    mde = _mde(paired_sd, changed, per_case_base, n, confidence)
    return PairedDelta(gain, float(low), float(high), p_value, "paired_bootstrap", mde, n)


def _mde(paired_sd: float, changed: bool, base_scores: Any, n: int, confidence: float) -> float:
    """Smallest change a one-sided test at `confidence` detects with 80% power.

    When no case changed, the observed spread says nothing; the spread of two independent draws
    of the base's per-case scores (and at least one case's worth) stands in for it.
    """
    from scipy import stats as scipy_stats

    if changed:
        sd = paired_sd
    else:
        sd = max(float(np.sqrt(2 * np.var(np.asarray(base_scores, dtype=float)))), 1 / np.sqrt(n))
    return float((scipy_stats.norm.ppf(confidence) + Z_POWER) * sd / np.sqrt(n))


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


def corpus_resamples(stats: Any, index: Any, corpus: Corpus) -> Any:
    """corpus.compute over each row of `index` (resamples x cases), in chunks to bound memory."""
    chunk = max(1, 4_000_000 // max(1, stats.shape[0] * stats.shape[1]))
    parts = [corpus.compute(stats[index[i : i + chunk]]) for i in range(0, len(index), chunk)]
    return np.concatenate(parts)


def corpus_paired_delta(
    base: list[Outcome],
    candidate: list[Outcome],
    corpus: Corpus,
    lower_is_better: bool,
    confidence: float,
    seed: int,
) -> PairedDelta:
    """Paired bootstrap of a corpus metric: both models rescored on the same resampled cases.

    A corpus metric has no per-case differences, so its minimum detectable effect comes from the
    bootstrap spread of the gain itself (or, when nothing changed, of two independent draws of
    the base's metric).
    """
    from scipy import stats as scipy_stats

    b_stats = np.array([list(corpus.stats(o)) for o in base], dtype=float)
    c_stats = np.array([list(corpus.stats(o)) for o in candidate], dtype=float)
    n = len(b_stats)
    index = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP_SAMPLES, n))
    sign = -1.0 if lower_is_better else 1.0
    gain = sign * float(corpus.compute(c_stats[None])[0] - corpus.compute(b_stats[None])[0])
    samples = sign * (
        corpus_resamples(c_stats, index, corpus) - corpus_resamples(b_stats, index, corpus)
    )
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:  # undefined on every resample (e.g. a correlation of constants)
        return PairedDelta(
            gain, float("nan"), float("nan"), None, "paired_bootstrap", float("nan"), n
        )
    alpha = 1 - confidence
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    p_value = float(min(1.0, 2 * min(np.mean(finite <= 0), np.mean(finite >= 0))))
    spread = float(np.std(finite))
    if spread == 0.0:
        base_values = corpus_resamples(b_stats, index, corpus)
        spread = float(np.sqrt(2) * np.nanstd(base_values))
    mde = float((scipy_stats.norm.ppf(confidence) + Z_POWER) * spread)
    return PairedDelta(gain, float(low), float(high), p_value, "paired_bootstrap", mde, n)
