"""The evidence behind gate verdicts, checked against scipy and against values worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from harness.checks import CHECKS, Outcome, Ratio
from harness.evaluation._evidence import (
    exact_paired,
    paired_p_at_most,
    relative_evidence,
    threshold_evidence,
    unseen_share,
)

ACC = Ratio(lambda o: o.scores["acc"])
F1 = Ratio(lambda o: o.scores["f1"])


def scored(values: list[float], metric: str = "acc") -> list[Outcome]:
    return [Outcome("", {metric: float(v)}, bool(v) if metric == "acc" else None) for v in values]


def smallest_n(holds: object, start: int = 1) -> int:
    n = start
    while not holds(n):  # type: ignore[operator]
        n += 1
    return n


# ------------------------------------------------------------ exact: pass/fail, paired


def test_no_flip_on_12_cases_cannot_rule_out_a_drop_of_a_tenth() -> None:
    # With no discordant case, the worst case is every change being a loss: P(no flip) = 0.9^n.
    evidence = exact_paired(0, 0, 12, -0.1, 0.95)
    assert evidence.p_right == pytest.approx(0.9**12)
    assert not evidence.confident_right and evidence.estimate == 0.0
    # Cases needed, by hand: the smallest n with 0.9^n <= 0.05 is 29.
    assert smallest_n(lambda n: 0.9**n <= 0.05) == 29
    assert evidence.cases_needed == 29
    assert exact_paired(0, 0, 29, -0.1, 0.95).confident_right


def test_the_exact_test_holds_its_level_at_the_limit() -> None:
    # Candidates exactly at the limit (drop = 0.1) must pass at most 5% of the time.
    rng = np.random.default_rng(3)
    for n, worse, better in ((30, 0.1, 0.0), (40, 0.3, 0.2)):
        draws = rng.multinomial(n, [worse, better, 1 - worse - better], size=600)
        passes = [paired_p_at_most(int(b), int(c), n, -0.1) <= 0.05 for b, c, _ in draws]
        assert np.mean(passes) <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 600)


def test_a_total_loss_on_three_cases_is_on_the_wrong_side_but_not_significant() -> None:
    evidence = exact_paired(3, 0, 3, -0.1, 0.95)
    assert evidence.estimate == -1.0 and not evidence.confident_right
    # Worst case over the nuisance: every case discordant, P(loss) = 0.55 each: 0.55^3.
    assert evidence.p_wrong == pytest.approx(0.55**3, rel=1e-3)
    assert not evidence.confident_wrong


def test_a_drop_of_half_on_12_cases_is_significant() -> None:
    evidence = exact_paired(6, 0, 12, -0.1, 0.95)
    assert evidence.estimate == -0.5 and evidence.confident_wrong and evidence.p_wrong < 0.05
    assert evidence.high < -0.1  # even the optimistic bound is beyond the limit


def test_bounds_are_consistent_with_the_tests() -> None:
    evidence = exact_paired(5, 5, 100, -0.05, 0.95)
    assert evidence.low < -0.05 < 0 < evidence.high
    assert paired_p_at_most(5, 5, 100, evidence.low - 1e-3) <= 0.05
    assert paired_p_at_most(5, 5, 100, evidence.low + 1e-3) > 0.05
    # Churn without net loss needs more cases; with the same flip rates it gets there.
    assert evidence.cases_needed is not None and evidence.cases_needed > 100
    rate = evidence.cases_needed
    assert exact_paired(round(0.05 * rate), round(0.05 * rate), rate, -0.05, 0.95).confident_right


# ------------------------------------------------------------ exact: one pass rate


def test_a_threshold_on_a_pass_rate_is_the_binomial_test() -> None:
    evidence = threshold_evidence(
        scored([1] * 27 + [0] * 3), ACC, bound=0.7, is_min=True, confidence=0.95
    )
    expected = scipy_stats.binomtest(27, 30, 0.7, alternative="greater").pvalue
    interval = scipy_stats.binomtest(27, 30).proportion_ci(confidence_level=0.90, method="exact")
    assert evidence.method == "exact_binomial"
    assert evidence.p_right == pytest.approx(expected)
    assert evidence.low == pytest.approx(interval.low) and evidence.confident_right


def test_three_perfect_cases_cannot_show_a_rate_of_ninety_percent() -> None:
    evidence = threshold_evidence(scored([1, 1, 1]), ACC, bound=0.9, is_min=True, confidence=0.95)
    assert not evidence.confident_right
    # By hand: all n pass; the lower bound is 0.05^(1/n) >= 0.9 from n = 29.
    assert evidence.cases_needed == smallest_n(lambda n: 0.05 ** (1 / n) >= 0.9) == 29


def test_a_max_threshold_on_a_pass_rate_mirrors_the_min() -> None:
    evidence = threshold_evidence(
        scored([0] * 27 + [1] * 3), ACC, bound=0.3, is_min=False, confidence=0.95
    )
    assert evidence.estimate == pytest.approx(-0.1) and evidence.confident_right


# ------------------------------------------------------------ t: scores and ratios


def test_f1_gain_bounds_and_cases_needed_by_hand() -> None:
    base = [1.0, 0.5, 1.0, 0.8, 1.0, 0.6, 1.0, 1.0, 0.9, 1.0, 0.7, 1.0]
    cand = [1.0, 0.5, 0.9, 0.8, 1.0, 0.6, 1.0, 0.95, 0.9, 1.0, 0.7, 1.0]
    evidence = relative_evidence(
        scored(base, "f1"),
        scored(cand, "f1"),
        F1,
        lower_is_better=False,
        limit=-0.1,
        confidence=0.95,
        declared_range=(0.0, 1.0),
    )
    diffs = np.array(cand) - np.array(base)
    sd = diffs.std(ddof=1)
    half = scipy_stats.t.ppf(0.95, 11) * sd / math.sqrt(12)
    floor = 1 - 0.05 ** (1 / 12)  # 12 cases cannot rule out 22% of cases moving by the range
    assert evidence.method == "t" and evidence.estimate == pytest.approx(diffs.mean())
    assert evidence.floor == pytest.approx(floor)
    assert evidence.low == pytest.approx(diffs.mean() - max(half, floor))
    assert not evidence.confident_right  # the floor, not the spread, decides on 12 cases
    room = diffs.mean() + 0.1

    def holds(n: int) -> bool:
        t_half = scipy_stats.t.ppf(0.95, n - 1) * sd / math.sqrt(n)
        return t_half <= room and 1 - 0.05 ** (1 / n) <= room

    assert evidence.cases_needed == smallest_n(holds, 13)


def test_identical_scores_on_a_small_suite_are_inconclusive_and_on_a_large_one_pass() -> None:
    small = relative_evidence(
        scored([1.0] * 3, "f1"), scored([1.0] * 3, "f1"), F1,
        lower_is_better=False, limit=-0.1, confidence=0.95, declared_range=(0.0, 1.0),
    )  # fmt: skip
    assert not small.confident_right and small.cases_needed == 29
    large = relative_evidence(
        scored([1.0] * 40, "f1"), scored([1.0] * 40, "f1"), F1,
        lower_is_better=False, limit=-0.1, confidence=0.95, declared_range=(0.0, 1.0),
    )  # fmt: skip
    assert large.confident_right
    assert unseen_share(29, 0.95) <= 0.1 < unseen_share(28, 0.95)


def perplexity_outcomes(nll: list[float], tokens: list[int]) -> list[Outcome]:
    return [
        Outcome("", {}, None, None, {"nll": v, "tokens": t, "words": t, "bytes": 4 * t})
        for v, t in zip(nll, tokens, strict=True)
    ]


def test_perplexity_gates_are_judged_in_perplexity_points() -> None:
    check = CHECKS.get("perplexity")
    ratio = check.aggregator("perplexity")
    tokens = [10, 20, 10, 20, 10, 20, 10, 20] * 5
    base_nll = [0.7 * t for t in tokens]
    cand_nll = [0.7 * t + (0.5 if i % 2 else 0.1) for i, t in enumerate(tokens)]
    evidence = relative_evidence(
        perplexity_outcomes(base_nll, tokens),
        perplexity_outcomes(cand_nll, tokens),
        ratio,
        lower_is_better=True,
        limit=-0.5,  # may rise by at most 0.5 perplexity points
        confidence=0.95,
        declared_range=check.value_range("perplexity"),
    )
    total = sum(tokens)
    base_ppl, cand_ppl = math.exp(sum(base_nll) / total), math.exp(sum(cand_nll) / total)
    assert evidence.estimate == pytest.approx(base_ppl - cand_ppl)  # a rise is a negative gain
    # The delta method by hand: influence_i = ppl * (nll_i - r * t_i) / mean(t), r = nll/token.
    mean_t = total / len(tokens)

    def influence(nll: list[float], ppl: float) -> np.ndarray:
        r = sum(nll) / total
        return ppl * (np.array(nll) - r * np.array(tokens)) / mean_t

    diffs = -(influence(cand_nll, cand_ppl) - influence(base_nll, base_ppl))
    half = scipy_stats.t.ppf(0.95, len(tokens) - 1) * diffs.std(ddof=1) / math.sqrt(len(tokens))
    assert evidence.low == pytest.approx(evidence.estimate - max(half, evidence.floor), rel=1e-4)
    assert evidence.confident_right  # a rise of ~0.03 points, well within 0.5


def test_cases_needed_for_a_perplexity_gate_by_hand() -> None:
    check = CHECKS.get("perplexity")
    ratio = check.aggregator("perplexity")
    tokens = [10, 20, 15, 10, 25, 10]
    base_nll = [0.7 * t for t in tokens]
    cand_nll = [0.7 * t + d for t, d in zip(tokens, [0.2, -0.3, 0.6, 0.1, -0.2, 0.4], strict=True)]
    evidence = relative_evidence(
        perplexity_outcomes(base_nll, tokens), perplexity_outcomes(cand_nll, tokens), ratio,
        lower_is_better=True, limit=-0.03, confidence=0.95, declared_range=None,
    )  # fmt: skip
    total, mean_t = sum(tokens), sum(tokens) / len(tokens)

    def influence(nll: list[float]) -> np.ndarray:
        r = sum(nll) / total
        return math.exp(r) * (np.array(nll) - r * np.array(tokens)) / mean_t

    sd = float((-(influence(cand_nll) - influence(base_nll))).std(ddof=1))
    # The per-case range, unbounded metric: the spread of the cases' own perplexities seen.
    per_case = [math.exp(v / t) for v, t in zip(base_nll + cand_nll, tokens + tokens, strict=True)]
    spread = max(per_case) - min(per_case)
    room = evidence.estimate + 0.03  # rose by 0.018 points of the 0.03 allowed
    assert room > 0 and not evidence.confident_right

    def holds(n: int) -> bool:
        half = scipy_stats.t.ppf(0.95, n - 1) * sd / math.sqrt(n)
        return half <= room and (1 - 0.05 ** (1 / n)) * spread <= room

    assert evidence.cases_needed == smallest_n(holds, 7)


def test_corpus_metrics_use_the_paired_bootstrap() -> None:
    from harness.checks.glue import AGGREGATORS

    mcc = AGGREGATORS["mcc"]

    def rows(preds: list[int], golds: list[int]) -> list[Outcome]:
        return [
            Outcome("", {}, p == g, None, {"pred": p, "gold": g})
            for p, g in zip(preds, golds, strict=True)
        ]

    golds = [0, 1] * 50
    evidence = relative_evidence(
        rows(golds, golds), rows([1 - g if i < 30 else g for i, g in enumerate(golds)], golds),
        mcc, lower_is_better=False, limit=-0.05, confidence=0.95, declared_range=(-1.0, 1.0),
    )  # fmt: skip
    assert evidence.method == "bootstrap" and evidence.estimate < -0.5
    assert evidence.confident_wrong and evidence.high < -0.05
