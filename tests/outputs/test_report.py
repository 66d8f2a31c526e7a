"""The HTML report, opened in a real headless Chromium: verdicts, escaping, method comparison.

Two real stores: one written by `harness run --report` on a small suite against builtin:tiny (a
prompt and an expected answer carry an XSS payload), one recorded by hand through the Store API
(a model *output* carrying the payload needs a model that says it, and trained candidates carry
training statistics and loss curves).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.browser import assert_clean, dump_dom, open_in_chromium

from harness.cli import main
from harness.core.records import CaseResult, GateResult, MetricValue, ModelRecord
from harness.outputs.html import build_history, build_report, load_view
from harness.outputs.html._render import json_script
from harness.store import Store

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "suites" / "data"

# Each payload would set a marker on <html> if it ever ran; the tests assert the marker is absent.
SCRIPT_PAYLOAD = "<script>document.documentElement.setAttribute('data-pwned','script')</script>"
IMG_PAYLOAD = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','img')\">"
BREAKOUT = "</script><script>document.documentElement.setAttribute('data-pwned','json')</script>"
PLANTED_PROMPT = f"{SCRIPT_PAYLOAD} {IMG_PAYLOAD} Q: What is 2 plus 3? A:"


# ------------------------------------------------------------------------------- chromium


# ---------------------------------------------------------------------- a real run's report


def _suite(tmp: Path) -> Path:
    sums = (DATA / "sums.jsonl").read_text().splitlines()[:30]
    (tmp / "sums.jsonl").write_text("\n".join(sums) + "\n")
    planted = [
        {"prompt": PLANTED_PROMPT, "expected": "5"},
        {"prompt": "Q: What is 4 plus 4? A:", "expected": BREAKOUT},
    ]
    (tmp / "planted.jsonl").write_text("".join(json.dumps(r) + "\n" for r in planted))
    suite = tmp / "suite.yaml"
    suite.write_text(f"""\
name: report-test
base: builtin:tiny
generation: {{max_new_tokens: 8, stop: ["\\n"], batch_size: 16}}
data:
  sums: {{path: sums.jsonl}}
  new: {{path: {DATA / "new_facts.jsonl"}}}
  planted: {{path: planted.jsonl}}
capabilities:
  - name: new_facts
    improve: {{metric: qa.f1, min_gain: 0.5}}
    checks: [{{type: qa, data: new}}]
  - name: arithmetic
    forgetting: {{metric: exact.acc, max_drop: 0.1}}
    checks:
      - {{type: exact, data: sums}}
      - {{type: contains, name: planted, data: planted}}
candidates:
  - {{name: tiny-v2, model: builtin:tiny-v2}}
  - {{name: tiny-again, model: builtin:tiny}}
""")
    return suite


class RealRun:
    def __init__(self, db: Path, report: Path, stdout: str, exit_code: int) -> None:
        self.db, self.report, self.stdout, self.exit_code = db, report, stdout, exit_code


@pytest.fixture(scope="module")
def real_run(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    tmp = tmp_path_factory.mktemp("real-run")
    db, report = tmp / "h.duckdb", tmp / "report.html"
    args = ["run", str(_suite(tmp)), "--db", str(db), "--report", str(report)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output  # tiny-again learned nothing: improve gate fails
    return RealRun(db, report, result.output, result.exit_code)


def test_run_report_shows_the_same_verdicts_as_the_terminal(real_run: RealRun) -> None:
    assert "PASSED       tiny-v2" in real_run.stdout
    assert "REGRESSED    tiny-again" in real_run.stdout
    view = load_view(Store(real_run.db), "last")
    assert {v.name: v.verdict for v in view.verdicts} == {
        "tiny-v2": "passed",
        "tiny-again": "regressed",
    }
    html = real_run.report.read_text()
    assert re.search(r'class="verdict passed" data-candidate="tiny-v2"', html)
    assert re.search(r'class="verdict regressed" data-candidate="tiny-again"', html)
    assert "new_facts: qa.f1 gained" in html  # the reason, in words


def test_report_is_self_contained_and_escapes_everything(real_run: RealRun) -> None:
    html = real_run.report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html
    assert SCRIPT_PAYLOAD not in html and IMG_PAYLOAD not in html
    assert "</script><script>document" not in html  # the JSON block cannot be closed early
    data = re.search(
        r'<script type="application/json" class="case-data">(.*?)</script>', html, re.S
    )
    assert data is not None
    prompts = [row[2] for row in json.loads(data.group(1))["cases"]]
    assert PLANTED_PROMPT in prompts  # escaped in the file, intact once parsed


def test_real_report_in_chromium(real_run: RealRun, chromium: str, tmp_path: Path) -> None:
    dom = dump_dom(chromium, real_run.report, tmp_path)
    assert_clean(dom)
    assert "REGRESSED" in dom and "PASSED" in dom
    assert "tiny-v2" in dom and "tiny-again" in dom
    # The payloads show as text: the DOM holds them escaped, never as elements.
    assert "&lt;script&gt;document.documentElement.setAttribute" in dom
    assert "&lt;img src=x onerror=" in dom
    assert "<img src=x" not in dom and '<img src="x"' not in dom
    assert re.search(r"showing 1–\d+ of \d+ matching cases", dom)


def test_reports_land_in_reports_with_an_index_of_the_folder(
    real_run: RealRun, chromium: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    db = str(real_run.db)
    store = Store(real_run.db)
    hostile = store.begin_run(
        suite_name="<img src=x onerror=alert(1)>", suite_path="s", suite_text="", suite_hash="",
        config={},
    )  # fmt: skip
    store.finish_run(hostile, status="passed", exit_code=0)
    monkeypatch.chdir(tmp_path)
    first_id = store.list_runs()[-1].id
    first = runner.invoke(main, ["report", "--db", db, first_id])
    second = runner.invoke(main, ["report", "--db", db, hostile])
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "reports/index.html" in second.output
    reports = tmp_path / "reports"
    (reports / "someone-elses.html").write_text("<p>x</p>")
    runner.invoke(main, ["report", "--db", db, hostile])  # refreshes the index
    names = sorted(p.name for p in reports.iterdir())
    dom = dump_dom(chromium, reports / "index.html", tmp_path)
    assert names == sorted(
        [f"{first_id}.html", f"{hostile}.html", "index.html", "someone-elses.html"]
    )
    root = re.search(r"<html[^>]*>", dom)
    assert root is not None and "data-js-errors" not in root.group(0), dom[:500]
    assert "3 reports in this folder" in dom
    assert "report-test" in dom and "regressed" in dom  # the real run, with its status
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom and "<img" not in dom
    assert "not a run of this store" in dom
    # newest first: the hostile run was started last
    assert dom.index(f"{hostile}.html") < dom.index(f"{first_id}.html")


def test_report_history_and_compare_commands(real_run: RealRun, tmp_path: Path) -> None:
    runner = CliRunner()
    db = str(real_run.db)
    again = runner.invoke(main, ["run", str(_suite(tmp_path)), "--db", db])
    assert again.exit_code == 1, again.output
    out = tmp_path / "two.html"
    result = runner.invoke(main, ["report", "--db", db, "--out", str(out)])
    assert result.exit_code == 0 and "wrote" in result.output, result.output
    runs = Store(real_run.db).list_runs()
    both = runner.invoke(main, ["report", runs[1].id, runs[0].id, "--db", db, "--out", str(out)])
    assert both.exit_code == 0 and out.read_text().count('class="run"') == 2, both.output

    history = runner.invoke(main, ["history", "--db", db, "--out", str(tmp_path / "h.html")])
    assert history.exit_code == 0, history.output
    assert "history of report-test" in history.output and "exact.acc" in history.output
    assert "<svg" in (tmp_path / "h.html").read_text()

    compare = runner.invoke(main, ["compare", runs[1].id, runs[0].id, "--db", db, "--all"])
    assert compare.exit_code == 0, compare.output
    assert "tiny-again" in compare.output and "regressed" in compare.output
    assert "0 pass → fail, 0 fail → pass" in compare.output  # same models, same outputs

    missing = runner.invoke(main, ["compare", "nope", runs[0].id, "--db", db])
    assert missing.exit_code == 2 and "no run 'nope'" in missing.output


# ----------------------------------------------------- a recorded run: outputs and training


def _case(
    check: str, case_id: str, output: str, passed: bool, prompt: str = "Q: 2+3? A:"
) -> CaseResult:
    details = {"rationale": f"judge says {output}"} if check == "judge" else {}
    return CaseResult(
        "<i>cap</i>", check, case_id, prompt, "5", output, {"acc": float(passed)}, passed, details
    )


def _training(seconds: float, memory: int, trainable: int, backend: str) -> dict[str, object]:
    return {
        "wall_seconds": seconds, "train_tokens": 12_000, "tokens_per_second": 12_000 / seconds,
        "peak_memory_bytes": memory, "peak_memory_kind": "rss", "trainable_parameters": trainable,
        "total_parameters": 700_000, "artifact_bytes": trainable * 4, "final_loss": 0.8,
        "device": "cpu", "backend": backend,
    }  # fmt: skip


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run written through the Store API: a model outputs the payloads, two were trained."""
    db = tmp_path_factory.mktemp("recorded") / "r.duckdb"
    store = Store(db)
    run_id = store.begin_run(
        suite_name="methods <b>x</b>", suite_path="s.yaml", suite_text="name: m\n",
        suite_hash="h", config={},
    )  # fmt: skip
    cap = "<i>cap</i>"
    base_cases = [_case("exact", "c1", "5", True), _case("judge", "c2", "five", True)]
    metric = lambda v: [MetricValue(cap, "exact.acc", v, max(0, v - 0.1), min(1, v + 0.1), 2)]  # noqa: E731
    store.record_model_result(
        run_id, ModelRecord("base", "base", "builtin:tiny", "f0", "ok"), base_cases, metric(1.0), []
    )
    for name, backend, output, value, seconds in (
        ("lora-r8", "lora", "5", 1.0, 30.0),
        ("full", "full", f"{BREAKOUT} {IMG_PAYLOAD} 6", 0.5, 90.0),
    ):
        info = {
            "training": _training(
                seconds, int(seconds * 2**24), 8_000 if backend == "lora" else 700_000, backend
            )
        }
        gate = GateResult(
            cap,
            "forgetting",
            "exact.acc",
            value,
            1.0,
            value - 1.0,
            0.05,
            "pass" if value >= 0.95 else "fail",
            f"exact.acc fell {1 - value:g}",
        )
        cases = [_case("exact", "c1", output, value == 1.0), _case("judge", "c2", "five", True)]
        store.record_model_result(
            run_id, ModelRecord(name, "candidate", f"ckpt/{name}", "f", "ok", None, info),
            cases, metric(value), [gate],
        )  # fmt: skip
        store.record_loss_curve(
            run_id, name, [(s, 2.0 / (1 + s / (seconds / 10))) for s in range(40)]
        )
    store.record_model(
        run_id,
        ModelRecord(
            "broken", "candidate", "ckpt/none", None, "error", f"OSError: {SCRIPT_PAYLOAD}"
        ),
    )
    store.finish_run(run_id, status="error", exit_code=3)
    return db, run_id


def test_method_comparison_shows_cost_beside_quality(recorded: tuple[Path, str]) -> None:
    db, run_id = recorded
    view = load_view(Store(db), run_id)
    assert [m.name for m in view.methods] == ["lora-r8", "full"]  # "broken" was never trained
    assert [v.verdict for v in view.verdicts] == ["passed", "regressed", "error"]
    assert view.matrix[0].severity == 2  # the failed forgetting gate comes first
    html = build_report(Store(db), [run_id])
    assert "Method comparison" in html and "training loss" in html
    assert html.count("<svg") == 3  # quality vs time, quality vs memory, loss curves
    assert "30.0 s" in html and "1.5 min" not in html and "1 min 30 s" in html  # wall time
    assert "8k" in html and "of 700k (1.1%)" in html  # trainable of total parameters, and share
    assert "&lt;i&gt;cap&lt;/i&gt;" in html and "<i>cap</i>" not in html  # autoescaped


def test_no_training_no_method_comparison(real_run: RealRun) -> None:
    html = build_report(Store(real_run.db), ["last"])
    assert "Method comparison" not in html and "<svg" not in html


def test_recorded_report_in_chromium(
    recorded: tuple[Path, str], chromium: str, tmp_path: Path
) -> None:
    db, run_id = recorded
    report = tmp_path / "recorded.html"
    report.write_text(build_report(Store(db), [run_id]))
    dom = dump_dom(chromium, report, tmp_path)
    assert_clean(dom)
    for word in ("PASSED", "REGRESSED", "ERROR", "lora-r8", "full", "broken"):
        assert word in dom
    # The output payload and the error message render as text, diffed against the base output.
    assert "&lt;/script&gt;&lt;script&gt;document.documentElement" in dom
    assert "&lt;img src=x onerror=" in dom
    assert "OSError: &lt;script&gt;" in dom
    assert "<ins>" in dom and "judge says five" in dom  # word diff and judge rationale

    shot = tmp_path / "report.png"
    result = open_in_chromium(
        chromium, report, tmp_path, f"--screenshot={shot}", "--window-size=1400,1000",
        "--hide-scrollbars",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("HARNESS_KEEP_SCREENSHOTS")
    if keep:
        shutil.copy(shot, Path(keep) / "report.png")


def test_history_page_escapes_and_charts(recorded: tuple[Path, str]) -> None:
    db, _ = recorded
    html = build_history(Store(db), "methods <b>x</b>")
    assert "history of methods &lt;b&gt;x&lt;/b&gt;" in html
    assert "<svg" in html and "exact.acc" in html


# ---------------------------------------------------------------------------- pure pieces


@pytest.mark.parametrize("text", ["</script>", "<!--", "]]>", "&amp;", "\u2028"])
def test_json_script_cannot_close_its_element(text: str) -> None:
    embedded = json_script({"s": text, "nan": float("nan")})
    assert "<" not in embedded and ">" not in embedded and "&" not in embedded
    assert json.loads(str(embedded)) == {"s": text, "nan": None}


@pytest.fixture()
def empty_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "empty.duckdb")
    store.list_runs()  # the file is made on the first open
    yield store


def test_report_of_an_empty_store_is_a_usage_error(empty_store: Store) -> None:
    result = CliRunner().invoke(main, ["report", "--db", str(empty_store.path)])
    assert result.exit_code == 2 and "no runs" in result.output


# ------------------------------------------------------------------------------- layout

# Measures, after the page's script ran, what a reader at 1400 px sees: whether the metric
# matrix is wider than its box, and which chart labels overlap or leave their chart.
LAYOUT_PROBE = (
    "<script>window.addEventListener('load',function(){var h=document.documentElement;"
    "var box=document.querySelector('table.matrix').parentElement;"
    "h.setAttribute('data-matrix-overflow',String(box.scrollWidth-box.clientWidth));"
    "var bad=[];document.querySelectorAll('svg.chart').forEach(function(svg,c){"
    "var r=svg.getBoundingClientRect();"
    "var ls=[].slice.call(svg.querySelectorAll('text.point-label')).map(function(t){"
    "return [t.textContent,t.getBoundingClientRect()];});"
    "ls.forEach(function(a,i){var b=a[1];"
    "if(b.left<r.left||b.right>r.right||b.top<r.top||b.bottom>r.bottom)bad.push('out:'+a[0]);"
    "ls.slice(i+1).forEach(function(o){var q=o[1];if(!(b.right<=q.left||q.right<=b.left||"
    "b.bottom<=q.top||q.bottom<=b.top))bad.push(a[0]+'~'+o[0]);});});"
    "h.setAttribute('data-labels-'+c,String(ls.length));});"
    "h.setAttribute('data-label-problems',bad.join('|')||'none');});</script>"
)


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Eight trained candidates whose points crowd one corner of the charts, one of them passing,
    the rest regressed or inconclusive on five metrics."""
    db = tmp_path_factory.mktemp("crowded") / "c.duckdb"
    store = Store(db)
    run_id = store.begin_run(
        suite_name="crowded", suite_path="s.yaml", suite_text="name: c\n", suite_hash="h",
        config={},
    )  # fmt: skip
    metrics = ("known_facts.qa_em", "arith.exact_acc", "arith.number_acc", "lm.ppl", "new.qa_f1")

    def values(shift: float) -> list[MetricValue]:
        return [MetricValue("capability", m, 0.9 - shift, 0.8 - shift, 1.0, 60) for m in metrics]

    store.record_model_result(
        run_id, ModelRecord("base", "base", "builtin:tiny", "f0", "ok"),
        [_case("exact", "c1", "5", True)], values(0.0), [],
    )  # fmt: skip
    names = ["full", "lora", "lora+merged", "lora-replay", "qlora", "dpo", "grpo", "orpo"]
    for index, name in enumerate(names):
        passing = name == "lora-replay"
        outcome = "pass" if passing else ("inconclusive" if index % 3 == 0 else "fail")
        gates = [
            GateResult("capability", "forgetting", m, 0.5, 0.9, -0.4, 0.05, outcome, "dropped")  # type: ignore[arg-type]
            for m in metrics
        ]
        info = {"training": _training(5.0 + 0.05 * index, 700_000_000 + index, 69_600, "lora")}
        store.record_model_result(
            run_id, ModelRecord(name, "candidate", f"ckpt/{name}", f"f{index}", "ok", None, info),
            [_case("exact", "c1", "6", False)], values(0.0 if passing else 0.4), gates,
        )  # fmt: skip
    store.finish_run(run_id, status="regressed", exit_code=1)
    return db, run_id


def test_the_matrix_fits_1400_px_and_chart_labels_stay_apart(
    crowded: tuple[Path, str], chromium: str, tmp_path: Path
) -> None:
    db, run_id = crowded
    html = build_report(Store(db), [run_id])
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("<head>", "<head>" + LAYOUT_PROBE, 1))
    result = open_in_chromium(chromium, probe, tmp_path, "--dump-dom", "--window-size=1400,1000")
    assert result.returncode == 0, result.stderr[-2000:]
    root = re.search(r"<html[^>]*>", result.stdout)
    assert root is not None
    attributes = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', root.group(0)))
    assert int(attributes["data-matrix-overflow"]) <= 0, "the matrix is wider than the window"
    assert attributes["data-label-problems"] == "none"
    assert int(attributes["data-labels-0"]) >= 6  # grouped points share a label, none is lost
    assert 'class="verdict passed" data-candidate="lora-replay"' in html


def test_a_wrong_answer_is_never_coloured_as_good(
    recorded: tuple[Path, str], chromium: str, tmp_path: Path
) -> None:
    db, run_id = recorded
    report = tmp_path / "recorded.html"
    report.write_text(build_report(Store(db), [run_id]))
    dom = dump_dom(chromium, report, tmp_path)
    # "full" answered wrong: its words that differ from the base are marked wrong, not right.
    assert '<div class="model">full ✗</div><pre class="out diff-wrong">' in dom
    assert '<div class="model">lora-r8 ✓</div><pre class="out diff-right">' in dom


# --------------------------------------------------------------------------- checkpoints


def _checkpoint(step: int, values: dict[str, float | None]) -> dict[str, object]:
    """A checkpoint gated on new_facts qa.f1 (improve 0.3 over 0.1) and on a capability named
    like markup, qa.em (forgetting, max_drop 0.1 from 0.9)."""
    specs = {
        "new_facts": ("qa.f1", "improve", 0.1, 0.3),
        PLANTED_CAP: ("qa.em", "forgetting", 0.9, 0.1),
    }
    metrics, gates = [], []
    for capability, value in values.items():
        name, kind, base, limit = specs[capability]
        low = None if value is None else max(0.0, value - 0.15)
        high = None if value is None else min(1.0, value + 0.1)
        metrics.append({"capability": capability, "metric": name, "value": value,
                        "ci_low": low, "ci_high": high, "n": 20})  # fmt: skip
        held = value is not None and (
            value >= base + limit if kind == "improve" else value >= base - limit
        )
        gates.append({"capability": capability, "kind": kind, "metric": name, "value": value,
                      "base_value": base, "limit": limit, "outcome": "pass" if held else "fail"})  # fmt: skip
    passed = all(g["outcome"] == "pass" for g in gates)
    return {"step": step, "fingerprint": f"f{step}", "seconds": 1.0, "score": values["new_facts"],
            "passed": passed, "metrics": metrics, "gates": gates}  # fmt: skip


PLANTED_CAP = f"known {IMG_PAYLOAD}"


@pytest.fixture(scope="module")
def with_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A stored run whose trained candidates were evaluated at checkpoints: one stopped early
    after forgetting (best-passing kept an early step), one kept its last."""
    db = tmp_path_factory.mktemp("checkpoints") / "c.duckdb"
    store = Store(db)
    run_id = store.begin_run(
        suite_name="checkpoints", suite_path="s.yaml", suite_text="name: c\n", suite_hash="h",
        config={},
    )  # fmt: skip
    base_metrics = [
        MetricValue(PLANTED_CAP, "qa.em", 0.9, 0.8, 1.0, 20),
        MetricValue("new_facts", "qa.f1", 0.1, 0.0, 0.2, 20),
    ]
    store.record_model_result(
        run_id, ModelRecord("base", "base", "builtin:tiny", "f0", "ok"),
        [_case("exact", "c1", "5", True)], base_metrics, [],
    )  # fmt: skip
    full = [(25, 0.2, 0.9), (50, 0.5, 0.85), (75, 0.7, 0.5), (100, 0.8, None)]
    lora = [(s, 0.1 + s / 300, 0.9 - s / 3000) for s in (25, 50, 75, 100, 125, 150)]
    records = {
        "full": {
            "settings": {"every": 25, "capabilities": None, "select": "best-passing",
                         "stop_on": "forgetting"},
            "points": [_checkpoint(s, {"new_facts": n, PLANTED_CAP: k}) for s, n, k in full],
            "selected_step": 50, "selection": "best-passing", "stopped_at": 100,
            "stop_reason": f"a forgetting gate failed at steps 75 and 100 {SCRIPT_PAYLOAD}",
        },
        "lora": {
            "settings": {"every": 25, "capabilities": None, "select": "last", "stop_on": None},
            "points": [_checkpoint(s, {"new_facts": n, PLANTED_CAP: k}) for s, n, k in lora],
            "selected_step": 150, "selection": "last", "stopped_at": None, "stop_reason": None,
        },
    }  # fmt: skip
    for index, (name, record) in enumerate(records.items()):
        training = _training(30.0, 2**26, 8_000, "full") | {"checkpoints": record}
        model = ModelRecord(
            name, "candidate", f"ckpt/{name}", f"f{index}", "ok", None, {"training": training}
        )
        store.record_model_result(
            run_id, model, [_case("exact", "c1", "5", True)], base_metrics[:1], []
        )
        store.record_loss_curve(run_id, name, [(s, 2.0 / (1 + s / 20)) for s in range(0, 101, 5)])
    store.finish_run(run_id, status="passed", exit_code=0)
    return db, run_id


# Within each checkpoint chart: every label (the rules' and the legend's) inside its chart and
# clear of every other label.
CHECKPOINT_PROBE = (
    "<script>window.addEventListener('load',function(){var h=document.documentElement;"
    "var bad=[];var svgs=document.querySelectorAll('.checkpoint-charts svg.chart');"
    "svgs.forEach(function(svg){var r=svg.getBoundingClientRect();"
    "var ls=[].slice.call(svg.querySelectorAll('text.note,text.legend-label')).map(function(t){"
    "return [t.textContent,t.getBoundingClientRect()];});"
    "ls.forEach(function(a,i){var b=a[1];"
    "if(b.left<r.left||b.right>r.right||b.top<r.top||b.bottom>r.bottom)bad.push('out:'+a[0]);"
    "ls.slice(i+1).forEach(function(o){var q=o[1];if(!(b.right<=q.left||q.right<=b.left||"
    "b.bottom<=q.top||q.bottom<=b.top))bad.push(a[0]+'~'+o[0]);});});});"
    "h.setAttribute('data-checkpoint-charts',String(svgs.length));"
    "h.setAttribute('data-label-problems',bad.join('|')||'none');});</script>"
)


def test_checkpoint_curves_read_back_from_the_store_render_cleanly_in_chromium(
    with_checkpoints: tuple[Path, str], chromium: str, tmp_path: Path
) -> None:
    db, run_id = with_checkpoints
    view = load_view(Store(db), run_id)
    assert [c.candidate for c in view.checkpoints] == ["full", "lora"]
    assert view.checkpoints[0].curves[1].gates[0].line == pytest.approx(0.8)
    html = build_report(Store(db), [run_id])
    section = html[html.index("Checkpoints: forgetting curves") : html.index("<h3>Cases")]
    assert section.count("<svg") == 2 and "&lt;img src=x onerror=" in section
    report = tmp_path / "checkpoints.html"
    report.write_text(html)
    dom = dump_dom(chromium, report, tmp_path)
    assert_clean(dom)  # neither the capability nor the stop reason's payload ran
    assert "stopped early at step 100" in dom and "selected step 50 of 100 (best-passing)" in dom

    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("<head>", "<head>" + CHECKPOINT_PROBE, 1))
    result = open_in_chromium(chromium, probe, tmp_path, "--dump-dom", "--window-size=1400,1000")
    assert result.returncode == 0, result.stderr[-2000:]
    root = re.search(r"<html[^>]*>", result.stdout)
    assert root is not None
    attributes = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', root.group(0)))
    assert attributes["data-checkpoint-charts"] == "2"
    assert attributes["data-label-problems"] == "none"
