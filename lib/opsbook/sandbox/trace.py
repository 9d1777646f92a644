"""The traffic table and its TraceItem view: one row per Worker invocation.

Rows are written by the traffic model (synthetic history and the live ticker) and by the
apps for every real request. Tails, exports and the GraphQL analytics all read this one
table, so they agree with each other.

TraceItem shape (per @cloudflare/workers-types): outcome, scriptName, scriptVersion{id},
exceptions[{name,message,timestamp}], logs[{message:[...],level,timestamp}],
eventTimestamp (ms), event{request{url,method,headers,cf{...}},response{status}} for
fetch, {cron,scheduledTime} for scheduled, {queue,batchSize} for queue; plus the
top-level cpuTime and wallTime (ms) that Tail Workers and Logpush carry.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS traffic (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    script TEXT NOT NULL,
    version_id TEXT,
    event_type TEXT NOT NULL DEFAULT 'fetch',
    method TEXT,
    url TEXT,
    path TEXT,
    route TEXT,
    status INTEGER,
    outcome TEXT NOT NULL,
    wall_ms REAL NOT NULL,
    cpu_ms REAL NOT NULL,
    subrequests INTEGER NOT NULL DEFAULT 0,
    colo TEXT,
    country TEXT,
    client_ip TEXT,
    user_agent TEXT,
    logs TEXT NOT NULL DEFAULT '[]',
    exceptions TEXT NOT NULL DEFAULT '[]',
    tokens_used INTEGER,
    response_bytes INTEGER NOT NULL DEFAULT 0,
    user_id TEXT,
    ray_id TEXT,
    cold_start INTEGER NOT NULL DEFAULT 0,
    synthetic INTEGER NOT NULL DEFAULT 1,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS traffic_script_ts ON traffic(script, ts_ms);
CREATE INDEX IF NOT EXISTS traffic_ts ON traffic(ts_ms);
"""

COLUMNS = (
    "ts_ms", "script", "version_id", "event_type", "method", "url", "path", "route",
    "status", "outcome", "wall_ms", "cpu_ms", "subrequests", "colo", "country",
    "client_ip", "user_agent", "logs", "exceptions", "tokens_used", "response_bytes",
    "user_id", "ray_id", "cold_start", "synthetic", "extra",
)  # fmt: skip

# outcome (TraceItem) -> status (workersInvocationsAdaptive)
INVOCATION_STATUS = {
    "ok": "success",
    "exception": "scriptThrewException",
    "exceededCpu": "exceededResources",
    "exceededMemory": "exceededResources",
    "canceled": "clientDisconnected",
    "unknown": "internalError",
}

COLO_COUNTRY = {
    "IAD": "US", "ORD": "US", "DFW": "US", "SJC": "US", "LAX": "US", "SEA": "US",
    "EWR": "US", "LHR": "GB", "FRA": "DE", "AMS": "NL", "CDG": "FR", "YYZ": "CA",
    "SYD": "AU", "NRT": "JP", "SIN": "SG", "GRU": "BR", "BOM": "IN", "DME": "RU",
    "HKG": "HK", "KUL": "MY",
}  # fmt: skip


@dataclass
class Invocation:
    """One Worker invocation, as the traffic table stores it."""

    ts_ms: int
    script: str
    version_id: str | None
    outcome: str
    wall_ms: float
    cpu_ms: float
    event_type: str = "fetch"
    method: str | None = None
    url: str | None = None
    path: str | None = None
    route: str | None = None
    status: int | None = None
    subrequests: int = 0
    colo: str | None = None
    country: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    tokens_used: int | None = None
    response_bytes: int = 0
    user_id: str | None = None
    ray_id: str | None = None
    cold_start: bool = False
    synthetic: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def values(self) -> tuple[Any, ...]:
        d = {c: getattr(self, c) for c in COLUMNS}
        d["logs"] = json.dumps(self.logs, separators=(",", ":"))
        d["exceptions"] = json.dumps(self.exceptions, separators=(",", ":"))
        d["extra"] = json.dumps(self.extra, separators=(",", ":"))
        d["cold_start"] = int(self.cold_start)
        d["synthetic"] = int(self.synthetic)
        return tuple(d[c] for c in COLUMNS)


_INSERT = f"INSERT INTO traffic ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def insert(db: sqlite3.Connection, invocations: Iterable[Invocation]) -> int:
    rows = [inv.values() for inv in invocations]
    if rows:
        db.executemany(_INSERT, rows)
    return len(rows)


def trace_item(row: Mapping[str, Any]) -> dict[str, Any]:
    """The TraceItem a tail streams for one traffic row."""
    extra = json.loads(row["extra"] or "{}")
    event: dict[str, Any]
    if row["event_type"] == "scheduled":
        event = {"cron": extra.get("cron", "0 2 * * *"), "scheduledTime": row["ts_ms"]}
    elif row["event_type"] == "queue":
        event = {"queue": extra.get("queue", ""), "batchSize": int(extra.get("batchSize", 1))}
    else:
        headers = {
            "accept": "application/json",
            "cf-connecting-ip": row["client_ip"] or "",
            "cf-ipcountry": row["country"] or "",
            "cf-ray": f"{row['ray_id']}-{row['colo']}" if row["ray_id"] else "",
            "host": extra.get("host", ""),
            "user-agent": row["user_agent"] or "",
        }
        headers.update(extra.get("headers", {}))
        event = {
            "request": {
                "url": row["url"],
                "method": row["method"],
                "headers": headers,
                "cf": request_cf(row, extra),
            },
        }
        if row["status"] is not None:
            event["response"] = {"status": row["status"]}
    item: dict[str, Any] = {
        "wallTime": round(float(row["wall_ms"])),
        "cpuTime": round(float(row["cpu_ms"])),
        "truncated": False,
        "executionModel": "stateless",
        "outcome": row["outcome"],
        "scriptName": row["script"],
        "diagnosticsChannelEvents": [],
        "exceptions": json.loads(row["exceptions"] or "[]"),
        "logs": json.loads(row["logs"] or "[]"),
        "eventTimestamp": row["ts_ms"],
        "event": event,
        "scriptVersion": {"id": row["version_id"]},
    }
    return item


def to_wrangler_json(items: Iterable[Mapping[str, Any]]) -> Iterable[str]:
    """`wrangler tail --format json`: JSON.stringify(ev, null, 4) per event, one after another."""
    for item in items:
        yield json.dumps(item, indent=4, ensure_ascii=False) + "\n"


def to_ndjson(items: Iterable[Mapping[str, Any]]) -> Iterable[str]:
    for item in items:
        yield json.dumps(item, separators=(",", ":"), ensure_ascii=False) + "\n"


def log_line(level: str, ts_ms: int, *parts: Any) -> dict[str, Any]:
    """One console.log entry: `message` is the list of console.log arguments, any JSON type."""
    return {"message": list(parts), "level": level, "timestamp": ts_ms}


def exception(name: str, message: str, ts_ms: int) -> dict[str, Any]:
    return {
        "name": name,
        "message": message,
        "timestamp": ts_ms,
        "stack": f"{name}: {message}\n    at Object.fetch (worker.js:1:4096)",
    }


def request_cf(row: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """`request.cf` of a traffic row, as the tail and Workers Logs both show it."""
    return {
        "colo": row["colo"],
        "country": row["country"],
        "asn": int(extra.get("asn", 13335)),
        "httpProtocol": "HTTP/2",
        "tlsVersion": "TLSv1.3",
        "clientTcpRtt": int(extra.get("rtt", 20)),
    }
