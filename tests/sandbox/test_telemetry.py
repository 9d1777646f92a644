"""Workers Logs (telemetry query API) through the opsbook client, over a real socket."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import pytest

from opsbook import sandbox as sandbox_api
from opsbook.clients import logs, workers_logs
from opsbook.clients.cloudflare import Cloudflare
from opsbook.errors import ApiError, AuthenticationError
from opsbook.sandbox import trace, traffic
from opsbook.sandbox.state import State

SCRIPT = "manuscript-upload-api"
BY_SCRIPT = {"key": "$workers.scriptName", "operation": "eq", "type": "string", "value": SCRIPT}


def window(minutes_ago: int = 25, minutes: int = 20) -> tuple[int, int]:
    """A closed window in the past (the ticker writes only after now)."""
    until = int(time.time() * 1000) - (minutes_ago - minutes) * 60_000
    return until - minutes * 60_000, until


def run(cf: Cloudflare, view: str = "events", **params: Any) -> dict[str, Any]:
    since, until = params.pop("timeframe", window())
    limit = params.pop("limit", 2000)
    return cf.telemetry_query(
        {"queryId": "t", "timeframe": {"from": since, "to": until}, "view": view,
         "limit": limit, "parameters": {"datasets": ["cloudflare-workers"], **params}}
    )  # fmt: skip


def test_events_envelope_and_shape(cf: Cloudflare) -> None:
    result = run(cf, filters=[BY_SCRIPT], limit=20)
    assert result["run"]["status"] == "COMPLETED" and result["run"]["query"]["id"] == "t"
    assert {"elapsed", "rows_read", "bytes_read"} <= set(result["statistics"])
    found = result["events"]
    assert found["count"] > 20 and len(found["events"]) == 20
    stamps = [e["timestamp"] for e in found["events"]]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    for e in found["events"]:
        assert e["dataset"] == "cloudflare-workers"
        assert e["$workers"]["scriptName"] == SCRIPT and e["$workers"]["requestId"]
        assert e["$metadata"]["id"] and e["$metadata"]["service"] == SCRIPT
        assert e["$metadata"]["type"] in ("cf-worker-event", "cf-worker")
    keys = {f["key"] for f in found["fields"]}
    assert {"$workers.outcome", "$metadata.level", "$workers.event.request.path"} <= keys


def test_events_are_the_tail_trace_items(cf: Cloudflare, sandbox: sandbox_api.SandboxInfo) -> None:
    since, until = window()
    events = cf.telemetry_events(since, until, [BY_SCRIPT])
    got = workers_logs.to_frame(events)
    rows = traffic.rows(State(sandbox.state_dir), SCRIPT, since, until)
    want = logs.to_frame([trace.trace_item(r) for r in rows])
    assert len(got) == len(want) > 0
    cols = ["ts", "method", "path", "status", "outcome", "exceptions", "client_ip", "country"]
    pd.testing.assert_frame_equal(
        got[cols].sort_values(["ts", "path"]).reset_index(drop=True),
        want[cols].sort_values(["ts", "path"]).reset_index(drop=True),
    )
    # log lines: the console.log arguments survive (head text and structured fields)
    assert sorted(got["logs"].fillna("")) == sorted(want["logs"].fillna(""))
    assert got["logs"].str.len().sum() > 0


def test_paging_with_offset(cf: Cloudflare) -> None:
    since, until = window(minutes_ago=40, minutes=10)
    one = cf.telemetry_events(since, until, [BY_SCRIPT])
    paged = cf.telemetry_events(since, until, [BY_SCRIPT], page_size=37)
    assert [e["$metadata"]["id"] for e in paged] == [e["$metadata"]["id"] for e in one]
    assert len({e["$metadata"]["id"] for e in one}) == len(one) > 37


def test_filters(cf: Cloudflare) -> None:
    def events(*filters: dict[str, Any], **more: Any) -> list[dict[str, Any]]:
        return run(cf, filters=[BY_SCRIPT, *filters], **more)["events"]["events"]

    warn = events({"key": "$metadata.level", "operation": "eq", "type": "string", "value": "warn"})
    assert all(e["$metadata"]["level"] == "warn" for e in warn)
    fetch = {"key": "$workers.event.request.method", "operation": "eq", "type": "string",
             "value": "GET"}  # fmt: skip
    health = {"key": "$workers.event.request.path", "operation": "starts_with",
              "type": "string", "value": "/health"}  # fmt: skip
    got = events(fetch, health)
    assert got and all(e["$workers"]["event"]["request"]["path"] == "/health" for e in got)
    bad = {"key": "$workers.event.response.status", "operation": "gte", "type": "number",
           "value": 400}  # fmt: skip
    assert all(e["$workers"]["event"]["response"]["status"] >= 400 for e in events(bad))
    ok = {"key": "$workers.outcome", "operation": "neq", "type": "string", "value": "ok"}
    assert all(e["$workers"]["outcome"] != "ok" for e in events(ok))
    either = {"kind": "group", "filterCombination": "or", "filters": [health, bad]}
    assert len(events(either)) >= len(got)
    message = {"key": "$metadata.message", "operation": "includes", "type": "string",
               "value": "D1 query"}  # fmt: skip
    d1 = events(message)
    assert d1 and all("D1 query" in e["$metadata"]["message"] for e in d1)
    assert all("sql" in e["source"] for e in d1)  # console.log("D1 query", {sql, ...})
    needle = events(needle={"value": "d1 QUERY", "matchCase": False})
    assert {e["$metadata"]["id"] for e in d1} <= {e["$metadata"]["id"] for e in needle}
    assert events(needle={"value": "d1 QUERY", "matchCase": True}) == []


def test_calculations_and_invocations(cf: Cloudflare) -> None:
    kind = {
        "key": "$metadata.type",
        "operation": "eq",
        "type": "string",
        "value": "cf-worker-event",
    }
    result = run(
        cf, "calculations", filters=[BY_SCRIPT, kind],
        calculations=[{"operator": "count", "alias": "n"},
                      {"operator": "p99", "key": "$workers.wallTimeMs", "keyType": "number"}],
        groupBys=[{"type": "string", "value": "$workers.outcome"}],
    )  # fmt: skip
    count, p99 = result["calculations"]
    assert count["alias"] == "n" and count["aggregates"]
    total = sum(a["count"] for a in count["aggregates"])
    invocations = run(cf, filters=[BY_SCRIPT, kind])
    assert total == invocations["events"]["count"]
    assert all(a["value"] > 0 for a in p99["aggregates"])
    grouped = run(cf, "invocations", filters=[BY_SCRIPT], limit=5)["invocations"]
    assert len(grouped) == 5
    for rid, evs in grouped.items():
        assert {e["$workers"]["requestId"] for e in evs} == {rid}


def test_keys(cf: Cloudflare) -> None:
    keys = {k["key"]: k for k in cf.telemetry_keys()}
    assert keys["$workers.scriptName"]["type"] == "string"
    assert keys["$workers.wallTimeMs"]["type"] == "number"
    assert keys["$metadata.level"]["lastSeenAt"] > 0


def test_errors(cf: Cloudflare, sandbox: sandbox_api.SandboxInfo) -> None:
    with pytest.raises(ApiError) as bad:
        cf.telemetry_query({"queryId": "t", "view": "events"})
    assert bad.value.status == 400
    with pytest.raises(ApiError):
        run(cf, timeframe=(2000, 1000))
    with pytest.raises(ApiError):
        run(cf, filters=[{"key": "$workers.outcome", "operation": "sounds_like", "type": "string",
                          "value": "ok"}])  # fmt: skip
    other = Cloudflare(cf.api_base, "0" * 32, sandbox.credentials["OPSBOOK_SANDBOX_TOKEN"])
    with other, pytest.raises(AuthenticationError):
        run(other)


def test_the_cloudflare_sdk_parses_the_answer(sandbox: sandbox_api.SandboxInfo) -> None:
    cloudflare = pytest.importorskip("cloudflare")
    since, until = window()
    with cloudflare.Cloudflare(
        api_token=sandbox.credentials["OPSBOOK_SANDBOX_TOKEN"],
        base_url=sandbox.urls()["cloudflare"],
        max_retries=0,
    ) as sdk:
        answer = sdk.workers.observability.telemetry.query(
            account_id=sandbox.account_id, query_id="sdk", view="events", limit=10,
            timeframe={"from": since, "to": until}, parameters={"filters": [BY_SCRIPT]},
        )  # fmt: skip
        assert answer.run.status == "COMPLETED"
        assert answer.events is not None and len(answer.events.events or []) == 10
        event = (answer.events.events or [])[0]
        assert event.workers is not None and event.workers.script_name == SCRIPT
        assert event.metadata.id
        keys = list(sdk.workers.observability.telemetry.keys(account_id=sandbox.account_id))
        assert any(k.key == "$workers.outcome" for k in keys)
