"""Evidence helpers shared by the traffic runbooks (queue-backlog, slow-responses,
high-error-rate, security-incident): Workers analytics over GraphQL, the recent history
of Workers Logs (the telemetry query API), a live tail, probes of the app's routes
recorded by that tail.

Everything goes through the public APIs of `opsbook.connect(env)`: the same calls
reach the sandbox and production. Functions return plain data (DataFrames, dicts).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pandas as pd

if TYPE_CHECKING:
    from ..platform import Platform

T = TypeVar("T")

INVOCATIONS = """query($acct:String!,$s:Time!,$e:Time!,$w:String!){viewer{accounts(filter:{accountTag:$acct}){
 workersInvocationsAdaptive(limit:5000,filter:{scriptName:$w,datetime_geq:$s,datetime_leq:$e},orderBy:[%(dim)s_ASC]){
  dimensions{%(dims)s} sum{requests errors subrequests responseBodySize}
  quantiles{wallTimeP50 wallTimeP90 wallTimeP99 responseBodySizeP50 responseBodySizeP99}
  max{wallTime responseBodySize}}}}}"""
COLUMNS = ["ts", "requests", "errors", "subrequests", "body_bytes", "wall_p50_ms", "wall_p90_ms",
           "wall_p99_ms", "body_p50", "body_p99", "wall_max_ms", "body_max"]  # fmt: skip


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- Workers analytics ------------------------------------------------------------------
def invocations(
    p: Platform,
    minutes: int,
    *,
    bucket: str = "datetimeMinute",
    by: Sequence[str] = (),
    now: datetime | None = None,
) -> pd.DataFrame:
    """Workers analytics of the app's worker for the last `minutes`, one row per bucket
    (and per `by` dimension: scriptVersion, status). Times in ms, sizes in bytes."""
    end = now or datetime.now(UTC)
    data = p.cf.graphql(
        INVOCATIONS % {"dim": bucket, "dims": " ".join([bucket, *by])},
        {
            "acct": p.cf.account_id,
            "s": iso(end - timedelta(minutes=minutes)),
            "e": iso(end),
            "w": p.worker,
        },
    )
    accounts = (data.get("viewer") or {}).get("accounts") or [{}]
    rows = []
    for r in accounts[0].get("workersInvocationsAdaptive") or []:
        d, s, q, mx = r["dimensions"], r["sum"], r.get("quantiles") or {}, r.get("max") or {}
        row: dict[str, Any] = {
            "ts": pd.Timestamp(d[bucket]),
            "requests": int(s["requests"]),
            "errors": int(s["errors"]),
            "subrequests": int(s.get("subrequests") or 0),
            "body_bytes": int(s.get("responseBodySize") or 0),
            "wall_p50_ms": float(q.get("wallTimeP50") or 0) / 1000,
            "wall_p90_ms": float(q.get("wallTimeP90") or 0) / 1000,
            "wall_p99_ms": float(q.get("wallTimeP99") or 0) / 1000,
            "body_p50": float(q.get("responseBodySizeP50") or 0),
            "body_p99": float(q.get("responseBodySizeP99") or 0),
            "wall_max_ms": float(mx.get("wallTime") or 0) / 1000,
            "body_max": float(mx.get("responseBodySize") or 0),
        }
        for name in by:
            row[name] = d.get(name)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*COLUMNS, *by])


def by_version(p: Platform, hours: int = 24) -> pd.DataFrame:
    """Hourly analytics per scriptVersion for the last `hours` (which version failed)."""
    return invocations(p, hours * 60, bucket="datetimeHour", by=("scriptVersion",))


def error_series(frame: pd.DataFrame) -> pd.DataFrame:
    """Per bucket: requests, errors, error_rate (index ts) — the shape analysis expects.
    Buckets without traffic are absent from GraphQL; they are filled with zeros."""
    if frame.empty:
        return pd.DataFrame(
            {"requests": [], "errors": [], "error_rate": []},
            index=pd.DatetimeIndex([], tz="UTC", name="ts"),
        )
    per = frame.groupby("ts")[["requests", "errors"]].sum().sort_index()
    step = per.index.to_series().diff().min() if len(per) > 1 else pd.Timedelta(minutes=1)
    full = pd.date_range(per.index[0], per.index[-1], freq=step, name="ts")
    per = per.reindex(full, fill_value=0)
    per["error_rate"] = (per["errors"] / per["requests"].where(per["requests"] > 0)).fillna(0.0)
    return per


# ---- recent history: Workers Logs ---------------------------------------------------------
HISTORY = "Workers Logs"


def recent_events(
    p: Platform,
    minutes: float,
    filters: list[dict[str, Any]] | None = None,
    *,
    needle: str | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]] | None:
    """TraceItems of the app's worker over the last `minutes`, oldest first, read from
    Workers Logs (the telemetry query API, `filters` as its {key, operation, type, value}
    leaves): the same events a tail would have streamed, without waiting for them.

    None when the account has no Workers Logs to read: the API answers 404, refuses the
    token (10000), or errs otherwise. The caller falls back to a live tail then."""
    from ..clients import workers_logs
    from ..errors import ApiError

    end = now or datetime.now(UTC)
    until = int(end.timestamp() * 1000)
    scope = {"key": "$workers.scriptName", "operation": "eq", "type": "string", "value": p.worker}
    try:
        events = p.cf.telemetry_events(
            until - int(minutes * 60_000), until, [scope, *(filters or [])], needle=needle
        )
    except ApiError:
        return None
    return workers_logs.trace_items(events)


def recent_frame(
    p: Platform, minutes: float, filters: list[dict[str, Any]] | None = None
) -> pd.DataFrame | None:
    """`recent_events` as the tail DataFrame (clients.logs COLUMNS); None: no Workers Logs."""
    from ..clients import logs

    items = recent_events(p, minutes, filters)
    return None if items is None else logs.to_frame(items)


# ---- a live tail ------------------------------------------------------------------------
class LiveTail:
    """A tail session (POST .../tails + the trace-v1 websocket) read in a background thread
    until `stop()`: it records while probes run, however long they take."""

    def __init__(self, p: Platform, filters: list[dict[str, Any]] | None = None) -> None:
        self.p = p
        self.filters = filters or []
        self.events: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._session: dict[str, Any] = {}

    def __enter__(self) -> LiveTail:
        self._session = self.p.cf.create_tail(self.p.worker, self.filters)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self._ready.wait(5)
        return self

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        try:
            with connect(self._session["url"], subprotocols=["trace-v1"], open_timeout=5) as ws:  # type: ignore[list-item]
                ws.send(json.dumps({"debug": False}))
                self._ready.set()
                while not self._stop.is_set():
                    try:
                        self.events.append(json.loads(ws.recv(timeout=0.1)))
                    except TimeoutError:
                        continue
                    except ConnectionClosed:
                        return
        finally:
            self._ready.set()

    def stop(self, linger_s: float = 0.0) -> pd.DataFrame:
        """Keep reading `linger_s` more (an event arrives when its request ends), then close."""
        from ..clients import logs

        if linger_s:
            time.sleep(linger_s)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(Exception):
            self.p.cf.delete_tail(self.p.worker, self._session["id"])
        return logs.to_frame(self.events)

    def __exit__(self, *exc: object) -> None:
        if not self._stop.is_set():
            self.stop()


def while_tailing(
    p: Platform, seconds: float, work: Callable[[], T], filters: list[dict[str, Any]] | None = None
) -> tuple[T, pd.DataFrame]:
    """Run `work()` (a second measurement) while a tail records for at least `seconds`."""
    t0 = time.monotonic()
    with LiveTail(p, filters) as live:
        result = work()
        return result, live.stop(max(0.0, seconds - (time.monotonic() - t0)))


# ---- probes of the app's routes, recorded by a tail ------------------------------------
PROBE_COLUMNS = ["route", "url", "path", "expected", "status", "ms", "error", "failed"]


def probe_routes(
    p: Platform, repeat: int = 3, timeout_s: float = 10.0, linger_s: float = 1.0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Probe every route in params `app.probes` `repeat` times, concurrently, while a tail
    records: (one row per probe, the tail's events). A probe failed when it got no
    answer or a 5xx (a 4xx other than the expected one is only a surprise)."""
    from ..clients.probes import probe

    targets = [
        (str(t["route"]), p.app_url(str(t["path"])), int(t.get("status", 200)), str(t["path"]))
        for t in (p.setting("app.probes") or [])
        for _ in range(repeat)
    ]
    workers = min(32, len(targets) or 1)
    http = httpx.Client(timeout=timeout_s, limits=httpx.Limits(max_connections=workers))
    with http, LiveTail(p) as live, ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            pool.map(
                lambda t: (t[0], probe(t[1], expected_status=t[2], timeout=timeout_s, client=http)),
                targets,
            )
        )
        events = live.stop(linger_s)
    paths = {t[1]: t[3].split("?", 1)[0] for t in targets}
    rows = [
        {
            "route": route,
            "url": r.url,
            "path": paths[r.url],  # as the Worker sees it (tail events carry this path)
            "expected": r.expected[0],
            "status": r.status,
            "ms": round(r.elapsed_ms, 1),
            "error": r.error,
            "failed": r.status is None or r.status >= 500,
        }
        for route, r in results
    ]
    return pd.DataFrame(rows, columns=PROBE_COLUMNS), events


def probe_summary(probes: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Per route: probes, failed, statuses, p95 ms, and what the tail logged for them."""
    out = []
    for route, grp in probes.groupby("route", sort=False):
        mine = events[events["path"].isin(set(grp["path"]))] if len(events) else events
        excs = [e for e in mine["exceptions"].fillna("") if e] if len(mine) else []
        lines = (
            sorted({ln for text in mine["logs"].fillna("") for ln in str(text).splitlines() if ln})
            if len(mine)
            else []
        )
        out.append(
            {
                "route": route,
                "probes": len(grp),
                "failed": int(grp["failed"].sum()),
                "statuses": ", ".join("none" if pd.isna(s) else str(int(s)) for s in grp["status"]),
                "expected": int(grp["expected"].iloc[0]),
                "p95_ms": round(float(grp["ms"].quantile(0.95)), 1),
                "exceptions": "; ".join(sorted(set(excs)))[:300],
                "logs": "\n".join(lines)[:600],
            }
        )
    return pd.DataFrame(out)


# ---- deployments --------------------------------------------------------------------------
def deployments_frame(deployments: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Newest first, as the API lists them: id, created_on, version_id, message."""
    return [
        {
            "id": d.get("id"),
            "created_on": d.get("created_on"),
            "version_id": ((d.get("versions") or [{}])[0]).get("version_id"),
            "message": (d.get("annotations") or {}).get("workers/message", ""),
        }
        for d in deployments
    ]


def chart_markers(
    deployments: Sequence[dict[str, Any]], since: pd.Timestamp | datetime
) -> list[tuple[datetime, str]]:
    """Deployment markers for charts, for deployments inside the charted window."""
    start = pd.Timestamp(since)
    start = start.tz_convert("UTC") if start.tzinfo else start.tz_localize("UTC")
    out = []
    for d in deployments:
        at = pd.Timestamp(d["created_on"])
        at = at.tz_convert("UTC") if at.tzinfo else at.tz_localize("UTC")
        if at >= start:
            out.append((at.to_pydatetime(), f"deploy {str(d.get('version_id', ''))[:8]}"))
    return out
