"""Workers Logs events back to TraceItems, and the runbooks' fallback without Workers Logs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from opsbook.clients import logs, workers_logs
from opsbook.errors import AuthenticationError, NotFound
from opsbook.runbooks import security_incident as si
from opsbook.runbooks import signals

WORKERS = {
    "eventType": "fetch", "scriptName": "api", "outcome": "ok", "requestId": "r1",
    "scriptVersion": {"id": "v1"},
    "event": {"request": {"url": "https://x.test/auth/login", "method": "POST",
                          "headers": {"cf-connecting-ip": "185.220.101.34"},
                          "cf": {"country": "RU", "asn": 9009}},
              "response": {"status": 401}},
}  # fmt: skip


def event(kind: str, ts: int, source: Any, level: str = "log", **md: Any) -> dict[str, Any]:
    workers = (
        {**WORKERS, "wallTimeMs": 80.0, "cpuTimeMs": 3.0} if kind == "cf-worker-event" else WORKERS
    )
    return {"$workers": workers, "$metadata": {"id": f"{ts}", "type": kind, "level": level, **md},
            "dataset": "cloudflare-workers", "source": source, "timestamp": ts}  # fmt: skip


EVENTS = [
    event("cf-worker", 1_790_000_000_002, {"message": "Login failed", "email": "a@b.c"}, "warn"),
    event("cf-worker-event", 1_790_000_000_000, {}, "info"),
    event("cf-worker", 1_790_000_000_003, {"message": "tokens_used 12"}),
    event("cf-worker", 1_790_000_000_004, {"exception": {"name": "Error", "message": "boom"}},
          "error", error="Error: boom"),
]  # fmt: skip


def test_one_invocation_becomes_one_trace_item() -> None:
    [item] = workers_logs.trace_items(EVENTS)
    assert item["eventTimestamp"] == 1_790_000_000_000 and item["wallTime"] == 80.0
    assert item["event"]["response"]["status"] == 401
    assert [line["message"] for line in item["logs"]] == [
        ["Login failed", {"email": "a@b.c"}],
        ["tokens_used 12"],
    ]
    assert item["exceptions"] == [
        {"name": "Error", "message": "boom", "timestamp": 1_790_000_000_004}
    ]
    frame = workers_logs.to_frame(EVENTS)
    assert list(frame.columns) == list(logs.COLUMNS)
    assert frame.loc[0, "client_ip"] == "185.220.101.34" and frame.loc[0, "status"] == 401
    assert frame.loc[0, "exceptions"] == "Error: boom"


def test_security_parse_reads_the_history_like_a_tail() -> None:
    [seen] = si.parse(workers_logs.trace_items(EVENTS))
    assert (seen.kind, seen.ip, seen.country, seen.status) == (
        "login-failed",
        "185.220.101.34",
        "RU",
        401,
    )
    assert seen.detail == {"email": "a@b.c"}


def test_log_parts() -> None:
    assert workers_logs.log_parts({"user_id": 1}) == [{"user_id": 1}]
    assert workers_logs.log_parts("plain") == ["plain"]


@pytest.mark.parametrize("error", [NotFound("no Workers Logs", status=404, code=10000),
                                   AuthenticationError("token", status=403, code=10000)])  # fmt: skip
def test_without_workers_logs_the_runbooks_fall_back(error: Exception) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise error

    p = SimpleNamespace(worker="api", cf=SimpleNamespace(telemetry_events=refuse))
    assert signals.recent_events(p, 15) is None  # type: ignore[arg-type]
    assert signals.recent_frame(p, 15) is None  # type: ignore[arg-type]
    assert si.recent(p, 15) is None  # type: ignore[arg-type]


def test_history_scopes_the_query_to_the_worker() -> None:
    asked: dict[str, Any] = {}

    def answer(since: int, until: int, filters: list[dict[str, Any]], **kw: Any) -> Any:
        asked.update(since=since, until=until, filters=filters)
        return EVENTS

    p = SimpleNamespace(worker="api", cf=SimpleNamespace(telemetry_events=answer))
    items = signals.recent_events(p, 15)  # type: ignore[arg-type]
    assert items is not None and len(items) == 1
    assert asked["until"] - asked["since"] == 15 * 60_000
    assert asked["filters"][0] == {"key": "$workers.scriptName", "operation": "eq",
                                   "type": "string", "value": "api"}  # fmt: skip
