"""Evidence api-down, auth-broken and password-reset share: per-minute Worker
analytics, the 5xx onset, and the app's own log lines for one request we send.

Everything goes through public interfaces (`opsbook.connect(env)`): the GraphQL
analytics aggregate (`workersInvocationsAdaptive`, one row per minute and version, never
a big log pull), HTTP probes, and a short `wrangler tail` session around one request.
`onset()` and `version_rates()` are pure and unit-tested on synthetic series.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from ..platform import Platform

MINUTES_QUERY = """
query Minutes($acct: string!, $script: string!, $since: Time!, $until: Time!) {
  viewer { accounts(filter: {accountTag: $acct}) {
    workersInvocationsAdaptive(limit: 10000, orderBy: [datetimeMinute_ASC],
      filter: {scriptName: $script, datetime_geq: $since, datetime_leq: $until}) {
      dimensions { datetimeMinute scriptVersion }
      sum { requests errors }
    }
  } }
}"""


def gql_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fix_time() -> str:
    """When a fix just applied takes effect, for "since the fix" windows: the next whole
    second (the analytics filter by second, and requests earlier in this one may have
    been served before the fix)."""
    return gql_time(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1))


def minute_rows(p: Platform, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """One row per (minute, version): {minute, version, requests, errors}."""
    data = p.cf.graphql(
        MINUTES_QUERY,
        {"acct": p.cf.account_id, "script": p.worker, "since": gql_time(since),
         "until": gql_time(until)},
    )  # fmt: skip
    accounts = (data.get("viewer") or {}).get("accounts") or [{}]
    return [
        {
            "minute": r["dimensions"]["datetimeMinute"],
            "version": r["dimensions"].get("scriptVersion") or "",
            "requests": int(r["sum"]["requests"]),
            "errors": int(r["sum"]["errors"]),
        }
        for r in accounts[0].get("workersInvocationsAdaptive") or []
    ]


def series(rows: Sequence[dict[str, Any]], since: datetime, until: datetime) -> pd.DataFrame:
    """Per minute (every minute of the window, empty ones 0): requests, errors, error_rate."""
    index = pd.date_range(
        pd.Timestamp(since).floor("min"), pd.Timestamp(until).floor("min"), freq="1min", tz="UTC"
    )
    frame = pd.DataFrame(
        {"requests": 0, "errors": 0}, index=pd.DatetimeIndex(index, name="minute"), dtype="int64"
    )
    for r in rows:
        at = pd.Timestamp(r["minute"]).tz_convert("UTC")
        if at in frame.index:
            frame.loc[at, "requests"] += int(r["requests"])
            frame.loc[at, "errors"] += int(r["errors"])
    frame["error_rate"] = (frame["errors"] / frame["requests"].where(frame["requests"] > 0)).fillna(
        0.0
    )
    return frame


@dataclass(frozen=True)
class Onset:
    at: pd.Timestamp  # the first minute of the trailing run of errors
    before_rate: float  # error rate over the window before the onset
    after_rate: float  # error rate from the onset to now
    before_requests: int
    after_requests: int


def onset(frame: pd.DataFrame, min_rate: float = 0.2, min_requests: int = 3) -> Onset | None:
    """The start of the error run that lasts until now: walking back from the newest
    minute with traffic, every minute with traffic is at `min_rate` or more. None when the
    newest minutes are healthy (or there is too little traffic to tell)."""
    busy = frame[frame["requests"] > 0]
    start: pd.Timestamp | None = None
    for at, row in busy.iloc[::-1].iterrows():
        if row["error_rate"] >= min_rate:
            start = pd.Timestamp(at)
        else:
            break
    if start is None:
        return None
    after, before = frame[frame.index >= start], frame[frame.index < start]
    if int(after["requests"].sum()) < min_requests:
        return None

    def rate(part: pd.DataFrame) -> float:
        n = int(part["requests"].sum())
        return float(part["errors"].sum()) / n if n else 0.0

    return Onset(
        start, rate(before), rate(after), int(before["requests"].sum()),
        int(after["requests"].sum()),
    )  # fmt: skip


def version_rates(
    rows: Sequence[dict[str, Any]],
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
) -> dict[str, dict[str, float]]:
    """Per version: requests, errors and error rate over [since, until)."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        at = pd.Timestamp(r["minute"]).tz_convert("UTC")
        if (since is not None and at < since) or (until is not None and at >= until):
            continue
        v = out.setdefault(r["version"], {"requests": 0, "errors": 0, "rate": 0.0})
        v["requests"] += r["requests"]
        v["errors"] += r["errors"]
    for v in out.values():
        v["rate"] = v["errors"] / v["requests"] if v["requests"] else 0.0
    return out


def since_fix(p: Platform, fixed_at: datetime) -> dict[str, Any]:
    """Requests and errors the analytics count since `fixed_at` (a fresh window)."""
    rows = minute_rows(p, fixed_at, datetime.now(UTC) + timedelta(seconds=1))
    requests = sum(r["requests"] for r in rows)
    errors = sum(r["errors"] for r in rows)
    return {"since": gql_time(fixed_at), "requests": requests, "errors": errors,
            "error_rate": errors / requests if requests else 0.0}  # fmt: skip


def pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


# ---- the app's log lines for one request we send -----------------------------------------
@dataclass
class Captured:
    result: Any  # what `send` returned (a ProbeResult)
    events: list[dict[str, Any]]  # the tail events of our request (path matched)

    def log_text(self) -> str:
        from ..clients.logs import log_text

        parts: list[str] = []
        for e in self.events:
            parts.append(log_text(e.get("logs") or []))
            parts += [f"{x.get('name')}: {x.get('message')}" for x in e.get("exceptions") or []]
        return "\n".join(p for p in parts if p)


def with_tail(
    p: Platform, send: Callable[[], Any], path: str, *, method: str = "POST", seconds: float = 3.0
) -> Captured:
    """Open a tail of the Worker, send the request once the tail is connected, and return
    the tail events of that path (what `wrangler tail` shows while you `curl` it). Stops
    as soon as our request's event arrives, or after `seconds`."""
    import json

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    def ours(e: dict[str, Any]) -> bool:
        url = str((((e.get("event") or {}).get("request")) or {}).get("url") or "")
        return url.split("?", 1)[0].endswith(path)

    found: list[dict[str, Any]] = []
    session = p.cf.create_tail(p.worker, [{"method": [method]}])
    try:
        with connect(session["url"], subprotocols=["trace-v1"], open_timeout=5) as ws:  # type: ignore[list-item]
            ws.send(json.dumps({"debug": False}))
            result = send()
            deadline = time.monotonic() + seconds
            while not found and (left := deadline - time.monotonic()) > 0:
                try:
                    event = json.loads(ws.recv(timeout=left))
                except (TimeoutError, ConnectionClosed):
                    break
                if ours(event):
                    found.append(event)
    finally:
        p.cf.delete_tail(p.worker, session["id"])
    return Captured(result, found)
