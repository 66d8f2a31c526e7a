"""How sure a gate can be: one-sided bounds, p-values and the cases a verdict would need.

Every gate asks one question of one quantity θ, oriented so that larger is better: the gain over
the reference for forgetting and improve gates (a perplexity that fell is a gain), the value for a
`min` threshold and minus the value for a `max` one. The gate holds when θ ≥ θ0, its limit on that
scale (−max_drop, min_gain, min, −max). This module measures θ on the gated metric's own scale and
says how sure the data are on each side of θ0:

- **pass/fail scores** (every case scored 0 or 1, averaged): exact tests. A threshold uses the
  binomial test and Clopper-Pearson bounds. A relative gate compares paired cases (b cases went
  from pass to fail, c from fail to pass) with the exact unconditional test of a difference of
  paired proportions: outcomes are ordered by Tango's score statistic and the p-value is the
  supremum over the nuisance parameter (the discordance rate), as in Hsueh, Liu & Chen (2001).
  Unlike the conditional McNemar bound, it does not treat the number of discordant cases as known:
  with no flip at all on 12 cases it cannot rule out a drop of 0.1 (p = 0.9^12 = 0.28); 29
  cases can.
- **other per-case scores and ratios** (F1, ROUGE, judge scores, perplexity): a Student t bound on
  the mean of the per-case influence values (the delta method, so a perplexity gate is judged in
  perplexity points, not nats per token).
- **corpus metrics** (BLEU, MCC, F1 over a corpus): the paired percentile bootstrap.

A sample that shows no variation says nothing about variation it did not see, so for the last
two the bounds are never narrower than what n cases can rule out: a share of changed cases up to
1 - (1 - confidence)^(1/n) (the exact bound when none is seen), each moving by the metric's per-case
range. Exact tests need no such floor.

Hand-written because no maintained library has the exact unconditional test for paired
proportions with a margin (statsmodels has the exact McNemar test of no change only).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import harness
from harness.core.scores import Corpus, Outcome, Ratio
from harness.store import Store

BOOTSTRAP_SAMPLES = 1000
MAX_CASES_NEEDED = 1_000_000  # beyond this, "cases needed" is reported as more than this
_NUISANCE_GRID = 64  # points of the discordance rate searched for the supremum, then refined


@dataclass(frozen=True)
class Evidence:
    """What the cases say about θ (larger is better) against the limit θ0.

    `low`/`high` are one-sided bounds at `confidence` (θ ≥ low, θ ≤ high). `p_right` tests
    H0: θ < θ0 (small: confidently on the right side); `p_wrong` tests H0: θ ≥ θ0 (small: a
    shortfall beyond chance). `cases_needed`: how many cases like these would make the verdict
    confident, when the estimate is on the right side but its bound is not.
    """

    method: str  # exact_unconditional | exact_binomial | t | bootstrap
    estimate: float
    low: float
    high: float
    p_right: float
    p_wrong: float
    n: int
    confident_right: bool  # the bound at `confidence` is on the right side of θ0
    confident_wrong: bool  # likewise on the wrong side: a significant shortfall
    cases_needed: int | None = None
    floor: float = 0.0  # how far the bounds were widened for changes n cases cannot rule out


# ---------------------------------------------------------------- remembered evidence

EVIDENCE_VERSION = 1  # bump when what the functions below compute changes


def evidence_scope(fingerprint: str) -> str:
    """The store scope a candidate's remembered gate evidence is filed under."""
    return f"evidence|{harness.__version__}|{fingerprint}"


class EvidenceCache:
    """Evidence already computed for a candidate and its reference, kept in the store: evidence
    is a pure function of the cases and the gate, and a fully cached rerun then needs neither
    scipy nor the exact tests' arithmetic. Read in one query per candidate, written in one."""

    def __init__(self, store: Store, scope: str) -> None:
        self.store, self.scope = store, scope
        self._found: dict[str, Any] | None = None
        self._fresh: dict[str, Any] = {}

    def get(self, key: str) -> Evidence | None:
        if self._found is None:
            stored = self.store.get_scope(self.scope)
            self._found = {
                k: json.loads(v) for (kind, k), v in stored.items() if kind == "evidence"
            }
        found = self._found.get(key) or self._fresh.get(key)
        if found is None:
            # Two candidates with the same cases' numbers share a key, and the store keeps one
            # row per key, under the scope that wrote it last: the evidence is a pure function
            # of its key, so another candidate's is as good.
            found = self.store.get_many("evidence", [key]).get(key)
        return Evidence(**found) if found is not None else None

    def put(self, key: str, evidence: Evidence) -> None:
        self._fresh[key] = dataclasses.asdict(evidence)

    def flush(self) -> None:
        if self._fresh:
            self.store.put_many("evidence", self._fresh, scope=self.scope)
            self._fresh = {}


def evidence_key(kind: str, parts: Sequence[Any], ratio: Ratio, **settings: Any) -> str:
    """What decides a gate's evidence: its cases' numbers, the metric, the gate's settings."""
    numbers: list[Any] = []
    for outcomes in parts:
        if isinstance(ratio, Corpus):
            numbers.append([list(map(float, ratio.stats(o))) for o in outcomes])
        else:
            numerators, denominators = per_case(outcomes, ratio)
            numbers.append([numerators.tolist(), denominators.tolist()])
    probe = None if isinstance(ratio, Corpus) else [float(ratio.transform(x)) for x in (0.25, 1.5)]
    text = json.dumps(
        [EVIDENCE_VERSION, kind, numbers, probe, settings], sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


def remembered(cache: EvidenceCache | None, key: str, compute: Callable[[], Evidence]) -> Evidence:
    if cache is None:
        return compute()
    found = cache.get(key)
    if found is None:
        found = compute()
        cache.put(key, found)
    return found


# ---------------------------------------------------------------- per-case values


def per_case(outcomes: Sequence[Outcome], ratio: Ratio) -> tuple[Any, Any]:
    """Each case's numerator and denominator of the metric."""
    numerators = np.array([ratio.numerator(o) for o in outcomes], dtype=float)
    denominators = np.array([ratio.denominator(o) for o in outcomes], dtype=float)
    return numerators, denominators


def _is_identity(transform: Callable[[Any], Any]) -> bool:
    probe = np.array([0.25, 0.5])
    return bool(np.allclose(np.asarray(transform(probe), dtype=float), probe))


def is_pass_fail(ratio: Ratio, parts: Sequence[tuple[Any, Any]]) -> bool:
    """A mean of 0/1 scores: every case is a pass or a fail, so exact tests apply."""
    if isinstance(ratio, Corpus) or not _is_identity(ratio.transform):
        return False
    return all(bool(np.all(den == 1.0) and np.all(np.isin(num, (0.0, 1.0)))) for num, den in parts)


def case_values(outcomes: Sequence[Outcome], ratio: Ratio) -> list[float | None]:
    """Each case's own value of the metric (None where it has none: a corpus metric, or a case
    the metric skips), so flips can be counted on the gated metric."""
    if isinstance(ratio, Corpus):
        return [None] * len(outcomes)
    numerators, denominators = per_case(outcomes, ratio)
    values: list[float | None] = []
    for num, den in zip(numerators, denominators, strict=True):
        values.append(float(ratio.transform(num / den)) if den > 0 else None)
    return values


def _influence(numerators: Any, denominators: Any, transform: Callable[[Any], Any]) -> Any:
    """Per-case influence on transform(sum(num) / sum(den)): the delta method's linearisation."""
    total = float(denominators.sum())
    if total <= 0:
        return np.zeros_like(numerators)
    ratio = float(numerators.sum()) / total
    step = 1e-6 * max(1.0, abs(ratio))
    slope = (float(transform(ratio + step)) - float(transform(ratio - step))) / (2 * step)
    return slope * (numerators - ratio * denominators) / (total / len(numerators))


def unseen_share(n: int, confidence: float) -> float:
    """The largest share of cases that could differ while none of n does (exact binomial)."""
    return 1.0 - (1.0 - confidence) ** (1.0 / n) if n > 0 else 1.0


def value_range(
    declared: tuple[float, float] | None, values: Sequence[float | None], estimate: float
) -> float:
    """How far one case's value can move: the metric's declared range, else the spread seen."""
    if declared is not None and all(math.isfinite(v) for v in declared):
        return float(declared[1] - declared[0])
    seen = [v for v in values if v is not None and math.isfinite(v)]
    spread = (max(seen) - min(seen)) if seen else 0.0
    return max(spread, abs(estimate), 1e-12)


# ---------------------------------------------------------------- exact: paired pass/fail


def _restricted_worse_rate(b: Any, c: Any, n: int, d0: float) -> Any:
    """Maximum-likelihood P(pass -> fail) given P(fail -> pass) - P(pass -> fail) = d0 (Tango)."""
    linear = c * (1 + d0) + b * (1 - d0) - 2 * n * d0
    constant = b * d0 * (1 - d0)
    root = np.sqrt(np.maximum(linear * linear + 8 * n * constant, 0.0))
    return np.clip((linear + root) / (4 * n), max(0.0, -d0), (1 - d0) / 2)


def _score(b: Any, c: Any, n: int, d0: float) -> Any:
    """Tango's score statistic for H0: gain = d0, gain = (c - b) / n."""
    worse = _restricted_worse_rate(b, c, n, d0)
    variance = n * (2 * worse + d0 - d0 * d0)
    excess = c - b - n * d0
    safe = np.sqrt(np.maximum(variance, 1e-300))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(variance > 1e-12, excess / safe, np.sign(excess) * np.inf)
    return np.where((variance <= 1e-12) & (np.abs(excess) < 1e-12), 0.0, z)


def _first_at_least(n: int, d0: float, z_observed: float) -> Any:
    """For each count m of discordant cases, the fewest improvements c whose score reaches the
    observed one (the score rises with c at fixed m, so a binary search finds it)."""
    m = np.arange(n + 1)
    low, high = np.zeros(n + 1, dtype=np.int64), m + 1
    while np.any(low < high):
        mid = (low + high) // 2
        active = low < high
        z = _score(m - np.minimum(mid, m), np.minimum(mid, m), n, d0)
        reaches = (z >= z_observed - 1e-9) & (mid <= m)
        high = np.where(active & reaches, mid, high)
        low = np.where(active & ~reaches, mid + 1, low)
    return low


@functools.lru_cache(maxsize=4096)
def paired_p_at_most(worse: int, better: int, n: int, d0: float) -> float:
    """Exact unconditional p-value of H0: gain <= d0 (small: the gain is above d0).

    gain = P(fail -> pass) - P(pass -> fail); `worse`/`better` count the cases that went each way.
    The p-value is the largest, over the discordance rate s, of P(score >= observed score), where
    the number of discordant cases is binomial(n, s) and the improvements among them binomial.
    """
    if d0 <= -1.0:
        return 1.0 if better - worse == -n else 0.0
    if d0 >= 1.0:
        return 1.0
    z_observed = float(_score(np.array(worse), np.array(better), n, d0))
    first = _first_at_least(n, d0, z_observed)
    m = np.arange(n + 1)
    log_choose = _log_choose(n)

    def tails(rates: Any) -> Any:
        """P(score >= observed) at each discordance rate s (one row of m per rate)."""
        s = np.clip(np.asarray(rates, dtype=float), abs(d0), 1.0)[:, None]
        share_better = np.where(s > 0, (s + d0) / (2 * np.maximum(s, 1e-300)), 0.5)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_pmf = log_choose + _xlogy(m, s) + _xlogy(n - m, 1 - s)
        return np.sum(np.exp(log_pmf) * binomial_at_least(first, m, share_better), axis=1)

    grid = np.linspace(abs(d0), 1.0, _NUISANCE_GRID)
    values = tails(grid)
    best = int(np.argmax(values))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    refined = _golden_maximum(lambda rate: float(tails([rate])[0]), lo, hi)
    return float(min(1.0, max(float(values[best]), refined)))


@functools.lru_cache(maxsize=64)
def _log_choose(n: int) -> Any:
    """log C(n, m) for m = 0..n, from a table of log factorials."""
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])
    return log_factorial[n] - log_factorial - log_factorial[::-1]


def _xlogy(x: Any, y: Any) -> Any:
    """x * log(y), with 0 * log(0) = 0 (as scipy.special.xlogy)."""
    return np.where(
        x == 0,
        0.0,
        x * np.log(np.where(y > 0, y, 1.0)) + np.where((x != 0) & (y <= 0), -np.inf, 0.0),
    )


def _golden_maximum(f: Callable[[float], float], low: float, high: float) -> float:
    """The largest f on [low, high] by golden-section search (f is smooth between two grid
    points). Hand-written: scipy.optimize would cost half a second to import for 30 lines' use."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(40):
        if b - a < 1e-7:
            break
        if fc > fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    return max(fc, fd, f(low), f(high))


# ---------------------------------------------------------------- distributions
# scipy.special's functions rather than scipy.stats' distributions: the same numbers, at a tenth
# of the import time and without scipy.stats' per-call overhead (a gate calls them thousands of
# times).


def binomial_at_least(k: Any, n: Any, p: Any) -> Any:
    """P(X >= k) for X ~ Binomial(n, p), elementwise: 1 for k <= 0, 0 for k > n."""
    from scipy import special  # deferred: 0.2 s, paid only when a gate is decided

    k, n = np.asarray(k, dtype=np.int64), np.asarray(n, dtype=np.int64)
    inside = (k > 0) & (k <= n)
    tail = special.bdtrc(np.where(inside, k - 1, 0), np.where(inside, n, 1), p)
    return np.where(k <= 0, 1.0, np.where(k > n, 0.0, tail))


def binomial_at_most(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return float(1.0 - binomial_at_least(k + 1, n, p))


def beta_quantile(q: float, a: float, b: float) -> float:
    from scipy import special  # deferred: 0.2 s, paid only when a gate is decided

    return float(special.betaincinv(a, b, q))


def t_quantile(q: float, df: int) -> float:
    from scipy import special  # deferred: 0.2 s, paid only when a gate is decided

    return float(special.stdtrit(df, q))


def t_below(x: float, df: int) -> float:
    """P(T <= x) for Student's t with `df` degrees of freedom."""
    from scipy import special  # deferred: 0.2 s, paid only when a gate is decided

    return float(special.stdtr(df, x))


def _invert(p_of: Callable[[float], float], alpha: float, rising: bool) -> float:
    """The limit d0 in [-1, 1] where p_of(d0) crosses alpha, by bisection."""
    low, high = -1.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        rejected = p_of(middle) <= alpha
        if rising == rejected:
            low = middle
        else:
            high = middle
        if high - low < 1e-5:
            break
    return low if rising else high


def exact_paired(worse: int, better: int, n: int, d0: float, confidence: float) -> Evidence:
    """Evidence on gain = (better - worse) / n against the limit d0, exactly."""
    alpha = 1 - confidence
    p_right = paired_p_at_most(worse, better, n, d0)
    p_wrong = paired_p_at_most(better, worse, n, -d0)  # H0: gain >= d0, by symmetry
    low = _invert(lambda x: paired_p_at_most(worse, better, n, x), alpha, rising=True)
    high = -_invert(lambda x: paired_p_at_most(better, worse, n, x), alpha, rising=True)
    estimate = (better - worse) / n
    needed = None
    if p_right > alpha and estimate >= d0:
        needed = _paired_cases_needed(worse / n, better / n, d0, alpha, n)
    return Evidence(
        "exact_unconditional",
        estimate,
        low,
        high,
        p_right,
        p_wrong,
        n,
        p_right <= alpha,
        p_wrong <= alpha,
        needed,
    )


def _paired_cases_needed(
    worse_rate: float, better_rate: float, d0: float, alpha: float, n: int
) -> int | None:
    """The fewest cases with these flip rates for which the exact test would pass."""
    if better_rate - worse_rate <= d0:
        return None  # on the limit: no number of cases can show it is above

    def passes(size: int) -> bool:
        worse, better = round(worse_rate * size), round(better_rate * size)
        return paired_p_at_most(worse, better, size, d0) <= alpha

    return _smallest(passes, n + 1)


def _smallest(passes: Callable[[int], bool], start: int) -> int | None:
    """The smallest size >= start that passes (doubling, then bisection); None past the cap."""
    low, high = start - 1, start
    while not passes(high):
        if high >= MAX_CASES_NEEDED:
            return None
        low, high = high, min(high * 2, MAX_CASES_NEEDED)
    while high - low > 1:
        middle = (low + high) // 2
        if passes(middle):
            high = middle
        else:
            low = middle
    return high


# ---------------------------------------------------------------- exact: one model's pass rate


def exact_rate(passed: int, n: int, limit: float, confidence: float) -> Evidence:
    """Evidence on a pass rate against `limit` (θ = rate, larger is better): binomial test and
    Clopper-Pearson bounds."""
    alpha = 1 - confidence
    low = _cp_low(passed, n, alpha)
    high = beta_quantile(1 - alpha, passed + 1, n - passed) if passed < n else 1.0
    p_right = float(binomial_at_least(passed, n, limit))  # P(X >= passed | rate = limit)
    p_wrong = binomial_at_most(passed, n, limit)
    estimate = passed / n
    needed = None
    if low < limit <= estimate and estimate > limit:
        needed = _smallest(
            lambda size: _cp_low(round(estimate * size), size, alpha) >= limit, n + 1
        )
    return Evidence(
        "exact_binomial", estimate, low, high, p_right, p_wrong, n, low >= limit, high < limit,
        needed,
    )  # fmt: skip


def _cp_low(passed: int, n: int, alpha: float) -> float:
    return beta_quantile(alpha, passed, n - passed + 1) if passed > 0 else 0.0


# ---------------------------------------------------------------- continuous: t and bootstrap


def t_evidence(
    estimate: float, influences: Any, d0: float, confidence: float, spread: float
) -> Evidence:
    """Student t bounds on a mean of per-case influence values, widened by the unseen-change
    floor (`spread`: how far one case can move the metric)."""
    n = len(influences)
    sd = float(np.std(influences, ddof=1)) if n > 1 else math.inf
    error = sd / math.sqrt(n) if n > 1 else math.inf
    quantile = t_quantile(confidence, n - 1) if n > 1 else math.inf
    half = quantile * error if error > 0 else 0.0
    floor = unseen_share(n, confidence) * spread
    low, high = estimate - max(half, floor), estimate + max(half, floor)
    if error > 0 and math.isfinite(error):
        statistic = (estimate - d0) / error
        p_right = t_below(-statistic, n - 1)
        p_wrong = t_below(statistic, n - 1)
    else:
        p_right = 0.0 if estimate > d0 else 1.0
        p_wrong = 0.0 if estimate < d0 else 1.0
    room = estimate - d0
    needed = None
    if room > 0 and low < d0:
        needed = _continuous_cases_needed(sd, room, spread, confidence, n)
    return Evidence(
        "t", estimate, low, high, p_right, p_wrong, n, low >= d0, high < d0, needed, floor
    )


def _continuous_cases_needed(
    sd: float, room: float, spread: float, confidence: float, n: int
) -> int | None:
    """Fewest cases for which both the t half-width and the unseen-change floor fit in `room`."""

    def passes(size: int) -> bool:
        if size < 2:
            return False
        half = t_quantile(confidence, size - 1) * sd / math.sqrt(size)
        return half <= room and unseen_share(size, confidence) * spread <= room

    if not math.isfinite(sd):
        return None
    return _smallest(passes, n + 1)


def bootstrap_evidence(
    estimate: float, samples: Any, d0: float, confidence: float, spread: float, n: int
) -> Evidence:
    """Percentile bounds from bootstrap resamples of θ, widened by the unseen-change floor."""
    alpha = 1 - confidence
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:  # undefined on every resample (e.g. a correlation of constants)
        return Evidence("bootstrap", estimate, -math.inf, math.inf, 1.0, 1.0, n, False, False)
    low_b, high_b = (float(x) for x in np.quantile(finite, [alpha, 1 - alpha]))
    floor = unseen_share(n, confidence) * spread
    low, high = min(low_b, estimate - floor), max(high_b, estimate + floor)
    p_right = float(np.mean(finite <= d0))
    p_wrong = float(np.mean(finite >= d0))
    room = estimate - d0
    needed = None
    if room > 0 and low < d0:
        half = max(estimate - low_b, 0.0)

        def passes(size: int) -> bool:
            return (
                half * math.sqrt(n / size) <= room
                and unseen_share(size, confidence) * spread <= room
            )

        needed = _smallest(passes, n + 1)
    return Evidence(
        "bootstrap", estimate, low, high, p_right, p_wrong, n, low >= d0, high < d0, needed, floor
    )


def corpus_resamples(stats: Any, index: Any, corpus: Corpus) -> Any:
    """corpus.compute over each row of `index` (resamples x cases), in chunks to bound memory."""
    chunk = max(1, 4_000_000 // max(1, stats.shape[0] * stats.shape[1]))
    parts = [corpus.compute(stats[index[i : i + chunk]]) for i in range(0, len(index), chunk)]
    return np.concatenate(parts)


def resample_index(n: int, seed: int) -> Any:
    return np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP_SAMPLES, n))


# ---------------------------------------------------------------- the two questions


def relative_evidence(
    base: Sequence[Outcome],
    candidate: Sequence[Outcome],
    ratio: Ratio,
    *,
    lower_is_better: bool,
    limit: float,
    confidence: float,
    seed: int = 0,
    declared_range: tuple[float, float] | None = None,
) -> Evidence:
    """The candidate's gain over the reference on paired cases, against the gain `limit`."""
    if len(base) != len(candidate) or not base:
        raise ValueError(
            f"paired cases needed, got {len(base)} reference and {len(candidate)} candidate"
        )
    sign = -1.0 if lower_is_better else 1.0
    if isinstance(ratio, Corpus):
        return _corpus_relative(
            base, candidate, ratio, sign, limit, confidence, seed, declared_range
        )
    b_parts, c_parts = per_case(base, ratio), per_case(candidate, ratio)
    if is_pass_fail(ratio, (b_parts, c_parts)) and sign > 0:
        base_pass, cand_pass = b_parts[0].astype(bool), c_parts[0].astype(bool)
        worse = int(np.sum(base_pass & ~cand_pass))
        better = int(np.sum(~base_pass & cand_pass))
        return exact_paired(worse, better, len(base), limit, confidence)
    estimate = sign * (_metric(c_parts, ratio) - _metric(b_parts, ratio))
    influences = sign * (
        _influence(*c_parts, ratio.transform) - _influence(*b_parts, ratio.transform)
    )
    values = [*case_values(base, ratio), *case_values(candidate, ratio)]
    spread = value_range(declared_range, values, estimate)
    return t_evidence(estimate, influences, limit, confidence, spread)


def threshold_evidence(
    outcomes: Sequence[Outcome],
    ratio: Ratio,
    *,
    bound: float,
    is_min: bool,
    confidence: float,
    seed: int = 0,
    declared_range: tuple[float, float] | None = None,
) -> Evidence:
    """One model's value against `bound` (θ = value for a min, -value for a max)."""
    sign = 1.0 if is_min else -1.0
    n = len(outcomes)
    if isinstance(ratio, Corpus):
        stats = np.array([list(ratio.stats(o)) for o in outcomes], dtype=float)
        estimate = sign * float(ratio.compute(stats[None])[0])
        samples = sign * corpus_resamples(stats, resample_index(n, seed), ratio)
        spread = value_range(declared_range, [], estimate)
        return bootstrap_evidence(estimate, samples, sign * bound, confidence, spread, n)
    parts = per_case(outcomes, ratio)
    if is_pass_fail(ratio, (parts,)):
        passed = int(parts[0].sum())
        if is_min:
            return exact_rate(passed, n, bound, confidence)
        flipped = exact_rate(n - passed, n, 1 - bound, confidence)  # failure rate >= 1 - max
        return _shifted(flipped, -1.0)
    estimate = sign * _metric(parts, ratio)
    influences = sign * _influence(*parts, ratio.transform)
    spread = value_range(declared_range, case_values(outcomes, ratio), estimate)
    return t_evidence(estimate, influences, sign * bound, confidence, spread)


def _shifted(evidence: Evidence, offset: float) -> Evidence:
    """Evidence on 1 - rate re-expressed on -rate (θ + offset): a `max` on a pass rate."""
    return Evidence(
        evidence.method,
        evidence.estimate + offset,
        evidence.low + offset,
        evidence.high + offset,
        evidence.p_right,
        evidence.p_wrong,
        evidence.n,
        evidence.confident_right,
        evidence.confident_wrong,
        evidence.cases_needed,
        evidence.floor,
    )


def _metric(parts: tuple[Any, Any], ratio: Ratio) -> float:
    numerators, denominators = parts
    total = float(denominators.sum())
    return float(ratio.transform(float(numerators.sum()) / total)) if total > 0 else math.nan


def _corpus_relative(
    base: Sequence[Outcome],
    candidate: Sequence[Outcome],
    corpus: Corpus,
    sign: float,
    limit: float,
    confidence: float,
    seed: int,
    declared_range: tuple[float, float] | None,
) -> Evidence:
    """Paired bootstrap of a corpus metric: both models rescored on the same resampled cases."""
    b_stats = np.array([list(corpus.stats(o)) for o in base], dtype=float)
    c_stats = np.array([list(corpus.stats(o)) for o in candidate], dtype=float)
    n = len(b_stats)
    index = resample_index(n, seed)
    estimate = sign * float(corpus.compute(c_stats[None])[0] - corpus.compute(b_stats[None])[0])
    samples = sign * (
        corpus_resamples(c_stats, index, corpus) - corpus_resamples(b_stats, index, corpus)
    )
    spread = value_range(declared_range, [], estimate)
    return bootstrap_evidence(estimate, samples, limit, confidence, spread, n)
