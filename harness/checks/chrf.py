"""`chrf`: corpus chrF (or chrF++ with `word_order: 2`) as sacrebleu reports it (0-100).

Like BLEU, chrF sums character (and word) n-gram statistics over all cases before scoring, so
each case keeps sacrebleu's statistics and the bootstrap rescores resampled sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import cache, partial
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.checks import (
    Case,
    CheckSpec,
    CheckType,
    Corpus,
    EvalContext,
    Outcome,
    expected_list,
)
from harness.checks.bleu import corpus_score_of, score_of, segment_stats


class ChrfParams(CheckSpec):
    references_field: str = "expected"  # a reference string or a list of them
    char_order: int = Field(6, ge=1)
    word_order: int = Field(0, ge=0)  # 2 gives chrF++
    beta: int = Field(2, ge=1)
    lowercase: bool = False
    whitespace: bool = False  # keep whitespace in character n-grams


@cache
def chrf_metric(char_order: int, word_order: int, beta: int, lowercase: bool, ws: bool) -> Any:
    from sacrebleu.metrics import CHRF

    return CHRF(
        char_order=char_order,
        word_order=word_order,
        beta=beta,
        lowercase=lowercase,
        whitespace=ws,
    )


def metric_for(params: ChrfParams) -> Any:
    return chrf_metric(
        params.char_order, params.word_order, params.beta, params.lowercase, params.whitespace
    )


def run_chrf(cases: Sequence[Case], params: ChrfParams, ctx: EvalContext) -> list[Outcome]:
    outputs = ctx.engine.generate([case.prompt for case in cases], ctx.generation)
    metric = metric_for(params)
    outcomes = []
    for output, case in zip(outputs, cases, strict=True):
        references = expected_list(case.fields[params.references_field])
        stats = segment_stats(metric, output, references)
        scores = {"chrf": score_of(metric, stats)}  # the case alone, for reading
        outcomes.append(Outcome(output, scores, None, " | ".join(references), {"stats": stats}))
    return outcomes


def corpus_chrf(params: ChrfParams | None = None) -> Corpus:
    """The `chrf` aggregator; its orders and beta must be those the statistics were made with."""
    make = partial(chrf_metric, 6, 0, 2, False, False)
    if params is not None:
        make = partial(metric_for, params)
    return Corpus(stats=lambda o: o.details["stats"], compute=corpus_score_of(make))


def _specialise(check: CheckType[ChrfParams], params: ChrfParams, _suite_dir: Path) -> Any:
    return replace(check, aggregators={"chrf": corpus_chrf(params)})


CHECK = CheckType(
    "chrf",
    ChrfParams,
    ("chrf",),
    run_chrf,
    required_fields=lambda p: {p.references_field},
    aggregators={"chrf": corpus_chrf()},
    default_range=(0.0, 100.0),
    specialise=_specialise,
)
