"""CI gating end to end on the built-in model: JUnit, Markdown, annotations, --fail-on,
baselines, `harness gate`, tags, two concurrent runs on one store, and the workflow file.

One real run (a faithful copy of builtin:tiny and a forgetful one, fine-tuned hard on new facts)
is made once per module; the other commands reuse its store, where every output is cached, so
they load no model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.cli import harness
from helpers.models import damaged_copy
from helpers.store import store_at_version
from junitparser import Error, Failure, JUnitXml

from harness.store import Store

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "suites" / "data"


def subset(source: Path, out: Path, count: int) -> Path:
    out.write_text("".join(source.read_text().splitlines(keepends=True)[:count]))
    return out


def suite_text(data: Path, candidates: dict[str, Path], *, facts_gate: str = "") -> str:
    lines = "".join(f"  - {{name: {name}, model: {path}}}\n" for name, path in candidates.items())
    return f"""\
name: ci-test
base: builtin:tiny
generation: {{max_new_tokens: 8, batch_size: 16}}
data:
  sums: {{path: {data / "sums.jsonl"}}}
  facts: {{path: {data / "facts.jsonl"}}}
capabilities:
  - name: arithmetic
    forgetting: {{metric: exact.acc, max_drop: 0.1}}
    threshold: {{metric: exact.acc, min: 0.5}}
    checks: [{{type: exact, data: sums}}]
  - name: facts
    forgetting: {{metric: qa.em, max_drop: 0.1}}{facts_gate}
    checks: [{{type: qa, data: facts}}]
candidates:
{lines}"""


class Stored:
    """The module's run: its store, suite, data directory, candidates and outputs."""

    def __init__(self, root: Path, candidates: dict[str, Path]) -> None:
        self.root, self.candidates = root, candidates
        self.data = root / "data"
        self.data.mkdir()
        subset(DATA / "sums.jsonl", self.data / "sums.jsonl", 40)
        subset(DATA / "known_facts.jsonl", self.data / "facts.jsonl", 30)
        self.suite = self.write_suite("suite.yaml")
        self.db = root / "h.duckdb"

    def write_suite(self, name: str, **kwargs: str) -> Path:
        path = self.root / name
        path.write_text(suite_text(self.data, self.candidates, **kwargs))
        return path

    def copy_db(self, tmp_path: Path) -> Path:
        """A private copy of the store, for a test that records runs of its own."""
        tmp_path.mkdir(parents=True, exist_ok=True)
        copy = tmp_path / "h.duckdb"
        shutil.copy(self.db, copy)
        return copy


@pytest.fixture(scope="module")
def stored(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Stored:
    root = tmp_path_factory.mktemp("ci")
    faithful = root / "faithful"
    shutil.copytree(tiny_dir, faithful)
    candidates = {"faithful": faithful, "forgetful": damaged_copy(tiny_dir, root / "forgetful")}
    made = Stored(root, candidates)
    result = harness(
        "run", str(made.suite), "--db", str(made.db),
        "--junit", str(root / "out" / "junit.xml"), "--summary", str(root / "out" / "summary.md"),
        "--json", str(root / "out" / "summary.json"),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    return made


@pytest.mark.slow  # shares one real run of two models (~40 s on 2 cores)
def test_junit_has_one_failure_for_the_forgetful_candidate_and_none_for_the_faithful(
    stored: Stored,
) -> None:
    xml = JUnitXml.fromfile(str(stored.root / "out" / "junit.xml"))
    suites = {s.name: s for s in xml}
    assert set(suites) == {"ci-test · faithful", "ci-test · forgetful"}
    outcomes = {
        name: {case.name: [type(r).__name__ for r in case.result] for case in suite}
        for name, suite in suites.items()
    }
    gates = {
        "arithmetic · threshold · exact.acc",
        "arithmetic · forgetting · exact.acc",
        "facts · forgetting · qa.em",
    }
    assert set(outcomes["ci-test · faithful"]) == gates == set(outcomes["ci-test · forgetful"])
    assert all(not r for r in outcomes["ci-test · faithful"].values())
    failed = [c for c in suites["ci-test · forgetful"] if c.result]
    forgetting = [c for c in failed if c.name == "arithmetic · forgetting · exact.acc"]
    assert len(forgetting) == 1
    failure = forgetting[0].result[0]
    assert isinstance(failure, Failure) and failure.type == "forgetting"
    text = failure.text or ""
    assert "metric: arithmetic exact.acc" in text and "delta -" in text
    assert "interval: gain in [" in text and "flipped cases: pass→fail" in text
    assert xml.failures == len(failed) and xml.errors == 0


@pytest.mark.slow  # shares one real run of two models (~40 s on 2 cores)
def test_show_writes_the_same_json_and_markdown_the_run_wrote(
    stored: Stored, tmp_path: Path
) -> None:
    """One run view: the stored run, read back, renders the outputs the live run wrote."""
    out = tmp_path / "again"
    result = harness(
        "show", "last", "--db", str(stored.copy_db(tmp_path)),
        "--json", str(out / "summary.json"), "--summary", str(out / "summary.md"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "REGRESSED" in result.stdout and "forgetful" in result.stdout
    live = json.loads((stored.root / "out" / "summary.json").read_text())
    again = json.loads((out / "summary.json").read_text())
    assert again == live
    assert (out / "summary.md").read_text() == (stored.root / "out" / "summary.md").read_text()


@pytest.mark.slow
def test_markdown_summary_has_verdicts_failed_gates_and_intervals(stored: Stored) -> None:
    text = (stored.root / "out" / "summary.md").read_text()
    assert text.startswith("### ❌ harness · ci-test · regressed (exit 1)")
    assert "| faithful | ✅ passed | — |" in text
    forgetful = next(line for line in text.splitlines() if line.startswith("| forgetful | ❌"))
    assert "arithmetic exact.acc" in forgetful
    assert "gain in [" in text and "Flipped cases of failed gates" in text
    assert "Methods and cost" not in text  # nothing was trained here


def test_a_candidate_that_failed_to_run_is_a_junit_error_on_each_gate(tmp_path: Path) -> None:
    from harness.core.records import ModelRecord
    from harness.evaluation import ModelResult, RunResult
    from harness.outputs._junit import junit_xml
    from harness.suite import load_suite

    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\nbase: builtin:tiny\ncapabilities:\n  - name: c\n"
        "    forgetting: {metric: exact.acc, max_drop: 0}\n"
        "    checks: [{type: exact, cases: [{prompt: 'a', expected: 'b'}]}]\n"
    )
    base = ModelResult(ModelRecord("base", "base", "builtin:tiny", "f", "ok"))
    broken = ModelResult(ModelRecord("broken", "candidate", "x", None, "error", "OOM <boom>"))
    result = RunResult("r1", "s", base, [broken])
    path = tmp_path / "j.xml"
    junit_xml(result, load_suite(suite).spec.capabilities).write(path)
    (case,) = list(next(iter(JUnitXml.fromfile(str(path)))))
    assert case.name == "c · forgetting · exact.acc"
    assert isinstance(case.result[0], Error) and case.result[0].message == "OOM <boom>"


def test_control_characters_never_break_junit_markdown_or_annotations(tmp_path: Path) -> None:
    """A model's error can hold anything (NUL, ESC): every CI output stays readable."""
    from harness.core.records import ModelRecord
    from harness.evaluation import ModelResult, RunResult
    from harness.outputs._annotations import workflow_commands
    from harness.outputs._junit import junit_xml
    from harness.outputs._markdown import markdown_summary

    base = ModelResult(ModelRecord("base", "base", "builtin:tiny", "f", "ok"))
    error = "died\x00 here \x1b[2J\x1b]0;owned\x07 <b>"
    broken = ModelResult(ModelRecord("broken", "candidate", "x", None, "error", error))
    result = RunResult("r1", "s", base, [broken])
    path = tmp_path / "j.xml"
    junit_xml(result, []).write(path, encoding="utf-8", xml_declaration=True)
    (case,) = list(next(iter(JUnitXml.fromfile(str(path)))))  # a strict parser reads it
    assert case.result[0].message == "died\\x00 here \\x1b[2J\\x1b]0;owned\\x07 <b>"
    for text in (markdown_summary(result), "\n".join(workflow_commands(result))):
        assert "\x00" not in text and "\x1b" not in text and "\x07" not in text


@pytest.mark.slow  # shares one real run of two models (~40 s on 2 cores)
def test_fail_on_makes_an_improve_failure_a_warning_with_exit_0(stored: Stored) -> None:
    """The faithful copy gains nothing: an improve gate fails; --fail-on decides what that means."""
    improve = stored.write_suite(
        "improve.yaml", facts_gate="\n    improve: {metric: qa.f1, min_gain: 0.2}"
    )
    db = stored.copy_db(stored.root / "improve")
    args = ("run", str(improve), "--db", str(db), "--only", "faithful")
    strict = harness(*args)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    junit, summary = stored.root / "improve" / "j.xml", stored.root / "improve" / "s.json"
    lenient = harness(
        *args, "--fail-on", "forgetting,threshold", "--junit", str(junit), "--json", str(summary),
        env={"GITHUB_ACTIONS": "true"},
    )  # fmt: skip
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert "WARNING      faithful (warn-only) · facts qa.f1" in lenient.stdout
    warnings = [line for line in lenient.stdout.splitlines() if line.startswith("::warning ")]
    assert any("faithful improve gate failed" in line for line in warnings)
    assert not any(line.startswith("::error") for line in lenient.stdout.splitlines())
    assert JUnitXml.fromfile(str(junit)).failures == 0  # reported, not failing
    data = json.loads(summary.read_text())
    assert data["fail_on"] == ["forgetting", "threshold"] and data["status"] == "passed"
    assert data["candidates"][0]["warn_only_failures"][0]["kind"] == "improve"
    assert harness(*args, "--fail-on", "speed").returncode == 2


@pytest.mark.slow  # shares one real run of two models (~40 s on 2 cores)
def test_github_annotations_only_under_github_actions(stored: Stored, tmp_path: Path) -> None:
    db = stored.copy_db(tmp_path)
    quiet = harness("gate", "last", "--db", str(db))
    assert quiet.returncode == 1 and "::error" not in quiet.stdout
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    loud = harness(
        "gate", "last", "--db", str(db), "--summary", "github",
        env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)},
    )  # fmt: skip
    errors = [line for line in loud.stdout.splitlines() if line.startswith("::error ")]
    assert loud.returncode == 1 and errors
    assert all("title=harness%3A forgetful " in line for line in errors)
    assert any("forgetting gate failed" in line and "%0A" in line for line in errors)
    written = summary.read_text()
    assert written.startswith("earlier step\n### ❌ harness · ci-test")  # appended
    outside = harness("gate", "last", "--db", str(db), "--summary", "github")
    assert outside.returncode == 2 and "GITHUB_STEP_SUMMARY" in outside.stderr


@pytest.mark.slow  # shares one real run of two models (~40 s on 2 cores)
def test_gate_after_a_threshold_change_flips_the_verdict(stored: Stored, tmp_path: Path) -> None:
    db = stored.copy_db(tmp_path)
    original = Store(db).resolve_run("last")
    stricter = stored.write_suite("stricter.yaml")
    stricter.write_text(stricter.read_text().replace("min: 0.5", "min: 1.01"))
    junit = tmp_path / "j.xml"
    result = harness(
        "gate", original, "--db", str(db), "--suite", str(stricter), "--junit", str(junit)
    )
    assert result.returncode == 1, result.stdout + result.stderr
    store = Store(db)
    regated = store.resolve_run("last")
    assert regated != original and store.source_run(regated) == original
    gates = store.load_run(regated).gates["faithful"]
    threshold = next(g for g in gates if g.kind == "threshold")
    assert not threshold.passed and threshold.limit == 1.01
    assert all(g.passed for g in store.load_run(original).gates["faithful"])  # untouched
    assert len(store.load_cases(regated)) == len(store.load_cases(original))
    failed = {c.name for s in JUnitXml.fromfile(str(junit)) for c in s if c.result}
    assert "arithmetic · threshold · exact.acc" in failed

    lenient = stored.write_suite("lenient.yaml")
    lenient.write_text(lenient.read_text().replace("max_drop: 0.05", "max_drop: 1.0"))
    lenient.write_text(lenient.read_text().replace("max_drop: 0.1", "max_drop: 1.0"))
    lenient.write_text(lenient.read_text().replace("min: 0.5", "min: 0.0"))
    passed = harness("gate", original, "--db", str(db), "--suite", str(lenient))
    assert passed.returncode == 0, passed.stdout + passed.stderr  # the forgetful one now passes


@pytest.mark.slow  # shares one real run of two models (~40 s on 2 cores)
def test_baselines_by_run_id_tag_and_last_pass(stored: Stored, tmp_path: Path) -> None:
    db = stored.copy_db(tmp_path)
    store = Store(db)
    first = store.resolve_run("last")  # regressed: the forgetful candidate failed
    assert (
        harness("run", str(stored.suite), "--db", str(db), "--baseline", "last-pass").returncode
        == 2
    )
    passing = harness("run", str(stored.suite), "--db", str(db), "--only", "faithful")
    assert passing.returncode == 0, passing.stdout + passing.stderr
    good = Store(db).resolve_run("last")
    assert Store(db).last_passing_run("ci-test") == good
    assert harness("tag", good, "prod", "--db", str(db)).returncode == 0

    summary = tmp_path / "s.json"
    for ref, expected in ((first, first), ("tag:prod", good), ("last-pass", None)):
        # each baseline run passes too, so last-pass is then the newest of them
        expected = expected or Store(db).resolve_run("last")
        result = harness(
            "run", str(stored.suite), "--db", str(db), "--only", "faithful",
            "--baseline", ref, "--json", str(summary),
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        data = json.loads(summary.read_text())
        assert data["baseline"]["run_id"] == expected
        gate = data["candidates"][0]["metrics"][0]["gates"]
        against = next(g for g in gate if g["kind"] == "forgetting")["against"]
        assert against == {"run_id": expected, "model": "faithful"}

    # the forgetful candidate against the faithful model of the passing run: still a regression
    vs_faithful = harness(
        "run", str(stored.suite), "--db", str(db), "--only", "forgetful",
        "--baseline", "tag:prod", "--baseline-model", "faithful",
    )  # fmt: skip
    assert vs_faithful.returncode == 1, vs_faithful.stdout + vs_faithful.stderr
    assert (
        "[vs faithful of run"
        in Store(db).load_run(Store(db).resolve_run("last")).gates["forgetful"][1].message
    )


@pytest.mark.slow  # shares one real run of two models (~40 s on 2 cores)
def test_unknown_baselines_are_usage_errors_before_anything_runs(
    stored: Stored, tmp_path: Path
) -> None:
    db = stored.copy_db(tmp_path)
    before = len(Store(db).list_runs())
    run = ("run", str(stored.suite), "--db", str(db))
    for args, message in (
        (("--baseline", "tag:nope"), "no tag 'nope'"),
        (("--baseline", "1999"), "no run '1999'"),
        (("--baseline", "last", "--baseline-model", "nobody"), 'no evaluated model "nobody"'),
        (("--baseline-model", "base"), "--baseline-model needs --baseline"),
    ):
        result = harness(*run, *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    # a candidate the baseline run does not have (same-name rule) is named
    only_faithful = harness(*run, "--only", "faithful")
    assert only_faithful.returncode == 0
    missing = harness(*run, "--baseline", "last")
    assert missing.returncode == 2 and 'no evaluated model "forgetful"' in missing.stderr
    assert len(Store(db).list_runs()) == before + 1  # only the --only faithful run


def test_tags_move_list_and_delete(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    runs = [
        store.begin_run(suite_name="s", suite_path="s", suite_text="", suite_hash="", config={})
        for _ in range(2)
    ]
    assert store.tag_run(runs[0], "prod") is None
    assert store.tag_run(runs[1], "prod") == runs[0]  # moved
    assert store.resolve_run("tag:prod") == runs[1]
    assert [(n, r) for n, r, _ in store.list_tags()] == [("prod", runs[1])]
    store.delete_tag("prod")
    with pytest.raises(Exception, match="no tag 'prod'"):
        store.resolve_run("tag:prod")
    with pytest.raises(Exception, match="use letters"):
        store.tag_run(runs[0], "has space")


def test_a_version_2_store_migrates_to_tags(tmp_path: Path) -> None:
    from harness.store import SCHEMA_VERSION

    path = tmp_path / "v2.duckdb"
    with store_at_version(path, 2) as con:
        con.execute(
            "INSERT INTO runs (id, suite_name, started_at, status) "
            "VALUES ('20260101-000000-abcd', 's', now()::TIMESTAMP, 'passed')"
        )
    store = Store(path)
    assert SCHEMA_VERSION >= 3
    assert store.tag_run("20260101-000000-abcd", "old") is None
    assert store.source_run("20260101-000000-abcd") is None
    assert store.last_passing_run("s") == "20260101-000000-abcd"


def test_missing_baseline_cases_are_reported_not_dropped() -> None:
    from types import SimpleNamespace

    from harness.core.records import CaseResult, GateResult
    from harness.evaluation import annotate, missing_warning
    from harness.evaluation._baseline import Reference, current_cases

    planned = SimpleNamespace(
        capability="c", label="exact", cases=[SimpleNamespace(id="a"), SimpleNamespace(id="b")]
    )
    stored = [CaseResult("c", "exact", "a", "p", "1", "1", {"acc": 1.0}, True)]
    cases, missing = current_cases([planned], stored)  # type: ignore[list-item]
    assert [c.case_id for c in cases] == ["a"] and missing == [("c", "exact", "b")]
    reference = Reference("run1", "m", cases, [], missing)
    gate = GateResult("c", "forgetting", "exact.acc", 1.0, 1.0, 0.0, 0.05, "pass", "held")
    (annotated,) = annotate([gate], reference)
    assert annotated.details["baseline_missing"] == ["b"]
    assert annotated.details["against"] == {"run_id": "run1", "model": "m"}
    assert "1 case(s)" in (missing_warning("cand", reference) or "")


BEGIN_RUNS = """
import sys
from harness.store import Store
store = Store(sys.argv[1])
for _ in range(25):
    store.begin_run(suite_name="s", suite_path="s", suite_text="", suite_hash="", config={})
"""


def test_run_ids_stay_unique_when_processes_begin_runs_in_the_same_second(tmp_path: Path) -> None:
    db = str(tmp_path / "h.duckdb")
    Store(db)
    processes = [subprocess.Popen([sys.executable, "-c", BEGIN_RUNS, db]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in processes] == [0, 0, 0]
    ids = [r.id for r in Store(db).list_runs(limit=1000)]
    assert len(ids) == len(set(ids)) == 75


@pytest.mark.slow  # two real runs at once (~30 s on 2 cores)
def test_two_concurrent_runs_on_one_store_both_succeed_intact(tmp_path: Path) -> None:
    db = tmp_path / "h.duckdb"
    sums = subset(DATA / "sums.jsonl", tmp_path / "sums.jsonl", 60)
    suite = tmp_path / "s.yaml"
    suite.write_text(
        f"name: concurrent\nbase: builtin:tiny\ngeneration: {{max_new_tokens: 6, batch_size: 4}}\n"
        f"data: {{sums: {{path: {sums}}}}}\ncapabilities:\n  - name: arithmetic\n"
        "    forgetting: {metric: exact.acc, max_drop: 0.05}\n    checks: [{type: exact, data: sums}]\n"
        "candidates:\n  - {name: v2, model: builtin:tiny-v2}\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    command = [sys.executable, "-m", "harness.cli", "run", str(suite), "--db", str(db)]
    processes = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environ
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], "\n".join(outputs)
    store = Store(db)
    runs = store.list_runs()
    assert len(runs) == 2 and {r.status for r in runs} == {"passed"}
    for run in runs:
        loaded = store.load_run(run.id)
        assert {m.name for m in loaded.models} == {"base", "v2"}
        assert loaded.case_counts["base"].total == loaded.case_counts["v2"].total == 60
        assert len(loaded.gates["v2"]) == 1


def _workflow() -> tuple[dict, dict]:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "harness.yml").read_text())
    (job,) = workflow["jobs"].values()
    return workflow, job


def test_the_workflow_gates_pull_requests_on_the_runs_exit_code() -> None:
    workflow, job = _workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers
    gate = next(step for step in job["steps"] if "harness run" in step.get("run", ""))
    assert "if" not in gate and "continue-on-error" not in gate  # its exit code fails the check
    uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and all(s.get("if") == "always()" for s in uploads)  # kept when it fails


def test_the_workflow_cache_key_follows_files_that_exist() -> None:
    import re

    _, job = _workflow()
    keys = " ".join(str(s.get("with", {}).get("key", "")) for s in job["steps"])
    patterns = re.findall(r"'([^']+)'", " ".join(re.findall(r"hashFiles\(([^)]*)\)", keys)))
    assert patterns
    for pattern in patterns:  # a moved file would silently stop invalidating the cache
        assert list(REPO.glob(pattern)), f"hashFiles pattern {pattern!r} matches nothing"


@pytest.mark.slow
def test_the_workflow_steps_run_here_and_write_what_it_uploads(tmp_path: Path) -> None:
    """Each `run:` step after the install, as written, in a fresh checkout-like directory:
    they succeed on the shipped suite, and every path the upload steps name exists after."""
    _, job = _workflow()
    (tmp_path / "suites").symlink_to(REPO / "suites")
    summary = tmp_path / "step-summary.md"  # what the runner provides inside a step
    env = os.environ | {k: str(v) for k, v in job.get("env", {}).items()}
    env |= {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    harness_cli = f"{sys.executable} -m harness.cli"
    for step in job["steps"]:
        command = step.get("run", "")
        if not command or "pip install" in command:
            continue
        command = command.replace("harness ", f"{harness_cli} ")
        result = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, f"{step.get('name')}: {result.stderr[-2000:]}"
    uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    paths = [line.strip() for s in uploads for line in s["with"]["path"].splitlines()]
    assert paths
    for path in paths:
        assert (tmp_path / path).is_file(), (
            f"the workflow uploads {path}, which the run did not write"
        )


def test_the_gate_suite_validates() -> None:
    result = harness("validate", str(REPO / "suites" / "gate.yaml"))
    assert result.returncode == 0, result.stderr
