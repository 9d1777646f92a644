"""Workers Logs: the telemetry query API over the traffic history.

    POST /accounts/{acct}/workers/observability/telemetry/query
         {queryId, timeframe:{from,to} (ms), view:"events"|"invocations"|"calculations",
          limit, offset, dry, parameters:{datasets, filters, filterCombination, calculations,
          groupBys, havings, needle, orderBy, limit}}
    POST /accounts/{acct}/workers/observability/telemetry/keys    {from, to, filters, keyNeedle, limit}
    POST /accounts/{acct}/workers/observability/telemetry/values  {timeframe, key, type, filters, limit}

The shapes follow the cloudflare SDK 5.9 types (`types/workers/observability/
telemetry_query_response.py`): the result is `{run, statistics, events|invocations|
calculations}`, and each event is `{$workers, $metadata, dataset, source, timestamp}`.

Every traffic row (one invocation, the same rows the tail streams) becomes:
- an invocation event: `$metadata.type` "cf-worker-event", `$workers` with eventType,
  outcome, wallTimeMs, cpuTimeMs, scriptVersion, requestId and `event` (the TraceItem's
  request/response, or queue/cron), `source` {} ;
- one "cf-worker" event per console.log line: `source` is what the Worker logged
  (`console.log("x")` -> {message: "x"}; `console.log({a: 1})` -> {a: 1};
  `console.log("x", {a: 1})` -> {message: "x", a: 1}; other argument lists are joined
  into `message`), `$metadata.level` / `$metadata.message`;
- one "cf-worker" event per uncaught exception: level "error", `$metadata.error`,
  `source` {exception: {name, message, stack, timestamp}}.
All events of one invocation share `$workers` (with `event`, so a log line carries its
request) and `$metadata.requestId`. Events come newest first; `offset` is the
`$metadata.id` of the last event of the previous page.

Filters: leaves {key, operation, type, value} and groups {kind:"group", filterCombination,
filters}; keys starting with `$` are paths into the event (`$workers.outcome`,
`$workers.event.request.path`, `$metadata.level`), other keys are fields of `source`.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from . import trace
from .cf_account import check_account
from .envelope import CFError, json_body, ok
from .state import State, from_request

DATASET = "cloudflare-workers"
MAX_LIMIT = 5000  # events per page (the sandbox's cap; clients page on with `offset`)
DEFAULT_LIMIT = 50
MAX_RANGE_MS = 7 * 24 * 3600_000
KEYS_DEFAULT_MS = 24 * 3600_000
Event = dict[str, Any]

_OPS: dict[str, str] = {
    "=": "eq", "!=": "neq", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte",
    "DOES_NOT_INCLUDE": "not_includes", "MATCH_REGEX": "regex", "DOES_NOT_EXIST": "is_null",
    "NOT_IN": "not_in",
}  # fmt: skip
KNOWN_OPS = {
    "includes", "not_includes", "starts_with", "ends_with", "regex", "exists", "is_null",
    "in", "not_in", "eq", "neq", "gt", "gte", "lt", "lte",
}  # fmt: skip
_CALC = {
    "count", "uniq", "max", "min", "sum", "avg", "median", "p001", "p01", "p05", "p10",
    "p25", "p75", "p90", "p95", "p99", "p999", "stddev", "variance", "count_distinct",
}  # fmt: skip


# ---- traffic rows -> Workers Logs events ---------------------------------------------------
def _text(part: Any) -> str:
    return part if isinstance(part, str) else json.dumps(part, separators=(",", ":"))


def log_source(parts: list[Any]) -> dict[str, Any]:
    """What Workers Logs stores for one console.log call (its argument list)."""
    if len(parts) == 1 and isinstance(parts[0], dict):
        return dict(parts[0])
    if len(parts) == 2 and isinstance(parts[0], str) and isinstance(parts[1], dict):
        return {"message": parts[0], **{k: v for k, v in parts[1].items() if k != "message"}}
    return {"message": " ".join(_text(p) for p in parts)}


def _event_of(row: Any, extra: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """(eventType, $workers.event, trigger) of one traffic row."""
    kind = row["event_type"]
    if kind == "scheduled":
        cron = extra.get("cron", "0 2 * * *")
        return "scheduled", {"cron": cron, "scheduledTime": row["ts_ms"]}, cron
    if kind == "queue":
        queue = extra.get("queue", "")
        return "queue", {"queue": queue, "batchSize": int(extra.get("batchSize", 1))}, queue
    url = row["url"] or ""
    parts = urlsplit(url)
    headers = {
        "accept": "application/json",
        "cf-connecting-ip": row["client_ip"] or "",
        "cf-ipcountry": row["country"] or "",
        "cf-ray": f"{row['ray_id']}-{row['colo']}" if row["ray_id"] else "",
        "host": extra.get("host", parts.netloc),
        "user-agent": row["user_agent"] or "",
    }
    headers.update(extra.get("headers", {}))
    event: dict[str, Any] = {
        "request": {
            "url": url,
            "method": row["method"],
            "path": parts.path or "/",
            "search": {k: v for k, _, v in (q.partition("=") for q in parts.query.split("&") if q)},
            "headers": headers,
            "cf": trace.request_cf(row, extra),
        },
        "rayId": row["ray_id"] or "",
    }
    if row["status"] is not None:
        event["response"] = {"status": row["status"]}
    return "fetch", event, f"{row['method']} {parts.path or '/'}"


def events_of(row: Any, account_id: str) -> list[Event]:
    """The Workers Logs events of one invocation (a traffic row), oldest first."""
    extra = json.loads(row["extra"] or "{}")
    kind, event, trigger = _event_of(row, extra)
    ts = int(row["ts_ms"])
    request_id = row["ray_id"] or f"{int(row['id']):016x}"
    workers: dict[str, Any] = {
        "eventType": kind,
        "scriptName": row["script"],
        "outcome": row["outcome"],
        "requestId": request_id,
        "executionModel": "stateless",
        "truncated": False,
        "scriptVersion": {"id": row["version_id"]},
        "entrypoint": "default",
        "event": event,
    }
    exceptions = json.loads(row["exceptions"] or "[]")
    logs = json.loads(row["logs"] or "[]")
    error = f"{exceptions[0].get('name')}: {exceptions[0].get('message')}" if exceptions else None
    status = row["status"]
    failed = row["outcome"] != "ok" or (status is not None and status >= 500)
    base = {
        "requestId": request_id,
        "service": row["script"],
        "account": account_id,
        "cloudService": "workers",
        "provider": "cloudflare",
        "origin": kind,
        "trigger": trigger,
        "region": row["colo"],
    }
    if kind == "fetch":
        base.update(url=row["url"], rayId=row["ray_id"] or "")
    n = 0

    def meta(**fields: Any) -> dict[str, Any]:
        nonlocal n
        n += 1
        return {"id": f"{ts:013d}{int(row['id']):010d}{n:03d}", **base, **fields}

    wall = float(row["wall_ms"])
    invocation: Event = {
        "$workers": {
            **workers,
            "wallTimeMs": round(wall, 3),
            "cpuTimeMs": round(float(row["cpu_ms"]), 3),
            "diagnosticsChannelEvents": [],
        },
        "$metadata": meta(
            type="cf-worker-event",
            level="error" if failed else "info",
            message=f"{row['method']} {row['url']}" if kind == "fetch" else trigger,
            statusCode=status,
            error=error,
            coldStart=int(row["cold_start"] or 0),
            startTime=ts,
            endTime=ts + round(wall),
            duration=round(wall),
        ),
        "dataset": DATASET,
        "source": {},
        "timestamp": ts,
    }
    out = [invocation]
    for line in logs:
        parts = line.get("message")
        parts = parts if isinstance(parts, list) else [parts]
        level = str(line.get("level") or "log")
        out.append(
            {
                "$workers": workers,
                "$metadata": meta(
                    type="cf-worker",
                    level=level,
                    message=" ".join(_text(p) for p in parts),
                    **({"error": " ".join(_text(p) for p in parts)} if level == "error" else {}),
                ),
                "dataset": DATASET,
                "source": log_source(parts),
                "timestamp": int(line.get("timestamp") or ts),
            }
        )
    for exc in exceptions:
        text = f"{exc.get('name')}: {exc.get('message')}"
        out.append(
            {
                "$workers": workers,
                "$metadata": meta(type="cf-worker", level="error", message=text, error=text),
                "dataset": DATASET,
                "source": {"exception": exc},
                "timestamp": int(exc.get("timestamp") or ts),
            }
        )
    for e in out:  # no nulls in $metadata: absent fields are left out, as the API does
        e["$metadata"] = {k: v for k, v in e["$metadata"].items() if v is not None}
    return out


# ---- filters -------------------------------------------------------------------------------
_MISSING = object()


def lookup(event: Event, key: str) -> Any:
    """The value of `key` in one event: `$...` paths from the event, others from `source`."""
    if key.startswith("$"):
        cur: Any = event
        parts = key.split(".")
    else:
        cur = event.get("source")
        parts = key.removeprefix("source.").split(".")
        if isinstance(cur, dict) and key in cur:  # a source field whose name has dots
            return cur[key]
    for part in parts:
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _leaf(spec: dict[str, Any]) -> Callable[[Event], bool]:
    key = spec.get("key")
    if not isinstance(key, str) or not key:
        raise CFError(400, 10001, f"filter without a key: {json.dumps(spec)}")
    raw_op = str(spec.get("operation", ""))
    op = _OPS.get(raw_op, raw_op.lower())
    if op not in KNOWN_OPS:
        raise CFError(400, 10001, f"unknown filter operation {raw_op!r}")
    kind = str(spec.get("type", "string")).lower()
    want = spec.get("value")

    def test(event: Event) -> bool:
        got = lookup(event, key)
        if op == "exists":
            return got is not _MISSING and got is not None
        if op == "is_null":
            return got is _MISSING or got is None
        if got is _MISSING or got is None:
            return op in ("neq", "not_includes", "not_in")
        if op in ("in", "not_in"):
            values = [v.strip() for v in str(want).split(",")]
            member = _text(got) in values
            return member if op == "in" else not member
        if kind == "number" or op in ("gt", "gte", "lt", "lte"):
            a, b = _num(got), _num(want)
            if a is None or b is None:
                return op == "neq"
            return {"eq": a == b, "neq": a != b, "gt": a > b, "gte": a >= b, "lt": a < b,
                    "lte": a <= b}.get(op, False)  # fmt: skip
        if kind == "boolean":
            a_b = got if isinstance(got, bool) else str(got).lower() == "true"
            b_b = want if isinstance(want, bool) else str(want).lower() == "true"
            return (a_b == b_b) if op == "eq" else (a_b != b_b) if op == "neq" else False
        text, value = _text(got), "" if want is None else _text(want)
        if op == "eq":
            return text == value
        if op == "neq":
            return text != value
        if op == "includes":
            return value in text
        if op == "not_includes":
            return value not in text
        if op == "starts_with":
            return text.startswith(value)
        if op == "ends_with":
            return text.endswith(value)
        try:  # regex (RE2 in production; Python's re for the sandbox)
            return re.search(value, text) is not None
        except re.error:
            raise CFError(400, 10001, f"invalid regex {value!r}") from None

    return test


def compile_filters(
    filters: Any, combination: Any = "and", depth: int = 0
) -> Callable[[Event], bool]:
    if filters in (None, []):
        return lambda e: True
    if not isinstance(filters, list):
        raise CFError(400, 10001, "parameters.filters must be a list")
    if depth > 4:
        raise CFError(400, 10001, "filter groups nest at most 4 deep")
    tests = []
    for spec in filters:
        if not isinstance(spec, dict):
            raise CFError(400, 10001, f"invalid filter: {json.dumps(spec)}")
        if spec.get("kind") == "group":
            tests.append(
                compile_filters(spec.get("filters"), spec.get("filterCombination"), depth + 1)
            )
        else:
            tests.append(_leaf(spec))
    if str(combination or "and").lower() == "or":
        return lambda e: any(t(e) for t in tests)
    return lambda e: all(t(e) for t in tests)


def compile_needle(needle: Any) -> Callable[[Event], bool]:
    if not needle:
        return lambda e: True
    if isinstance(needle, str | int | float):
        needle = {"value": needle}
    if not isinstance(needle, dict) or needle.get("value") in (None, ""):
        raise CFError(400, 10001, "parameters.needle needs a value")
    value = str(needle["value"])
    flags = 0 if needle.get("matchCase") else re.IGNORECASE
    try:
        pattern = re.compile(value if needle.get("isRegex") else re.escape(value), flags)
    except re.error:
        raise CFError(400, 10001, f"invalid needle regex {value!r}") from None

    def test(event: Event) -> bool:
        md = event.get("$metadata") or {}
        hay = " ".join(
            [str(md.get("message") or ""), str(md.get("error") or ""), str(md.get("url") or ""),
             json.dumps(event.get("source"), ensure_ascii=False)]
        )  # fmt: skip
        return pattern.search(hay) is not None

    return test


def _scripts_in(filters: Any, combination: Any) -> set[str] | None:
    """Scripts a top-level AND of filters pins down (to read fewer rows), None: any."""
    if not isinstance(filters, list) or str(combination or "and").lower() == "or":
        return None
    for spec in filters:
        if not isinstance(spec, dict) or spec.get("key") not in (
            "$workers.scriptName",
            "$metadata.service",
        ):
            continue
        op = _OPS.get(str(spec.get("operation")), str(spec.get("operation", "")).lower())
        if op == "eq":
            return {str(spec.get("value"))}
        if op == "in":
            return {v.strip() for v in str(spec.get("value")).split(",")}
    return None


# ---- reading ---------------------------------------------------------------------------
def _rows(state: State, scripts: set[str] | None, since: int, until: int) -> list[Any]:
    # a log line can be up to the invocation's wall time later than its row: read a little
    # before `since`, the events are filtered by their own timestamp afterwards
    lo = since - 60_000
    with state.read() as db:
        if scripts is None:
            return db.execute(
                "SELECT * FROM traffic WHERE ts_ms >= ? AND ts_ms <= ? ORDER BY ts_ms, id",
                (lo, until),
            ).fetchall()
        marks = ",".join("?" for _ in scripts)
        return db.execute(
            f"SELECT * FROM traffic WHERE script IN ({marks}) AND ts_ms >= ? AND ts_ms <= ? "
            "ORDER BY ts_ms, id",
            (*sorted(scripts), lo, until),
        ).fetchall()


def matching(
    state: State, params: dict[str, Any], since: int, until: int
) -> Iterator[tuple[Any, list[Event], list[Event]]]:
    """(row, all its events, its events that match) for every invocation with a match."""
    datasets = params.get("datasets") or []
    if datasets and DATASET not in datasets:
        return
    filters, combination = params.get("filters"), params.get("filterCombination")
    keep = compile_filters(filters, combination)
    needle = compile_needle(params.get("needle"))
    for row in _rows(state, _scripts_in(filters, combination), since, until):
        events = events_of(row, state.account_id)
        hits = [e for e in events if since <= e["timestamp"] <= until and keep(e) and needle(e)]
        if hits:
            yield row, events, hits


def _search_params(body: dict[str, Any]) -> dict[str, Any]:
    """The part of a keys/values body that selects events (for `matching`)."""
    return {k: body.get(k) for k in ("filters", "needle", "datasets")}


def _timeframe(body: dict[str, Any]) -> tuple[int, int]:
    tf = body.get("timeframe")
    if not isinstance(tf, dict):
        raise CFError(400, 10001, "timeframe {from, to} (ms) is required")
    since, until = _num(tf.get("from")), _num(tf.get("to"))
    if since is None or until is None:
        raise CFError(400, 10001, "timeframe.from and timeframe.to must be numbers (ms)")
    if since >= until:
        raise CFError(400, 10001, "timeframe.from must be earlier than timeframe.to")
    if until - since > MAX_RANGE_MS:
        raise CFError(400, 10001, "the timeframe may span at most 7 days")
    return int(since), int(until)


def _limit(value: Any, default: int, high: int) -> int:
    if value is None:
        return default
    n = _num(value)
    if n is None or n < 1:
        raise CFError(400, 10001, f"limit must be a positive number, got {value!r}")
    return min(int(n), high)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _fields(events: list[Event], sample: int = 200) -> list[dict[str, str]]:
    """The keys of the matched events (of a sample of them: the shapes repeat)."""
    seen: dict[str, str] = {}
    for e in events[:sample]:
        for key, value in flatten(e):
            seen.setdefault(key, _type_of(value))
    return [{"key": k, "type": t} for k, t in sorted(seen.items())]


def flatten(event: Event) -> Iterator[tuple[str, Any]]:
    """(key, value) of every scalar in an event: `$`-paths, and source fields by name."""

    def walk(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif not isinstance(value, list) and value is not None:
            yield prefix, value

    for top in ("$workers", "$metadata"):
        yield from walk(top, event.get(top) or {})
    source = event.get("source")
    if isinstance(source, dict):
        yield from walk("", source)
    elif source is not None:
        yield "message", source


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string"


# ---- views -----------------------------------------------------------------------------
def _page(events: list[Event], offset: Any, direction: Any, limit: int) -> list[Event]:
    """Newest first; after the event whose $metadata.id is `offset` (before it with prev)."""
    events.sort(key=lambda e: (e["timestamp"], e["$metadata"]["id"]), reverse=True)
    if offset:
        ids = [e["$metadata"]["id"] for e in events]
        if offset in ids:
            i = ids.index(offset)
            events = events[max(0, i - limit) : i] if direction == "prev" else events[i + 1 :]
        else:
            raise CFError(400, 10001, f"offset {offset!r} is not an event of this query")
    return events[:limit]


def _calculate(
    events: list[Event], params: dict[str, Any], since: int, until: int, body: dict[str, Any]
) -> list[dict[str, Any]]:
    calcs = params.get("calculations") or [{"operator": "count"}]
    groups = [str(g.get("value")) for g in params.get("groupBys") or [] if isinstance(g, dict)]
    limit = _limit(params.get("limit", body.get("limit")), 10, 10_000)
    buckets = int(_num(body.get("granularity")) or 0) or 30
    step = max(1, math.ceil((until - since) / buckets))
    out = []
    for calc in calcs:
        if not isinstance(calc, dict):
            raise CFError(400, 10001, "each calculation is an object {operator, key?, alias?}")
        op = str(calc.get("operator", "")).lower()
        if op not in _CALC:
            raise CFError(400, 10001, f"unknown calculation operator {calc.get('operator')!r}")
        key = calc.get("key")
        if op != "count" and not key:
            raise CFError(400, 10001, f"calculation {op} needs a key")
        name = f"{op}({key})" if key else f"{op}(*)"

        def agg(evs: list[Event], op: str = op, key: Any = key) -> float:
            if op == "count":
                return float(len(evs))
            values = [lookup(e, key) for e in evs]
            if op in ("uniq", "count_distinct"):
                return float(len({_text(v) for v in values if v is not _MISSING}))
            nums = sorted(x for v in values if (x := _num(v)) is not None)
            if not nums:
                return 0.0
            if op == "sum":
                return float(sum(nums))
            if op == "min":
                return nums[0]
            if op == "max":
                return nums[-1]
            if op == "avg":
                return sum(nums) / len(nums)
            if op in ("stddev", "variance"):
                mean = sum(nums) / len(nums)
                var = sum((x - mean) ** 2 for x in nums) / len(nums)
                return math.sqrt(var) if op == "stddev" else var
            q = 0.5 if op == "median" else float("0." + op[1:]) if op != "p999" else 0.999
            return nums[min(len(nums) - 1, max(0, math.ceil(q * len(nums)) - 1))]

        grouped: dict[tuple[Any, ...], list[Event]] = {}
        for e in events:
            values = tuple(lookup(e, g) for g in groups)
            if any(v is _MISSING for v in values):
                continue
            grouped.setdefault(values, []).append(e)
        aggregates = []
        for values, evs in grouped.items():
            row: dict[str, Any] = {"value": agg(evs), "count": len(evs), "interval": 1,
                                   "sampleInterval": 1}  # fmt: skip
            if groups:
                row["groups"] = [
                    {"key": g, "value": v} for g, v in zip(groups, values, strict=True)
                ]
            aggregates.append(row)
        order = params.get("orderBy") or {}
        reverse = str(order.get("order", "desc")).lower() != "asc"
        aggregates.sort(key=lambda r: r["value"], reverse=reverse)
        for having in params.get("havings") or []:
            test = _leaf({**having, "key": "value", "type": "number"})
            aggregates = [r for r in aggregates if test({"source": {"value": r["value"]}})]
        aggregates = aggregates[:limit]
        series = []
        if not body.get("ignoreSeries"):
            for start in range(since, until, step):
                part = [e for e in events if start <= e["timestamp"] < start + step]
                if part:
                    series.append({"time": _iso(start), "data": [
                        {"value": agg(part), "count": len(part), "interval": 1, "sampleInterval": 1}
                    ]})  # fmt: skip
        out.append({"alias": calc.get("alias") or "", "calculation": name,
                    "aggregates": aggregates, "series": series})  # fmt: skip
    return out


async def query(request: Request) -> Response:
    state = from_request(request)
    account_id = check_account(request)
    body = await json_body(request)
    started = time.perf_counter()
    since, until = _timeframe(body)
    view = str(body.get("view") or "calculations")
    if view not in ("events", "invocations", "calculations"):
        raise CFError(400, 10001, f"view {view!r} is not served here (events, invocations, calculations)")  # fmt: skip
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise CFError(400, 10001, "parameters must be an object")
    found = list(matching(state, params, since, until))
    rows_read = sum(len(evs) for _, evs, _ in found)
    result: dict[str, Any] = {}
    if view == "events":
        hits = [e for _, _, matched in found for e in matched]
        limit = _limit(body.get("limit", params.get("limit")), DEFAULT_LIMIT, MAX_LIMIT)
        page = _page(list(hits), body.get("offset"), body.get("offsetDirection"), limit)
        result["events"] = {"count": len(hits), "events": page, "fields": _fields(page),
                            "series": []}  # fmt: skip
    elif view == "invocations":
        limit = _limit(body.get("limit", params.get("limit")), DEFAULT_LIMIT, MAX_LIMIT)
        newest = sorted(found, key=lambda f: (f[0]["ts_ms"], f[0]["id"]), reverse=True)[:limit]
        result["invocations"] = {evs[0]["$workers"]["requestId"]: evs for _, evs, _ in newest}
    else:
        hits = [e for _, _, matched in found for e in matched]
        result["calculations"] = _calculate(hits, params, since, until, body)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    elapsed = round(time.perf_counter() - started, 4)
    stats = {"elapsed": elapsed, "rows_read": rows_read, "bytes_read": rows_read * 600}
    query_id = str(body.get("queryId") or "adhoc")
    result = {
        "run": {
            "id": str(uuid.uuid4()),
            "accountId": account_id,
            "dry": bool(body.get("dry", False)),
            "granularity": int(_num(body.get("granularity")) or 0),
            "query": {
                "id": query_id,
                "adhoc": True,
                "name": query_id,
                "description": None,
                "parameters": params,
                "created": now,
                "updated": now,
                "createdBy": "api",
                "updatedBy": "api",
            },
            "status": "COMPLETED",
            "timeframe": {"from": since, "to": until},
            "userId": "api",
            "created": now,
            "updated": now,
            "statistics": stats,
        },
        "statistics": stats,
        **result,
    }
    return ok(result)


async def keys(request: Request) -> Response:
    """The keys of the events in a timeframe (default: the last 24 h): {key, type, lastSeenAt}."""
    state = from_request(request)
    check_account(request)
    body = await json_body(request)
    until = int(_num(body.get("to")) or time.time() * 1000)
    since = int(_num(body.get("from")) or until - KEYS_DEFAULT_MS)
    if since >= until:
        raise CFError(400, 10001, "from must be earlier than to")
    needle = body.get("keyNeedle") or {}
    key_part = str(needle.get("value", "")) if isinstance(needle, dict) else str(needle)
    case = isinstance(needle, dict) and bool(needle.get("matchCase"))
    limit = _limit(body.get("limit"), 100, 10_000)
    params = _search_params(body)
    out: dict[str, dict[str, Any]] = {}
    for _, _, hits in matching(state, params, since, until):
        for e in hits:
            for key, value in flatten(e):
                if key_part and (
                    key_part not in key if case else key_part.lower() not in key.lower()
                ):
                    continue
                seen = out.setdefault(key, {"key": key, "type": _type_of(value), "lastSeenAt": 0})
                seen["lastSeenAt"] = max(seen["lastSeenAt"], e["timestamp"])
    return ok(sorted(out.values(), key=lambda k: k["key"])[:limit])


async def values(request: Request) -> Response:
    """The distinct values of one key: [{key, type, value, dataset}]."""
    state = from_request(request)
    check_account(request)
    body = await json_body(request)
    since, until = _timeframe(body)
    key = body.get("key")
    if not isinstance(key, str) or not key:
        raise CFError(400, 10001, "key is required")
    kind = str(body.get("type") or "string")
    limit = _limit(body.get("limit"), 50, 10_000)
    params = _search_params(body)
    counts: dict[str, tuple[Any, int]] = {}
    for _, _, hits in matching(state, params, since, until):
        for e in hits:
            value = lookup(e, key)
            if value is _MISSING or value is None or isinstance(value, dict | list):
                continue
            old = counts.get(_text(value), (value, 0))
            counts[_text(value)] = (value, old[1] + 1)
    ranked = sorted(counts.values(), key=lambda vc: -vc[1])[:limit]
    return ok([{"key": key, "type": kind, "value": v, "dataset": DATASET} for v, _ in ranked])


_BASE = "/accounts/{account_id}/workers/observability/telemetry"
routes: list[BaseRoute] = [
    Route(_BASE + "/query", query, methods=["POST"]),
    Route(_BASE + "/keys", keys, methods=["POST"]),
    Route(_BASE + "/values", values, methods=["POST"]),
]
