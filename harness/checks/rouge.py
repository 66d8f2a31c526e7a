"""`rouge`: ROUGE-1/2/L/Lsum F-measure of the output against the reference(s), via rouge-score.

Each case scores max over its references (rouge-score's `score_multi`); a metric is the mean over
cases, as Hugging Face `evaluate` reports it without its bootstrap aggregator. `rougeLsum` splits
sentences on newlines, as rouge-score does.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from harness.checks import Case, CheckSpec, Outcome, expected_list, generative_check

METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


class RougeParams(CheckSpec):
    references_field: str = "expected"  # a reference string or a list of them
    use_stemmer: bool = False  # Porter stemming of words before matching
    measure: Literal["fmeasure", "precision", "recall"] = "fmeasure"


@cache
def scorer(use_stemmer: bool) -> Any:
    from rouge_score import rouge_scorer  # heavy-ish; only runs load it

    return rouge_scorer.RougeScorer(list(METRICS), use_stemmer=use_stemmer)


def rouge_scores(output: str, references: list[str], params: RougeParams) -> dict[str, float]:
    """The best score per ROUGE type over the references (0 with no reference)."""
    if not references:
        return dict.fromkeys(METRICS, 0.0)
    best = scorer(params.use_stemmer).score_multi(references, output)
    return {metric: float(getattr(best[metric], params.measure)) for metric in METRICS}


def score_rouge(output: str, case: Case, params: RougeParams) -> Outcome:
    references = expected_list(case.fields[params.references_field])
    return Outcome(output, rouge_scores(output, references, params), None, " | ".join(references))


CHECK = generative_check(
    "rouge", RougeParams, METRICS, score_rouge, required_fields=lambda p: {p.references_field}
)
