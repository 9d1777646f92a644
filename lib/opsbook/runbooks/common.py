"""What every incident runbook ends with: the escalation level for the time since the
incident started, whom to contact, and (for P0/P1) a status update ready to post.

The escalation matrix is data in params (`escalation:`), from the seeds:
self-service first, then development / the on-call engineer, then vendor support.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..environments import Environment

SEVERITIES = ("P0", "P1", "P2", "P3")
_RELATIVE = re.compile(r"^-?(\d+)\s*([mhd])$")


def incident_start(text: str, now: datetime | None = None) -> datetime:
    """`""` (now), an ISO time (`2026-11-23T10:02Z`), or an age (`45m`, `-2h`, `1d`)."""
    now = now or datetime.now(UTC)
    text = (text or "").strip()
    if not text:
        return now
    if m := _RELATIVE.match(text):
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return now - timedelta(**{unit: int(m.group(1))})
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"incident_started={text!r} is not a time: use an ISO time (2026-11-23T10:02Z) "
            "or an age (45m, 2h, 1d)."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Escalation:
    level: str
    contact: str
    minutes: int  # since the incident started
    next_level: str | None
    next_in_minutes: int | None

    def text(self) -> str:
        nxt = (
            f" Escalate to {self.next_level} in {self.next_in_minutes} min if not resolved."
            if self.next_level
            else ""
        )
        return f"{self.minutes} min since the incident started: {self.level} — contact {self.contact}.{nxt}"


def escalation(env: Environment, started: datetime, now: datetime | None = None) -> Escalation:
    now = now or datetime.now(UTC)
    minutes = max(0, int((now - started).total_seconds() // 60))
    matrix = sorted(env.get("escalation") or [], key=lambda e: int(e.get("after_minutes", 0)))
    if not matrix:
        return Escalation("self-service", "the on-call engineer", minutes, None, None)
    current = matrix[0]
    following: dict[str, Any] | None = None
    for i, entry in enumerate(matrix):
        if minutes >= int(entry.get("after_minutes", 0)):
            current = entry
            following = matrix[i + 1] if i + 1 < len(matrix) else None
    return Escalation(
        str(current["level"]),
        str(current["contact"]),
        minutes,
        str(following["level"]) if following else None,
        int(following["after_minutes"]) - minutes if following else None,
    )


def status_update(
    env: Environment,
    severity: str,
    title: str,
    cause: str,
    meaning: str,
    started: datetime,
    remedy_applied: bool,
    resolved: bool,
) -> str:
    """A short public status update (no internal detail, no secrets), ready to post."""
    app = env.get("app.name") or "the service"
    since = started.strftime("%H:%M UTC")
    if resolved:
        state = "Resolved"
        body = f"{app} is working normally again. The issue began at {since}."
    elif cause in ("healthy", "unknown"):
        state = "Investigating"
        body = f"We are investigating reports of problems with {app} since {since}."
    elif remedy_applied:
        state = "Monitoring"
        body = f"A fix for the problem affecting {app} since {since} has been applied; we are monitoring the results."
    else:
        state = "Identified"
        body = f"We have identified the cause of the problem affecting {app} since {since} ({meaning}) and are working on a fix."
    return f"[{severity} · {state}] {title}: {body} Next update within 30 minutes."
