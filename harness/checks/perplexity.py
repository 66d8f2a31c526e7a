"""`perplexity`: how well the model predicts reference texts (lower is better).

Aggregated over all texts as lm-eval does: exp(total negative log-likelihood / total units), with
units of tokens (`perplexity`), words (`word_perplexity`) or UTF-8 bytes (`byte_perplexity`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from harness.checks import Case, CheckSpec, CheckType, EvalContext, Outcome, Ratio

METRICS = ("perplexity", "word_perplexity", "byte_perplexity")


class PerplexityParams(CheckSpec):
    pass


def _units(text: str) -> dict[str, int]:
    return {
        "tokens": 0,  # filled from the model's tokenisation
        "words": len(re.split(r"\s+", text)),
        "bytes": len(text.encode("utf-8")),
    }


def run_perplexity(
    cases: Sequence[Case], params: PerplexityParams, ctx: EvalContext
) -> list[Outcome]:
    results = ctx.engine.rolling_loglikelihood([case.prompt for case in cases])
    outcomes = []
    for case, result in zip(cases, results, strict=True):
        units = _units(case.prompt) | {"tokens": result.n_tokens}
        nll = -result.logprob
        scores = {
            metric: math.exp(nll / max(units[unit], 1))
            for metric, unit in zip(METRICS, ("tokens", "words", "bytes"), strict=True)
        }
        outcomes.append(Outcome("", scores, None, None, {"nll": nll, **units}))
    return outcomes


def _ratio(unit: str) -> Ratio:
    return Ratio(lambda o: o.details["nll"], lambda o: max(o.details[unit], 1), np.exp)


CHECK = CheckType(
    "perplexity",
    PerplexityParams,
    METRICS,
    run_perplexity,
    prompt_field="text",
    lower_is_better=frozenset(METRICS),
    default_range=None,  # unbounded: judged from the spread of the texts' perplexities
    aggregators={
        metric: _ratio(unit)
        for metric, unit in zip(METRICS, ("tokens", "words", "bytes"), strict=True)
    },
    uses_chat_template=False,
)
