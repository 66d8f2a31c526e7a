"""HTML reports of stored runs, and the history of a suite across runs.

    from harness.outputs.html import write_report
    write_report(Store("harness.duckdb"), ["last"], Path("report.html"))

The view is computed from the run view every output shares (`stored_result`, then
`harness.outputs.html._view`), then rendered by Jinja2 templates
shipped in this package (`harness.outputs.html._render`) into one self-contained HTML file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.evaluation import stored_result
from harness.outputs._history import RunMetrics, metric_history
from harness.outputs.html._render import IndexEntry, render_history, render_index, render_report
from harness.outputs.html._view import RunAbout, RunView, report_view
from harness.store import RunSummary, Store

__all__ = [
    "DEFAULT_DIRECTORY",
    "IndexEntry",
    "RunAbout",
    "RunView",
    "build_history",
    "build_report",
    "default_report_path",
    "load_view",
    "render_history",
    "render_index",
    "render_report",
    "report_view",
    "write_index",
    "write_report",
]


def load_view(store: Store, run_ref: str) -> RunView:
    """Read one run and all its cases from the store and compute what the report shows."""
    run_id = store.resolve_run(run_ref)
    run = store.load_run(run_id)
    return report_view(stored_result(run, store.cases_by_model(run_id)), RunAbout.of(run))


def build_report(store: Store, run_refs: Sequence[str]) -> str:
    """The HTML report of the runs `run_refs` (ids, unique prefixes or "last")."""
    return render_report([load_view(store, ref) for ref in run_refs or ["last"]])


def write_report(store: Store, run_refs: Sequence[str], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_report(store, run_refs), encoding="utf-8")
    return path


DEFAULT_DIRECTORY = Path("reports")
INDEX = "index.html"


def default_report_path(run_ids: Sequence[str], directory: Path = DEFAULT_DIRECTORY) -> Path:
    """Where `harness report` writes without --out: reports/<run id>.html (several runs: the
    first id and how many more)."""
    more = f"-and-{len(run_ids) - 1}-more" if len(run_ids) > 1 else ""
    return directory / f"{run_ids[0]}{more}.html"


def write_index(store: Store, directory: Path) -> Path:
    """Write `directory`/index.html: every report there, newest run first, with its suite,
    status and gate counts from the store (a report of another store is listed by name)."""
    files = sorted(p.name for p in directory.glob("*.html") if p.name != INDEX)
    summaries = {s.id: s for s in store.list_runs(limit=1_000_000)}
    entries = [_index_entry(name, summaries) for name in files]
    entries.sort(key=lambda e: (e.started, e.file), reverse=True)
    path = directory / INDEX
    path.write_text(render_index(entries), encoding="utf-8")
    return path


def _index_entry(name: str, summaries: Mapping[str, RunSummary]) -> IndexEntry:
    run_id = name.removesuffix(".html").split("-and-", 1)[0]
    summary = summaries.get(run_id)
    if summary is None:
        return IndexEntry(name)
    return IndexEntry(
        name,
        known=True,
        suite=summary.suite_name,
        started=str(summary.started_at)[:19],
        status=summary.status,
        models=len(summary.models),
        passed=summary.gates_passed,
        failed=summary.gates_failed,
        inconclusive=summary.gates_inconclusive,
    )


def history_runs(store: Store, suite: str, limit: int) -> list[RunMetrics]:
    """The metrics of the newest `limit` finished runs of `suite`, oldest first."""
    summaries = [s for s in store.list_runs(suite=suite, limit=limit) if s.finished_at]
    summaries.sort(key=lambda s: (s.started_at, s.id))
    runs = [store.load_run(s.id) for s in summaries]
    return [RunMetrics(r.id, r.metrics, r.summary.started_at) for r in runs]


def build_history(store: Store, suite: str, limit: int = 50) -> str:
    runs = history_runs(store, suite, limit)
    return render_history(suite, [r.run_id for r in runs], metric_history(runs))
