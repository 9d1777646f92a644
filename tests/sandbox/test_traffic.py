"""The traffic model: history follows the deployed versions, real requests are logged,
the wrangler json and NDJSON exports agree, regeneration is deterministic."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pandas as pd

from opsbook import sandbox as sandbox_api
from opsbook.clients.logs import read_events
from opsbook.sandbox import platform_view, traffic
from opsbook.sandbox.state import State

SCRIPT = "manuscript-upload-api"


def test_history_follows_versions(sandbox: sandbox_api.SandboxInfo) -> None:
    state = State(sandbox.state_dir)
    timeline = platform_view.timeline(state, SCRIPT)
    with state.read() as db:
        rows = db.execute(
            "SELECT ts_ms, version_id, outcome, cold_start, status FROM traffic WHERE script = ? AND synthetic = 1 AND event_type = 'fetch'",
            (SCRIPT,),
        ).fetchall()
    assert len(rows) > 5000
    starts = [t for t, _ in timeline]
    for ts, version, *_ in rows[:: max(1, len(rows) // 500)]:
        live = [shares for t, shares in timeline if t <= ts]
        if live:
            assert version in {v.id for v, _ in live[-1]}, (ts, starts)
    errors = sum(1 for r in rows if r[2] != "ok") / len(rows)
    assert errors < 0.01  # a healthy baseline, well under 1%
    # no assertion on cold starts here: at 3-4 requests a minute or more, the daily curve
    # leaves no 3-minute idle gap; test_slow_upstream_and_cold_start makes sparse traffic
    # and checks that the requests after its gaps pay the isolate start
    assert any(r[4] == 401 for r in rows)  # normal 4xx


def test_real_requests_are_logged(sandbox: sandbox_api.SandboxInfo) -> None:
    state = State(sandbox.state_dir)
    ua = f"traffic-test-{time.time_ns()}"
    r = httpx.get(
        f"{sandbox.base_url}/apps/peptalk/api/peptides/bpc-157?x=1",
        headers={"User-Agent": ua},
        timeout=10,
    )
    assert r.status_code == 200
    with state.read() as db:
        row = db.execute("SELECT * FROM traffic WHERE user_agent = ?", (ua,)).fetchone()
    assert row is not None
    assert (row["synthetic"], row["route"], row["path"], row["status"], row["outcome"]) == (
        0, "GET /api/peptides/:slug", "/api/peptides/bpc-157", 200, "ok",
    )  # fmt: skip
    assert row["response_bytes"] == len(r.content) and row["wall_ms"] > 0


def test_exports_agree(sandbox: sandbox_api.SandboxInfo, tmp_path: Path) -> None:
    state = State(sandbox.state_dir)
    end = int(time.time() * 1000) - 60_000
    start = end - 3 * 3600_000
    n1 = traffic.export(state, "peptalk-api", tmp_path / "t.json", "json", start, end)
    n2 = traffic.export(state, "peptalk-api", tmp_path / "t.ndjson", "ndjson", start, end)
    text = (tmp_path / "t.json").read_text()
    assert n1 == n2 > 50 and text.startswith('{\n    "') and '\n    "outcome": ' in text
    first = json.loads((tmp_path / "t.ndjson").read_text().splitlines()[0])
    assert first["scriptName"] == "peptalk-api" and {"request", "response"} <= set(first["event"])
    pd.testing.assert_frame_equal(
        read_events(tmp_path / "t.json"), read_events(tmp_path / "t.ndjson")
    )


def test_regeneration_is_deterministic(fresh_sandbox: sandbox_api.SandboxInfo) -> None:
    state = State(fresh_sandbox.state_dir)
    since = int(time.time() * 1000) - 30 * 60_000
    until = since + 20 * 60_000

    def window() -> list[tuple[object, ...]]:
        with state.read() as db:
            return [tuple(r) for r in db.execute(
                "SELECT ts_ms, route, status, outcome, wall_ms FROM traffic WHERE script = ? AND synthetic = 1"
                " AND ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms, route", (SCRIPT, since, until))]  # fmt: skip

    before = window()
    traffic.regenerate(state, SCRIPT, since)
    assert window() == before and len(before) > 0


def test_live_ticker_keeps_history_up_to_now(sandbox: sandbox_api.SandboxInfo) -> None:
    state = State(sandbox.state_dir)
    time.sleep(3)
    now = int(time.time() * 1000)
    with state.read() as db:
        cursors = dict(db.execute("SELECT script, cursor_ms FROM traffic_meta").fetchall())
    assert set(cursors) == {SCRIPT, "peptalk-api"}
    assert all(now - c < 10_000 for c in cursors.values()), cursors
    assert not (sandbox.state_dir / "traffic-ticker.err").exists()
