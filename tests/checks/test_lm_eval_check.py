"""The lm_eval check gives lm-eval's own numbers, per sample, on the in-memory model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from helpers.models import SMOLLM2, smollm2_file

from harness.checks import CHECKS, EvalContext, Outcome, cases_of
from harness.checks.lm_eval_check import LmEvalParams, check_aggregations, metric_name
from harness.evaluation import estimate
from harness.generation import Engine, GenerationSettings
from harness.generation._cache import DictCache

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "benchmarks" / "tasks"
LIMIT = 40


def suite_text(extra: str = "") -> str:
    return (
        "name: lm\nbase: builtin:tiny\ncapabilities:\n  - name: c\n"
        "    forgetting: {metric: arith.acc, max_drop: 0.1}\n    checks:\n"
        "      - {type: lm_eval, name: arith, tasks: harness_arith_mc, include_path: tasks,"
        f" metrics: [acc, acc_norm], batch_size: 8, limit: {LIMIT}{extra}}}\n"
    )


def planned_check(tmp_path: Path, extra: str = "") -> Any:
    from harness.suite import load_suite

    (tmp_path / "tasks").symlink_to(TASKS)
    suite = tmp_path / "suite.yaml"
    suite.write_text(suite_text(extra))
    (planned,) = load_suite(suite).checks
    return planned


def test_an_lm_eval_check_validates_without_reading_its_data(tmp_path: Path) -> None:
    planned = planned_check(tmp_path)
    assert planned.cases == () and planned.check.own_cases
    assert planned.check.metrics == ("acc", "acc_norm")
    with pytest.raises(ValueError, match="drop `data`"):
        LmEvalParams(tasks=["x"], data="d")


def test_a_rolling_perplexity_task_is_refused_at_validation(tmp_path: Path) -> None:
    from harness.core.errors import HarnessError
    from harness.suite import load_suite

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "texts.jsonl").write_text('{"text": "one two three"}\n')
    (tasks / "rolling.yaml").write_text(
        "task: local_rolling\ndataset_path: json\n"
        f"dataset_kwargs: {{data_files: {{test: {tasks / 'texts.jsonl'}}}}}\n"
        "test_split: test\noutput_type: loglikelihood_rolling\ndoc_to_text: ''\n"
        "doc_to_target: '{{text}}'\nmetric_list: [{metric: word_perplexity}]\n"
    )
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: lm\nbase: builtin:tiny\ncapabilities:\n  - name: c\n    checks:\n"
        "      - {type: lm_eval, tasks: [local_rolling], include_path: tasks, metrics: [word_perplexity]}\n"
    )
    with pytest.raises(HarnessError) as info:
        load_suite(suite)
    (problem,) = info.value.problems
    assert problem.startswith(f"{suite}:6:") and "capabilities[0].checks[0].tasks[0]" in problem
    assert "loglikelihood_rolling" in problem and "use the `perplexity` check" in problem


def test_metric_names_and_aggregations() -> None:
    assert metric_name("acc") == "acc" and metric_name("acc,none") == "acc"
    assert metric_name("exact_match,strict-match") == "exact_match_strict-match"
    params = LmEvalParams(tasks=["t"], metrics=["f1"])
    with pytest.raises(ValueError, match="aggregates by 'f1'"):
        check_aggregations({"t": {"metric_list": [{"metric": "f1", "aggregation": "f1"}]}}, params)


def lm_eval_directly(model: Any, tokenizer: Any) -> dict[str, Any]:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    hflm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8)
    return simple_evaluate(
        model=hflm,
        tasks=["harness_arith_mc"],
        task_manager=TaskManager(include_path=str(TASKS)),
        limit=LIMIT,
        bootstrap_iters=0,
    )["results"]["harness_arith_mc"]


def run_check(planned: Any, lm: Any, cache: DictCache) -> list[Outcome]:
    ctx = EvalContext(Engine(lm, cache, batch_size=32), GenerationSettings())
    return planned.check.run(planned.cases, planned.spec, ctx)


def test_equals_lm_eval_on_the_same_model_and_local_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_dir: Path
) -> None:
    from harness.models.loading import load_model

    monkeypatch.chdir(REPO)  # the task YAML names its data file relative to the repo root
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    lm = load_model("builtin:tiny")
    theirs = lm_eval_directly(lm.model, lm.tokenizer)
    planned = planned_check(tmp_path)
    cache = DictCache()
    outcomes = run_check(planned, lm, cache)
    assert len(outcomes) == LIMIT
    for metric in ("acc", "acc_norm"):
        ours = estimate(outcomes, planned.check.aggregator(metric)).value
        assert ours == pytest.approx(theirs[f"{metric},none"], abs=1e-12)
    cases = cases_of(planned.cases, outcomes)  # what the runner stores: one case per document
    assert [c.id for c in cases][:2] == ["harness_arith_mc:0", "harness_arith_mc:1"]
    assert cases[0].prompt == "Q: What is 49 plus 97? A:"
    assert outcomes[0].expected == "0" and outcomes[0].output.strip().isdigit()
    puts = cache.puts
    again = run_check(planned, lm, cache)  # a rerun is served from the store
    assert cache.puts == puts and [o.scores for o in again] == [o.scores for o in outcomes]


@pytest.mark.slow  # the real instruct model: 40 multiple-choice items, each side once (~1 min)
def test_equals_lm_eval_on_the_real_instruct_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.models.loading import load_model

    smollm2_file()
    monkeypatch.chdir(REPO)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    lm = load_model(SMOLLM2)
    theirs = lm_eval_directly(lm.model, lm.tokenizer)
    planned = planned_check(tmp_path)
    outcomes = run_check(planned, lm, DictCache())
    assert len(outcomes) == LIMIT
    for metric in ("acc", "acc_norm"):
        ours = estimate(outcomes, planned.check.aggregator(metric)).value
        assert ours == pytest.approx(theirs[f"{metric},none"], abs=1e-12)


@pytest.mark.slow
def test_a_peft_model_runs_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_dir: Path
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from harness.models import LoadedModel
    from harness.models.loading import load_model

    monkeypatch.chdir(REPO)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    base = load_model("builtin:tiny")
    torch.manual_seed(0)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base.model, config)
    theirs = lm_eval_directly(peft_model, base.tokenizer)
    planned = planned_check(tmp_path)
    lm = LoadedModel("peft", peft_model, base.tokenizer, "peft-fingerprint")
    outcomes = run_check(planned, lm, DictCache())
    assert estimate(outcomes, planned.check.aggregator("acc")).value == pytest.approx(
        theirs["acc,none"], abs=1e-12
    )


def test_registered() -> None:
    assert CHECKS.get("lm_eval").own_cases
