"""Small inline SVG charts (no JavaScript, no network): scatter and line charts.

Every label is escaped with markupsafe; the result is Markup that templates insert as is.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626")
VERDICT_COLOURS = {
    "passed": "#15803d",
    "inconclusive": "#a16207",
    "regressed": "#b91c1c",
    "error": "#7e22ce",
}
CHAR_WIDTH, LINE_HEIGHT = 6.6, 12.0  # a generous estimate of the 11 px label font
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
    points: tuple[tuple[float, float], ...]  # a NaN y leaves a point out
    colour: str = PALETTE[0]
    band: tuple[tuple[float, float, float], ...] = ()  # (x, low, high): an interval, shaded
    tips: tuple[str, ...] = ()  # a tooltip per point
    ringed: tuple[int, ...] = ()  # indices of points drawn with a ring (e.g. the one selected)


@dataclass(frozen=True)
class Rule:
    """A dashed horizontal line across the plot, labelled (the base, a gate's limit)."""

    label: str
    y: float
    style: str = "baseline"  # its CSS class: baseline (grey) or limit (red)


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
    placed: list[Box] = []
    if baseline is not None and math.isfinite(baseline):
        y = ys(baseline)
        body.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" class="baseline"/>'
            f'<text x="{WIDTH - RIGHT - 4}" y="{y - 4}" text-anchor="end" class="note">base</text>'
        )
        placed.append(_box(WIDTH - RIGHT - 4, y - 4, 4 * CHAR_WIDTH, "end"))
    groups = _groups(points, xs, ys)
    for group in groups:  # labels keep clear of every point, not only of other labels
        x, y = xs(group[0].x), ys(group[0].y)
        placed.append(Box(x - 7, y - 7, x + 7, y + 7))
    for group in groups:
        x, y = xs(group[0].x), ys(group[0].y)
        label = ", ".join(p.label for p in group)
        tip = "; ".join(f"{p.label}: {axes.x_format(p.x)}, {axes.y_format(p.y)}" for p in group)
        body.append(
            f'<circle cx="{x}" cy="{y}" r="6" fill="{escape(group[0].colour)}">'
            f"<title>{escape(tip)}</title></circle>"
        )
        body.append(_label(label, x, y, placed))
    return _frame(title, axes, xs, ys, body)


@dataclass(frozen=True)
class Box:
    left: float
    top: float
    right: float
    bottom: float

    def overlaps(self, other: Box) -> bool:
        return not (
            self.right <= other.left
            or other.right <= self.left
            or self.bottom <= other.top
            or other.bottom <= self.top
        )


def _groups(points: Sequence[Point], xs: _Scale, ys: _Scale) -> list[list[Point]]:
    """Points drawn on the same spot share one label (`lora, lora+merged`)."""
    groups: list[list[Point]] = []
    for point in points:
        spot = (xs(point.x), ys(point.y))
        for group in groups:
            there = (xs(group[0].x), ys(group[0].y))
            if abs(spot[0] - there[0]) < 3 and abs(spot[1] - there[1]) < 3:
                group.append(point)
                break
        else:
            groups.append([point])
    return groups


def _label(text: str, x: float, y: float, placed: list[Box]) -> str:
    """A point's label where it fits inside the plot and clears the labels placed before it:
    beside the point, else ever further above and below it with a leader line to the point."""
    width = len(text) * CHAR_WIDTH
    offsets = [-6.0, 14.0, 4.0]
    offsets += [sign * step for step in range(18, 160, 12) for sign in (-1.0, 1.0)]
    for dy in offsets:
        for tx, anchor in ((x + 9, "start"), (x - 9, "end")):
            box = _box(tx, y + dy, width, anchor)
            if not _inside(box) or any(box.overlaps(b) for b in placed):
                continue
            placed.append(box)
            element = (
                f'<text x="{tx}" y="{y + dy}" text-anchor="{anchor}" class="point-label">'
                f"{escape(text)}</text>"
            )
            if abs(dy) <= 14:
                return element
            edge = box.left if anchor == "start" else box.right
            middle = (box.top + box.bottom) / 2
            return f'<line x1="{x}" y1="{y}" x2="{edge}" y2="{middle}" class="leader"/>' + element
    return ""  # no room anywhere: the point's tooltip still names it


def _box(x: float, baseline: float, width: float, anchor: str) -> Box:
    left = x if anchor == "start" else x - width
    return Box(left, baseline - LINE_HEIGHT + 2, left + width, baseline + 3)


def _inside(box: Box) -> bool:
    return (
        box.left >= LEFT + 2
        and box.right <= WIDTH - RIGHT - 2
        and box.top >= TOP + 1
        and box.bottom <= HEIGHT - BOTTOM - 1
    )


def lines(title: str, series: Sequence[Series], axes: Axes, rules: Sequence[Rule] = ()) -> Markup:
    """One polyline per series (its interval shaded, its ringed points circled) over dashed
    `rules`, with a legend in the plot's corner that covers the fewest points."""
    all_points = [pt for s in series for pt in s.points if math.isfinite(pt[1])]
    bands = [b for s in series for b in s.band if math.isfinite(b[1]) and math.isfinite(b[2])]
    ruled = [r for r in rules if math.isfinite(r.y)]
    xs = _Scale([pt[0] for pt in all_points], LEFT, WIDTH - RIGHT)
    ys = _Scale(
        [pt[1] for pt in all_points] + [v for b in bands for v in b[1:]] + [r.y for r in ruled],
        HEIGHT - BOTTOM,
        TOP,
    )
    body = [_band(s, xs, ys) for s in series if s.band]
    legend = _legend_box(series, xs, ys)
    body += _rules(ruled, ys, legend)
    for s in series:
        colour = escape(s.colour)
        coords = " ".join(f"{xs(x)},{ys(y)}" for x, y in s.points if math.isfinite(y))
        body.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" class="line"/>')
        if len(s.points) > 30:
            continue
        for index, (x, y) in enumerate(s.points):
            if not math.isfinite(y):
                continue
            tip = s.tips[index] if index < len(s.tips) else ""
            title = f"<title>{escape(tip)}</title>" if tip else ""
            body.append(f'<circle cx="{xs(x)}" cy="{ys(y)}" r="3" fill="{colour}">{title}</circle>')
            if index in s.ringed:
                body.append(
                    f'<circle cx="{xs(x)}" cy="{ys(y)}" r="7" fill="none" stroke="{colour}" '
                    f'class="ring">{title}</circle>'
                )
    if series:
        body.append(
            f'<rect x="{legend.left - 4}" y="{legend.top}" width="{legend.right - legend.left + 8}" '
            f'height="{legend.bottom - legend.top}" class="legend"/>'
        )
    for index, s in enumerate(series):
        ly = legend.top + 14 + 16 * index
        body.append(
            f'<rect x="{legend.left}" y="{ly - 9}" width="10" height="10" '
            f'fill="{escape(s.colour)}"/>'
            f'<text x="{legend.left + 14}" y="{ly}" class="legend-label">{escape(s.label)}</text>'
        )
    return _frame(title, axes, xs, ys, body)


def _band(s: Series, xs: _Scale, ys: _Scale) -> str:
    """The interval around a series: a shaded area over runs of adjacent points, an error bar
    where a point stands alone."""
    runs: list[list[tuple[float, float, float]]] = [[]]
    for x, low, high in s.band:
        if math.isfinite(low) and math.isfinite(high):
            runs[-1].append((x, low, high))
        elif runs[-1]:
            runs.append([])
    parts = []
    colour = escape(s.colour)
    for run in runs:
        if len(run) == 1:
            x, low, high = run[0]
            parts.append(
                f'<line x1="{xs(x)}" x2="{xs(x)}" y1="{ys(low)}" y2="{ys(high)}" '
                f'stroke="{colour}" class="errorbar"/>'
            )
        elif run:
            edge = [f"{xs(x)},{ys(high)}" for x, _, high in run]
            edge += [f"{xs(x)},{ys(low)}" for x, low, _ in reversed(run)]
            parts.append(f'<polygon points="{" ".join(edge)}" fill="{colour}" class="band"/>')
    return "".join(parts)


def _legend_box(series: Sequence[Series], xs: _Scale, ys: _Scale) -> Box:
    """The legend's place: the plot corner with the fewest points of the lines under it (sampled
    along each segment), the top right on a tie."""
    width = 14 + CHAR_WIDTH * max((len(s.label) for s in series), default=0)
    width = min(max(width, 60.0), (WIDTH - LEFT - RIGHT) / 2)
    height = 16.0 * len(series) + 4
    left_x, right_x = LEFT + 8, WIDTH - RIGHT - 8 - width
    top_y, bottom_y = TOP + 4, HEIGHT - BOTTOM - 4 - height
    corners = [(right_x, top_y), (left_x, top_y), (right_x, bottom_y), (left_x, bottom_y)]
    samples: list[tuple[float, float]] = []
    for s in series:
        drawn = [(xs(x), ys(y)) for x, y in s.points if math.isfinite(y)]
        samples += drawn[:1]
        for (x0, y0), (x1, y1) in itertools.pairwise(drawn):
            samples += [(x0 + (x1 - x0) * t / 8, y0 + (y1 - y0) * t / 8) for t in range(1, 9)]

    def covered(corner: tuple[float, float]) -> int:
        left, top = corner
        return sum(left <= x <= left + width and top <= y <= top + height for x, y in samples)

    left, top = min(corners, key=covered)  # min keeps the first corner of equal coverage
    return Box(left, top, left + width, top + height)


def _rules(rules: Sequence[Rule], ys: _Scale, legend: Box) -> list[str]:
    """Each rule's dashed line and label, on the side away from the legend; a label that would
    leave the plot or overlap one placed before it goes under its line instead of over it."""
    on_left = legend.left > (LEFT + WIDTH - RIGHT) / 2
    x, anchor = (LEFT + 4, "start") if on_left else (WIDTH - RIGHT - 4, "end")
    placed = [legend]
    parts = []
    for rule in sorted(rules, key=lambda r: ys(r.y)):
        y = ys(rule.y)
        style = escape(rule.style)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" class="{style}"/>')
        width = len(rule.label) * CHAR_WIDTH
        for baseline in (round(y + dy, 1) for dy in (-4, 12, -16, 24)):
            box = _box(x, baseline, width, anchor)
            if _inside(box) and not any(box.overlaps(b) for b in placed):
                break
        placed.append(box)
        parts.append(
            f'<text x="{x}" y="{baseline}" text-anchor="{anchor}" class="note {style}-label">'
            f"{escape(rule.label)}</text>"
        )
    return parts


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]
