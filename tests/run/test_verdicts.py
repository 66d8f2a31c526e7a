"""Verdicts a team can trust, end to end on the built-in model: a measured regression fails, a
suite too small to tell says so, and nothing unmeasured or incomparable reads as a pass."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.cli import harness
from helpers.models import damaged_copy
from junitparser import JUnitXml, Skipped

from harness.store import Store

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "suites" / "data"


def sums(tmp_path: Path, count: int) -> Path:
    path = tmp_path / f"sums-{count}.jsonl"
    path.write_text("".join((DATA / "sums.jsonl").read_text().splitlines(keepends=True)[:count]))
    return path


def suite(tmp_path: Path, data: Path, candidates: dict[str, Path], extra: str = "") -> Path:
    lines = "".join(f"  - {{name: {name}, model: {path}}}\n" for name, path in candidates.items())
    listed = f"\n{lines}" if lines else " []\n"
    path = tmp_path / "suite.yaml"
    path.write_text(
        f"name: verdicts\nbase: builtin:tiny\ngeneration: {{max_new_tokens: 6, batch_size: 16}}\n"
        f"data: {{sums: {{path: {data}}}}}\ncapabilities:\n  - name: arithmetic\n"
        f"    forgetting: {{metric: exact.acc, max_drop: 0.1}}\n"
        f"    checks: [{{type: exact, data: sums}}]\n{extra}candidates:{listed}"
    )
    return path


@pytest.fixture(scope="module")
def models(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    faithful = root / "faithful"
    shutil.copytree(tiny_dir, faithful)
    return {"faithful": faithful, "forgetful": damaged_copy(tiny_dir, root / "forgetful")}


@pytest.mark.slow  # trains the forgetful copy once (~10 s)
def test_a_total_loss_on_three_golden_prompts_fails(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    path = suite(tmp_path, sums(tmp_path, 3), {"forgetful": models["forgetful"]})
    result = harness("run", str(path), "--db", str(tmp_path / "h.duckdb"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "REGRESSED    forgetful" in result.stdout
    assert "not significant at n=3" in result.stdout  # measured, and said how sure


def test_an_identical_candidate_is_inconclusive_on_12_cases_and_passes_on_40(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    faithful = {"faithful": models["faithful"]}
    small = suite(tmp_path, sums(tmp_path, 12), faithful)
    db, junit, summary = tmp_path / "h.duckdb", tmp_path / "j.xml", tmp_path / "s.json"
    outputs = ("--junit", str(junit), "--json", str(summary), "--summary", str(tmp_path / "s.md"))
    result = harness("run", str(small), "--db", str(db), *outputs)
    assert result.returncode == 0, result.stdout + result.stderr  # inconclusive warns
    assert "INCONCLUSIVE faithful" in result.stdout
    assert "about 29 cases would tell (the suite has 12)" in result.stdout
    assert "exit 0 (inconclusive)" in result.stdout
    data = json.loads(summary.read_text())
    assert data["status"] == "inconclusive" and data["candidates"][0]["status"] == "inconclusive"
    gate = data["candidates"][0]["metrics"][0]["gates"][0]
    assert gate["outcome"] == "inconclusive" and gate["cases_needed"] == 29
    assert any("about 29 cases would tell" in w for w in data["candidates"][0]["warnings"])
    case = next(iter(next(iter(JUnitXml.fromfile(str(junit))))))
    assert isinstance(case.result[0], Skipped) and "29 cases" in case.result[0].message
    assert "❔ inconclusive" in (tmp_path / "s.md").read_text()
    assert Store(db).list_runs()[0].status == "inconclusive"

    strict = harness("run", str(small), "--db", str(db), "--strict")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "REGRESSED    faithful" in strict.stdout
    also_strict = harness("run", str(small), "--db", str(db), "--fail-on", "inconclusive")
    assert also_strict.returncode == 1

    large = suite(tmp_path, sums(tmp_path, 40), faithful)
    passed = harness("run", str(large), "--db", str(db))
    assert passed.returncode == 0 and "PASSED       faithful" in passed.stdout


def test_a_data_set_without_rows_is_an_input_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    path = suite(tmp_path, empty, {})
    db = tmp_path / "h.duckdb"
    result = harness("run", str(path), "--db", str(db))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{path}:8:" in result.stderr and 'data set "sums" has no rows' in result.stderr
    assert not db.exists()


def test_a_gated_metric_that_measured_nothing_is_a_run_error(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    (tmp_path / "scorers.py").write_text("def nothing(output, row):\n    return float('nan')\n")
    path = tmp_path / "nan.yaml"
    path.write_text(
        "name: nan\nbase: builtin:tiny\nallow_python: true\ngeneration: {max_new_tokens: 4}\n"
        "capabilities:\n  - name: c\n    threshold: {metric: python.score, min: 0.5}\n"
        "    checks: [{type: python, function: 'scorers.py:nothing', cases: [{prompt: a}, {prompt: b}]}]\n"
        f"candidates:\n  - {{name: faithful, model: {models['faithful']}}}\n"
    )
    result = harness("run", str(path), "--db", str(tmp_path / "h.duckdb"))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "not measured: c python.score has no value" in result.stdout


def test_a_candidate_with_another_tokenizer_is_not_compared(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    from transformers import AutoTokenizer

    other = tmp_path / "other-tokenizer"
    shutil.copytree(models["faithful"], other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["<extra-token>"])
    tokenizer.save_pretrained(other)
    path = suite(tmp_path, sums(tmp_path, 40), {"other": other})
    summary = tmp_path / "s.json"
    result = harness("run", str(path), "--db", str(tmp_path / "h.duckdb"), "--json", str(summary))
    assert result.returncode == 3, result.stdout + result.stderr
    error = json.loads(summary.read_text())["candidates"][0]["error"]
    assert error.startswith("not comparable with the base: tokenizer (")


@pytest.mark.slow  # trains a LoRA adapter (~10 s)
def test_a_training_that_changed_nothing_is_warned_about(tmp_path: Path) -> None:
    path = suite(
        tmp_path,
        sums(tmp_path, 40),
        {},
        extra="  - name: facts\n    checks: [{type: qa, data: facts}]\n",
    )
    train, facts = DATA / "new_facts_train.jsonl", DATA / "new_facts.jsonl"
    text = path.read_text().replace(
        "data: {sums:", f"data: {{train: {{path: {train}}}, facts: {{path: {facts}}}, sums:"
    )
    text = text.replace("candidates: []", "candidates:")
    text += "  - {name: inert, backend: lora, data: train, args: {learning_rate: 1.0e-12, max_steps: 3}}\n"
    path.write_text(text)
    summary = tmp_path / "s.json"
    result = harness("run", str(path), "--db", str(tmp_path / "h.duckdb"), "--json", str(summary))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "inert: its training changed nothing measured" in result.stdout
    warnings = json.loads(summary.read_text())["candidates"][0]["warnings"]
    assert any("changed nothing measured" in w for w in warnings)


@pytest.mark.slow  # a real run killed with SIGKILL
def test_gating_an_interrupted_run_names_the_missing_candidates_and_fails(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    many = tmp_path / "many.jsonl"
    rows = [
        {
            "id": f"s{i}",
            "prompt": f"Q: What is {i % 50} plus {i % 7}? A:",
            "expected": str(i % 50 + i % 7),
        }
        for i in range(1500)
    ]
    many.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = suite(tmp_path, many, {"forgetful": models["forgetful"]})
    db = tmp_path / "h.duckdb"
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(path), "--db", str(db)],
        env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # until the base is recorded, then kill the run
        assert process.poll() is None, "the run ended before it could be killed"
        try:
            runs = Store(db, lock_timeout_s=1).list_runs()
            if runs and "base" in runs[0].models:
                break
        except Exception:  # the file is held by the run between its writes
            pass
        time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert Store(db).list_runs()[0].status == "interrupted"
    gated = harness("gate", "last", "--db", str(db), "--json", str(tmp_path / "g.json"))
    assert gated.returncode == 3, gated.stdout + gated.stderr
    candidates = json.loads((tmp_path / "g.json").read_text())["candidates"]
    assert [(c["name"], c["status"]) for c in candidates] == [("forgetful", "error")]
    assert "interrupted before it was evaluated" in candidates[0]["error"]


def test_what_makes_two_evaluations_incomparable_is_named() -> None:
    from harness.evaluation import EVALUATION, incomparable

    settings = {"max_new_tokens": 8, "stop": ["\n"], "chat_template": True, "engine": "auto"}

    def facts(**changes: object) -> dict[str, object]:
        base = {
            "tokenizer": "t1",
            "chat_template": "c1",
            "engine": "transformers",
            "generation": {"arithmetic · exact": dict(settings)},
        }
        return {EVALUATION: base | changes}

    assert incomparable(facts(), facts()) == []
    assert incomparable(facts(), facts(chat_template="c2")) == ["chat template (c1 vs c2)"]
    assert incomparable(facts(), facts(engine="vllm")) == [
        "generation engine (transformers vs vllm)"
    ]
    longer = {"arithmetic · exact": settings | {"max_new_tokens": 16}}
    assert incomparable(facts(), facts(generation=longer)) == [
        "generation settings of arithmetic · exact (max_new_tokens 8 vs 16)"
    ]
    plain = {"arithmetic · exact": settings | {"chat_template": False}}
    # Without a chat template in use, a different template changes nothing that was measured.
    assert incomparable(facts(generation=plain), facts(generation=plain, chat_template="c2")) == []
    assert incomparable({}, facts()) == []  # a record made before these facts: nothing to compare
