"""checklist-daily end to end on the sandbox: healthy, then with a bad deploy whose 500s
must fail the key-metric and uptime items (judged from the real analytics and probes)."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import opsbook
from opsbook.runbooks.checklist_data import backup_verified
from opsbook.runbooks.checks import Item, verdict
from opsbook.sandbox import SandboxInfo, d1schemas, faultctl
from opsbook.sandbox.state import State


def item_findings(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["message"].split(":", 1)[0]: f for f in record["findings"]}


def test_verdict_names_failed_items_and_ignores_warn_and_manual() -> None:
    items = [Item("a", "pass", "ok"), Item("b", "warn", "meh"), Item("c", "manual", "look"),
             Item("d", "fail", "broken")]  # fmt: skip
    cause, evidence = verdict(items)
    assert cause == "checks-failed"
    assert evidence[0] == "d: broken"
    assert "1 pass, 1 warn, 1 fail, 1 manual" in evidence
    assert verdict(items[:3])[0] == "healthy"


def test_daily_checklist_passes_on_the_healthy_sandbox(fresh_sandbox: SandboxInfo) -> None:
    result = opsbook.run("checklist-daily", env="local")
    assert (result.status, result.exit_code) == ("completed", 0), result.record.get("error")
    assert result.record["verdict"]["cause"] == "healthy"
    found = item_findings(result.record)
    smoke = opsbook.connect("local").setting("app.smoke")
    assert found["uptime"]["severity"] == "info"
    assert len(found["uptime"]["evidence"]["probes"]) == len(smoke)
    assert found["error rate (key metric)"]["severity"] == "info"
    # the daily error rate is measured over a day of real analytics, not a sample
    assert found["daily error rate"]["evidence"]["requests"] > 1000
    manual = [f for f in result.record["findings"] if "manual:" in f["message"]]
    assert {m["message"].split(":", 1)[0] for m in manual} >= {"Sentry", "UptimeRobot", "4xx spike"}


def test_daily_checklist_passes_on_the_healthy_peptalk_sandbox(
    fresh_sandbox: SandboxInfo,
) -> None:
    result = opsbook.run("checklist-daily", env="local-peptalk")
    assert (result.status, result.exit_code) == ("completed", 0), result.record.get("error")
    assert result.record["verdict"]["cause"] == "healthy", result.record["verdict"]
    found = item_findings(result.record)
    assert found["overnight pipeline runs"]["evidence"]["runs"] >= 20  # one per peptide
    assert found["nightly cron ran"]["evidence"]["age_hours"] <= 26


@pytest.mark.parametrize("hour", [1, 2, 3, 16, 23])
def test_the_peptalk_seed_has_pipeline_runs_through_the_last_finished_night(hour: int) -> None:
    now = datetime(2026, 11, 23, hour, 30, tzinfo=UTC)
    db = sqlite3.connect(":memory:")
    db.executescript(d1schemas.PEPTALK_DDL)
    d1schemas.seed_peptalk(db, random.Random(7), now)
    newest, peptides = db.execute(
        "SELECT max(started_at), count(DISTINCT peptide_id) FROM pipeline_runs"
    ).fetchone()
    at = datetime.fromisoformat(newest.replace("Z", "+00:00"))
    assert at <= now and now - at < timedelta(hours=26)  # the cron threshold
    last_night = now.replace(hour=2, minute=0) - timedelta(days=0 if hour >= 3 else 1)
    assert at >= last_night
    per_peptide = db.execute(
        "SELECT p.last_pipeline_run = max(r.started_at), max(r.finished_at) <= ?, count(*) >= 30 "
        "FROM peptides p JOIN pipeline_runs r ON r.peptide_id = p.id GROUP BY p.id",
        [now.strftime("%Y-%m-%dT%H:%M:%S.000Z")],
    ).fetchall()
    assert len(per_peptide) == peptides and all(all(row) for row in per_peptide)


def test_a_bad_deploy_fails_the_error_rate_and_uptime_items(fresh_sandbox: SandboxInfo) -> None:
    state = State(fresh_sandbox.state_dir)
    faultctl.break_fault(state, "bad-deploy", {"minutes_ago": "20"})
    try:
        result = opsbook.run("checklist-daily", env="local")
    finally:
        faultctl.heal(state, "bad-deploy")
    assert (result.status, result.exit_code) == ("completed", 3), result.record.get("error")
    v = result.record["verdict"]
    assert v["cause"] == "checks-failed"
    found = item_findings(result.record)
    rate = found["error rate (key metric)"]
    assert rate["severity"] == "error"
    started = pd.Timestamp(rate["evidence"]["start"])
    age_min = (pd.Timestamp.now(tz="UTC") - started).total_seconds() / 60
    assert 15 <= age_min <= 30  # the sustained run starts at the deploy, 20 minutes ago
    assert found["uptime"]["severity"] == "error"
    assert any(e.startswith("error rate (key metric):") for e in v["evidence"])
    assert any(e.startswith("uptime:") for e in v["evidence"])


def test_backup_verification_reads_the_archive_for_a_passing_restore_check(
    outputs: Path,
) -> None:
    from opsbook.index import Index

    assert backup_verified().status == "warn"  # no archive yet: not run this month
    assert not outputs.exists()  # and looking did not create one
    run_dir = outputs / "2026-11-23" / "r1_db-restore-check"
    run_dir.mkdir(parents=True)
    now = datetime.now(UTC).isoformat()
    record = {"run": {"id": "r1", "runbook": "db-restore-check", "env": "local",
                      "started": now, "ended": now, "status": "completed"},
              "verdict": {"cause": "healthy"}}  # fmt: skip
    with Index(outputs) as index:
        index.upsert(record, run_dir)
    item = backup_verified()
    assert (item.status, "r1" in item.summary) == ("pass", True)


class Settings:
    """Only what the traffic items read: params thresholds."""

    def setting(self, dotted: str, default: Any = None) -> Any:
        return {"thresholds.p95_ms": {"value": 2000, "for_minutes": 10}}.get(dotted, default)


def minutes_frame(p90: list[float], p99: list[float]) -> pd.DataFrame:
    ts = pd.date_range("2026-11-23T10:00Z", periods=len(p90), freq="1min")
    return pd.DataFrame({"ts": ts, "wall_p90_ms": p90, "wall_p99_ms": p99})


def test_p95_is_judged_between_p90_and_p99_with_the_duration() -> None:
    from opsbook.runbooks.checklist_traffic import latency

    p: Any = Settings()
    slow, fast = [2500.0] * 12, [300.0] * 12
    assert latency(p, minutes_frame(slow, slow)).status == "fail"  # P90 over: P95 is too
    assert latency(p, minutes_frame(fast, slow)).status == "warn"  # only P99 over
    assert latency(p, minutes_frame(fast, fast)).status == "pass"
    nine = [2500.0] * 9 + [300.0] * 3  # 9 minutes is not "for 10 min"
    assert latency(p, minutes_frame(nine, nine)).status == "pass"
