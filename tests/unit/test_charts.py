"""Inline SVG charts: valid XML, markers, thresholds, empty data, display bundles."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from opsbook.charts import Chart, bar_chart, line_chart

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def _texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_line_chart_with_markers_and_threshold() -> None:
    pts = [(T0 + timedelta(minutes=i), float(i % 7)) for i in range(60)]
    chart = line_chart(
        {"5xx/min": pts, "p95 <ms>": [(x, y * 2) for x, y in pts]},
        title='Errors & "latency"',
        y_label="req/min",
        markers=[(T0 + timedelta(minutes=20), "deploy <v42>"), (T0 - timedelta(days=1), "old")],
        threshold=5,
    )
    assert isinstance(chart, Chart) and isinstance(chart, str)
    root = _parse(chart)
    texts = _texts(root)
    assert 'Errors & "latency"' in texts
    assert "deploy <v42>" in texts
    assert "old" not in texts  # a marker outside the x range is not drawn
    assert "threshold 5" in texts
    assert "10:10" in texts and "10:50" in texts  # round time ticks in the data's zone
    assert len([g for g in root.iter(f"{SVG}g") if g.get("class") == "marker"]) == 1
    assert len([p for p in root.iter(f"{SVG}polyline") if p.get("class") == "series"]) == 2
    assert len(chart) < 8000


def test_line_chart_numeric_x_and_nan_breaks_line() -> None:
    chart = line_chart({"a": [(1, 1.0), (2, math.nan), (3, 2.0), (4, 3.0)]}, markers=[(2, "m")])
    root = _parse(chart)
    assert len(list(root.iter(f"{SVG}polyline"))) == 1  # 3..4
    assert len(list(root.iter(f"{SVG}circle"))) == 1  # the lone point 1
    assert "m" in _texts(root)


def test_single_point_and_flat_series() -> None:
    _parse(line_chart({"a": [(T0, 5.0)]}))
    _parse(line_chart({"a": [(0, 0.0), (1, 0.0)]}))


def test_empty_series_give_a_no_data_chart() -> None:
    for chart in (
        line_chart({}, title="Errors"),
        line_chart({"a": []}),
        line_chart({"a": [(1, math.nan)]}),
        bar_chart({}, title="Latency"),
    ):
        root = _parse(chart)
        assert "no data" in _texts(root)


def test_bar_chart() -> None:
    chart = bar_chart({"/health": 3, "/manuscripts": 120.5, "<script>": -4}, unit="ms", title="p95")
    root = _parse(chart)
    assert len([r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]) == 3
    texts = _texts(root)
    assert "<script>" in texts and "120.5 ms" in texts
    assert "<script>" not in chart  # escaped


def test_display_bundle() -> None:
    chart = line_chart({"a": [(0, 1.0), (1, 2.0)]})
    bundle = chart._repr_mimebundle_()
    assert bundle["image/svg+xml"] == chart.svg
    assert bundle["text/plain"].startswith("<Chart")
    assert chart._repr_svg_() == chart.svg
    assert chart._repr_html_().startswith('<div class="ob-chart"><svg')
