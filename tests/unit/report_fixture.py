"""A realistic executed runbook notebook and its record, built in code (no files)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from opsbook.charts import line_chart

VERDICT_CAUSE = "bad-deploy"
VERDICT_EVIDENCE = "version v42 deployed 10:02 answers 500 on /health"
PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _step_html(n: int, title: str) -> dict[str, Any]:
    return {
        "text/html": f'<div class="ob-step"><span class="ob-step-n">Step {n}</span> {title}</div>',
        "text/plain": f"Step {n}: {title}",
    }


def build(*, failed: bool = True) -> tuple[nbformat.NotebookNode, dict[str, Any]]:
    cells = [
        new_markdown_cell(
            "# API down\n\nDiagnose an API that does not answer, and roll back a bad deploy."
        ),
        new_code_cell(
            'env = "local"\nwindow_minutes = 30\napprove = []', metadata={"tags": ["parameters"]}
        ),
        new_code_cell(
            'env = "local"\nwindow_minutes = 60\napprove = ["rollback"]\nincident = "INC-42"',
            metadata={"tags": ["injected-parameters"]},
        ),
        new_code_cell("import opsbook\nfrom opsbook import steps\np = opsbook.connect(env)"),
        new_markdown_cell("## 1. Probe the API\n\nIs `/health` answering, and how fast?"),
    ]
    for n in range(1, 6):
        code = new_code_cell(
            f"with steps.step('Check {n}'):\n    r = p.app.probe('/health')  # timing\n    r.status_code",
            execution_count=n,
        )
        code.outputs = [
            new_output("display_data", data=_step_html(n, f"Check {n}")),
            new_output("stream", name="stdout", text=f"GET /health -> 500 in {12 + n} ms\n"),
            new_output(
                "display_data",
                data={
                    "text/html": '<div class="ob-step-end"><span class="ob-badge ob-pass">passed</span> '
                    f'Check {n} <span class="ob-dim">0.{n}1 s</span></div>',
                    "text/plain": "passed",
                },
            ),
        ]
        cells += [code, new_markdown_cell(f"Check {n} tells us about layer {n}.")]
    pts = [(T0 + timedelta(minutes=i), 2 + 40 * (i > 20) + 3 * math.sin(i)) for i in range(60)]
    chart = line_chart(
        {"5xx/min": pts}, title="Errors", markers=[(T0 + timedelta(minutes=20), "deploy v42")]
    )
    chart_cell = new_code_cell("charts.line_chart(errors)", execution_count=6)
    chart_cell.outputs = [
        new_output(
            "execute_result",
            data={
                "image/svg+xml": chart,
                "text/html": chart._repr_html_(),
                "text/plain": repr(chart),
            },
            execution_count=6,
        ),
        new_output(
            "display_data", data={"application/vnd.plotly.v1+json": {"data": [], "layout": {}}}
        ),
        new_output(
            "display_data",
            data={
                "text/html": '<div class="ob-verdict ob-verdict-fail"><div class="ob-verdict-title">'
                'Verdict: <span class="ob-badge ob-fail">bad-deploy</span></div></div>'
                '<script src="https://cdn.plot.ly/plotly.min.js"></script>',
                "text/plain": "verdict",
            },
        ),
        new_output(
            "display_data",
            data={
                "text/html": '<table class="ob-table"><tr><th>version</th><th>created</th></tr>'
                "<tr><td>v42</td><td>10:02</td></tr><tr><td>v41</td><td>yesterday</td></tr></table>",
                "text/plain": "table",
            },
        ),
    ]
    cells.append(chart_cell)
    bad = new_code_cell("steps.action('rollback', risk='reversible')", execution_count=7)
    if failed:
        bad.outputs = [
            new_output(
                "error",
                ename="ConflictError",
                evalue="secret changed since version (10220)",
                traceback=[
                    "\x1b[0;31m---------------------------------------------------------------\x1b[0m",
                    "\x1b[0;31mConflictError\x1b[0m                 Traceback (most recent call last)",
                    "Cell \x1b[0;32mIn[7], line 1\x1b[0m\n\x1b[0;32m----> 1\x1b[0m steps\x1b[38;5;241m.\x1b[39maction(\x1b[38;5;124m'rollback'\x1b[39m)",
                    "\x1b[0;31mConflictError\x1b[0m: secret changed since version (10220)",
                ],
            )
        ]
    cells.append(bad)
    png = new_code_cell("fig", execution_count=8)
    png.outputs = [
        new_output("display_data", data={"image/png": PNG_1PX, "text/plain": "<Figure>"})
    ]
    cells += [
        png,
        new_code_cell("steps.verify()"),
        new_markdown_cell("## Escalation\n\nPage the on-call."),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    failed_index = cells.index(bad)
    record: dict[str, Any] = {
        "schema_version": 1,
        "run": {
            "id": "20261123T101500Z-3f9a",
            "runbook": "api-down",
            "env": "local",
            "incident": "INC-42",
            "operator": "alice",
            "mode": "headless",
            "started": "2026-11-23T10:15:00.123+00:00",
            "ended": "2026-11-23T10:15:03.323+00:00",
            "duration_s": 3.2,
            "status": "failed" if failed else "completed",
            "exit_code": 1 if failed else 0,
        },
        "parameters": {"env": "local", "window_minutes": 60},
        "approved": ["rollback"],
        "steps": [
            {"title": f"Check {n}", "status": "passed", "duration_s": n / 10, "error": None}
            for n in range(1, 6)
        ],
        "findings": [
            {"severity": "error", "message": "/health answers 500 since 10:02", "evidence": {}},
            {"severity": "info", "message": "Cloudflare status: all systems operational"},
        ],
        "verdict": {
            "cause": VERDICT_CAUSE,
            "evidence": [VERDICT_EVIDENCE, {"version": "v42", "errors_per_min": 42.5}],
            "remedy": "Roll back to v41 (approve: --approve rollback).",
            "at": "2026-11-23T10:15:02+00:00",
        },
        "actions": [
            {
                "id": "rollback",
                "risk": "reversible",
                "mode": "failed" if failed else "applied",
                "preview": {
                    "call": "POST /accounts/023e105f4ecef8ad9ca31a8372d0c353/workers/scripts/api/deployments",
                    "body": {"versions": [{"version_id": "v41", "percentage": 100}]},
                    "wrangler": "npx wrangler rollback v41 --name api",
                },
                "result": None,
                "error": "ConflictError: secret changed since version (10220)" if failed else None,
                "approved_by": "alice",
            },
            {
                "id": "purge-cache",
                "risk": "reversible",
                "mode": "dry-run",
                "preview": {"call": "POST /zones/x/purge_cache"},
            },
        ],
        "error": {
            "ename": "ConflictError",
            "evalue": "secret changed since version (10220)",
            "cell_index": failed_index,
            "cell_id": bad.id,
            "timeout": False,
        }
        if failed
        else None,
        "files": {"notebook": "notebook.ipynb", "html": "report.html", "record": "record.json"},
    }
    return nb, record
