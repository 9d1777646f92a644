"""The post-incident report: every run of one incident -> a timeline -> seed 000's template.

    report = build_report("INC-42")          # outputs/incidents/INC-42/report.md + .html
    report.recovered, report.duration_text, report.markdown

The runs come from the index (`Index.incident_runs`, oldest first) and their
`record.json`. The timeline holds: detection (an `incident_started` parameter, else the
first run's start), each run, step, finding of severity warning or worse, verdict and
action, recovery (the first healthy verdict, or passed verification, after an
applied action) and closing (the last run's end). The template's headings are kept as
written in seed 000 ("Incident Report Template"). What only a person can know (the
summary prose, the root cause beyond the verdict, revenue impact, data loss, further
action items) is marked for the incident owner, never invented. Affected users are a
number only when a traffic source measured them (`affected_users`).
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import config
from .errors import InputError
from .runfolder import RECORD, REPORT, write_atomic

OWNER = "_To be written by the incident owner._"
SEVERITIES = ("critical", "high", "medium", "low")
WARNING_PLUS = ("warning", "error", "critical")


class UnknownIncident(InputError):
    """No run in the archive carries this incident id."""


@dataclass
class AffectedUsers:
    """Distinct users or clients that received a 5xx in a window, and how that was measured."""

    count: int
    kind: str  # "client IPs" | "user ids"
    source: str
    start: datetime
    end: datetime


def affected_users(
    env: str | None, start: datetime, end: datetime, *, traffic: Path | None = None
) -> AffectedUsers | None:
    """Distinct clients with a 5xx between `start` and `end`, or None if nothing measured it.

    The environment's platform cannot answer for a past window: the Workers analytics
    GraphQL (`workersInvocationsAdaptive`) has no client or user dimension, and a tail
    streams live events only. A tail export saved during the incident can
    (`wrangler tail --format json > FILE`, or NDJSON from `clients.logs.write_ndjson`):
    pass it as `traffic`; its `cf-connecting-ip` values are counted. Never an estimate.
    """
    if traffic is None:
        return None
    from .clients import logs

    df = logs.read_events(traffic, columns=("ts", "status", "client_ip"))
    if df.empty or "client_ip" not in df:
        return None
    lo, hi = _utc(start), _utc(end)
    hit = df[(df["ts"] >= lo) & (df["ts"] <= hi) & (df["status"].fillna(0) >= 500)]
    ips = hit["client_ip"].dropna()
    if ips.empty and df["client_ip"].dropna().empty:
        return None  # the export carries no client addresses: not measured
    return AffectedUsers(int(ips.nunique()), "client IPs", f"tail export {traffic.name}", lo, hi)


@dataclass
class Entry:
    at: datetime
    text: str
    kind: str  # detected | run | step | finding | verdict | action | restored | closed
    # (run number, event seq): breaks ties between entries recorded in the same millisecond
    order: tuple[int, int] = (-1, 0)


@dataclass
class IncidentReport:
    incident: str
    records: list[dict[str, Any]]
    entries: list[Entry]
    detected: datetime
    recovered: datetime | None
    closed: datetime
    affected: AffectedUsers | None
    markdown: str = ""
    out: Path = field(default_factory=Path)

    @property
    def runs(self) -> list[dict[str, Any]]:
        return [r["run"] for r in self.records]

    @property
    def markdown_path(self) -> Path:
        return self.out / "report.md"

    @property
    def html_path(self) -> Path:
        return self.out / "report.html"

    @property
    def duration_text(self) -> str:
        end = self.recovered or datetime.now(UTC)
        text = _hours_minutes((end - self.detected).total_seconds())
        return text if self.recovered else f"{text} (not recovered: measured to now)"


def _utc(value: Any) -> datetime:
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _seq(event: dict[str, Any]) -> int:
    """The event's place in its run (records before seq existed sort by kind order)."""
    seq = event.get("seq")
    return seq if isinstance(seq, int) else 0


def _hours_minutes(seconds: float) -> str:
    minutes = max(0, int(seconds // 60))
    h, m = divmod(minutes, 60)
    text = f"{h} hour{'s' if h != 1 else ''} {m} minute{'s' if m != 1 else ''}"
    return f"{text} ({max(0, int(seconds))} s)" if minutes == 0 else text


def md(text: Any) -> str:
    """Record text made literal in Markdown."""
    out = str(text)
    for ch in "\\`*_[]<>#|":
        out = out.replace(ch, "\\" + ch)
    return " ".join(out.split())


def _evidence(evidence: Any) -> list[str]:
    items = evidence if isinstance(evidence, list) else [evidence] if evidence else []
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append(
                ", ".join(f"{md(k)} `{json.dumps(v, default=str)}`" for k, v in item.items())
            )
        else:
            out.append(md(item))
    return out


# ---- gathering ---------------------------------------------------------------------------
def gather(incident: str, env: str | None, outputs: Path) -> list[tuple[dict[str, Any], Path]]:
    from .index import Index

    with Index(outputs) as index:
        rows = index.incident_runs(incident)
        known = sorted({r["incident"] for r in index.list(limit=0) if r.get("incident")})
    rows = [r for r in rows if env is None or r.get("env") == env]
    if not rows:
        hint = difflib.get_close_matches(incident, known, n=1)
        did = f" Did you mean '{hint[0]}'?" if hint else ""
        on = f" on environment '{env}'" if env else ""
        raise UnknownIncident(
            f"No run recorded with incident '{incident}'{on} in the archive at {outputs}.{did} "
            f"Known incidents: {', '.join(known[-10:]) or 'none'}. "
            "`opsbook runs list --incident ID` lists an incident's runs; a run joins an "
            "incident with `opsbook run RUNBOOK --incident ID`.",
            incident=incident,
            known=known,
        )
    out = []
    for row in rows:
        run_dir = Path(row["path"]) if row["path"].startswith("/") else outputs / row["path"]
        if (run_dir / RECORD).is_file():
            out.append((json.loads((run_dir / RECORD).read_text(encoding="utf-8")), run_dir))
    return out


def timeline(
    runs: list[tuple[dict[str, Any], Path]], out: Path
) -> tuple[list[Entry], datetime, datetime | None, datetime]:
    """The entries in time order, detection, recovery (or None) and closing."""
    entries: list[Entry] = []
    starts = [_utc(r["run"]["started"]) for r, _ in runs if r["run"].get("started")]
    given = [
        _utc(r["parameters"]["incident_started"])
        for r, _ in runs
        if (r.get("parameters") or {}).get("incident_started")
    ]
    detected = min(given) if given else min(starts)
    how = "the `incident_started` parameter" if given else "the first run's start"
    entries.append(Entry(detected, f"Incident detected (from {how})", "detected"))
    applied = [
        _utc(a["at"])
        for r, _ in runs
        for a in r.get("actions") or []
        if a.get("mode") == "applied" and a.get("risk") != "read" and a.get("at")
    ]
    applied_at = min(applied) if applied else None
    restored: list[Entry] = []
    for i, (record, run_dir) in enumerate(runs):
        run = record["run"]
        link = Path(os.path.relpath(run_dir / REPORT, out)).as_posix()
        what = "Investigation started" if i == 0 else "Run started"
        entries.append(
            Entry(
                _utc(run["started"]),
                f"{what}: {md(run['runbook'])} on {md(run.get('env'))} by "
                f"{md(run.get('operator'))} ([run {run['id']}]({link}))",
                "run",
                (i, -1),
            )
        )
        for s in record.get("steps") or []:
            if s.get("ended"):
                error = f" ({md(s['error'])})" if s.get("error") else ""
                entries.append(
                    Entry(
                        _utc(s["ended"]),
                        f"Step {md(s['title'])}: {s['status']}{error}",
                        "step",
                        (i, _seq(s)),
                    )
                )
        check = record.get("verification") or {}
        if (
            applied_at is not None
            and check.get("passed")
            and check.get("at")
            and _utc(check["at"]) >= applied_at
        ):
            restored.append(
                Entry(
                    _utc(check["at"]),
                    f"Service restored: verified ({md(check.get('what') or 'the symptom is gone')})",
                    "restored",
                    (i, _seq(check)),
                )
            )
        for f in record.get("findings") or []:
            if f.get("severity") in WARNING_PLUS and f.get("at"):
                entries.append(
                    Entry(
                        _utc(f["at"]),
                        f"Finding ({f['severity']}): {md(f['message'])}",
                        "finding",
                        (i, _seq(f)),
                    )
                )
        for a in record.get("actions") or []:
            if not a.get("at"):
                continue
            at, mode = _utc(a["at"]), a.get("mode")
            label = f"{md(a['id'])} ({a.get('risk')})"
            if mode == "applied" and a.get("risk") != "read":
                text = f"Fix deployed: {label} applied, approved by {md(a.get('approved_by'))}"
            elif mode == "dry-run":
                text = f"Action proposed: {label} dry run, not applied"
            elif mode == "failed":
                text = f"Action failed: {label} {md(a.get('error'))}"
            else:
                text = f"Action {label}: {mode}"
            entries.append(Entry(at, text, "action", (i, _seq(a))))
        verdict = record.get("verdict")
        if verdict and verdict.get("at"):
            at, cause = _utc(verdict["at"]), verdict.get("cause")
            meaning = md(verdict.get("meaning") or "")
            if cause not in ("healthy", "unknown"):
                entries.append(
                    Entry(
                        at,
                        f"Root cause identified: {md(cause)}, {meaning}",
                        "verdict",
                        (i, _seq(verdict)),
                    )
                )
            else:
                text = f"Verdict: {md(cause)}, {meaning}"
                entries.append(Entry(at, text, "verdict", (i, _seq(verdict))))
            if cause == "healthy" and applied_at is not None and at >= applied_at:
                text = f"Service restored: healthy verdict from {md(run['runbook'])}"
                restored.append(Entry(at, text, "restored", (i, _seq(verdict))))
    recovered = None
    if restored:
        first = min(restored, key=lambda e: (e.at, e.order))
        recovered = first.at
        entries.append(first)
    ends = [_utc(r["run"]["ended"]) for r, _ in runs if r["run"].get("ended")]
    closed = max(ends) if ends else max(starts)
    entries.append(Entry(closed, "Incident closed (the last run ended)", "closed", (len(runs), 0)))
    entries.sort(key=lambda e: (e.at, e.order))
    return entries, detected, recovered, closed


# ---- the report ---------------------------------------------------------------------------
def build_report(
    incident: str,
    *,
    env: str | None = None,
    out: Path | None = None,
    outputs: Path | None = None,
    traffic: Path | None = None,
) -> IncidentReport:
    """Gather, build the timeline, write report.md and report.html atomically."""
    from .postmortem_text import to_html, to_markdown

    outputs = Path(outputs or config.outputs_dir()).resolve()
    runs = gather(incident, env, outputs)
    if not runs:
        raise UnknownIncident(
            f"Incident '{incident}' is in the index but none of its record.json files exist "
            f"under {outputs}.",
            incident=incident,
            known=[],
        )
    out = Path(out or outputs / "incidents" / incident).resolve()
    entries, detected, recovered, closed = timeline(runs, out)
    first_env = env or runs[0][0]["run"].get("env")
    affected = affected_users(first_env, detected, recovered or closed, traffic=traffic)
    report = IncidentReport(
        incident, [r for r, _ in runs], entries, detected, recovered, closed, affected, out=out
    )
    report.markdown = to_markdown(report)
    write_atomic(report.markdown_path, report.markdown)
    write_atomic(report.html_path, to_html(report))
    return report
