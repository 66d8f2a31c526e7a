"""The Markdown summary (`--summary FILE|github`): what a reviewer wants on a pull request.

A verdict per candidate with its failed gates, every gate's delta and interval, a methods/cost
table when candidates were trained (and the checkpoint each kept, when evaluated during training),
flipped cases and warnings. `--summary github` appends it to
`$GITHUB_STEP_SUMMARY` (the job's summary page), as GitHub expects each step to append.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.text import printable
from harness.evaluation import ModelResult, RunResult, index_metrics
from harness.outputs._text import (
    candidate_warnings,
    checkpoint_record,
    flipped,
    interval,
    number,
    reference_text,
    selection_text,
    short_reason,
    status_cell,
    stop_text,
)

GITHUB = "github"
_ICON = {"passed": "✅", "inconclusive": "❔", "regressed": "❌", "error": "💥"}


def md(text: object) -> str:
    """A user-controlled string made safe in a table cell: no HTML, no pipes, one line."""
    escaped = html.escape(" ".join(printable(text).split()), quote=False)
    return escaped.replace("|", "\\|").replace("`", "\\`")


def _verdict(candidate: ModelResult) -> str:
    verdict = candidate.verdict
    if verdict == "passed" and candidate.warned:
        return "⚠️ passed with warnings"
    return f"{_ICON[verdict]} {verdict}"


def _header(result: RunResult) -> list[str]:
    icon = _ICON[result.status]
    lines = [
        f"### {icon} harness · {md(result.suite)} · {result.status} (exit {result.exit_code})",
        "",
    ]
    against = "the base model"
    if result.baseline:
        b = result.baseline
        model = f", model {md(b['model'])}" if b.get("model") else " (same-named models)"
        against = f"baseline {md(b['ref'])} = run {md(b['run_id'])}{model}"
    facts = [
        f"run {md(result.run_id)}",
        f"base {md(result.base.record.reference)}",
        f"relative gates against {against}",
    ]
    if result.source_run:
        facts.append(f"re-gated from run {md(result.source_run)} under the current suite")
    lines += [" · ".join(facts), ""]
    return lines


def _verdict_table(result: RunResult) -> list[str]:
    lines = ["| candidate | verdict | why |", "|---|---|---|"]
    for c in result.candidates:
        if c.record.status == "error":
            why = md(c.record.error or "failed to run")
        else:
            failing = [md(short_reason(g)) for g in c.failed]
            undecided = [md(short_reason(g)) for g in c.inconclusive]
            warned = [f"{md(short_reason(g))} (warn-only)" for g in c.warned]
            why = "<br>".join(failing + undecided + warned) or "—"
        lines.append(f"| {md(c.record.name)} | {_verdict(c)} | {why} |")
    return [*lines, ""]


def _gates_table(result: RunResult) -> list[str]:
    rows = []
    for c in result.candidates:
        metrics = index_metrics(c.metrics)
        for g in c.gates:
            verdict = md(status_cell(g, c.fail_on))
            reference = "" if g.kind == "threshold" else reference_text(g)
            rows.append(
                f"| {md(c.record.name)} | {md(g.capability)} | {g.kind} | {md(g.metric)} | "
                f"{md(reference)} | {number(g.base_value)} | {number(g.value)} | "
                f"{number(g.delta, signed=True)} | {md(interval(g, metrics.get((g.capability, g.metric))))} | "
                f"{g.limit:g} | {verdict} |"
            )
    if not rows:
        return []
    head = "| candidate | capability | gate | metric | against | ref. value | value | delta | interval | limit | verdict |"
    return ["#### Gates", "", head, "|---|---|---|---|---|---:|---:|---:|---|---:|---|", *rows, ""]


def _size(count: float | None) -> str:
    if count is None:
        return "—"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= scale:
            return f"{count / scale:.3g}{suffix}"
    return f"{count:.3g}"


def _share(part: Any, whole: Any) -> str:
    if not isinstance(part, int | float) or not isinstance(whole, int | float) or whole <= 0:
        return ""
    share = 100 * part / whole
    return f" ({share:.0f}%)" if share >= 10 or share == 0 else f" ({share:.2g}%)"


def _methods_table(result: RunResult) -> list[str]:
    trained = [c for c in result.candidates if "training" in c.record.info]
    if not trained:
        return []
    lines = [
        "#### Methods and cost",
        "",
        "| candidate | backend | train s | tokens/s | peak memory | trainable / total | size | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in trained:
        t = c.record.info["training"]
        cached = " (cached)" if t.get("reused_artifact") else ""
        lines.append(
            f"| {md(c.record.name)} | {md(t.get('backend', ''))} | {t.get('wall_seconds', 0):.1f}{cached} | "
            f"{_size(t.get('tokens_per_second'))} | {_size(t.get('peak_memory_bytes'))}B | "
            f"{_size(t.get('trainable_parameters'))} / {_size(t.get('total_parameters'))}"
            f"{_share(t.get('trainable_parameters'), t.get('total_parameters'))} | "
            f"{_size(t.get('artifact_bytes'))}B | {_verdict(c)} |"
        )
    return [*lines, ""]


def _checkpoints(result: RunResult) -> list[str]:
    """A line per candidate evaluated at checkpoints: the step selected and why, an early stop."""
    lines = []
    for c in result.candidates:
        record = checkpoint_record(c.record.info)
        if record is None:
            continue
        line = f"- **{md(c.record.name)}** · {md(selection_text(record))}"
        if stopped := stop_text(record):
            line += f" · {md(stopped)}"
        lines.append(line)
    return ["#### Checkpoints", "", *lines, ""] if lines else []


def _flips(result: RunResult) -> list[str]:
    items = [
        f"- **{md(c.record.name)}** · {md(g.capability)} · {md(g.metric)}: {md(flips)}"
        for c in result.candidates
        for g in c.gates
        if not g.passed and (flips := flipped(g, shown=20))
    ]
    if not items:
        return []
    return [
        "<details><summary>Flipped cases of failed gates</summary>",
        "",
        *items,
        "",
        "</details>",
        "",
    ]


def _warnings(result: RunResult) -> list[str]:
    warnings = [w for c in result.candidates for w in candidate_warnings(c)] + result.warnings
    return [f"> ⚠️ {md(w)}" for w in warnings] + ([""] if warnings else [])


def markdown_summary(result: RunResult) -> str:
    """The whole summary as GitHub-flavoured Markdown."""
    parts = _header(result) + _verdict_table(result) + _gates_table(result)
    parts += _methods_table(result) + _checkpoints(result) + _flips(result) + _warnings(result)
    return "\n".join(parts).rstrip() + "\n"


def summary_destination(target: str, environ: Mapping[str, str] | None = None) -> Path:
    """Where `--summary TARGET` writes: a file, or `$GITHUB_STEP_SUMMARY` for `github`."""
    if target != GITHUB:
        return Path(target)
    env = environ if environ is not None else os.environ
    if not env.get("GITHUB_STEP_SUMMARY"):
        raise HarnessError(
            "--summary github: $GITHUB_STEP_SUMMARY is not set (it is, inside a GitHub Actions "
            "step); give a file name instead, e.g. --summary summary.md"
        )
    return Path(env["GITHUB_STEP_SUMMARY"])


def write_markdown(
    result: RunResult, target: str, environ: Mapping[str, str] | None = None
) -> Path:
    """Write (a file) or append (`github`: the step summary collects every step's) the summary."""
    path = summary_destination(target, environ)
    text = markdown_summary(result)
    if target == GITHUB:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path
