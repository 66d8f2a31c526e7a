"""Rendering reports to one self-contained HTML file: Jinja2 templates shipped in the package.

Autoescape is on for every template. The page's own CSS and JS are static files of this package
inlined verbatim; data goes in as JSON inside `<script type="application/json">`, with `<`, `>`
and `&` written as JSON escapes so no string can close the script element.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from jinja2 import Environment, FunctionLoader, StrictUndefined
from markupsafe import Markup

from harness import __version__
from harness.outputs._history import MetricSeries
from harness.outputs.html import _charts as charts
from harness.outputs.html._view import CheckpointCurve, RunView

_JSON_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def _template_text(name: str) -> str:
    return (resources.files("harness.outputs.html") / "templates" / name).read_text(
        encoding="utf-8"
    )


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=FunctionLoader(_template_text),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        num=format_number,
        signed=lambda v: format_number(v, signed=True),
        short=format_short,
        short_signed=lambda v: format_short(v, signed=True),
        seconds=format_seconds,
        bytes=format_bytes,
        count=format_count,
        share=format_share,
        json_script=json_script,
    )
    env.globals["static"] = lambda name: Markup(_template_text(name))
    return env


def json_script(value: Any) -> Markup:
    """JSON safe to place inside a <script> element: no `</script>`, `<!--` or `]]>` can appear."""
    text = json.dumps(_clean(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Markup(text.translate(_JSON_ESCAPES))


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def format_number(value: Any, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def format_short(value: Any, signed: bool = False) -> str:
    """A number in at most ~7 characters, for the metric matrix: 0.117, 12.35, 465k, 1.2e+09."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    sign = "+" if signed and value >= 0 else ""
    size = abs(value)
    if size >= 1e6:
        return f"{value:{sign}.2g}"
    if size >= 1e3:
        return f"{value / 1e3:{sign}.3g}k"
    decimals = 3 if size < 10 else 2 if size < 100 else 1
    return f"{value:{sign}.{decimals}f}"


def format_seconds(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    return (
        f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min {seconds} s"
    )


def format_bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def format_count(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


def format_share(part: Any, whole: Any) -> str:
    """A trainable share: 9.0%, 0.29%, 0.0036% (two significant digits below 10%)."""
    if not isinstance(part, int | float) or not isinstance(whole, int | float) or whole <= 0:
        return "—"
    share = 100 * part / whole
    return f"{share:.0f}%" if share >= 10 or share == 0 else f"{share:.2g}%"


def _generated() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


# ------------------------------------------------------------------------------ the report


def render_report(views: Sequence[RunView]) -> str:
    """The HTML report of one or more runs, as one self-contained document."""
    sections = [
        {"view": v, "charts": method_charts(v), "checkpoint_charts": checkpoint_charts(v)}
        for v in views
    ]
    title = " · ".join(f"{v.suite} {v.run_id}" for v in views)
    return (
        environment()
        .get_template("report.html.j2")
        .render(title=title, sections=sections, version=__version__, generated=_generated())
    )


def method_charts(view: RunView) -> list[Markup]:
    """Quality against training time and against peak memory, and the loss curves."""
    out = []
    points = [m for m in view.methods if m.quality is not None]
    base_quality = _base_value(view)
    label = f"{view.quality_metric[1]} ({view.quality_metric[0]})" if view.quality_metric else ""
    for key, axis, fmt in (
        ("wall_seconds", "training time", format_seconds),
        ("peak_memory_bytes", "peak memory", format_bytes),
    ):
        usable = [m for m in points if isinstance(m.training.get(key), int | float)]
        if usable:
            dots = [
                charts.Point(
                    m.name,
                    float(m.training[key]),
                    float(m.quality or 0.0),
                    charts.VERDICT_COLOURS.get(m.verdict, charts.PALETTE[0]),
                )
                for m in usable
            ]
            axes = charts.Axes(axis, label, x_format=fmt)
            out.append(charts.scatter(f"{label} against {axis}", dots, axes, base_quality))
    curves = [
        charts.Series(name, tuple((float(s), float(v)) for s, v in curve), charts.colour(i))
        for i, (name, curve) in enumerate(view.loss_curves.items())
    ]
    if curves:
        out.append(charts.lines("training loss", curves, charts.Axes("step", "loss")))
    return out


def checkpoint_charts(view: RunView) -> list[tuple[str, Markup]]:
    """(caption, chart) per capability and gated metric: each candidate's value at its
    checkpoints with its 95% interval, the base and each gate's limit as dashed lines, and the
    selected checkpoint ringed. A candidate keeps its colour from the training loss chart."""
    names = list(dict.fromkeys([*view.loss_curves, *(c.candidate for c in view.checkpoints)]))
    groups: dict[tuple[str, str], list[CheckpointCurve]] = {}
    for candidate in view.checkpoints:
        for curve in candidate.curves:
            groups.setdefault((curve.capability, curve.metric), []).append(curve)
    out = []
    for (capability, metric), curves in groups.items():
        series = [_curve_series(c, charts.colour(names.index(c.candidate))) for c in curves]
        lower = any(c.lower_is_better for c in curves)
        axes = charts.Axes(
            "step",
            metric + (" (lower is better)" if lower else ""),
            x_format=lambda v: f"{v:g}",
            x_ticks=_step_ticks(sorted({p.step for c in curves for p in c.points})),
        )
        title = f"{metric} ({capability}) at each checkpoint"
        chart = charts.lines(title, series, axes, _curve_rules(curves))
        out.append((f"{capability} · {metric}", chart))
    return out


def _curve_series(curve: CheckpointCurve, colour: str) -> charts.Series:
    points, band, tips, ringed = [], [], [], []
    kinds = [g.kind for g in curve.gates]
    for index, p in enumerate(curve.points):
        nan = math.nan
        points.append((float(p.step), p.value if p.value is not None else nan))
        low, high = p.ci_low, p.ci_high
        band.append(
            (float(p.step), low if low is not None else nan, high if high is not None else nan)
        )
        interval = f" [{format_number(low)}, {format_number(high)}]" if low is not None else ""
        gates = ", ".join(f"{k} {o}" for k, o in zip(kinds, p.outcomes, strict=True) if o)
        tip = f"{curve.candidate} · step {p.step}: {format_number(p.value)}{interval}"
        tip += f" · {gates}" if gates else ""
        if p.step == curve.selected_step:
            tip += f" · selected ({curve.selection})" if curve.selection else " · selected"
            ringed.append(index)
        if p.step == curve.stopped_at:
            tip += " · training stopped here"
        tips.append(tip)
    return charts.Series(
        curve.candidate, tuple(points), colour, tuple(band), tuple(tips), tuple(ringed)
    )


def _curve_rules(curves: Sequence[CheckpointCurve]) -> list[charts.Rule]:
    """The base, and each gate's limit, once per distinct value (a baseline run can give each
    candidate its own reference: then each line names its candidate)."""
    based = [c for c in curves if c.base_value is not None]
    if len({c.base_value for c in based}) == 1:
        rules = [charts.Rule("base", based[0].base_value or 0.0)]
    else:
        rules = [charts.Rule(f"base ({c.candidate})", c.base_value or 0.0) for c in based]
    lines: dict[tuple[str, float], list[str]] = {}
    for curve in curves:
        for gate in curve.gates:
            if gate.line is not None:
                lines.setdefault((gate.kind, gate.line), []).append(curve.candidate)
    kinds = [kind for kind, _ in lines]
    for (kind, value), names in lines.items():
        label = f"limit ({kind})"
        if kinds.count(kind) > 1:
            label = f"limit ({kind}, {', '.join(names)})"
        rules.append(charts.Rule(label, value, "limit"))
    return rules


def _step_ticks(steps: Sequence[int]) -> tuple[tuple[float, str], ...] | None:
    """The checkpoints' own steps as the x axis's ticks when few, each clear of the one before
    (else round ticks)."""
    if not steps or len(steps) > 8:
        return None
    span = (steps[-1] - steps[0]) or 1
    kept = [steps[0]]
    for step in steps[1:]:
        if (step - kept[-1]) / span >= 0.08:
            kept.append(step)
    return tuple((float(s), str(s)) for s in kept)


def _base_value(view: RunView) -> float | None:
    if view.quality_metric is None:
        return None
    for row in view.matrix:
        if (row.capability, row.metric) == view.quality_metric and row.base is not None:
            return row.base.value
    return None


# ------------------------------------------------------------------------------ history


def render_history(suite: str, run_ids: Sequence[str], series: Sequence[MetricSeries]) -> str:
    """A trend chart per (capability, metric), one line per model, and the values as a table."""
    order = {run_id: i for i, run_id in enumerate(run_ids)}
    groups: dict[tuple[str, str], list[MetricSeries]] = {}
    for s in series:
        groups.setdefault((s.capability, s.metric), []).append(s)
    ticks = _run_ticks(run_ids)
    panels = []
    for (capability, metric), members in groups.items():
        lines = [
            charts.Series(
                s.model,
                tuple((float(order[p.run_id]), p.value) for p in s.points),
                charts.colour(i),
            )
            for i, s in enumerate(members)
        ]
        axes = charts.Axes("run", metric, x_ticks=ticks)
        chart = charts.lines(f"{metric} ({capability})", lines, axes)
        panels.append(
            {"capability": capability, "metric": metric, "chart": chart, "series": members}
        )
    return (
        environment()
        .get_template("history.html.j2")
        .render(
            title=f"history of {suite}",
            suite=suite,
            run_ids=run_ids,
            panels=panels,
            version=__version__,
            generated=_generated(),
        )
    )


@dataclass(frozen=True)
class IndexEntry:
    """One report file of a reports folder, with its run's summary when the store knows it."""

    file: str
    known: bool = False
    suite: str = ""
    started: str = ""
    status: str = ""
    models: int = 0
    passed: int = 0
    failed: int = 0
    inconclusive: int = 0


def render_index(entries: Sequence[IndexEntry]) -> str:
    """The page listing a folder's reports: what `reports/index.html` shows."""
    return (
        environment()
        .get_template("index.html.j2")
        .render(entries=entries, version=__version__, generated=_generated())
    )


def _run_ticks(run_ids: Sequence[str]) -> tuple[tuple[float, str], ...]:
    """At most 5 labelled runs on the x axis; a run id's date and time part (MMDD-HHMMSS)."""
    step = max(1, math.ceil(len(run_ids) / 5))
    return tuple((float(i), run_ids[i][4:15]) for i in range(0, len(run_ids), step))
