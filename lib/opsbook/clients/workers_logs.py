"""Workers Logs events -> the TraceItems a tail streams, so one analysis reads both.

The query API (`Cloudflare.telemetry_events`) answers one event per invocation
(`$metadata.type` "cf-worker-event"), per console.log line and per uncaught exception,
all sharing `$workers.requestId`. `trace_items(events)` groups them back into one
TraceItem per invocation (outcome, scriptName, scriptVersion, eventTimestamp, event
{request, response} or {queue} / {cron}, wallTime, cpuTime, logs, exceptions), and
`to_frame(events)` gives the same DataFrame as `logs.to_frame` of a tail.

A log line's `source` is what the Worker logged: {message: "x", ...fields} comes back
as the console.log arguments ["x", {fields}], a bare object as [{...}].
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

Event = dict[str, Any]


def log_parts(source: Any) -> list[Any]:
    """The console.log arguments of one log event's `source`."""
    if not isinstance(source, dict):
        return [source]
    message = source.get("message")
    rest = {k: v for k, v in source.items() if k != "message"}
    if isinstance(message, str):
        return [message, rest] if rest else [message]
    return [source]


def _is_invocation(event: Event) -> bool:
    return (event.get("$metadata") or {}).get("type") == "cf-worker-event"


def trace_item(events: list[Event]) -> dict[str, Any]:
    """One TraceItem from the events of one invocation (any order)."""
    # the query answers newest first: back to the order the Worker logged them in
    events = sorted(
        events,
        key=lambda e: (
            not _is_invocation(e),
            int(e.get("timestamp") or 0),
            str((e.get("$metadata") or {}).get("id") or ""),
        ),
    )
    head = events[0]
    workers = head.get("$workers") or {}
    logs: list[dict[str, Any]] = []
    exceptions: list[dict[str, Any]] = []
    for e in events:
        if _is_invocation(e):
            continue
        source = e.get("source")
        md = e.get("$metadata") or {}
        if isinstance(source, dict) and isinstance(source.get("exception"), dict):
            exc = dict(source["exception"])
            exc.setdefault("timestamp", e.get("timestamp"))
            exceptions.append(exc)
        else:
            logs.append(
                {
                    "message": log_parts(source),
                    "level": md.get("level") or "log",
                    "timestamp": e.get("timestamp"),
                }
            )
    if not exceptions and _is_invocation(head) and (head.get("$metadata") or {}).get("error"):
        name, _, message = str(head["$metadata"]["error"]).partition(": ")
        exceptions.append({"name": name, "message": message, "timestamp": head.get("timestamp")})
    return {
        "outcome": workers.get("outcome"),
        "scriptName": workers.get("scriptName"),
        "scriptVersion": workers.get("scriptVersion") or {},
        "eventTimestamp": head.get("timestamp"),
        "event": workers.get("event") or {},
        "wallTime": workers.get("wallTimeMs"),
        "cpuTime": workers.get("cpuTimeMs"),
        "executionModel": workers.get("executionModel"),
        "truncated": bool(workers.get("truncated", False)),
        "diagnosticsChannelEvents": workers.get("diagnosticsChannelEvents") or [],
        "logs": logs,
        "exceptions": exceptions,
    }


def trace_items(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Group events by `$workers.requestId` (or `$metadata.requestId`) into TraceItems,
    oldest invocation first, as a tail would have streamed them."""
    groups: dict[str, list[Event]] = {}
    for i, e in enumerate(events):
        rid = (e.get("$workers") or {}).get("requestId") or (e.get("$metadata") or {}).get(
            "requestId"
        )
        groups.setdefault(str(rid or f"event-{i}"), []).append(e)
    items = [trace_item(group) for group in groups.values()]
    items.sort(key=lambda item: int(item.get("eventTimestamp") or 0))
    return items


def to_frame(events: Iterable[Event]) -> pd.DataFrame:
    """Workers Logs events -> the tail DataFrame (`logs.COLUMNS`)."""
    from .logs import to_frame as frame_of

    return frame_of(trace_items(events))
