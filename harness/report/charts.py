"""Small inline SVG charts (no JavaScript, no network): scatter and line charts.

Every label is escaped with markupsafe; the result is Markup that templates insert as is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626")
VERDICT_COLOURS = {"passed": "#15803d", "regressed": "#b91c1c", "error": "#7e22ce"}
WIDTH, HEIGHT = 520, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 48


@dataclass(frozen=True)
class Point:
    label: str
    x: float
    y: float
    colour: str = PALETTE[0]


@dataclass(frozen=True)
class Series:
    label: str
    points: tuple[tuple[float, float], ...]
    colour: str = PALETTE[0]


@dataclass(frozen=True)
class Axes:
    x_label: str
    y_label: str
    x_format: Callable[[float], str] = lambda v: f"{v:.3g}"
    y_format: Callable[[float], str] = lambda v: f"{v:.3g}"
    x_ticks: tuple[tuple[float, str], ...] | None = None  # explicit ticks (e.g. run ids)


class _Scale:
    def __init__(self, values: Sequence[float], lo_px: float, hi_px: float) -> None:
        finite = [v for v in values if math.isfinite(v)] or [0.0]
        lo, hi = min(finite), max(finite)
        pad = (hi - lo) * 0.08 or (abs(hi) * 0.1 or 1.0)
        self.lo, self.hi = lo - pad, hi + pad
        self.lo_px, self.hi_px = lo_px, hi_px

    def __call__(self, value: float) -> float:
        share = (value - self.lo) / (self.hi - self.lo)
        return round(self.lo_px + share * (self.hi_px - self.lo_px), 1)

    def ticks(self, count: int = 5) -> list[float]:
        """Round values (1, 2, 2.5 or 5 times a power of ten apart) inside the scale."""
        raw = (self.hi - self.lo) / count
        magnitude = 10 ** math.floor(math.log10(raw))
        step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
        first = math.ceil(self.lo / step) * step
        return [first + i * step for i in range(int((self.hi - first) / step + 1e-9) + 1)]


def _frame(title: str, axes: Axes, xs: _Scale, ys: _Scale, body: list[str]) -> Markup:
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
        f'height="{HEIGHT - TOP - BOTTOM}" class="plot"/>',
    ]
    for value in ys.ticks():
        y = ys(value)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" class="grid"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end">{escape(axes.y_format(value))}</text>'
        )
    x_ticks = axes.x_ticks or tuple((v, axes.x_format(v)) for v in xs.ticks())
    for value, label in x_ticks:
        x = xs(value)
        parts.append(
            f'<text x="{x}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{escape(label)}</text>'
        )
    parts.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 8}" text-anchor="middle" '
        f'class="axis">{escape(axes.x_label)}</text>'
        f'<text x="14" y="{(TOP + HEIGHT - BOTTOM) / 2}" text-anchor="middle" class="axis" '
        f'transform="rotate(-90 14 {(TOP + HEIGHT - BOTTOM) / 2})">{escape(axes.y_label)}</text>'
    )
    return Markup("".join([*parts, *body, "</svg>"]))


def scatter(
    title: str, points: Sequence[Point], axes: Axes, baseline: float | None = None
) -> Markup:
    """Labelled points; `baseline` draws a dashed horizontal line (the base model's value)."""
    ys_values = [p.y for p in points] + ([baseline] if baseline is not None else [])
    xs = _Scale([p.x for p in points], LEFT, WIDTH - RIGHT)
    ys = _Scale(ys_values, HEIGHT - BOTTOM, TOP)
    body = []
    if baseline is not None and math.isfinite(baseline):
        y = ys(baseline)
        body.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" class="baseline"/>'
            f'<text x="{WIDTH - RIGHT - 4}" y="{y - 4}" text-anchor="end" class="note">base</text>'
        )
    for p in points:
        x, y = xs(p.x), ys(p.y)
        body.append(
            f'<circle cx="{x}" cy="{y}" r="6" fill="{escape(p.colour)}"><title>'
            f"{escape(p.label)}: {escape(axes.x_format(p.x))}, {escape(axes.y_format(p.y))}"
            f'</title></circle><text x="{x + 9}" y="{y - 8}">{escape(p.label)}</text>'
        )
    return _frame(title, axes, xs, ys, body)


def lines(title: str, series: Sequence[Series], axes: Axes) -> Markup:
    """One polyline per series, with a legend under the plot area's top edge."""
    all_points = [pt for s in series for pt in s.points if math.isfinite(pt[1])]
    xs = _Scale([pt[0] for pt in all_points], LEFT, WIDTH - RIGHT)
    ys = _Scale([pt[1] for pt in all_points], HEIGHT - BOTTOM, TOP)
    body = []
    for index, s in enumerate(series):
        coords = " ".join(f"{xs(x)},{ys(y)}" for x, y in s.points if math.isfinite(y))
        colour = escape(s.colour)
        body.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" class="line"/>')
        if len(s.points) <= 30:
            body += [
                f'<circle cx="{xs(x)}" cy="{ys(y)}" r="3" fill="{colour}"/>'
                for x, y in s.points
                if math.isfinite(y)
            ]
        ly = TOP + 14 + 16 * index
        body.append(
            f'<rect x="{WIDTH - RIGHT - 150}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{WIDTH - RIGHT - 136}" y="{ly}">{escape(s.label)}</text>'
        )
    return _frame(title, axes, xs, ys, body)


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]
