"""The batch summary page: self-contained HTML (render.page's stylesheet, no script)."""

from __future__ import annotations

from typing import Any

from .render import badge, esc, page

OUTCOME_BADGE = {
    "ok": "pass",
    "problem": "warn",
    "failed": "fail",
    "aborted": "warn",
    "error": "fail",
    "not-run": "info",
}


def _secs(value: Any) -> str:
    return f"{value:.1f} s" if isinstance(value, int | float) else ""


def summary_page(data: dict[str, Any]) -> str:
    counts = data["counts"]
    shown = [f"{badge(OUTCOME_BADGE[o], f'{o}: {n}')}" for o, n in counts.items() if n]
    kind = {0: "pass", 3: "warn"}.get(data["exit_code"], "fail")
    rows = []
    for j in data["jobs"]:
        link = f'<a href="{esc(j["report"])}">report</a>' if j.get("report") else ""
        params = ", ".join(f"{k}={v}" for k, v in (j.get("parameters") or {}).items())
        error = f'<div class="ob-error-inline">{esc(j["error"])}</div>' if j.get("error") else ""
        rows.append(
            f"<tr><td>{j['n']}</td><td><strong>{esc(j['runbook'])}</strong>"
            f"<br><span class='ob-dim'>{esc(params)}</span></td><td>{esc(j['env'])}</td>"
            f"<td>{badge(OUTCOME_BADGE.get(str(j['outcome']), 'info'), str(j['outcome']))}</td>"
            f"<td>{esc(j.get('status') or '')}</td><td>{esc(j.get('verdict') or '')}{error}</td>"
            f"<td>{esc(j.get('exit_code'))}</td><td>{_secs(j.get('duration_s'))}</td>"
            f"<td>{link}</td></tr>"
        )
    parallel = str(data["parallel"])
    if data.get("parallel_asked"):
        parallel += f" (asked {data['parallel_asked']}, capped at the CPU count)"
    meta = [
        ("file", data["file"]),
        ("started", data["started"]),
        ("ended", data["ended"]),
        ("parallel", parallel),
        ("exit code", data["exit_code"]),
    ]
    if data["interrupted"]:
        meta.append(("interrupted", "yes: jobs not started are not-run"))
    dl = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in meta)
    body = (
        f'<main><header class="ob-head ob-s-{kind}"><div class="ob-kicker">opsbook batch</div>'
        f"<h1>{esc(data['name'])} · {len(data['jobs'])} runs</h1>"
        f"<p>{' '.join(shown)}</p><dl class='ob-meta'>{dl}</dl></header>"
        '<section class="ob-box"><table class="ob-table"><thead><tr><th>#</th>'
        "<th>runbook</th><th>env</th><th>outcome</th><th>status</th><th>verdict</th>"
        "<th>exit</th><th>duration</th><th></th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section></main>"
    )
    return page(f"opsbook · batch {data['name']}", body)
