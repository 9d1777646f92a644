"""In-process HTML rendering of a run: the verdict on top, the notebook below.

One nbconvert `HTMLExporter` (the `basic` template: body only, no 280 KB lab CSS) is
built on first use and reused under a lock; building it per call costs more than the
export. The page around it is ours: a small inline stylesheet, no CDN, no external
resource, no JavaScript. The header comes from the record (`summary`): runbook,
environment, status, the verdict with its evidence and remedy, the actions, and for a
failed run the failed cell with a link to it. Every cell has an anchor `#cell-N`
(N = its index in `nb.cells`, as in the record's `error.cell_index`).

Outputs are kept as a static archive: text/html (the steps API's rich HTML), SVG and
PNG survive; `<script>` and `<link>` tags, JavaScript and widget outputs are dropped.
A plotly figure (`application/vnd.plotly.v1+json`) with no static image becomes a short
note: use `opsbook.charts` for plots that must survive into the record.

The caller scrubs secrets before rendering (`Scrubber.notebook`, `Scrubber.obj`).
"""

from __future__ import annotations

import copy
import html
import json
import re
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._style import PAGE_CSS

if TYPE_CHECKING:
    import nbformat
    from nbconvert import HTMLExporter

INJECTED_TAG = "injected-parameters"
PARAMETERS_TAG = "parameters"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
DROPPED_MIME = (
    "application/javascript",
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.bokehjs_exec.v0+json",
    "application/vnd.bokehjs_load.v0+json",
)
STATUS_BADGE = {"completed": "pass", "failed": "fail", "aborted": "warn", "open": "info"}
MODE_BADGE = {
    "applied": "applied",
    "dry-run": "dry",
    "refused": "fail",
    "failed": "fail",
    "skipped": "info",
}
SEVERITY_BADGE = {"info": "info", "warning": "warn", "error": "fail", "critical": "fail"}
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>|<script\b[^>]*/>", re.I | re.S)
_LINK = re.compile(r"<link\b[^>]*>", re.I)

TEMPLATE = r"""
{%- extends 'index.html.j2' -%}
{%- block any_cell scoped -%}
{%- set ob = cell.metadata.get('opsbook_render', {}) -%}
<section class="ob-cell ob-cell-{{ cell.cell_type }}{{ ob.get('classes', '') }}" id="cell-{{ ob.get('n') }}">
{%- if ob.get('label') -%}
<div class="ob-cell-label"><a href="#cell-{{ ob.get('n') }}">{{ ob.get('label') | escape_html }}</a></div>
{%- endif -%}
{{ super() }}
</section>
{%- endblock any_cell -%}
"""

_lock = threading.Lock()
_exporter: HTMLExporter | None = None


def exporter() -> HTMLExporter:
    """The shared exporter, built on first use (imports nbconvert: ~0.5 s)."""
    global _exporter
    with _lock:
        if _exporter is None:
            from jinja2 import DictLoader
            from nbconvert import HTMLExporter

            _exporter = HTMLExporter(
                template_name="basic",
                template_file="opsbook.html.j2",
                extra_loaders=[DictLoader({"opsbook.html.j2": TEMPLATE})],
                exclude_input_prompt=True,
                exclude_output_prompt=True,
                anchor_link_text="#",
            )
        return _exporter


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def badge(kind: str, text: str) -> str:
    return f'<span class="ob-badge ob-{esc(kind)}">{esc(text)}</span>'


# ---- the notebook --------------------------------------------------------------------
def _failed_index(nb: nbformat.NotebookNode, error: Mapping[str, Any] | None) -> int | None:
    if not error:
        return None
    cell_id = error.get("cell_id")
    if cell_id:
        for i, cell in enumerate(nb.cells):
            if cell.get("id") == cell_id:
                return i
    index = error.get("cell_index")
    return index if isinstance(index, int) and 0 <= index < len(nb.cells) else None


def _clean_output(out: Any) -> None:
    data = out.get("data")
    if not isinstance(data, dict):
        return
    for mime in DROPPED_MIME:
        data.pop(mime, None)
    if PLOTLY_MIME in data:
        data.pop(PLOTLY_MIME)
        if not any(m in data for m in ("image/svg+xml", "image/png", "image/jpeg")):
            data.pop("text/html", None)
            data["text/html"] = (
                '<div class="ob-note">Interactive plotly figure: not kept in the static '
                "report. Use <code>opsbook.charts</code> for plots that survive the record.</div>"
            )
    if isinstance(data.get("text/html"), str | list):
        text = data["text/html"]
        text = "".join(text) if isinstance(text, list) else text
        data["text/html"] = _LINK.sub("", _SCRIPT.sub("", text))


def _prepare(nb: nbformat.NotebookNode, failed: int | None) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for n, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        classes, label = "", ""
        if cell.cell_type == "code":
            label = f"cell {n}"
            if INJECTED_TAG in tags:
                label, classes = "Parameters (injected)", " ob-cell-params"
            elif PARAMETERS_TAG in tags:
                label, classes = "Parameters (defaults)", " ob-cell-params"
            for out in cell.get("outputs", []):
                _clean_output(out)
                for mime in ("image/png", "image/jpeg"):
                    if mime in out.get("data", {}):
                        meta = out.setdefault("metadata", {}).setdefault(mime, {})
                        meta.setdefault("alt", f"figure in cell {n}")
        if n == failed:
            label, classes = f"cell {n} · failed here", classes + " ob-cell-failed"
        cell.metadata["opsbook_render"] = {"n": n, "label": label, "classes": classes}
    return nb


# ---- the header ----------------------------------------------------------------------
def _evidence_item(item: Any) -> str:
    if isinstance(item, Mapping):
        parts = [
            f"<span class='ob-k'>{esc(k)}</span> <code>{esc(_short(v))}</code>"
            for k, v in item.items()
        ]
        return " · ".join(parts)
    return esc(item)


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _verdict_block(verdict: Mapping[str, Any] | None, status: str) -> str:
    if not verdict:
        note = "The run ended before a verdict." if status != "completed" else "No verdict."
        return f'<section class="ob-box ob-verdict-box ob-v-none"><h2>Verdict</h2><p>{note}</p></section>'
    cause = str(verdict.get("cause") or "unknown")
    kind = "pass" if cause == "healthy" else "warn" if cause == "unknown" else "fail"
    evidence = verdict.get("evidence") or []
    if isinstance(evidence, Mapping | str):
        evidence = [evidence]
    items = "".join(f"<li>{_evidence_item(e)}</li>" for e in evidence)
    remedy = verdict.get("remedy")
    return (
        f'<section class="ob-box ob-verdict-box ob-v-{kind}">'
        f'<h2>Verdict</h2><div class="ob-cause">{esc(cause)}</div>'
        + (f'<h3>Evidence</h3><ul class="ob-evidence">{items}</ul>' if items else "")
        + (f'<div class="ob-remedy"><strong>Remedy</strong> {esc(remedy)}</div>' if remedy else "")
        + "</section>"
    )


def _error_block(error: Mapping[str, Any] | None, failed: int | None) -> str:
    if not error:
        return ""
    where = (
        f'<a href="#cell-{failed}">cell {failed} ↓</a>' if failed is not None else "an unknown cell"
    )
    timeout = " (timed out)" if error.get("timeout") else ""
    return (
        '<section class="ob-box ob-error-box"><h2>Failed' + timeout + "</h2>"
        f"<p>The run stopped at {where}:</p>"
        f'<pre class="ob-error">{esc(error.get("ename"))}: {esc(error.get("evalue"))}</pre></section>'
    )


def _actions_block(actions: list[Mapping[str, Any]]) -> str:
    if not actions:
        return ""
    rows = []
    for a in actions:
        mode = str(a.get("mode") or "")
        preview = a.get("preview") or {}
        lines = [
            f"<code>{esc(preview[k])}</code>"
            for k in ("call", "wrangler", "stripe", "sql")
            if isinstance(preview, Mapping) and preview.get(k)
        ]
        detail = "<br>".join(lines)
        if a.get("error"):
            detail += f'<div class="ob-error-inline">{esc(_short(a["error"]))}</div>'
        rows.append(
            f"<tr><td><strong>{esc(a.get('id'))}</strong></td><td>{esc(a.get('risk'))}</td>"
            f"<td>{badge(MODE_BADGE.get(mode, 'info'), mode)}</td><td>{detail}</td>"
            f"<td>{esc(a.get('approved_by') or '')}</td></tr>"
        )
    return (
        '<section class="ob-box"><h2>Actions</h2><table class="ob-table">'
        "<tr><th>action</th><th>risk</th><th>mode</th><th>call</th><th>approved by</th></tr>"
        + "".join(rows)
        + "</table></section>"
    )


def _steps_block(steps: list[Mapping[str, Any]], findings: list[Mapping[str, Any]]) -> str:
    if not steps and not findings:
        return ""
    out = ['<section class="ob-box ob-cols">']
    if steps:
        items = "".join(
            f"<li>{badge('pass' if s.get('status') == 'passed' else 'fail', s.get('status') or '?')} "
            f"{esc(s.get('title'))} <span class='ob-dim'>{_secs(s.get('duration_s'))}</span>"
            + (f"<div class='ob-error-inline'>{esc(s['error'])}</div>" if s.get("error") else "")
            + "</li>"
            for s in steps
        )
        out.append(f'<div><h2>Steps</h2><ol class="ob-steps">{items}</ol></div>')
    if findings:
        items = "".join(
            f"<li>{badge(SEVERITY_BADGE.get(str(f.get('severity')), 'info'), f.get('severity') or 'info')} "
            f"{esc(f.get('message'))}</li>"
            for f in findings
        )
        out.append(f'<div><h2>Findings</h2><ul class="ob-findings">{items}</ul></div>')
    out.append("</section>")
    return "".join(out)


def _when(value: Any) -> str:
    """`2026-11-23T10:15:00.123+00:00` -> `2026-11-23 10:15:00 UTC`."""
    if not value:
        return ""
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    zone = dt.strftime("%z")
    zone = "UTC" if zone in ("+0000", "") else f"{zone[:3]}:{zone[3:]}"
    return f"{dt:%Y-%m-%d %H:%M:%S} {zone}"


def _secs(value: Any) -> str:
    return f"{value:.2f} s" if isinstance(value, int | float) else ""


def _header(summary: Mapping[str, Any], failed: int | None) -> str:
    run = summary.get("run") or {}
    status = str(run.get("status") or "open")
    meta = [
        ("run", run.get("id")),
        ("environment", run.get("env")),
        ("incident", run.get("incident")),
        ("operator", run.get("operator")),
        ("mode", run.get("mode")),
        ("started", _when(run.get("started"))),
        ("duration", _secs(run.get("duration_s"))),
        ("exit code", run.get("exit_code")),
        ("approved", ", ".join(map(str, summary.get("approved") or [])) or "none"),
    ]
    dl = "".join(
        f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in meta if v not in (None, "")
    )
    return (
        f'<header class="ob-head ob-s-{STATUS_BADGE.get(status, "info")}">'
        f'<div class="ob-kicker">opsbook run record</div>'
        f"<h1>{esc(run.get('runbook') or 'run')} "
        f"{badge(STATUS_BADGE.get(status, 'info'), status)}</h1>"
        f'<dl class="ob-meta">{dl}</dl></header>'
        + _verdict_block(summary.get("verdict"), status)
        + _error_block(summary.get("error"), failed)
        + _actions_block(list(summary.get("actions") or []))
        + _steps_block(list(summary.get("steps") or []), list(summary.get("findings") or []))
    )


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{PAGE_CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def render_html(nb: nbformat.NotebookNode, summary: dict) -> str:
    """The report page for one run: header from the record, then the notebook."""
    failed = _failed_index(nb, summary.get("error"))
    prepared = _prepare(nb, failed)
    ex = exporter()
    with _lock:
        body, _ = ex.from_notebook_node(prepared)
    run = summary.get("run") or {}
    title = f"opsbook · {run.get('runbook') or 'run'} · {run.get('id') or ''}".rstrip(" ·")
    return page(
        title,
        f"<main>{_header(summary, failed)}"
        f'<section class="ob-notebook"><h2 class="ob-nb-title">Notebook</h2>{body}</section>'
        f'<footer class="ob-foot">{esc(title)}</footer></main>',
    )
