"""Evidence api-down, auth-broken and password-reset share: per-minute Worker
analytics, the 5xx onset, and the app's own log lines for one request we send.

Everything goes through public interfaces (`opsbook.connect(env)`): the GraphQL
analytics aggregate (`workersInvocationsAdaptive`, one row per minute and version, never
a big log pull), HTTP probes, and a short `wrangler tail` session around one request.
`onset()` and `version_rates()` are pure and unit-tested on synthetic series.
"""

from __future__ import annotations

import math
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


def onset(
    frame: pd.DataFrame, min_rate: float = 0.2, min_requests: int = 3, recent: int = 5
) -> Onset | None:
    """The start of the error run that lasts until now, or None when the newest requests
    are healthy (or too few to tell).

    The newest `recent` requests (whole minutes, walking back) must fail at `min_rate` or
    more. The run then starts where one split of the window into a before and
    an after explains the errors best (the most likely change of a binomial error rate),
    among splits whose after part fails at `min_rate` or more and more often than the
    before part. At night a minute holds one or two requests, and a bad deployment's odd
    lucky success would end a minute-by-minute walk early; the split is not fooled by it."""
    busy = frame[frame["requests"] > 0]
    if busy.empty:
        return None
    requests = busy["requests"].to_numpy(dtype="int64")
    errors = busy["errors"].to_numpy(dtype="int64")
    tail_n = tail_e = 0
    for n, e in zip(requests[::-1], errors[::-1], strict=True):
        tail_n, tail_e = tail_n + int(n), tail_e + int(e)
        if tail_n >= recent:
            break
    if tail_n < min_requests or tail_e / tail_n < min_rate:
        return None
    total_n, total_e = int(requests.sum()), int(errors.sum())
    best: tuple[float, Onset] | None = None
    before_n = before_e = 0
    for i in range(len(busy)):
        after_n, after_e = total_n - before_n, total_e - before_e
        after, before = after_e / after_n, (before_e / before_n if before_n else 0.0)
        if after_n >= min_requests and after >= min_rate and (before_n == 0 or after > before):
            score = _loglik(before_e, before_n) + _loglik(after_e, after_n)
            if best is None or score > best[0]:
                at = pd.Timestamp(busy.index[i])
                best = (score, Onset(at, before, after, before_n, after_n))
        before_n, before_e = before_n + int(requests[i]), before_e + int(errors[i])
    return best[1] if best else None


def _loglik(errors: int, requests: int) -> float:
    """Log-likelihood of `errors` in `requests` at their own rate (0 for none or all)."""
    if errors in (0, requests):
        return 0.0
    p = errors / requests
    return errors * math.log(p) + (requests - errors) * math.log(1 - p)


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
