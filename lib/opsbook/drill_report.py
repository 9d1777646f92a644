"""The drill matrix as a self-contained HTML page, linking every case to its run records."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from .render import page


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _run_links(run_ids: list[str], outputs: Path, folder: Path) -> str:
    from .index import Index

    links = []
    with Index(outputs) as index:
        for label, run_id in zip(("diagnose", "remedy"), run_ids, strict=False):
            try:
                row = index.get(run_id)
            except Exception:
                links.append(_esc(run_id))
                continue
            href = os.path.relpath(outputs / row["path"] / "report.html", folder)
            links.append(f'<a href="{_esc(href)}">{label}</a>')
    return " · ".join(links)


def matrix_html(rows: list[dict[str, Any]], started: str, outputs: Path, folder: Path) -> str:
    passed = sum(1 for r in rows if r["result"] == "pass")
    body_rows = []
    for r in rows:
        kind = "pass" if r["result"] == "pass" else "fail"
        verified = r["remedy_verified"]
        verified_text = "-" if verified == "-" else ("yes" if verified else "no")
        ttv = (
            f"{r['time_to_verdict_s']:.1f} s"
            if isinstance(r["time_to_verdict_s"], int | float)
            else "-"
        )
        body_rows.append(
            f"<tr><td><strong>{_esc(r['fault'])}</strong></td><td>{_esc(r['runbook'])}</td>"
            f"<td>{_esc(r['profile'])} / {_esc(r['seed'])}</td>"
            f"<td><code>{_esc(r['expected'])}</code></td><td><code>{_esc(r['verdict'])}</code></td>"
            f"<td>{_esc(r['evidence'])}</td><td>{_esc(ttv)}</td><td>{_esc(r['remedy'])}</td>"
            f"<td>{_esc(verified_text)}</td>"
            f'<td><span class="ob-badge ob-{kind}">{_esc(r["result"])}</span>'
            + (f'<div class="ob-dim">{_esc(r["error"])}</div>' if r["error"] else "")
            + f"</td><td>{_run_links(r['runs'], outputs, folder)}</td></tr>"
        )
    table = (
        '<table class="ob-table"><thead><tr><th>fault</th><th>runbook</th><th>profile / seed</th>'
        "<th>expected</th><th>verdict</th><th>evidence</th><th>time to verdict</th><th>remedy</th>"
        f"<th>verified</th><th>result</th><th>records</th></tr></thead><tbody>{''.join(body_rows)}</tbody></table>"
    )
    head = (
        f'<header class="ob-head"><div class="ob-kicker">opsbook drill matrix</div>'
        f"<h1>{passed} of {len(rows)} cases passed</h1>"
        f'<p class="ob-dim">Started {_esc(started)}. Each fault case breaks the sandbox, runs its '
        "runbook without approval (the verdict and its evidence must name the fault), then again "
        "with the proposed remedy approved (the runbook must verify the symptom is gone). Healthy "
        "cases must say healthy and propose nothing.</p></header>"
    )
    return page("opsbook · drill matrix", f"<main>{head}{table}</main>")
