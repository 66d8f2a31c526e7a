"""Sampled checks (`samples: k` with a `temperature`): k generations per case.

Each case's metric is its mean over the k samples (its pass rate, for pass/fail checks); the
case also gets `pass@k` (any sample passed; the unbiased estimator of the Codex paper reduces to
that when k samples are drawn for pass@k) and `flaky` (some samples passed, some failed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from math import comb
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # _base builds on this module; the types are only annotations here
    from harness.checks._base import Case, EvalContext
    from harness.core.scores import Outcome


def pass_at_k(n: int, correct: int, k: int) -> float:
    """Unbiased pass@k from n samples of which `correct` passed (Chen et al., 2021)."""
    if n - correct < k:
        return 1.0
    return 1.0 - comb(n - correct, k) / comb(n, k)


def run_sampled(
    cases: Sequence[Case], spec: Any, ctx: EvalContext, score: Callable[[str, Case, Any], Outcome]
) -> list[Outcome]:
    prompts = [case.prompt for case in cases]
    per_sample = []
    for sample in range(spec.samples):
        settings = replace(
            ctx.generation, temperature=spec.temperature, sample=sample, seed=ctx.seed
        )
        outputs = ctx.engine.generate(prompts, settings)
        per_sample.append([score(o, c, spec) for o, c in zip(outputs, cases, strict=True)])
    return [
        _combine([outcomes[i] for outcomes in per_sample], spec.samples) for i in range(len(cases))
    ]


def _combine(samples: list[Outcome], k: int) -> Outcome:
    metrics = samples[0].scores.keys()
    scores = {m: sum(o.scores[m] for o in samples) / k for m in metrics}
    passes = sum(1 for o in samples if o.passed)
    flaky = 0 < passes < k
    scores |= {f"pass@{k}": pass_at_k(k, passes, k), "flaky": float(flaky)}
    details = {
        "samples": k,
        "passes": passes,
        "flaky": flaky,
        "outputs": [o.output for o in samples],
    }
    return replace(samples[0], scores=scores, passed=passes == k, details=details)
