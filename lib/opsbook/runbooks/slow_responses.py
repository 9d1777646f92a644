"""slow-responses: P95 over budget, users report slow pages (seed 000, Issue 5).

Latency and response sizes from Workers analytics (now vs the day before), the app's hot
D1 queries under EXPLAIN QUERY PLAN (a SCAN where an index should SEARCH), the upstream
calls the recent history in Workers Logs shows (or, when it shows none too slow, probes of
every route while a tail records their upstream calls), and the idle gaps before slow
requests (cold starts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from ..platform import Platform

CAUSES = {
    "missing-index": "a hot D1 query scans its table: the index it needs is missing",
    "slow-upstream": "an upstream API the worker calls answers slowly",
    "large-payload": "responses grew many times larger (no pagination): slow to build and send",
    "cold-start": "only the first requests after idle gaps are slow (cold isolates): normal",
}
PROFILES = ("manuscript", "peptalk")
SEVERITY = "P2"  # seed 000 Issue 5: "Medium — poor user experience"; nothing is down
NO_REMEDY = {
    "slow-upstream": "add a timeout and a fallback around the upstream call (and cache its "
    "answers in KV); check the provider's status page",
    "large-payload": "paginate the list endpoint and stop embedding large fields (code change); "
    "roll back the deployment that introduced it with the rollback runbook if users suffer",
    "cold-start": "normal for sparse traffic: the first request after idle pays the isolate "
    "start; no action",
}
_INDEX_DDL = re.compile(
    r"CREATE\s+INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s+ON\s+(\w+)\s*\(([^)]*)\)", re.IGNORECASE
)
# the budget is a P95: slow requests that are this share of the window put it over budget
P95_SHARE = 0.05
_LATENCY = re.compile(r'latency_ms"?\s*[:=]\s*(\d+(?:\.\d+)?)')


# ---- D1: the plan of a hot query -------------------------------------------------------
@dataclass(frozen=True)
class Index:
    name: str
    table: str
    columns: tuple[str, ...]
    ddl: str


def parse_index(ddl: str) -> Index | None:
    m = _INDEX_DDL.search(ddl or "")
    if not m:
        return None
    cols = tuple(c.strip().split()[0].strip('"`[]') for c in m.group(3).split(",") if c.strip())
    return Index(m.group(1), m.group(2), cols, ddl.strip())


@dataclass(frozen=True)
class PlanStep:
    detail: str

    @property
    def scan(self) -> str | None:
        """The table a full SCAN reads (SQLite's 'SCAN t', also 'SCAN t USING INDEX i'
        walked in index order: still every row), or None for a SEARCH."""
        m = re.match(r"SCAN (?:TABLE )?(\w+)", self.detail)
        return m.group(1) if m and "COVERING INDEX" not in self.detail else None

    @property
    def search_index(self) -> str | None:
        m = re.match(r"SEARCH (?:TABLE )?\w+ USING (?:COVERING )?INDEX (\w+)", self.detail)
        return m.group(1) if m else None


def plan_steps(rows: list[dict[str, Any]]) -> list[PlanStep]:
    """EXPLAIN QUERY PLAN rows (id, parent, notused, detail) -> steps."""
    return [PlanStep(str(r.get("detail", ""))) for r in rows]


def where_columns(sql: str) -> list[str]:
    """Columns compared to a parameter in the WHERE clause (`col = ?`)."""
    where = re.split(r"\bWHERE\b", sql, flags=re.IGNORECASE)
    if len(where) < 2:
        return []
    clause = re.split(r"\b(ORDER|GROUP|LIMIT)\b", where[1], flags=re.IGNORECASE)[0]
    return re.findall(r"(\w+)\s*(?:=|IN|>|<|>=|<=)\s*\?", clause, flags=re.IGNORECASE)


@dataclass
class QueryCheck:
    sql: str
    plan: list[PlanStep]
    rows_read: int
    duration_ms: float
    existing: list[Index]
    recommended: list[Index]
    table: str | None = None
    missing: list[Index] = field(default_factory=list)  # recommended, absent, would help

    @property
    def scans(self) -> list[str]:
        return [t for t in (s.scan for s in self.plan) if t]

    def plan_text(self) -> str:
        return " | ".join(s.detail for s in self.plan)


def judge_query(
    sql: str,
    plan: list[PlanStep],
    meta: dict[str, Any],
    existing: list[Index],
    recommended: list[Index],
) -> QueryCheck:
    """Which recommended indexes are missing and would turn the query's SCAN into a SEARCH."""
    check = QueryCheck(
        sql, plan, int(meta.get("rows_read", 0) or 0), float(meta.get("duration", 0) or 0),
        existing, recommended,
    )  # fmt: skip
    have = {(i.table, i.columns[:1]) for i in existing}
    wanted = set(where_columns(sql))
    for table in check.scans:
        check.table = table
        for idx in recommended:
            useful = idx.table == table and idx.columns[:1] and idx.columns[0] in wanted
            if useful and (idx.table, idx.columns[:1]) not in have:
                check.missing.append(idx)
    return check


def check_query(p: Platform, spec: dict[str, Any]) -> QueryCheck:
    """EXPLAIN QUERY PLAN, the query itself (its D1 meta), and the table's indexes."""
    db = p.database
    sql = str(spec["sql"])
    params: list[Any] = []
    if "?" in sql and spec.get("bind_sql"):
        found = p.cf.d1_query(db, str(spec["bind_sql"]), [p.setting("app.test_user")])
        row = (found[0].get("results") or [{}])[0] if found else {}
        params = [next(iter(row.values()), None)] if row else [None]
    plan = plan_steps(p.cf.d1_query(db, "EXPLAIN QUERY PLAN " + sql, params)[0]["results"])
    meta = p.cf.d1_query(db, sql, params)[0].get("meta") or {}
    recommended = [i for i in (parse_index(d) for d in spec.get("indexes") or []) if i]
    tables = sorted({i.table for i in recommended} | set(re.findall(r"\bFROM\s+(\w+)", sql, re.I)))
    listed = p.cf.d1_query(
        db,
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN "
        f"({', '.join('?' * len(tables))}) AND sql IS NOT NULL",
        tables,
    )[0]["results"]
    existing = [i for i in (parse_index(r["sql"]) for r in listed) if i]
    check = judge_query(sql, plan, meta, existing, recommended)
    check.sql = sql if not params else f"{sql}  -- ? = {params[0]}"
    return check


def create_index_preview(p: Platform, idx: Index) -> dict[str, Any]:
    return {
        "call": f"POST /accounts/{p.cf.account_id}/d1/database/{p.cf.d1_id(p.database)}/query",
        "body": {"sql": idx.ddl},
        "wrangler": f'npx wrangler d1 execute {p.database} --remote --command "{idx.ddl}"',
    }


def create_index(p: Platform, idx: Index) -> dict[str, Any]:
    result = p.cf.d1_query(p.database, idx.ddl)[0]
    meta = result.get("meta") or {}
    return {"index": idx.name, "on": f"{idx.table}({', '.join(idx.columns)})",
            "duration_ms": meta.get("duration"), "changed_db": meta.get("changed_db")}  # fmt: skip


# ---- analytics: now vs the day before -----------------------------------------------------
@dataclass(frozen=True)
class Window:
    requests: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    body_p50: float
    body_p99: float


def window_of(frame: pd.DataFrame) -> Window:
    """One aggregate row (analytics with no time split) -> Window."""
    if frame.empty:
        return Window(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    r = frame.iloc[0]
    return Window(int(r["requests"]), float(r["wall_p50_ms"]), float(r["wall_p90_ms"]),
                  float(r["wall_p99_ms"]), float(r["body_p50"]), float(r["body_p99"]))  # fmt: skip


def windows(p: Platform, minutes: int, baseline_hours: int = 24) -> tuple[Window, Window]:
    """(the last `minutes`, the `baseline_hours` before them) as single aggregates; the
    baseline's response sizes are those of its typical hour (`typical_sizes`)."""
    from datetime import UTC, datetime, timedelta

    from .signals import invocations

    now = datetime.now(UTC)
    recent = invocations(p, minutes, bucket="date", now=now)
    end = now - timedelta(minutes=minutes)
    base = window_of(_collapse(invocations(p, baseline_hours * 60, bucket="date", now=end)))
    hourly = invocations(p, baseline_hours * 60, bucket="datetimeHour", now=end)
    return window_of(_collapse(recent)), typical_sizes(base, hourly)


def typical_sizes(base: Window, hourly: pd.DataFrame, min_requests: int = 20) -> Window:
    """`base` with the response sizes of its median hour. A change that began an hour ago
    (the incident itself) also falls inside the day before the last minutes: in the whole
    day's P99 it can be the top percent, but it moves only the hours since it began."""
    busy = hourly[hourly["requests"] >= min_requests] if len(hourly) else hourly
    if not len(busy):
        return base
    return replace(
        base, body_p50=float(busy["body_p50"].median()), body_p99=float(busy["body_p99"].median())
    )


def _collapse(frame: pd.DataFrame) -> pd.DataFrame:
    """A window that crosses midnight has two `date` rows: keep the bigger (quantiles do
    not add up; the bigger row dominates them)."""
    if len(frame) <= 1:
        return frame
    return frame.sort_values("requests", ascending=False).head(1)


def payload_grew(recent: Window, baseline: Window, factor: float = 5.0) -> bool:
    return bool(
        baseline.body_p99 and recent.requests and recent.body_p99 >= factor * baseline.body_p99
    )


def is_slow(w: Window, budget_ms: float) -> bool:
    """P95 over budget: GraphQL has P90 and P99, so P90 over budget, or P99 over twice it."""
    return w.requests > 0 and (w.p90_ms > budget_ms or w.p99_ms > 2 * budget_ms)


# ---- cold starts: slow requests right after idle gaps --------------------------------------
@dataclass(frozen=True)
class ColdStarts:
    requests: int
    after_idle: int  # requests that followed an idle gap
    slow: int
    slow_after_idle: int
    idle_p50_ms: float
    warm_p50_ms: float


# Requests that arrive while an isolate is still starting wait for it too: a slow request
# this soon after the one that ended an idle gap is part of that cold start.
COLD_START_SPAN_S = 10.0


def cold_starts(per_second: pd.DataFrame, idle_minutes: float, budget_ms: float) -> ColdStarts:
    """Per-second analytics rows -> how many slow requests came right after idle gaps
    (the request that ended the gap, or one within COLD_START_SPAN_S of it)."""
    if per_second.empty:
        return ColdStarts(0, 0, 0, 0, 0.0, 0.0)
    df = per_second.sort_values("ts").reset_index(drop=True)
    gap = df["ts"].diff().dt.total_seconds().div(60)
    idle = gap.isna() | (gap >= idle_minutes)
    since_gap = (df["ts"] - df["ts"].where(idle).ffill()).dt.total_seconds()
    starting = idle | (since_gap <= COLD_START_SPAN_S)
    slow = df["wall_p50_ms"] > budget_ms
    return ColdStarts(
        int(df["requests"].sum()), int(idle.sum()), int(slow.sum()), int((slow & starting).sum()),
        float(df.loc[idle, "wall_p50_ms"].median()) if idle.any() else 0.0,
        float(df.loc[~idle, "wall_p50_ms"].median()) if (~idle).any() else 0.0,
    )  # fmt: skip


# ---- probes: upstream latency from the tail ------------------------------------------------
def upstream_latencies(events: pd.DataFrame, upstreams: dict[str, str]) -> dict[str, list[float]]:
    """{host: [latency_ms, ...]} from log lines that name an upstream and a latency_ms."""
    out: dict[str, list[float]] = {}
    if events.empty:
        return out
    for text in events["logs"].fillna("").astype(str):
        for line in text.splitlines():
            m = _LATENCY.search(line)
            if not m:
                continue
            low = line.lower()
            for name, host in upstreams.items():
                if name in low or host in low:
                    out.setdefault(host, []).append(float(m.group(1)))
    return out


def _http(events: pd.DataFrame) -> pd.Series:
    """Which invocations in `events` are HTTP requests (not a cron trigger or queue batch)."""
    return events["status"].notna() & events["route"].notna()


def route_p95(events: pd.DataFrame, n: int = 5) -> dict[str, float]:
    """Wall-time P95 (ms) per route of the fetch invocations in `events`, slowest first."""
    if events.empty:
        return {}
    fetch = events[_http(events)]
    per = fetch.groupby("route")["wall_ms"].quantile(0.95).sort_values(ascending=False)
    return {str(r): round(float(ms), 1) for r, ms in per.head(n).items()}


@dataclass(frozen=True)
class SlowInvocations:
    """The invocations over budget in a stretch of Workers Logs: HTTP requests, and the
    others (a cron trigger's run, a queue batch), which no user waits for."""

    requests: int  # HTTP requests over budget
    others: tuple[tuple[str, float], ...]  # (when, wall ms) of the rest over budget
    minutes: int

    def text(self) -> str:
        worst = ", ".join(f"{at} UTC {ms:.0f} ms" for at, ms in self.others[:3])
        return (
            f"the window's slow tail is {len(self.others)} invocation(s) that are not HTTP "
            f"requests (a cron trigger's or a queue consumer's run: {worst}); no HTTP request in "
            f"the last {self.minutes} min of Workers Logs took over the budget"
        )


def slow_invocations(events: pd.DataFrame, budget_ms: float, minutes: int) -> SlowInvocations:
    """Which invocations in `events` (Workers Logs) took over `budget_ms`."""
    if events.empty:
        return SlowInvocations(0, (), minutes)
    slow = events[events["wall_ms"].fillna(0) > budget_ms]
    request = _http(slow)
    others = slow[~request].sort_values("wall_ms", ascending=False)
    return SlowInvocations(
        int(request.sum()),
        tuple((f"{pd.Timestamp(t):%H:%M}", float(ms)) for t, ms in zip(others["ts"], others["wall_ms"], strict=True)),
        minutes,
    )  # fmt: skip


def slow_hosts(latencies: dict[str, list[float]], budget_ms: float) -> dict[str, float]:
    """Upstream host -> median call latency, for the hosts whose typical call (the median)
    is over budget. A healthy upstream's odd slow call is its tail, not an outage: the
    Anthropic API's median is about 850 ms, and about one call in 140 passes 2 s."""
    medians = {h: float(pd.Series(v).median()) for h, v in latencies.items() if v}
    return {h: m for h, m in medians.items() if m > budget_ms}


def slow_upstreams(latencies: dict[str, list[float]], budget_ms: float) -> bool:
    return bool(slow_hosts(latencies, budget_ms))


# ---- the verdict -----------------------------------------------------------------------
def diagnose(
    *,
    recent: Window,
    baseline: Window,
    checks: list[QueryCheck],
    latencies: dict[str, list[float]],
    probe_p95: dict[str, float],
    cold: ColdStarts,
    budget_ms: float,
    seen_in: str = "during the probes",
    invocations: SlowInvocations | None = None,
) -> tuple[str, list[str], str | None]:
    """`seen_in`: where the upstream calls were seen (the probes' tail, or Workers Logs).
    `invocations`: the slow ones in Workers Logs, when the account has them."""
    slow = is_slow(recent, budget_ms)
    lat = (f"last window: {recent.requests} requests, P50 {recent.p50_ms:.0f} ms, P90 "
           f"{recent.p90_ms:.0f} ms, P99 {recent.p99_ms:.0f} ms (budget {budget_ms:.0f} ms)")  # fmt: skip
    for c in checks:
        if c.missing:
            idx = c.missing[0]
            return (
                "missing-index",
                [
                    f"table {c.table}: the query filters on column {idx.columns[0]}, and no index "
                    f"on {c.table}({idx.columns[0]}) exists ({idx.name} is missing)",
                    f"EXPLAIN QUERY PLAN: {c.plan_text()}",
                    f"D1 meta: rows_read {c.rows_read}, duration {c.duration_ms:.1f} ms for {c.sql}",
                    f"indexes on {c.table}: {', '.join(i.name for i in c.existing if i.table == c.table) or 'none'}",
                    lat,
                ],
                f"Create {idx.name} ON {idx.table}({', '.join(idx.columns)}) (reversible: "
                f"DROP INDEX {idx.name}).",
            )
    upstream = slow_hosts(latencies, budget_ms)
    if upstream:
        host, median = max(upstream.items(), key=lambda x: x[1])
        calls = latencies[host]
        return (
            "slow-upstream",
            [
                f"upstream {host}: {len(calls)} call(s) {seen_in} took "
                f"{min(calls):.0f}-{max(calls):.0f} ms, median {median:.0f} ms (logged latency_ms)",
                ("slowest routes probed: " if seen_in == "during the probes"
                 else f"slowest routes {seen_in} (p95): ") + ", ".join(
                    f"{r} p95 {ms:.0f} ms" for r, ms in sorted(probe_p95.items(), key=lambda x: -x[1])[:2]
                ),
                lat,
            ],
            None,
        )  # fmt: skip
    if payload_grew(recent, baseline):
        return (
            "large-payload",
            [
                f"responseBodySize P99 {recent.body_p99 / 1024:.0f} KB now vs "
                f"{baseline.body_p99 / 1024:.1f} KB in a typical hour of the day before "
                f"({recent.body_p99 / baseline.body_p99:.0f}x); P50 {recent.body_p50 / 1024:.1f} KB "
                f"vs {baseline.body_p50 / 1024:.1f} KB",
                lat,
            ],
            None,
        )
    if (
        cold.slow >= 2
        and cold.slow_after_idle >= 0.8 * cold.slow
        and cold.slow >= P95_SHARE * cold.requests
    ):
        return (
            "cold-start",
            [
                f"{cold.slow_after_idle} of {cold.slow} slow request(s) in the window came right "
                f"after an idle gap (median {cold.idle_p50_ms:.0f} ms; requests on a warm isolate: "
                f"{cold.warm_p50_ms:.0f} ms)",
                f"traffic is sparse: {cold.requests} requests in the window, {cold.after_idle} of "
                "them after an idle gap",
                lat,
            ],
            None,
        )
    probes = "probes (p95): " + ", ".join(f"{r} {ms:.0f} ms" for r, ms in probe_p95.items())
    background = bool(
        slow
        and invocations is not None
        and invocations.others
        and not invocations.requests
        and recent.p90_ms <= budget_ms
        and all(ms <= budget_ms for ms in probe_p95.values())
    )
    if slow and not background:
        return ("unknown", [lat, "no missing index, slow upstream, payload growth or cold-start "
                            "pattern explains it"], "Look at the slowest routes in a tail.")  # fmt: skip
    return (
        "healthy",
        [lat, *([invocations.text()] if background and invocations else []),
         "hot queries: no recommended index missing ("
              + "; ".join(c.plan_text() for c in checks) + ")",
         probes],
        None,
    )  # fmt: skip


def verify_index(
    p: Platform, spec: dict[str, Any], before: QueryCheck, budget_ms: float
) -> tuple[bool, list[str]]:
    """After create-index: the plan SEARCHes with the index, rows_read dropped, and fresh
    probes of the routes answer within budget."""
    from .signals import probe_routes

    after = check_query(p, spec)
    searching = [s.search_index for s in after.plan if s.search_index]
    probes, _events = probe_routes(p, repeat=2, timeout_s=10.0, linger_s=0.0)
    p95 = float(probes["ms"].quantile(0.95)) if len(probes) else 0.0
    passed = (
        not after.missing
        and bool(searching)
        and after.rows_read < max(before.rows_read, 1)
        and p95 <= budget_ms
    )
    return passed, [
        f"EXPLAIN QUERY PLAN now: {after.plan_text()}",
        f"rows_read {before.rows_read} -> {after.rows_read}; D1 duration "
        f"{before.duration_ms:.1f} -> {after.duration_ms:.1f} ms",
        f"{len(probes)} fresh probes: p95 {p95:.0f} ms (budget {budget_ms:.0f} ms)",
    ]
