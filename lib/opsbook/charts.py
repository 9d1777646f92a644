"""Tiny inline SVG charts: a few KB each, pure stdlib, no JavaScript.

They survive papermill and HTML export where plotly does not (plotly's `fig.show()`
under papermill leaves nothing a static report can show, and inline plotly.js is
megabytes per figure). Both functions return a `Chart`, a `str` of SVG that displays in Jupyter and is stored in the notebook as
`image/svg+xml` (plus an inline `text/html` copy IPython adds from `_repr_html_`).

    line_chart({"5xx/min": [(t0, 0.0), (t1, 42.0)]}, markers=[(deployed_at, "v42")],
               threshold=10, title="Errors", y_label="req/min")
    bar_chart({"/health": 3.0, "/manuscripts": 120.0}, unit="ms", title="p95 latency")
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from xml.sax.saxutils import escape, quoteattr

X = datetime | float | int

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777")
FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif"
INK, MUTED, GRID = "#1f2937", "#6b7280", "#e5e7eb"


class Chart(str):
    """An SVG string that Jupyter displays and nbconvert keeps.

    A `str` subclass, so `line_chart(...)` *is* the SVG text (write it, embed it in
    HTML, concatenate it) and, as the last expression of a cell, shows as a chart.
    """

    __slots__ = ()

    @property
    def svg(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"<Chart: {len(self)} characters of SVG>"

    def _repr_svg_(self) -> str:
        return self.svg

    def _repr_html_(self) -> str:
        return f'<div class="ob-chart">{self.svg}</div>'

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, str]:
        return {"image/svg+xml": self.svg, "text/plain": repr(self)}


# ---- helpers -------------------------------------------------------------------
def _num(x: X) -> float:
    return x.timestamp() if isinstance(x, datetime) else float(x)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.3g}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.3g}k"
    return f"{v:.4g}"


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks: list[float] = []
    v = start
    while v <= hi + step * 0.5 and len(ticks) < 20:
        ticks.append(round(v, 10))
        v += step
    return ticks


TIME_STEPS = (
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
    2592000,
)


def _time_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    step = next((s for s in TIME_STEPS if (hi - lo) / s <= count), TIME_STEPS[-1])
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) // step) + 1)]


def _time_label(ts: float, span: float, tz: tzinfo | None) -> str:
    dt = datetime.fromtimestamp(ts, tz)
    if span <= 2 * 86400:
        return dt.strftime("%H:%M")
    return dt.strftime("%m-%d %H:%M") if span <= 14 * 86400 else dt.strftime("%Y-%m-%d")


def _text(
    x: float,
    y: float,
    s: str,
    *,
    anchor: str = "start",
    size: int = 11,
    color: str = MUTED,
    weight: str = "normal",
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
        f'fill="{color}" font-weight="{weight}">{escape(s)}</text>'
    )


def _open(width: int, height: int, title: str) -> list[str]:
    label = quoteattr(title or "chart")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label={label} style="{FONT}">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    if title:
        parts.append(f"<title>{escape(title)}</title>")
        parts.append(_text(12, 20, title, size=13, color=INK, weight="600"))
    return parts


def _no_data(width: int, height: int, title: str) -> str:
    parts = _open(width, height, title)
    parts.append(
        f'<rect x="12" y="32" width="{width - 24}" height="{height - 44}" fill="none" '
        f'stroke="{GRID}" stroke-dasharray="4 4"/>'
    )
    parts.append(_text(width / 2, height / 2 + 10, "no data", anchor="middle", size=13))
    parts.append("</svg>")
    return "".join(parts)


# ---- charts --------------------------------------------------------------------
def line_chart(
    series: Mapping[str, Sequence[tuple[X, float]]],
    *,
    title: str = "",
    y_label: str = "",
    markers: Sequence[tuple[X, str]] = (),
    threshold: float | None = None,
    width: int = 720,
    height: int = 240,
) -> Chart:
    """Lines over time (datetime x) or any number x, with vertical markers (deployments)
    and an optional horizontal threshold. Points with a NaN y break the line."""
    clean = {
        name: sorted(((_num(x), float(y)) for x, y in pts), key=lambda p: p[0])
        for name, pts in series.items()
    }
    points = [p for pts in clean.values() for p in pts if not math.isnan(p[1])]
    if not points:
        return Chart(_no_data(width, height, title))
    times = [x for pts in series.values() for x, _ in pts if isinstance(x, datetime)]
    tz = times[0].tzinfo if times else None  # label times in the data's own zone

    xs = [p[0] for p in points]
    ys = [p[1] for p in points] + ([threshold] if threshold is not None else [])
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    yticks = _nice_ticks(min(0.0, min(ys)), max(ys))
    y0, y1 = yticks[0], yticks[-1]

    left, right, top, bottom = 56, 16, 34 if title else 14, 40
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    parts = _open(width, height, title)
    for t in yticks:  # grid and y labels
        y = sy(t)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="{GRID}"/>'
        )
        parts.append(_text(left - 6, y + 4, _fmt(t), anchor="end", size=10))
    if y_label:
        parts.append(
            f'<text transform="translate(13 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle" '
            f'font-size="10" fill="{MUTED}">{escape(y_label)}</text>'
        )
    xticks = _time_ticks(x0, x1) if times else _nice_ticks(x0, x1)
    for xv in (t for t in xticks if x0 <= t <= x1):  # x labels
        label = _time_label(xv, x1 - x0, tz) if times else _fmt(xv)
        parts.append(
            f'<line x1="{sx(xv):.1f}" y1="{top + ph}" x2="{sx(xv):.1f}" y2="{top + ph + 4}" '
            f'stroke="{MUTED}"/>'
        )
        parts.append(_text(sx(xv), top + ph + 16, label, anchor="middle", size=10))
    parts.append(
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="{MUTED}"/>'
    )

    if threshold is not None:
        y = sy(threshold)
        parts.append(
            f'<line class="threshold" x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" '
            f'stroke="#dc2626" stroke-dasharray="6 4" stroke-width="1.2"/>'
        )
        parts.append(
            _text(
                left + pw - 4,
                y - 4,
                f"threshold {_fmt(threshold)}",
                anchor="end",
                size=10,
                color="#dc2626",
            )
        )

    for mark, label in markers:
        at = _num(mark)
        if not x0 <= at <= x1:
            continue
        px = sx(at)
        parts.append(
            f'<g class="marker"><line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{top + ph}" '
            f'stroke="#7c3aed" stroke-dasharray="3 3"/>'
            + _text(px + 3, top + 10, label, size=10, color="#7c3aed")
            + "</g>"
        )

    legend_x = float(left + 8)
    for i, (name, pts) in enumerate(clean.items()):
        color = PALETTE[i % len(PALETTE)]
        runs: list[list[tuple[float, float]]] = [[]]
        for x, y in pts:
            if math.isnan(y):
                runs.append([])
            else:
                runs[-1].append((x, y))
        for run in runs:
            if len(run) == 1:
                x, y = run[0]
                parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>')
            elif run:
                coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in run)
                parts.append(
                    f'<polyline class="series" points="{coords}" fill="none" stroke="{color}" '
                    f'stroke-width="1.8" stroke-linejoin="round"/>'
                )
        if len(clean) > 1 or name:
            parts.append(
                f'<rect x="{legend_x}" y="{height - 12}" width="10" height="3" fill="{color}"/>'
            )
            parts.append(_text(legend_x + 14, height - 8, name, size=10, color=INK))
            legend_x += 24 + 6.2 * len(name)
    parts.append("</svg>")
    return Chart("".join(parts))


def bar_chart(
    values: Mapping[str, float],
    *,
    title: str = "",
    unit: str = "",
    width: int = 720,
    height: int | None = None,
) -> Chart:
    """Horizontal bars, one per label, in the given order. Height grows with the bars."""
    items = [(str(k), float(v)) for k, v in values.items() if not math.isnan(float(v))]
    top = 34 if title else 12
    if height is None:
        height = top + 10 + 24 * max(len(items), 3)
    if not items:
        return Chart(_no_data(width, height, title))
    label_w = min(260, 14 + 6.6 * max(len(k) for k, _ in items))
    value_w = 80
    pw = width - label_w - value_w - 12
    hi = max(max(v for _, v in items), 0.0)
    lo = min(min(v for _, v in items), 0.0)
    span = (hi - lo) or 1.0
    bar_h = max(8.0, min(18.0, (height - top - 10) / len(items) - 6))
    step = (height - top - 10) / len(items)

    def sx(v: float) -> float:
        return label_w + (v - lo) / span * pw

    parts = _open(width, height, title)
    zero = sx(0.0)
    for i, (label, v) in enumerate(items):
        y = top + i * step + (step - bar_h) / 2
        x_a, x_b = sorted((zero, sx(v)))
        color = PALETTE[0] if v >= 0 else PALETTE[1]
        parts.append(_text(label_w - 8, y + bar_h - 4, label, anchor="end", size=11, color=INK))
        parts.append(
            f'<rect class="bar" x="{x_a:.1f}" y="{y:.1f}" width="{max(x_b - x_a, 1):.1f}" '
            f'height="{bar_h:.1f}" rx="2" fill="{color}"/>'
        )
        parts.append(_text(x_b + 6, y + bar_h - 4, f"{_fmt(v)}{unit and ' ' + unit}", size=10))
    parts.append(
        f'<line x1="{zero:.1f}" y1="{top}" x2="{zero:.1f}" y2="{height - 10}" stroke="{MUTED}"/>'
    )
    parts.append("</svg>")
    return Chart("".join(parts))
