"""`bleu`: corpus BLEU as sacrebleu reports it (0-100), with a bootstrap interval over cases.

Corpus BLEU is not a mean of sentence scores: n-gram matches and lengths are summed over all
cases and the score is computed once. Each case keeps its sufficient statistics (from sacrebleu
itself), so every bootstrap resample is scored by sacrebleu's own arithmetic. Each case's
`bleu` score in the store is its sentence BLEU, for reading only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cache, partial
from pathlib import Path
from typing import Any, Literal

import numpy as np

from harness.checks import (
    Case,
    CheckSpec,
    CheckType,
    Corpus,
    EvalContext,
    Outcome,
    expected_list,
)


class BleuParams(CheckSpec):
    references_field: str = "expected"  # a reference string or a list of them
    tokenize: Literal["13a", "intl", "zh", "ja-mecab", "ko-mecab", "char", "flores101", "none"] = (
        "13a"
    )
    lowercase: bool = False
    smooth_method: Literal["exp", "floor", "add-k", "none"] = "exp"
    max_ngram_order: int = 4


@cache
def bleu_metric(tokenize: str, lowercase: bool, smooth_method: str, order: int) -> Any:
    from sacrebleu.metrics import BLEU

    return BLEU(
        tokenize=tokenize,
        lowercase=lowercase,
        smooth_method=smooth_method,
        max_ngram_order=order,
    )


def metric_for(params: BleuParams) -> Any:
    return bleu_metric(
        params.tokenize, params.lowercase, params.smooth_method, params.max_ngram_order
    )


def segment_stats(metric: Any, output: str, references: list[str]) -> list[float]:
    """sacrebleu's sufficient statistics of one segment against its own references."""
    # A one-segment corpus: statistics are per segment, so summing them over cases is exactly
    # what sacrebleu does for the whole corpus (each case may have its own number of references).
    stats = metric._extract_corpus_statistics([output], [[r] for r in references or [""]])
    return [float(x) for x in stats[0]]


def apply_rows(function: Any, summed: Any) -> Any:
    """function(row) for every row of an array (..., k), as an array (...)."""
    flat = summed.reshape(-1, summed.shape[-1])
    return np.array([function(row) for row in flat], dtype=float).reshape(summed.shape[:-1])


def score_of(metric: Any, stats: Sequence[float]) -> float:
    """sacrebleu's score (BLEU or chrF) of summed sufficient statistics."""
    return float(metric._compute_score_from_stats([int(x) for x in stats]).score)


def corpus_score_of(make_metric: Callable[[], Any]) -> Callable[[Any], Any]:
    """compute(stats (..., cases, k)) -> the corpus score (...) of each set of cases.

    The sacrebleu metric is made on first use, so planning a suite never imports sacrebleu.
    """
    return lambda stats: apply_rows(partial(score_of, make_metric()), stats.sum(axis=-2))


def run_bleu(cases: Sequence[Case], params: BleuParams, ctx: EvalContext) -> list[Outcome]:
    outputs = ctx.engine.generate([case.prompt for case in cases], ctx.generation)
    metric = metric_for(params)
    outcomes = []
    for output, case in zip(outputs, cases, strict=True):
        references = expected_list(case.fields[params.references_field])
        stats = segment_stats(metric, output, references)
        # The case's own score, as a one-segment corpus: for reading, not for the metric.
        scores = {"bleu": score_of(metric, stats)}
        outcomes.append(Outcome(output, scores, None, " | ".join(references), {"stats": stats}))
    return outcomes


def corpus_bleu(smooth_method: str = "exp", max_ngram_order: int = 4) -> Corpus:
    """The `bleu` aggregator: summed statistics of the (resampled) cases, scored by sacrebleu."""
    # Only smoothing and n-gram order enter the arithmetic; tokenisation acted on the statistics.
    make = partial(bleu_metric, "none", False, smooth_method, max_ngram_order)
    return Corpus(stats=lambda o: o.details["stats"], compute=corpus_score_of(make))


def _specialise(check: CheckType[BleuParams], params: BleuParams, _suite_dir: Path) -> Any:
    corpus = corpus_bleu(params.smooth_method, params.max_ngram_order)
    return replace(check, aggregators={"bleu": corpus})


CHECK = CheckType(
    "bleu",
    BleuParams,
    ("bleu",),
    run_bleu,
    required_fields=lambda p: {p.references_field},
    aggregators={"bleu": corpus_bleu()},
    default_range=(0.0, 100.0),
    specialise=_specialise,
)
