"""report.html: verdict and failure on top, anchors, small, offline, plots survive."""

from __future__ import annotations

import re
import threading
from html.parser import HTMLParser

from report_fixture import VERDICT_CAUSE, VERDICT_EVIDENCE, build

from opsbook import render

EXTERNAL_LOAD = re.compile(
    r"<script[^>]*\bsrc=|<link[^>]*\bhref=|@import|url\(\s*['\"]?https?:|<i?frame[^>]*\bsrc=[\"']?https?:",
    re.I,
)


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids += [v for k, v in attrs if k == "id" and v]


def _top(page: str) -> str:
    body = page.split("<body>", 1)[1]
    return body.split('class="ob-notebook"', 1)[0]


def test_verdict_and_failed_cell_are_at_the_top() -> None:
    nb, record = build(failed=True)
    page = render.render_html(nb, record)
    top = _top(page)
    index = record["error"]["cell_index"]
    assert VERDICT_CAUSE in top and VERDICT_EVIDENCE in top
    assert "Roll back to v41" in top  # the remedy
    assert f'href="#cell-{index}"' in top
    assert "ConflictError: secret changed since version (10220)" in top
    assert top.index(VERDICT_CAUSE) < top.index("ConflictError")
    assert "<title>opsbook · api-down · 20261123T101500Z-3f9a</title>" in page
    assert "ob-badge ob-fail" in top and ">failed<" in top  # the status badge
    assert "npx wrangler rollback v41 --name api" in top  # the actions
    assert ">dry-run<" in top
    assert "2026-11-23 10:15:00 UTC" in top


def test_every_cell_has_an_anchor_and_the_failed_one_is_marked() -> None:
    nb, record = build(failed=True)
    page = render.render_html(nb, record)
    parser = _Ids()
    parser.feed(page)
    for n in range(len(nb.cells)):
        assert f"cell-{n}" in parser.ids
    index = record["error"]["cell_index"]
    assert re.search(rf'class="ob-cell ob-cell-code ob-cell-failed" id="cell-{index}"', page)
    assert "Parameters (injected)" in page
    assert "Parameters (defaults)" in page
    assert len(parser.ids) == len(set(parser.ids)), "duplicate ids"


def test_completed_run_has_no_failure_box() -> None:
    nb, record = build(failed=False)
    record["verdict"] = {"cause": "healthy", "evidence": ["all probes 200"], "remedy": None}
    page = render.render_html(nb, record)
    top = _top(page)
    assert "ob-error-box" not in top and "ob-cell-failed" not in page.split("<body>")[1]
    assert "ob-v-pass" in top and "healthy" in top and ">completed<" in top


def test_run_without_verdict_says_so() -> None:
    nb, record = build(failed=True)
    record["verdict"] = None
    record["actions"] = []
    assert "The run ended before a verdict." in _top(render.render_html(nb, record))


def test_small_and_offline() -> None:
    nb, record = build(failed=True)
    assert 20 <= len(nb.cells) <= 22
    page = render.render_html(nb, record)
    size = len(page.encode("utf-8"))
    assert size <= 40_000, f"report is {size} bytes"
    assert not EXTERNAL_LOAD.search(page), EXTERNAL_LOAD.search(page)
    assert "<script" not in page  # no JS at all, even the output's plotly loader is dropped
    assert "cdn.plot.ly" not in page


def test_plots_survive() -> None:
    nb, record = build(failed=True)
    page = render.render_html(nb, record)
    assert "<svg" in page and "deploy v42" in page  # the inline SVG chart
    assert "data:image/png;base64,iVBOR" in page  # the PNG figure
    assert "Interactive plotly figure" in page  # plotly-only output becomes a note
    assert 'class="ob-table"' in page and "ob-step-n" in page  # steps' rich HTML kept


def test_the_input_notebook_is_not_modified() -> None:
    nb, record = build(failed=True)
    chart = next(c for c in nb.cells if c.source.startswith("charts."))
    plotly = dict(chart.outputs[1]["data"])
    render.render_html(nb, record)
    assert "opsbook_render" not in nb.cells[0].metadata
    assert chart.outputs[1]["data"] == plotly


def test_one_exporter_shared_across_threads() -> None:
    assert render.exporter() is render.exporter()
    nb, record = build(failed=True)
    expected = render.render_html(nb, record)
    results: list[str] = []

    def work() -> None:
        results.append(render.render_html(nb, record))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


def test_scrubbing_the_page_changes_nothing_without_secrets() -> None:
    from opsbook.scrub import Scrubber

    nb, record = build(failed=True)
    page = render.render_html(nb, record)
    assert Scrubber().text(page) == page  # no false positive in our markup, CSS, SVG, PNG
