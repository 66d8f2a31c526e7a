"""`harness run` end to end on the built-in model: exit codes, the store, the JSON summary."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.cli import harness
from helpers.models import damaged_copy

from harness.store import Store

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "suites" / "data"

SUITE = f"""\
name: gate-test
base: builtin:tiny
generation: {{max_new_tokens: 8, batch_size: 16}}
data:
  sums: {{path: {DATA / "sums.jsonl"}}}
  facts: {{path: {DATA / "known_facts.jsonl"}}}
capabilities:
  - name: arithmetic
    forgetting: {{metric: exact.acc, max_drop: 0.05}}
    checks: [{{type: exact, data: sums}}]
  - name: facts
    forgetting: {{metric: qa.em, max_drop: 0.1}}
    checks: [{{type: qa, data: facts}}]
candidates:
"""


@pytest.fixture(scope="module")
def candidates(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("candidates")
    faithful = root / "faithful"
    shutil.copytree(tiny_dir, faithful)
    return {"faithful": faithful, "forgetful": damaged_copy(tiny_dir, root / "forgetful")}


def suite_with(tmp_path: Path, candidates: dict[str, Path]) -> Path:
    lines = "".join(f"  - {{name: {name}, model: {path}}}\n" for name, path in candidates.items())
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE + lines)
    return path


@pytest.mark.slow
def test_forgetful_candidate_fails_the_gate_and_faithful_one_passes(
    tmp_path: Path, candidates: dict[str, Path]
) -> None:
    suite = suite_with(tmp_path, candidates)
    db, summary = tmp_path / "h.duckdb", tmp_path / "summary.json"
    result = harness("run", str(suite), "--db", str(db), "--json", str(summary))
    assert result.returncode == 1, result.stdout + result.stderr
    verdicts = {c["name"]: c["status"] for c in json.loads(summary.read_text())["candidates"]}
    assert verdicts == {"faithful": "passed", "forgetful": "regressed"}
    assert "REGRESSED    forgetful" in result.stdout and "arithmetic" in result.stdout

    only_faithful = harness("run", str(suite), "--db", str(db), "--only", "faithful")
    assert only_faithful.returncode == 0, only_faithful.stdout + only_faithful.stderr


@pytest.mark.slow
def test_example_suite_end_to_end(tmp_path: Path) -> None:
    """Every backend trains from the base; the gates separate the methods that forgot."""
    db, summary = tmp_path / "h.duckdb", tmp_path / "s.json"
    result = harness(
        "run", str(REPO / "suites" / "qa.yaml"), "--db", str(db), "--json", str(summary)
    )
    assert result.returncode == 1, result.stdout + result.stderr  # some methods forget: gate holds
    data = json.loads(summary.read_text())
    verdicts = {c["name"]: c["status"] for c in data["candidates"]}
    assert set(verdicts) == {
        "tiny-v2",
        "full",
        "lora",
        "lora+merged",
        "lora-replay",
        "qlora",
        "dpo",
        "grpo",
    }
    assert verdicts["tiny-v2"] == verdicts["lora-replay"] == "passed"
    assert verdicts["full"] == "regressed"
    by_name = {c["name"]: c for c in data["candidates"]}
    replay_f1 = next(
        m
        for m in by_name["lora-replay"]["metrics"]
        if m["metric"] == "qa.f1" and m["capability"] == "new_facts"
    )
    assert replay_f1["value"] - replay_f1["base_value"] >= 0.5 and replay_f1["gates"][0]["passed"]
    for name in ("full", "lora", "lora-replay", "qlora", "dpo", "grpo"):
        training = by_name[name]["training"]
        assert training["backend"] == name.split("-")[0] and training["wall_seconds"] > 0
        assert 0 < training["trainable_parameters"] <= training["total_parameters"]
    assert (
        by_name["lora"]["training"]["trainable_parameters"]
        < by_name["full"]["training"]["trainable_parameters"]
    )
    assert by_name["lora"]["info"]["merge_agreement"]["cases"] > 0
    assert all(
        m["ci"][0] <= m["value"] <= m["ci"][1] for c in data["candidates"] for m in c["metrics"]
    )
    assert "methods: quality (gated metrics) and cost" in result.stdout

    run = Store(db).load_run(data["run_id"])
    assert (
        run.status == "regressed" and len(run.models) == 9 and len(run.loss_curves["full"]) == 150
    )
    assert len(Store(db).load_cases(data["run_id"], "lora-replay")) == 20 + 60 + 60 + 100 + 100 + 20
    assert harness("runs", "--db", str(db)).returncode == 0
    shown = harness("show", "last", "--db", str(db))
    assert shown.returncode == 0 and "lora-replay" in shown.stdout and "new_facts" in shown.stdout


def test_a_candidate_that_cannot_load_exits_3_and_the_rest_are_recorded(
    tmp_path: Path, tiny_dir: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    small = SUITE.replace(
        "data: sums}]", "cases: [{prompt: 'Q: What is 2 plus 3? A:', expected: '5'}]}]"
    )
    small = small.split("  - name: facts")[0] + "candidates:\n"
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        small + f"  - {{name: broken, model: {broken}}}\n  - {{name: same, model: {tiny_dir}}}\n"
    )
    db, summary = tmp_path / "h.duckdb", tmp_path / "s.json"
    result = harness("run", str(suite), "--db", str(db), "--json", str(summary))
    assert result.returncode == 3, result.stdout + result.stderr
    statuses = {
        c["name"]: (c["status"], c["error"]) for c in json.loads(summary.read_text())["candidates"]
    }
    assert statuses["same"] == ("inconclusive", None)  # one case cannot show it held
    assert statuses["broken"][0] == "error" and statuses["broken"][1]
    run = Store(db).load_run(Store(db).resolve_run("last"))
    assert run.model("broken").status == "error" and run.model("same").status == "ok"


def test_a_fully_cached_rerun_never_loads_the_models(tmp_path: Path, tiny_dir: Path) -> None:
    from harness.run import run_suite
    from harness.suite import load_suite

    suite = load_suite(suite_with(tmp_path, {"same": tiny_dir}))
    store = Store(tmp_path / "h.duckdb")
    first, second = run_suite(suite, store), run_suite(suite, store)
    assert [m.metrics for m in (first.base, *first.candidates)] == [
        m.metrics for m in (second.base, *second.candidates)
    ]
    for model in (second.base, *second.candidates):
        assert model.record.info["loaded"] is False and model.record.info["requests_computed"] == 0
        assert model.record.info["parameters"] > 0


def test_usage_errors_exit_2_before_any_work(tmp_path: Path, tiny_dir: Path) -> None:
    suite = suite_with(tmp_path, {"same": tiny_dir})
    db = tmp_path / "h.duckdb"
    result = harness("run", str(suite), "--db", str(db), "--only", "sane")
    assert (
        result.returncode == 2
        and 'did you mean "same"' in result.stderr
        and "Traceback" not in result.stderr
    )
    assert not db.exists()  # nothing ran, nothing was recorded
    assert harness("run", str(tmp_path / "missing.yaml")).returncode == 2
    unknown = harness("run", str(suite), "--db", str(db), "--baseline", "nosuchrun")
    assert unknown.returncode == 2 and not db.exists(), unknown.stderr  # no store created
    for reading in (("runs",), ("show", "last"), ("report",), ("tag",)):
        assert harness(*reading, "--db", str(db)).returncode == 2
        assert not db.exists(), reading


def test_a_damaged_store_is_refused_by_name_and_never_written(tmp_path: Path) -> None:
    db = tmp_path / "h.duckdb"
    quick = tmp_path / "quick.yaml"
    quick.write_text(
        "name: quick\nbase: builtin:tiny\ncapabilities:\n  - name: c\n"
        "    checks: [{type: exact, cases: [{prompt: 'Q: What is 2 plus 3? A:', expected: '5'}]}]\n"
    )
    for _ in range(3):  # enough rows that the file has several blocks
        assert harness("run", str(quick), "--db", str(db)).returncode == 0
    with db.open("r+b") as handle:
        handle.truncate(db.stat().st_size // 2)
    before = (db.stat().st_size, db.stat().st_mtime_ns)
    for command in (("runs",), ("run", str(quick)), ("tag", "last", "x"), ("report",)):
        result = harness(*command, "--db", str(db))
        assert result.returncode == 2, (command, result.stdout + result.stderr)
        assert f"results store {db} is damaged" in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr
    assert (db.stat().st_size, db.stat().st_mtime_ns) == before  # never written to
    assert not db.with_name("h.duckdb.wal").exists()


def many_sums(path: Path, count: int) -> Path:
    rows = [
        {"id": f"s{a}-{b}", "prompt": f"Q: What is {a} plus {b}? A:", "expected": str(a + b)}
        for a in range(10, 60)
        for b in range(10, 60)
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows[:count]) + "\n")
    return path


@pytest.mark.slow
def test_a_killed_run_leaves_a_readable_store_and_the_rerun_reuses_its_work(tmp_path: Path) -> None:
    db = tmp_path / "h.duckdb"
    quick = tmp_path / "quick.yaml"
    quick.write_text(
        "name: quick\nbase: builtin:tiny\ncapabilities:\n  - name: c\n    checks: [{type: exact, cases: [{prompt: 'Q: What is 2 plus 3? A:', expected: '5'}]}]\n"
    )
    assert harness("run", str(quick), "--db", str(db)).returncode == 0
    finished = Store(db).resolve_run("last")

    data = many_sums(tmp_path / "many.jsonl", 1500)
    suite = tmp_path / "long.yaml"
    suite.write_text(
        f"name: long\nbase: builtin:tiny\ngeneration: {{batch_size: 4}}\ncapabilities:\n  - name: sums\n    checks: [{{type: exact, data: d}}]\ndata: {{d: {{path: {data}}}}}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(suite), "--db", str(db)],
        env=os.environ.copy(),
    )
    _wait_for_second_run(db, finished, process)
    process.send_signal(signal.SIGKILL)
    process.wait()

    store = Store(db)
    runs = {r.id: r for r in store.list_runs()}
    assert runs[finished].status == "passed" and len(store.load_cases(finished)) == 1
    assert [r.status for r in runs.values() if r.id != finished] == ["interrupted"]

    rerun = harness("run", str(suite), "--db", str(db), "--json", str(tmp_path / "s.json"))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    base = json.loads((tmp_path / "s.json").read_text())["base"]
    assert base["info"]["requests_cached"] > 0  # batches finished before the kill were kept
    assert base["info"]["requests_cached"] + base["info"]["requests_computed"] == 1500


def _cached_outputs(db: Path) -> int:
    """Rows in the output cache, read while the run holds the file only between its writes."""
    import duckdb

    for _ in range(200):
        try:
            with duckdb.connect(str(db), read_only=True) as connection:
                return connection.execute("SELECT count(*) FROM output_cache").fetchone()[0]
        except duckdb.Error:
            time.sleep(0.05)
    raise AssertionError("the store stayed locked")


def _wait_for_second_run(db: Path, finished: str, process: subprocess.Popen[bytes]) -> None:
    """Return once the second run has written some batches (and is still running)."""
    before = _cached_outputs(db)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        if _cached_outputs(db) >= before + 40:
            return
        time.sleep(0.2)
    raise AssertionError("the second run never wrote its first batches")


@pytest.mark.slow  # trains two LoRA candidates, one of them killed with SIGKILL halfway
def test_a_run_killed_while_training_reuses_the_finished_candidate(tmp_path: Path) -> None:
    db, summary = tmp_path / "h.duckdb", tmp_path / "s.json"
    suite = tmp_path / "train.yaml"
    suite.write_text(
        # A seed of its own: artifacts trained by an earlier session must not be found.
        f"name: killed\nbase: builtin:tiny\nseed: {time.time_ns() % 2**31}\n"
        f"data: {{train: {{path: {DATA / 'new_facts_train.jsonl'}}}}}\n"
        "capabilities:\n  - name: c\n    checks: [{type: exact, cases: [{prompt: 'Q: What is 2 plus 3? A:', expected: '5'}]}]\n"
        "candidates:\n"
        "  - {name: quick, backend: lora, data: train, args: {max_steps: 5}}\n"
        "  - {name: slow, backend: lora, data: train, args: {max_steps: 1500}}\n"
    )
    env = os.environ.copy()
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(suite), "--db", str(db)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # "quick" is recorded: "slow" is training now
        assert process.poll() is None, "the run ended before it could be killed"
        try:
            runs = Store(db, lock_timeout_s=1, create=False, for_writing=False).list_runs()
            if runs and "quick" in runs[0].models:
                break
        except Exception:  # not created yet, or held by the run between its writes
            pass
        time.sleep(0.3)
    process.send_signal(signal.SIGKILL)  # the slow candidate is training
    process.wait()
    killed = Store(db).list_runs()[0]
    assert killed.status == "interrupted" and "slow" not in killed.models, killed

    rerun = harness("run", str(suite), "--db", str(db), "--json", str(summary))
    assert rerun.returncode in (0, 1), rerun.stdout + rerun.stderr
    trained = {c["name"]: c["training"] for c in json.loads(summary.read_text())["candidates"]}
    assert trained["quick"]["reused_artifact"] is True  # finished before the kill: not redone
    assert trained["slow"]["reused_artifact"] is False  # killed halfway: trained again, whole
    run = Store(db).load_run(json.loads(summary.read_text())["run_id"])
    assert len(run.loss_curves["slow"]) == 1500


def test_evaluation_shows_batches_tokens_per_second_and_an_eta_in_a_ci_log(
    tmp_path: Path, tiny_dir: Path
) -> None:
    """Piped (a CI log), evaluation says how far it is, not just that it started."""
    suite = tmp_path / "progress.yaml"
    suite.write_text(
        f"name: progress\nbase: builtin:tiny\ngeneration: {{max_new_tokens: 8, batch_size: 10}}\n"
        f"data: {{sums: {{path: {DATA / 'sums.jsonl'}}}}}\n"
        "capabilities:\n  - name: arithmetic\n    checks: [{type: exact, data: sums}]\n"
    )
    result = harness("run", str(suite), "--db", str(tmp_path / "h.duckdb"))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("[base] evaluating ")]
    progress = [line for line in lines if "tok/s" in line]
    assert len(progress) >= 3, result.stderr  # 100 cases in batches of 10: several updates
    last = progress[-1]
    assert "100/100 cases" in last and "10 batches" in last, last
    assert all("ETA" in line for line in progress[:-1]), progress


@pytest.mark.slow  # three evaluations of the tiny model, two of them quantized (~20 s)
def test_a_quantized_candidate_is_gated_like_any_other(tmp_path: Path) -> None:
    """`quantize: int8 | nf4` loads the model through bitsandbytes: its own fingerprint, its
    weights' memory recorded beside its verdict."""
    suite = tmp_path / "quantized.yaml"
    suite.write_text(
        SUITE
        + "  - {name: int8, model: builtin:tiny, quantize: int8}\n"
        + "  - {name: nf4, model: builtin:tiny, quantize: nf4}\n"
    )
    summary, report = tmp_path / "s.json", tmp_path / "r.html"
    db = str(tmp_path / "h.duckdb")
    result = harness("run", str(suite), "--db", db, "--json", str(summary), "--report", str(report))
    assert result.returncode in (0, 1), result.stdout + result.stderr  # verdicts, not errors
    data = json.loads(summary.read_text())
    base = data["base"]["info"]
    candidates = {c["name"]: c for c in data["candidates"]}
    assert {c["status"] for c in candidates.values()} <= {"passed", "inconclusive", "regressed"}
    prints = {data["base"]["fingerprint"], *(c["fingerprint"] for c in candidates.values())}
    assert len(prints) == 3  # quantized weights are other weights
    for name in ("int8", "nf4"):
        info = candidates[name]["info"]
        assert info["quantized"] == name
        assert info["parameters"] == base["parameters"]
        assert info["weights_bytes"] < base["weights_bytes"]
    # the report puts that saving beside the verdict, as a ratio to the base
    section = report.read_text().split("Quantized: quality beside cost", 1)[1].split("<h3>")[0]
    ratios = [float(r) for r in re.findall(r">(\d+\.\d+)x<", section)]
    assert "int8" in section and "nf4" in section and any(r < 1 for r in ratios), section


def test_quantize_is_for_model_candidates_not_trained_ones(tmp_path: Path) -> None:
    suite = tmp_path / "bad.yaml"
    suite.write_text(SUITE + "  - {name: q, backend: lora, data: facts, quantize: nf4}\n")
    result = harness("validate", str(suite))
    assert result.returncode == 2 and "backend: qlora" in result.stdout + result.stderr
