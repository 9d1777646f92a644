"""The incident record: `record.json` (schema_version 1) built from a run folder.

`build()` reads the context, the journal of events and the executed notebook, and
returns the record; `archive()` scrubs secrets from everything, writes the notebook,
the HTML and the record atomically, and updates the index. The runner calls
`archive()` on every exit path, so a failed or aborted run still leaves its record.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from .runfolder import (
    CONTEXT,
    EVENTS,
    NOTEBOOK,
    RECORD,
    REPORT,
    iso,
    read_context,
    read_events,
    write_atomic,
    write_json,
)

SCHEMA_VERSION = 1
STATUSES = ("completed", "failed", "aborted", "open")


def notebook_error(nb: Any) -> dict[str, Any] | None:
    """The first failing cell of an executed notebook, if any."""
    if nb is None:
        return None
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                if output.get("ename") == "SystemExit" and output.get("evalue") in ("", "0"):
                    continue
                return {
                    "ename": output.get("ename", ""),
                    "evalue": output.get("evalue", ""),
                    "cell_index": index,
                    "cell_id": cell.get("id"),
                    "timeout": False,
                }
        if cell.get("metadata", {}).get("papermill", {}).get("exception"):
            return {
                "ename": "CellExecutionError",
                "evalue": "",
                "cell_index": index,
                "cell_id": cell.get("id"),
                "timeout": False,
            }
    return None


def exit_code_for(status: str, verdict: dict[str, Any] | None) -> int | None:
    if status == "failed":
        return 1
    if status == "aborted":
        return 130
    if status == "open":
        return None
    if verdict is not None and verdict.get("cause") != "healthy":
        return 3
    return 0


def build(
    run_dir: Path,
    *,
    status: str,
    nb: Any = None,
    error: dict[str, Any] | None = None,
    ended: datetime | None = None,
) -> dict[str, Any]:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}")
    context = read_context(run_dir)
    events = read_events(run_dir)
    steps = [
        {k: e.get(k) for k in ("title", "status", "started", "ended", "duration_s", "error", "seq")}
        for e in events
        if e.get("type") == "step"
    ]
    findings = [
        {k: e.get(k) for k in ("severity", "message", "evidence", "step", "at", "seq")}
        for e in events
        if e.get("type") == "finding"
    ]
    verdicts = [e for e in events if e.get("type") == "verdict"]
    verdict = None
    if verdicts:
        last = verdicts[-1]
        verdict = {k: last.get(k) for k in ("cause", "meaning", "evidence", "remedy", "at", "seq")}
    actions = [
        {
            k: e.get(k)
            for k in (
                "id",
                "risk",
                "mode",
                "preview",
                "result",
                "error",
                "approved_by",
                "approve_with",
                "key",
                "at",
                "seq",
            )
        }
        for e in events
        if e.get("type") == "action"
    ]
    verifications = [
        {k: e.get(k) for k in ("passed", "what", "evidence", "at", "seq")}
        for e in events
        if e.get("type") == "verification"
    ]
    severity = next(
        (e.get("severity") for e in events if e.get("type") == "start" and e.get("severity")), None
    )
    error = error or notebook_error(nb)
    if status == "completed" and error is not None:
        status = "failed"
    started = context.get("started")
    ended_iso = None if status == "open" else iso(ended)
    duration = None
    if started and ended_iso:
        duration = round(
            (datetime.fromisoformat(ended_iso) - datetime.fromisoformat(started)).total_seconds(), 3
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "id": context["id"],
            "runbook": context["runbook"],
            "env": context.get("env"),
            "incident": context.get("incident"),
            "operator": context.get("operator"),
            "mode": context.get("mode", "headless"),
            "started": started,
            "ended": ended_iso,
            "duration_s": duration,
            "status": status,
            "exit_code": exit_code_for(status, verdict),
            "severity": severity,
        },
        "parameters": context.get("parameters", {}),
        "approved": context.get("approved", []),
        "steps": steps,
        "findings": findings,
        "verdict": verdict,
        "actions": actions,
        "verification": verifications[-1] if verifications else None,
        "error": error,
        "files": {"notebook": NOTEBOOK, "html": REPORT, "record": RECORD},
    }


def archive(
    run_dir: Path,
    record: dict[str, Any],
    nb: Any,
    scrubber: Any,
    outputs: Path,
) -> dict[str, Any]:
    """Scrub, write notebook + HTML + record atomically, update the index. Returns the record."""
    import nbformat

    from . import render
    from .index import Index

    record = scrubber.obj(record)
    if nb is not None:
        nb = scrubber.notebook(nb)
        write_atomic(run_dir / NOTEBOOK, nbformat.writes(nb))
        html = render.render_html(nb, record)
        write_atomic(run_dir / REPORT, scrubber.text(html))
    for name in (EVENTS, CONTEXT):
        path = run_dir / name
        if path.exists():
            write_atomic(path, scrubber.text(path.read_text(encoding="utf-8")))
    write_json(run_dir / RECORD, record)
    with Index(outputs) as index:
        index.upsert(record, run_dir)
        index.write_html()
    return record
