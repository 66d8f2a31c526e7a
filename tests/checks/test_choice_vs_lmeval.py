"""The `choice` check gives the accuracy lm-eval gives, on the same local task and model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from helpers.models import SMOLLM2, smollm2_file

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "benchmarks" / "tasks"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["builtin:tiny", SMOLLM2], ids=["tiny", "smollm2"])
def test_choice_check_equals_lm_eval_on_a_local_task(
    model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from harness.checks import EvalContext
    from harness.generation import Engine, GenerationSettings
    from harness.models.loading import load_model
    from harness.suite import load_suite

    monkeypatch.chdir(REPO)  # the task YAML names its data file relative to the repo root
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    if model == SMOLLM2:
        smollm2_file()  # the real instruct model, when installed
    lm = load_model(model)
    hflm = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=16)
    theirs = simple_evaluate(
        model=hflm,
        tasks=["harness_arith_mc"],
        task_manager=TaskManager(include_path=str(TASKS)),
        bootstrap_iters=0,
    )["results"]["harness_arith_mc"]

    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        f"name: mc\nbase: {model}\ndata: {{items: {{path: {TASKS / 'arith_mc.jsonl'}}}}}\n"
        "capabilities:\n  - name: c\n    checks: [{type: choice, data: items, prompt: '{question}'}]\n"
    )
    (planned,) = load_suite(suite_file).checks
    outcomes = planned.check.run(
        planned.cases, planned.spec, EvalContext(Engine(lm, batch_size=16), GenerationSettings())
    )
    ours = {m: sum(o.scores[m] for o in outcomes) / len(outcomes) for m in ("acc", "acc_norm")}
    assert len(outcomes) == 200
    assert ours["acc"] == pytest.approx(theirs["acc,none"], abs=1e-12)
    assert ours["acc_norm"] == pytest.approx(theirs["acc_norm,none"], abs=1e-12)
