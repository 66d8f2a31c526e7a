"""The DuckDB results store, on real files: round trips, migrations, locking, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from helpers.store import store_at_version

from harness.core.errors import HarnessError
from harness.core.records import CaseResult, GateResult, MetricValue, ModelRecord
from harness.generation._cache import OutputCache
from harness.store import SCHEMA_VERSION, Store, StoreBusyError, redact_secrets

TRICKY = [
    "plain",
    "unicode: café, 日本語, emoji 🚀, RTL עברית",
    "quotes: 'single' \"double\" `back` \\backslash",
    "newlines:\nline two\r\nline three\ttab",
    "<script>alert('x')</script> & &amp; </td>",
    "sql: '); DROP TABLE runs; --",
    "",
]


def _begin(store: Store, suite: str = "qa", config: dict[str, object] | None = None) -> str:
    return store.begin_run(
        suite_name=suite,
        suite_path=f"suites/{suite}.yaml",
        suite_text=f"name: {suite}\n# ünïcode\n",
        suite_hash="sha256:abc",
        config=config or {},
    )


def _cases(n: int, output: str = "5") -> list[CaseResult]:
    return [
        CaseResult(
            capability="arithmetic",
            check="exact",
            case_id=f"case-{i}",
            prompt=TRICKY[i % len(TRICKY)],
            expected=None if i % 3 == 0 else TRICKY[(i + 1) % len(TRICKY)],
            output=output + TRICKY[(i + 2) % len(TRICKY)],
            scores={"acc": float(i % 2), "f1": 0.25},
            passed=[True, False, None][i % 3],
            details={"why": TRICKY[i % len(TRICKY)], "tokens": [1, 2, 3]},
        )
        for i in range(n)
    ]


METRICS = [
    MetricValue("arithmetic", "exact.acc", 0.5, 0.25, 0.75, 14),
    MetricValue("facts", "qa.f1", 0.9, 0.8, 0.95, 20),
]
GATES = [
    GateResult(
        "arithmetic", "forgetting", "exact.acc", 0.5, 0.6, -0.1, 0.05, "fail", "dropped 0.1"
    ),
    GateResult("facts", "improve", "qa.f1", 0.9, 0.5, 0.4, 0.2, "pass", "gained <0.4> 'ok'"),
    GateResult("facts", "threshold", "qa.f1", 0.9, None, None, 0.5, "pass", "above"),
]


def _run_python(code: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "results.duckdb"


def test_round_trip(db: Path) -> None:
    store = Store(db)
    run_id = _begin(store, config={"seed": 0, "generation": {"max_new_tokens": 16}})
    base = ModelRecord("base", "base", "builtin:tiny", "fp-base", "ok", info={"params": 640_000})
    cand = ModelRecord(
        "lora-r8", "candidate", "./ckpt", None, "error", error="OOM\n<b>", info={"t": 1.5}
    )
    store.record_model(run_id, base)
    store.record_model(run_id, cand)
    cases = _cases(14)
    store.record_evaluation(run_id, "base", cases, METRICS)
    store.record_evaluation(run_id, "lora-r8", cases[:3], METRICS[:1])
    store.record_gates(run_id, "lora-r8", GATES)
    store.record_loss_curve(run_id, "lora-r8", [(1, 2.5), (2, 2.0), (10, 0.5)])
    store.finish_run(run_id, status="regressed", exit_code=1)

    run = Store(db).load_run(run_id)
    assert run.models == (base, cand)
    assert run.model("lora-r8") == cand
    assert run.metrics == {"base": tuple(METRICS), "lora-r8": (METRICS[0],)}
    assert run.gates == {"lora-r8": tuple(GATES)}
    assert run.loss_curves == {"lora-r8": ((1, 2.5), (2, 2.0), (10, 0.5))}
    assert run.case_counts["base"].total == 14
    assert run.case_counts["base"].passed == 5 and run.case_counts["base"].failed == 5
    assert run.config == {"seed": 0, "generation": {"max_new_tokens": 16}}
    assert run.suite_text == "name: qa\n# ünïcode\n"
    assert run.library_versions["duckdb"] == duckdb.__version__
    assert "python" in run.library_versions and run.harness_version
    summary = run.summary
    assert (summary.status, summary.exit_code, summary.models) == (
        "regressed",
        1,
        ("base", "lora-r8"),
    )
    assert (summary.gates_passed, summary.gates_failed) == (2, 1)
    assert summary.suite_hash == "sha256:abc" and summary.pid == os.getpid()
    assert summary.duration_s is not None and summary.duration_s >= 0

    assert store.load_cases(run_id, "base") == [("base", c) for c in cases]
    everything = store.load_cases(run_id)
    assert [m for m, _ in everything] == ["base"] * 14 + ["lora-r8"] * 3
    assert store.load_cases(run_id, "nobody") == []


def test_strings_are_stored_verbatim(db: Path) -> None:
    store = Store(db)
    run_id = _begin(store)
    store.record_evaluation(run_id, "base", _cases(len(TRICKY)), [])
    stored = duckdb.connect(str(db))
    try:
        prompts = [r[0] for r in stored.execute("SELECT prompt FROM cases ORDER BY seq").fetchall()]
    finally:
        stored.close()
    assert prompts == TRICKY


def test_store_holds_no_connection_between_calls(db: Path) -> None:
    store = Store(db)
    _begin(store)
    # Another process can open the file for writing while our Store object is alive.
    proc = _run_python(f"import duckdb; duckdb.connect({str(db)!r}).close(); print('ok')")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.strip() == "ok"


def test_migrations_recorded_and_idempotent(db: Path) -> None:
    Store(db).list_runs()  # migrations run on a store's first open
    Store(db).list_runs()
    con = duckdb.connect(str(db))
    try:
        versions = con.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    finally:
        con.close()
    assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 1))
    assert {"runs", "models", "cases", "metrics", "gates", "loss_curves", "output_cache"} <= tables


def test_newer_schema_refused(db: Path) -> None:
    Store(db).list_runs()
    con = duckdb.connect(str(db))
    con.execute("INSERT INTO schema_migrations VALUES (?, now()::TIMESTAMP)", [SCHEMA_VERSION + 1])
    con.close()
    with pytest.raises(HarnessError, match="newer harness") as info:
        Store(db).list_runs()
    assert str(db) in str(info.value) and "Upgrade harness" in str(info.value)


def test_not_a_duckdb_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, I am not a database\n" * 100)
    with pytest.raises(HarnessError, match="cannot open results store"):
        Store(path)


def test_list_runs_order_and_filter(db: Path) -> None:
    store = Store(db)
    ids = []
    for suite in ["qa", "chat", "qa", "qa"]:
        ids.append(_begin(store, suite))
        time.sleep(0.002)
    listed = [r.id for r in store.list_runs()]
    assert listed == ids[::-1]  # newest first
    assert all(len(i) == len("20261123-165012-3fa2") for i in ids)
    qa = store.list_runs(suite="qa")
    assert [r.suite_name for r in qa] == ["qa"] * 3
    assert len(store.list_runs(limit=2)) == 2
    assert store.list_runs(suite="missing") == []
    assert all(r.status == "running" for r in store.list_runs())


def test_resolve_run(db: Path) -> None:
    store = Store(db)
    with pytest.raises(HarnessError, match="no runs"):
        store.resolve_run("last")
    first, second = _begin(store), _begin(store)
    assert store.resolve_run("last") == second
    assert store.resolve_run("latest") == second
    assert store.resolve_run(first) == first
    with pytest.raises(HarnessError, match="ambiguous") as info:
        store.resolve_run(first[:8])  # same day
    assert set(info.value.problems) == {first, second}
    with pytest.raises(HarnessError, match="no run 'nope'") as info:
        store.resolve_run("nope")
    assert set(info.value.problems) == {first, second}


def test_resolve_run_unique_prefix(db: Path) -> None:
    store = Store(db)
    run_id = _begin(store)
    assert store.resolve_run(run_id[:4]) == run_id


def test_output_cache(db: Path) -> None:
    store = Store(db)
    assert store.get_many("generate", []) == {}
    store.put_many("generate", {"k1": {"text": "a\n<é>"}, "k2": ["x", 1, None], "k3": 0.5})
    store.put_many("loglik", {"k1": -1.25})
    got = store.get_many("generate", ["k1", "k2", "missing"])
    assert got == {"k1": {"text": "a\n<é>"}, "k2": ["x", 1, None]}
    store.put_many("generate", {"k1": "new"})
    assert Store(db).get_many("generate", ["k1", "k3"]) == {"k1": "new", "k3": 0.5}
    assert store.get_many("loglik", ["k1", "k2"]) == {"k1": -1.25}
    store.put_many("generate", {})
    cache: OutputCache = store  # structurally the engine's cache protocol
    assert cache.get_many("generate", ["k3"]) == {"k3": 0.5}


def test_output_cache_scope_reads_one_models_entries_at_once(db: Path) -> None:
    store = Store(db)
    store.put_many("generate", {"k1": "a", "k2": {"x": 1}}, scope="0.1.0:fp1")
    store.put_many("rolling", {"k1": -2.5}, scope="0.1.0:fp1")
    store.put_many("generate", {"k3": "c"}, scope="0.1.0:fp2")
    store.put_many("generate", {"k4": "d"})
    assert store.get_scope("0.1.0:fp1") == {
        ("generate", "k1"): '"a"',
        ("generate", "k2"): '{"x": 1}',
        ("rolling", "k1"): "-2.5",
    }
    assert store.get_scope("nobody") == {}
    assert store.get_many("generate", ["k1", "k3", "k4"]) == {"k1": "a", "k3": "c", "k4": "d"}


def test_scopes_read_ahead_ride_on_later_opens_one_group_each(db: Path) -> None:
    store = Store(db)
    store.put_many("generate", {"k1": "a"}, scope="fp1")
    store.put_many("generate", {"k2": "b"}, scope="fp2")
    store.put_many("evidence", {"e2": {"p": 0.5}}, scope="ev2")
    store.read_ahead([["fp1"], ["fp2", "ev2"]])
    opens = store.opens
    store.list_runs()  # any open reads the first group
    assert store.get_scope("fp1") == {("generate", "k1"): '"a"'}
    assert store.opens == opens + 1
    store.prefetch_scopes(["fp2", "ev2"])  # its own open reads it, and the group is used up
    store.prefetch_scopes(["fp2", "ev2"])  # read already: no open
    assert store.opens == opens + 2
    assert store.get_scope("ev2") == {("evidence", "e2"): '{"p": 0.5}'}
    assert store.get_scope("fp2") == {("generate", "k2"): '"b"'}
    store.put_many("generate", {"k3": "c"}, scope="fp2")
    assert store.get_scope("fp2") == {  # handed out once: read again, with what was put since
        ("generate", "k2"): '"b"',
        ("generate", "k3"): '"c"',
    }


def test_a_version_3_store_migrates_and_keeps_its_cached_outputs(db: Path) -> None:
    with store_at_version(db, 3) as con:
        con.execute("INSERT INTO output_cache VALUES ('generate', 'k', '\"old\"', now())")
    store = Store(db)
    assert store.get_many("generate", ["k"]) == {"k": "old"}  # still found by its key
    assert store.get_scope("0.1.0:fp") == {}  # it has no scope
    store.put_many("generate", {"k": "new"}, scope="0.1.0:fp")
    assert store.get_scope("0.1.0:fp") == {("generate", "k"): '"new"'}
    with duckdb.connect(str(db)) as con:
        versions = con.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 1))


def test_a_version_4_store_keeps_its_two_outcome_gates(db: Path) -> None:
    with store_at_version(db, 4) as con:
        con.execute(
            "INSERT INTO runs (id, suite_name, started_at, status) VALUES ('r1', 's', now(), 'passed')"
        )
        for seq, passed in enumerate((True, False)):
            con.execute(
                "INSERT INTO gates (run_id, model_name, seq, capability, kind, metric, value, "
                "limit_value, passed, message) VALUES ('r1', 'c', ?, 'cap', 'threshold', 'm', 1, "
                "0.5, ?, 'old')",
                [seq, passed],
            )
    run = Store(db).load_run("r1")
    assert [g.outcome for g in run.gates["c"]] == ["pass", "fail"]
    assert (run.summary.gates_passed, run.summary.gates_failed) == (1, 1)


def test_a_version_5_store_learns_which_way_its_metrics_point(db: Path) -> None:
    with store_at_version(db, 5) as con:
        con.execute(
            "INSERT INTO runs (id, suite_name, started_at, status) VALUES ('r1', 's', now(), 'passed')"
        )
        names = ("ppl.perplexity", "wiki.byte_perplexity", "qa.f1", "perplexity_like.acc")
        for seq, name in enumerate(names):
            con.execute(
                "INSERT INTO metrics VALUES ('r1', 'base', ?, 'cap', ?, 1.0, 0.9, 1.1, 3)",
                [seq, name],
            )
    metrics = Store(db).load_run("r1").metrics["base"]
    assert [(m.metric, m.lower_is_better) for m in metrics] == [
        ("ppl.perplexity", True),
        ("wiki.byte_perplexity", True),
        ("qa.f1", False),
        ("perplexity_like.acc", False),
    ]


def test_metric_direction_is_stored_with_the_metric(db: Path) -> None:
    store = Store(db)
    run_id = store.begin_run(
        suite_name="s", suite_path="s", suite_text="", suite_hash="", config={}
    )
    base = ModelRecord("base", "base", "builtin:tiny", "f", "ok")
    loss = MetricValue("cap", "custom.loss", 0.5, 0.4, 0.6, 3, lower_is_better=True)
    score = MetricValue("cap", "custom.perplexity", 0.5, 0.4, 0.6, 3, lower_is_better=False)
    store.record_model_result(run_id, base, [], [loss, score], [])
    stored = store.load_run(run_id).metrics["base"]
    assert [m.lower_is_better for m in stored] == [True, False]  # as recorded, not by name


def test_a_models_results_and_loss_curve_are_written_in_one_open(db: Path) -> None:
    store = Store(db)
    run_id = _begin(store)
    opens = store.opens
    model = ModelRecord("lora", "candidate", "ckpt/lora", "fp", "ok")
    curve = [(1, 2.5), (2, 1.5)]
    store.record_model_result(run_id, model, _cases(3), METRICS, GATES, loss_curve=curve)
    store.record_model_result(run_id, model, _cases(3), METRICS, GATES, loss_curve=curve)
    assert store.opens == opens + 2
    run = store.load_run(run_id)
    assert run.loss_curves["lora"] == ((1, 2.5), (2, 1.5))  # replaced, not doubled
    assert run.case_counts["lora"].total == 3 and len(run.gates["lora"]) == 3


def test_record_evaluation_replaces(db: Path) -> None:
    store = Store(db)
    run_id = _begin(store)
    store.record_model(run_id, ModelRecord("base", "base", "builtin:tiny", "fp", "ok"))
    store.record_evaluation(run_id, "base", _cases(10, "old"), METRICS)
    store.record_evaluation(run_id, "base", _cases(4, "new"), METRICS[:1])
    store.record_gates(run_id, "base", GATES)
    store.record_gates(run_id, "base", GATES[:1])
    store.record_loss_curve(run_id, "base", [(1, 1.0), (2, 0.5)])
    store.record_loss_curve(run_id, "base", [(5, 0.1)])
    store.record_model(run_id, ModelRecord("base", "base", "builtin:tiny", "fp2", "ok"))
    run = store.load_run(run_id)
    cases = store.load_cases(run_id)
    assert len(cases) == 4 and all(c.output.startswith("new") for _, c in cases)
    assert run.metrics == {"base": (METRICS[0],)}
    assert run.gates == {"base": (GATES[0],)}
    assert run.loss_curves == {"base": ((5, 0.1),)}
    assert [m.fingerprint for m in run.models] == ["fp2"]


def test_record_evaluation_is_fast(db: Path) -> None:
    store = Store(db)
    run_id = _begin(store)
    cases = _cases(10_000)
    start = time.perf_counter()
    store.record_evaluation(run_id, "base", cases, METRICS)
    elapsed = time.perf_counter() - start
    assert store.load_run(run_id).case_counts["base"].total == 10_000
    assert elapsed < 3.0, f"record_evaluation of 10k cases took {elapsed:.2f} s"


def test_writes_to_unknown_run_and_bad_status(db: Path) -> None:
    store = Store(db)
    with pytest.raises(HarnessError, match="no run"):
        store.record_gates("20990101-000000-dead", "base", GATES)
    with pytest.raises(HarnessError, match="no run"):
        store.load_run("20990101-000000-dead")
    run_id = _begin(store)
    with pytest.raises(ValueError, match="passed, inconclusive, regressed, error"):
        store.finish_run(run_id, status="done", exit_code=0)


def test_secrets_filtered_from_config(db: Path) -> None:
    store = Store(db)
    config = {
        "api_key": "sk-123",
        "judge": {"OPENAI_API_KEY": "sk-456", "model": "gpt", "Authorization": "Bearer x"},
        "hf_token": "hf_abc",
        "db_password": "hunter2",
        "client_secret": "s",
        "max_new_tokens": 16,
        "pad_token": "<pad>",
        "pad_token_id": 0,
        "tokenizer": "./tok",
        "lists": [{"token": "t"}],
        "empty_token": None,
    }
    run_id = _begin(store, config=config)
    stored = store.load_run(run_id).config
    assert stored == {
        "api_key": "***",
        "judge": {"OPENAI_API_KEY": "***", "model": "gpt", "Authorization": "***"},
        "hf_token": "***",
        "db_password": "***",
        "client_secret": "***",
        "max_new_tokens": 16,
        "pad_token": "<pad>",
        "pad_token_id": 0,
        "tokenizer": "./tok",
        "lists": [{"token": "***"}],
        "empty_token": None,
    }
    raw = db.read_bytes()
    for secret in (b"sk-123", b"sk-456", b"hf_abc", b"hunter2"):
        assert secret not in raw
    assert redact_secrets(config) is not config and config["api_key"] == "sk-123"


def test_config_objects_are_stored_as_json(db: Path) -> None:
    @dataclass
    class Judge:
        model: str
        api_key: str

    store = Store(db)
    run_id = _begin(
        store, config={"judge": Judge("gpt", "sk-999"), "path": Path("a/b"), "tags": {"x"}}
    )
    assert store.load_run(run_id).config == {
        "judge": {"model": "gpt", "api_key": "***"},
        "path": "a/b",
        "tags": ["x"],
    }


def test_dead_writer_lists_as_interrupted(db: Path) -> None:
    store = Store(db)
    mine = _begin(store, "mine")
    proc = _run_python(
        f"""
        from harness.store import Store
        s = Store({str(db)!r})
        print(s.begin_run(suite_name="dead", suite_path="d.yaml", suite_text="", suite_hash="h",
                          config={{}}))
        """
    )
    out, _ = proc.communicate(timeout=60)
    dead = out.strip()
    by_id = {r.id: r for r in store.list_runs()}
    assert by_id[dead].status == "interrupted"
    assert by_id[mine].status == "running"  # this process is alive
    assert store.load_run(dead).status == "interrupted"
    store.finish_run(mine, status="passed", exit_code=0)
    assert store.load_run(mine).status == "passed"


HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.readline()
con.close()
print("released", flush=True)
sys.stdin.readline()
"""


def test_busy_store_raises_then_waits(db: Path) -> None:
    Store(db)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "holding"
        start = time.perf_counter()
        with pytest.raises(StoreBusyError) as info:
            Store(db, lock_timeout_s=0.3).list_runs()
        assert 0.3 <= time.perf_counter() - start < 5
        message = info.value.render()
        assert str(db) in message and f"process {holder.pid}" in message
        assert "--db" in message and "try again" in message
        assert info.value.holder_pid == holder.pid

        def release() -> None:
            assert holder.stdin is not None
            holder.stdin.write("go\n")
            holder.stdin.flush()

        timer = threading.Timer(0.5, release)
        timer.start()
        start = time.perf_counter()
        waiting = Store(db, lock_timeout_s=30)  # waits for the holder, then migrates (no-op)
        run_id = _begin(waiting)
        assert time.perf_counter() - start >= 0.4
        assert holder.stdout.readline().strip() == "released"
        assert waiting.resolve_run("last") == run_id
        timer.join()
    finally:
        holder.kill()
        holder.wait()


WRITER = """
import sys
from harness.core.records import CaseResult, MetricValue, ModelRecord
from harness.store import Store
store = Store(sys.argv[1])
cases = [CaseResult("cap", "exact", f"c{i}", f"prompt {i}\\n<é>", "5", "5", {"acc": 1.0}, True)
         for i in range(300)]
metric = [MetricValue("cap", "exact.acc", 1.0, 0.9, 1.0, 300)]
while True:
    run_id = store.begin_run(suite_name="loop", suite_path="l.yaml", suite_text="t",
                             suite_hash="h", config={})
    store.record_model(run_id, ModelRecord("base", "base", "builtin:tiny", "fp", "ok"))
    store.record_evaluation(run_id, "base", cases, metric)
    store.record_loss_curve(run_id, "base", [(s, 1.0 / s) for s in range(1, 50)])
    store.finish_run(run_id, status="passed", exit_code=0)
    print(run_id, flush=True)
"""


def test_sigkill_mid_write_leaves_committed_runs_intact(db: Path) -> None:
    Store(db)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    finished = [writer.stdout.readline().strip() for _ in range(4)]
    time.sleep(0.03)  # land somewhere inside the next run's writes
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    # Whatever the last line raced in before the kill was committed too.
    finished += [line.strip() for line in writer.stdout.read().splitlines() if line.strip()]

    store = Store(db)
    runs = {r.id: r for r in store.list_runs(suite="loop", limit=1000)}
    for run_id in finished:
        assert runs[run_id].status == "passed"
        run = store.load_run(run_id)
        assert run.case_counts["base"].total == 300
        assert len(run.loss_curves["base"]) == 49
        assert len(store.load_cases(run_id)) == 300
    for run_id in set(runs) - set(finished):  # at most the run the kill interrupted
        assert runs[run_id].status in ("interrupted", "passed")
    assert len(set(runs) - set(finished)) <= 1


def test_last_is_the_run_begun_last_even_within_one_second(db: Path) -> None:
    """Ids hold the second and a random suffix; a cached rerun takes under a second, so "last"
    and the newest-first listing go by start time, not by id."""
    store = Store(db)
    begun = [_begin(store) for _ in range(12)]
    assert len({run_id[:15] for run_id in begun}) < len(begun)  # some share their second
    assert store.resolve_run("last") == begun[-1]
    assert [s.id for s in store.list_runs(limit=100)] == begun[::-1]
