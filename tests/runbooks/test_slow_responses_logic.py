"""slow-responses: EXPLAIN plan parsing, index judgement, cold starts, upstream latency."""

from __future__ import annotations

import pandas as pd

from opsbook.clients import logs
from opsbook.runbooks import slow_responses as sr

SQL = "SELECT * FROM manuscripts WHERE author_id = ? ORDER BY created_at DESC"
USER_ID = "CREATE INDEX IF NOT EXISTS idx_manuscripts_user_id ON manuscripts(author_id)"
CREATED = "CREATE INDEX IF NOT EXISTS idx_manuscripts_created ON manuscripts(created_at)"
RECOMMENDED = [sr.parse_index(USER_ID), sr.parse_index(CREATED)]


def steps(*details: str) -> list[sr.PlanStep]:
    return sr.plan_steps(
        [{"id": i, "parent": 0, "notused": 0, "detail": d} for i, d in enumerate(details)]
    )


def test_parse_index_reads_name_table_and_columns() -> None:
    idx = sr.parse_index('CREATE INDEX idx_x ON "t"(a, b DESC)'.replace('"t"', "t"))
    assert idx is not None and (idx.name, idx.table, idx.columns) == ("idx_x", "t", ("a", "b"))
    assert sr.parse_index("CREATE TABLE t (a)") is None


def test_plan_steps_tell_a_scan_from_a_search() -> None:
    scan, via_index, search, covering = steps(
        "SCAN manuscripts",
        "SCAN manuscripts USING INDEX idx_manuscripts_created",
        "SEARCH manuscripts USING INDEX idx_manuscripts_user_id (author_id=?)",
        "SCAN manuscripts USING COVERING INDEX idx_x",
    )
    assert (
        scan.scan == "manuscripts" and via_index.scan == "manuscripts"
    )  # an index walk still reads every row
    assert search.scan is None and search.search_index == "idx_manuscripts_user_id"
    assert covering.scan is None


def test_where_columns() -> None:
    assert sr.where_columns(SQL) == ["author_id"]
    assert sr.where_columns("SELECT * FROM peptides ORDER BY name") == []


def test_a_scan_without_the_author_index_is_missing_it() -> None:
    existing = [sr.parse_index(CREATED)]
    check = sr.judge_query(SQL, steps("SCAN manuscripts USING INDEX idx_manuscripts_created"),
                           {"rows_read": 200000, "duration": 950.0}, existing, RECOMMENDED)  # fmt: skip
    assert check.table == "manuscripts"
    assert [i.name for i in check.missing] == ["idx_manuscripts_user_id"]
    assert check.rows_read == 200000


def test_a_search_with_the_index_misses_nothing() -> None:
    check = sr.judge_query(
        SQL, steps("SEARCH manuscripts USING INDEX idx_manuscripts_user_id (author_id=?)", "USE TEMP B-TREE FOR ORDER BY"),
        {"rows_read": 12}, RECOMMENDED, RECOMMENDED,
    )  # fmt: skip
    assert check.missing == []


def test_a_small_table_scan_with_no_recommendation_is_fine() -> None:
    check = sr.judge_query(
        "SELECT * FROM peptides ORDER BY name", steps("SCAN peptides"), {}, [], []
    )
    assert check.scans == ["peptides"] and check.missing == []


def test_cold_starts_are_the_requests_after_idle_gaps() -> None:
    t0 = pd.Timestamp("2026-11-23T10:00:00Z")
    rows = [(0, 2600), (5, 2500), (5.1, 60), (11, 2700), (11.05, 55)]  # minutes, wall ms
    frame = pd.DataFrame({"ts": [t0 + pd.Timedelta(minutes=m) for m, _ in rows],
                          "requests": 1, "wall_p50_ms": [w for _, w in rows]})  # fmt: skip
    cold = sr.cold_starts(frame, idle_minutes=3, budget_ms=2000)
    assert (cold.requests, cold.after_idle, cold.slow, cold.slow_after_idle) == (5, 3, 3, 3)
    assert cold.warm_p50_ms < 100


def test_requests_that_wait_for_a_starting_isolate_count_with_its_cold_start() -> None:
    t0 = pd.Timestamp("2026-11-23T10:00:00Z")
    # a burst after idle: the second request queued behind the cold start (3 s later) is
    # slow too; a slow request a minute into warm traffic is not a cold start
    rows = [(0, 2600), (0.05, 2300), (1, 40), (2, 2400), (6, 2700), (6.5, 50)]
    frame = pd.DataFrame({"ts": [t0 + pd.Timedelta(minutes=m) for m, _ in rows],
                          "requests": 1, "wall_p50_ms": [w for _, w in rows]})  # fmt: skip
    cold = sr.cold_starts(frame, idle_minutes=3, budget_ms=2000)
    assert (cold.requests, cold.after_idle, cold.slow, cold.slow_after_idle) == (6, 2, 4, 3)


def test_upstream_latency_comes_from_logged_latency_ms() -> None:
    event = {"eventTimestamp": 1, "outcome": "ok", "logs": [
        {"level": "log", "message": ["anthropic", {"model": "m", "latency_ms": 6421}]},
        {"level": "log", "message": ["tokens_used", 812]}]}  # fmt: skip
    found = sr.upstream_latencies(logs.to_frame([event]), {"anthropic": "api.anthropic.com"})
    assert found == {"api.anthropic.com": [6421.0]}


def _window(p90: float, p99: float, body99: float = 6000, n: int = 100) -> sr.Window:
    return sr.Window(n, 50, p90, p99, 1200, body99)


def test_diagnose_order_and_healthy() -> None:
    fine = dict(checks=[], latencies={}, probe_p95={"GET /health": 20.0},
                cold=sr.ColdStarts(0, 0, 0, 0, 0, 0), budget_ms=2000)  # fmt: skip
    assert (
        sr.diagnose(recent=_window(800, 1600), baseline=_window(800, 1600), **fine)[0] == "healthy"
    )
    big = sr.diagnose(
        recent=_window(900, 1500, body99=380_000), baseline=_window(800, 1600), **fine
    )
    assert big[0] == "large-payload" and "(63x)" in big[1][0]
    slow = dict(fine, latencies={"api.anthropic.com": [6100.0, 7900.0]})
    up = sr.diagnose(recent=_window(900, 8000), baseline=_window(800, 1600), **slow)
    assert up[0] == "slow-upstream" and "api.anthropic.com" in up[1][0]
    assert (
        sr.diagnose(recent=_window(5000, 9000), baseline=_window(800, 1600), **fine)[0] == "unknown"
    )


def test_cold_start_is_judged_over_the_window_even_when_the_last_minutes_are_warm() -> None:
    cold = sr.ColdStarts(
        requests=30, after_idle=7, slow=6, slow_after_idle=6, idle_p50_ms=2600, warm_p50_ms=40
    )
    cause, evidence, _ = sr.diagnose(recent=_window(40, 40, n=8), baseline=_window(800, 1600), checks=[],
                                     latencies={}, probe_p95={}, cold=cold, budget_ms=2000)  # fmt: skip
    assert cause == "cold-start" and "6 of 6 slow" in evidence[0]
    rare = sr.ColdStarts(
        requests=600, after_idle=2, slow=3, slow_after_idle=2, idle_p50_ms=2600, warm_p50_ms=40
    )
    assert sr.diagnose(recent=_window(800, 1600), baseline=_window(800, 1600), checks=[], latencies={},
                       probe_p95={}, cold=rare, budget_ms=2000)[0] == "healthy"  # fmt: skip


def test_the_baseline_sizes_are_the_typical_hour_not_the_incident() -> None:
    # the payload grew 40 minutes ago: the day before the last 10 minutes holds 30 minutes
    # of it, enough to be that day's top percent, but only its last hour or so
    hours = pd.date_range("2026-11-22T17:00Z", periods=24, freq="h")
    hourly = pd.DataFrame({"ts": hours, "requests": 700, "body_p50": 1400.0, "body_p99": 6600.0})
    hourly.loc[23, "body_p99"] = 390_000.0
    hourly.loc[3, "requests"] = 5  # a near-empty hour says nothing about sizes
    hourly.loc[3, "body_p99"] = 900_000.0
    day = sr.Window(16000, 45, 900, 1650, 1395, 322_680)
    base = sr.typical_sizes(day, hourly)
    assert base.body_p99 == 6600.0 and base.body_p50 == 1400.0 and base.p99_ms == 1650
    assert sr.payload_grew(_window(1000, 1500, body99=397_080), base)
    assert sr.typical_sizes(day, hourly.iloc[0:0]) == day


def test_cold_starts_that_put_the_p95_over_budget() -> None:
    # 3 of 34 requests (9%) are slow, all right after idle gaps: the window's P95 is over budget
    cold = sr.ColdStarts(
        requests=34, after_idle=5, slow=3, slow_after_idle=3, idle_p50_ms=3142, warm_p50_ms=46
    )
    cause = sr.diagnose(recent=_window(700, 1000, n=11), baseline=_window(800, 1600), checks=[],
                        latencies={}, probe_p95={}, cold=cold, budget_ms=2000)[0]  # fmt: skip
    assert cause == "cold-start"
    few = sr.ColdStarts(
        requests=80, after_idle=5, slow=3, slow_after_idle=3, idle_p50_ms=3142, warm_p50_ms=46
    )
    assert sr.diagnose(recent=_window(700, 1000), baseline=_window(800, 1600), checks=[],
                       latencies={}, probe_p95={}, cold=few, budget_ms=2000)[0] == "healthy"  # fmt: skip


def test_a_cron_run_in_a_quiet_window_is_not_slowness_users_see() -> None:
    # 02:00 UTC: the nightly pipeline's scheduled run took 79 s, and with 64 requests in the
    # window it is the P99; every HTTP request was fast
    events = logs.to_frame(
        [{"eventTimestamp": 1_795_999_260_000, "wallTime": 78851, "outcome": "ok",
          "event": {"cron": "0 2 * * *", "scheduledTime": 1_795_999_200_000}}]
        + [{"eventTimestamp": 1_795_999_300_000 + i, "wallTime": 40, "outcome": "ok",
            "event": {"request": {"url": "https://x/api/peptides", "method": "GET"},
                      "response": {"status": 200}}} for i in range(5)]
    )  # fmt: skip
    slow = sr.slow_invocations(events, 2000, 15)
    assert slow.requests == 0 and [ms for _, ms in slow.others] == [78851.0]
    kw = dict(baseline=_window(800, 1600), checks=[], latencies={}, cold=sr.ColdStarts(64, 0, 1, 0, 0, 40),
              budget_ms=2000, probe_p95={"GET /api/health": 20.0}, invocations=slow)  # fmt: skip
    cause, evidence, _ = sr.diagnose(recent=_window(142, 78851, n=64), **kw)
    assert cause == "healthy" and "not HTTP requests" in evidence[1] and "78851 ms" in evidence[1]
    # a slow HTTP request, a slow P90, or a slow probe is still unexplained slowness
    with_request = sr.SlowInvocations(1, slow.others, 15)
    assert (
        sr.diagnose(recent=_window(142, 78851, n=64), **{**kw, "invocations": with_request})[0]
        == "unknown"
    )
    assert sr.diagnose(recent=_window(2500, 78851, n=64), **kw)[0] == "unknown"
    assert (
        sr.diagnose(recent=_window(142, 78851, n=64), **{**kw, "invocations": None})[0] == "unknown"
    )


def test_one_slow_call_of_a_healthy_upstream_is_its_tail_not_an_outage() -> None:
    # the Anthropic API's median is about 850 ms: one probe's call at 2115 ms is its tail
    tail = {"api.anthropic.com": [865.0, 1010.0, 2115.0]}
    assert sr.slow_hosts(tail, 2000) == {} and not sr.slow_upstreams(tail, 2000)
    kw = dict(baseline=_window(800, 1600), checks=[], probe_p95={"GET /manuscripts/:id/analysis": 2300.0},
              cold=sr.ColdStarts(0, 0, 0, 0, 0, 0), budget_ms=2000)  # fmt: skip
    assert sr.diagnose(recent=_window(900, 1900), latencies=tail, **kw)[0] == "healthy"
    # the slow-upstream fault adds seconds to every call
    outage = {"api.anthropic.com": [5200.0, 6900.0, 7400.0]}
    cause, evidence, _ = sr.diagnose(recent=_window(900, 8000), latencies=outage, **kw)
    assert cause == "slow-upstream" and "median 6900 ms" in evidence[0]
