"""database-corruption: the verdict, the restore point and the plausibility of a restore."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from opsbook.runbooks import database_corruption as dc

OK = (True, ["ok"])
T = dc.TableScan


def test_checks_ok_and_tables_readable_is_healthy() -> None:
    cause, evidence, remedy = dc.diagnose(
        "db", OK, None, [T("users", 10, True), T("studies", 50, True)]
    )
    assert cause == "healthy" and remedy is None
    assert "quick_check: ok" in evidence[0] and "studies (50)" in evidence[1]


def test_a_failed_integrity_check_names_the_unreadable_table() -> None:
    bad = (False, ["*** in database main ***", "Page 7: btreeInitPage() returns error code 11"])
    scans = [
        T("users", 10, True),
        T("studies", 3000, False, "database disk image is malformed: SQLITE_CORRUPT"),
    ]
    cause, evidence, remedy = dc.diagnose("peptalk-production-db", bad, bad, scans)
    assert cause == "corrupt"
    assert "integrity_check" in evidence[0] and "Page 7" in evidence[0]
    assert any(e.startswith("table studies: unreadable") and "3000" in e for e in evidence)
    assert remedy and "restore" in remedy


def test_long_check_output_is_capped() -> None:
    bad = (False, [f"Page {i}: error" for i in range(40)])
    _, evidence, _ = dc.diagnose("db", bad, bad, [])
    assert "(+36 more lines)" in evidence[0]


def test_an_unreadable_table_alone_is_corrupt() -> None:
    cause, _, _ = dc.diagnose("db", OK, None, [T("studies", None, False, "malformed")])
    assert cause == "corrupt"


def test_restore_point_is_before_the_incident_or_the_window() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    started = now - timedelta(minutes=20)
    assert dc.restore_point(started, now, 60, given=True) == started - timedelta(minutes=1)
    assert dc.restore_point(now, now, 60, given=False) == now - timedelta(minutes=61)


def test_plausible_counts_after_a_restore() -> None:
    before = [T("users", 2000, True), T("studies", 3000, False, "x"), T("peptides", 60, True)]
    good = [T("users", 1990, True), T("studies", 3000, True), T("peptides", 60, True)]
    assert dc.plausible(before, good) == []
    bad = [T("users", 100, True), T("studies", 3000, False, "malformed")]
    problems = dc.plausible(before, bad)
    assert "users: 100 rows after, 2000 before" in problems
    assert any(p.startswith("studies: still unreadable") for p in problems)
    assert "peptides: missing after the restore" in problems


def test_restore_preview_names_the_loss_and_the_wrangler_command() -> None:
    class P:
        database = "peptalk-production-db"

    point = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    preview = dc.restore_preview(P(), point, "bm-1")  # type: ignore[arg-type]
    assert (
        preview["wrangler"]
        == "npx wrangler d1 time-travel restore peptalk-production-db --bookmark=bm-1"
    )
    assert "2026-11-23T11:00:00Z" in preview["loses"]
    assert preview["call"].endswith("/time_travel/restore?bookmark=bm-1")
