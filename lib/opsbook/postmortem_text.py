"""Seed 000's "Incident Report Template", filled from an IncidentReport: Markdown and HTML.

The headings and their order are the template's. Lines only a person can write carry
`postmortem.OWNER` ("_To be written by the incident owner._").
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .postmortem import OWNER, SEVERITIES, _evidence, md

if TYPE_CHECKING:
    from .postmortem import IncidentReport

NOT_MEASURED = "not measured (no traffic source)"
SEVERITY_OWNER = "_To be set by the incident owner (Critical/High/Medium/Low)._"


def _problem(report: IncidentReport) -> dict[str, Any] | None:
    """The first verdict that names a cause (not healthy, not unknown)."""
    for record in report.records:
        verdict = record.get("verdict") or {}
        if verdict.get("cause") not in (None, "healthy", "unknown"):
            return record
    return None


def _severity(report: IncidentReport) -> str:
    """The highest severity a record carries (`severity` in the record, its run or its
    parameters), else marked for a person."""
    found = []
    for record in report.records:
        for source in (record, record.get("run") or {}, record.get("parameters") or {}):
            value = str(source.get("severity") or "").lower()
            if value in SEVERITIES:
                found.append(value)
    if not found:
        return SEVERITY_OWNER
    return min(found, key=SEVERITIES.index).capitalize()


def _affected(report: IncidentReport) -> str:
    a = report.affected
    if a is None:
        return NOT_MEASURED
    return (
        f"{a.count} {a.kind} with a 5xx between {a.start:%H:%M} and {a.end:%H:%M} UTC "
        f"(source: {md(a.source)}; share of all users not measured)"
    )


def _hhmm(at: datetime, day: str) -> str:
    stamp = f"{at:%H:%M}"
    return stamp if f"{at:%Y-%m-%d}" == day else f"{stamp} ({at:%Y-%m-%d})"


def to_markdown(report: IncidentReport) -> str:
    problem = _problem(report)
    runbooks = list(dict.fromkeys(str(r["run"]["runbook"]) for r in report.records))
    if problem:
        v = problem["verdict"]
        issue = f"{md(v['cause'])} ({md(problem['run']['runbook'])})"
    else:
        issue = ", ".join(md(r) for r in runbooks)
    day = f"{report.detected:%Y-%m-%d}"
    lines = [
        f"# Incident Report: {md(report.incident)}: {issue}",
        "",
        f"**Date:** {day}",
        f"**Duration:** {report.duration_text}",
        f"**Severity:** {_severity(report)}",
        f"**Affected Users:** {_affected(report)}",
        "",
        "## Summary",
        OWNER,
        "",
        "From the records: "
        + f"{len(report.records)} run{'s' if len(report.records) != 1 else ''} "
        + f"({', '.join(runbooks)}) on "
        + ", ".join(sorted({md(r["run"].get("env")) for r in report.records}))
        + ("; service restored." if report.recovered else "; not recovered."),
        "",
        "## Timeline",
        *[f"- {_hhmm(e.at, day)} - {e.text}" for e in report.entries],
        "",
        "## Root Cause",
        *_root_cause(problem),
        "",
        "## Resolution",
        *_resolution(report),
        "",
        "## Impact",
        f"- Number of affected users: {_affected(report)}",
        f"- Duration of impact: {report.duration_text}",
        f"- Revenue impact (if any): {OWNER}",
        f"- Data loss (if any): {OWNER}",
        "",
        "## Action Items",
        *_action_items(report),
        "",
    ]
    return "\n".join(lines)


def _root_cause(problem: dict[str, Any] | None) -> list[str]:
    if problem is None:
        return ["No run named a cause (no verdict other than healthy or unknown).", "", OWNER]
    v = problem["verdict"]
    out = [
        f"Verdict of {md(problem['run']['runbook'])} (run {problem['run']['id']}): "
        f"**{md(v['cause'])}**, {md(v.get('meaning') or '')}",
    ]
    evidence = _evidence(v.get("evidence"))
    if evidence:
        out += ["", "Evidence:", *[f"- {e}" for e in evidence]]
    if v.get("remedy"):
        out += ["", f"Remedy proposed by the runbook: {md(v['remedy'])}"]
    out += ["", f"Technical explanation beyond the verdict: {OWNER}"]
    return out


def _resolution(report: IncidentReport) -> list[str]:
    out = []
    for record in report.records:
        for a in record.get("actions") or []:
            if a.get("risk") == "read":
                continue
            mode = a.get("mode")
            who = f", approved by {md(a.get('approved_by'))}" if a.get("approved_by") else ""
            result = (
                f": `{json.dumps(a.get('result'), default=str)}`"
                if a.get("result") is not None
                else ""
            )
            state = {"applied": "applied", "dry-run": "dry run, not applied"}.get(
                str(mode), str(mode)
            )
            out.append(
                f"- {md(a['id'])} ({a.get('risk')}) in {md(record['run']['runbook'])} "
                f"run {record['run']['id']}: {state}{who}{result}"
            )
    if not any(
        a.get("mode") == "applied" and a.get("risk") != "read"
        for r in report.records
        for a in r.get("actions") or []
    ):
        out.append(f"No action was applied through opsbook. If the fix was made elsewhere: {OWNER}")
    return out


def _action_items(report: IncidentReport) -> list[str]:
    done = "x" if report.recovered else " "
    return [
        f"- [{done}] Immediate fix"
        + (" (done)" if report.recovered else " (not recorded as done)"),
        "- [ ] Add monitoring alert",
        "- [ ] Update runbook",
        "- [ ] Improve testing",
        "- [ ] Code review process change",
        f"- Further items: {OWNER}",
    ]


def to_html(report: IncidentReport) -> str:
    import mistune

    from .render import page

    # the template's header lines are one per line: hard line breaks in the HTML
    text = re.sub(r"^(\*\*(Date|Duration|Severity):\*\*.*)$", r"\1  ", report.markdown, flags=re.M)
    body = mistune.create_markdown(escape=True, plugins=["task_lists"])(text)
    return page(
        f"opsbook · {report.incident} · incident report",
        f'<main><section class="ob-box ob-postmortem">{body}</section></main>',
    )
