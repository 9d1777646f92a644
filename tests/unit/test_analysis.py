"""analysis: path collapsing, endpoint stats, error series, sustained runs, change points."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from opsbook import analysis


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("/manuscripts/123", "/manuscripts/:id"),
        ("/manuscripts/7444be64-1c3a-7535-b6ea-36ea5325f16f/analysis", "/manuscripts/:id/analysis"),
        ("/manuscripts/ad993bb1ee484121ae1b26e109aede36", "/manuscripts/:id"),
        ("/a/1/2", "/a/:id/:id"),
        ("/auth/login", "/auth/login"),
        ("/health", "/health"),
        ("/", "/"),
    ],
)
def test_collapse_path(path: str, want: str) -> None:
    assert analysis.collapse_path(path) == want


def test_slugs_collapse_only_when_many() -> None:
    many = pd.Series(
        [f"/api/peptides/p-{c}" for c in "abcdefghij"] + ["/api/peptides", "/webhooks/stripe"]
    )
    got = analysis.collapse_paths(many)
    assert set(got[:10]) == {"/api/peptides/:slug"}
    assert list(got[10:]) == ["/api/peptides", "/webhooks/stripe"]
    few = analysis.collapse_paths(pd.Series(["/api/peptides/bpc-157", "/api/peptides/tb-500"]))
    assert list(few) == ["/api/peptides/bpc-157", "/api/peptides/tb-500"]


def frame(n: int = 2000, seed: int = 5) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        route = rng.choice(["/manuscripts", f"/manuscripts/{rng.randrange(10**6)}", "/health"])
        status = 500 if rng.random() < 0.05 else 200
        rows.append({"ts": 1_790_000_000_000 + i * 7_000, "method": "GET", "path": route,
                     "status": status, "outcome": "ok" if rng.random() > 0.01 else "exception",
                     "wall_ms": rng.lognormvariate(3, 1)})  # fmt: skip
    df = pd.DataFrame(rows)
    df["ts"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    df["status"] = df["status"].astype("Int64")
    return df


def test_endpoint_stats_matches_reference() -> None:
    df = frame()
    stats = analysis.endpoint_stats(df).set_index("route")
    for route, group in df.assign(route="GET " + analysis.collapse_paths(df["path"])).groupby(
        "route"
    ):
        err = [
            (s >= 500 or o != "ok") for s, o in zip(group["status"], group["outcome"], strict=True)
        ]
        row = stats.loc[route]
        assert row["requests"] == len(group)
        assert row["errors"] == sum(err)
        assert row["error_rate"] == pytest.approx(sum(err) / len(group))
        for q, col in ((50, "p50_ms"), (95, "p95_ms"), (99, "p99_ms")):
            assert row[col] == pytest.approx(np.percentile(group["wall_ms"], q))
    assert stats["share"].sum() == pytest.approx(1.0)
    assert list(stats.index) == list(stats.sort_values("requests", ascending=False).index)


def test_error_series_matches_reference() -> None:
    df = frame()
    series = analysis.error_series(df, "1min")
    minutes = df["ts"].dt.floor("1min")
    errors = (df["status"] >= 500) | (df["outcome"] != "ok")
    assert series["requests"].sum() == len(df)
    assert series["errors"].sum() == int(errors.sum())
    first = series.index[0]
    assert series.loc[first, "requests"] == int((minutes == first).sum())
    gaps = pd.date_range(series.index[0], series.index[-1], freq="1min")
    assert len(series) == len(gaps)  # empty minutes are present, with 0 requests


def test_minutes_without_requests_do_not_cut_a_sustained_run() -> None:
    """A bad deploy on a quiet night: every request fails, but some minutes have none."""
    idx = pd.date_range("2026-01-01T03:00Z", periods=30, freq="1min")
    requests = [3] * 10 + [2, 0, 1, 0, 0, 2, 1, 0, 3, 1, 0, 2, 0, 1, 2, 0, 1, 0, 1, 2]
    errors = [0] * 10 + requests[10:]
    frame = pd.DataFrame({"requests": requests, "errors": errors}, index=idx)
    frame["error_rate"] = [e / r if r else 0.0 for e, r in zip(errors, requests, strict=True)]
    run = analysis.sustained(frame, 0.05, 5)
    assert run is not None and run.start == idx[10] and run.end == idx[29] + pd.Timedelta("1min")
    assert run.peak == 1.0 and run.mean == 1.0
    # a minute whose requests all succeed still ends the run; trailing empty minutes are not in it
    frame.loc[idx[15], ["errors", "error_rate"]] = [0, 0.0]
    frame.loc[idx[28] :, ["requests", "errors", "error_rate"]] = [0, 0, 0.0]
    run = analysis.sustained(frame, 0.05, 5)
    assert run is not None and (run.start, run.end) == (idx[16], idx[27])  # 03:16-03:26
    # a latency series: NaN is a minute without data
    p90 = pd.Series(
        [300.0] * 5 + [2500.0, float("nan"), 2600.0, float("nan"), 2400.0, 2700.0], index=idx[:11]
    )
    lat = analysis.sustained(p90, 2000, 5)
    assert lat is not None and lat.start == idx[5] and lat.minutes == 6


def test_sustained_and_change_points() -> None:
    idx = pd.date_range("2026-01-01T10:00Z", periods=60, freq="1min")
    rate = pd.Series([0.002] * 30 + [0.08] * 30, index=idx)
    run = analysis.sustained(rate, 0.05, 5)
    assert run is not None and run.start == idx[30] and run.minutes == 30
    assert analysis.sustained(rate, 0.05, 31) is None
    assert analysis.sustained(pd.Series([0.01] * 10, index=idx[:10]), 0.05, 5) is None
    deps = [
        {"id": "d1", "created_on": "2026-01-01T09:10:00Z"},
        {"id": "d2", "created_on": "2026-01-01T10:29:00Z"},
    ]
    points = analysis.change_points(rate, deps)
    assert len(points) == 1
    cp = points[0]
    assert cp.at == idx[30] and cp.deployment is not None and cp.deployment["id"] == "d2"
    assert cp.lag_minutes == pytest.approx(1.0)
    assert analysis.change_points(pd.Series([0.01] * 60, index=idx), deps) == []


def test_slow_queries() -> None:
    results = [
        {"sql": "SELECT 1", "meta": {"duration": 0.4, "rows_read": 1}},
        {
            "sql": "SELECT * FROM manuscripts WHERE author_id=?",
            "meta": {"duration": 2900.0, "rows_read": 200000},
        },
    ]
    slow = analysis.slow_queries(results, threshold_ms=100)
    assert list(slow["rows_read"]) == [200000]


def test_segment_collapse_matches_the_pattern() -> None:
    import re

    import pyarrow as pa

    rng = random.Random(9)
    pieces = ["", "a", "v1", "123", "0", "7444be64-1c3a-7535-b6ea-36ea5325f16f", "ad993bb1ee48",
              "ad993bb1ee4", "x" * 20, "x" * 19, "p-abc", ":id", "ab_cd-ef" * 3, "DEADBEEFCAFE1"]  # fmt: skip
    paths = ["/" + "/".join(rng.choice(pieces) for _ in range(rng.randrange(0, 6)))
             for _ in range(3000)] + ["manuscript-analysis-queue", "0 2 * * *", "", "/1/2/3/4"]  # fmt: skip
    pattern = re.compile(analysis.ID_PATTERN)

    def reference(p: str) -> str:
        for _ in range(2):
            p = pattern.sub(r"/:id\1", p)
        return p

    got = analysis.collapse_segments(pa.array([*paths, None]), first=1).to_pylist()
    assert got == [*(reference(p) for p in paths), ""]
    assert [analysis.collapse_ids_text(p) for p in paths] == got[:-1]
    urls = pa.array(["https://h.example/a/123/b", "http://localhost:8787/12345678901234567890"])
    assert analysis.collapse_segments(urls, first=3).to_pylist() == [
        "https://h.example/a/:id/b",
        "http://localhost:8787/:id",
    ]


def test_endpoint_stats_and_percentiles_skip_missing_values() -> None:
    df = frame(500)
    df.loc[df.index[::7], "wall_ms"] = np.nan
    stats = analysis.endpoint_stats(df).set_index("route")
    routes = "GET " + analysis.collapse_paths(df["path"])
    for route, group in df.groupby(routes):
        assert stats.loc[route, "requests"] == len(group)
        assert stats.loc[route, "p95_ms"] == pytest.approx(group["wall_ms"].quantile(0.95))
    pct = analysis.percentiles(df, "wall_ms", (0.5, 0.99))
    assert pct[0.5] == pytest.approx(df["wall_ms"].quantile(0.5))
    assert pct[0.99] == pytest.approx(df["wall_ms"].quantile(0.99))
    empty = analysis.percentiles(df.iloc[:0], "wall_ms", (0.5,))
    assert np.isnan(empty[0.5])
