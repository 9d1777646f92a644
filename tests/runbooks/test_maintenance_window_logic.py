"""maintenance-window: the window and the notice deadlines, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

from opsbook.runbooks import maintenance_window as mw

MONDAY = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
SUNDAY_3AM = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def test_the_default_window_is_the_next_sunday_2am_or_the_one_in_progress() -> None:
    assert mw.window_start("", MONDAY) == datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    assert mw.window_start("", SUNDAY_3AM) == datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    after = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
    assert mw.window_start("", after) == datetime(2026, 12, 6, 2, 0, tzinfo=UTC)


def test_actions_are_allowed_inside_the_slot_or_in_an_emergency() -> None:
    start = mw.window_start("", SUNDAY_3AM)
    assert mw.Window(start, SUNDAY_3AM, False).allowed
    assert not mw.Window(start, MONDAY, False).allowed
    assert mw.Window(start, MONDAY, True).allowed
    # a window that is not the Sunday 02:00 slot is never "inside", even at its own time
    odd = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    w = mw.Window(odd, datetime(2026, 11, 25, 3, 0, tzinfo=UTC), False)
    assert not w.scheduled_slot and not w.allowed
    assert "not the Sunday 02:00 UTC slot" in w.evidence()[0]


def test_notices_status_page_48h_and_email_24h_before() -> None:
    w = mw.Window(datetime(2026, 11, 29, 2, 0, tzinfo=UTC), MONDAY, False)
    assert mw.notices("2026-11-27T01:00Z", w)[0]
    ok, lines = mw.notices("2026-11-27T12:00Z", w)  # 38 h before: email in time, page late
    assert not ok
    assert lines[0].startswith("status page: due by Fri 2026-11-27 02:00") and "LATE" in lines[0]
    assert lines[1].endswith("on time")
    assert mw.notices("", w) == (False, ["no notice recorded (announced_at is empty)"])


def test_unknown_tasks_are_named() -> None:
    assert mw.unknown_tasks(["analyze", "vacuum"]) == ["vacuum"]


def test_the_verdict_is_the_worst_problem_with_every_problem_as_evidence() -> None:
    previewed = [{"type": "action", "id": "reindex", "mode": "dry-run"}]
    problems = [("no-maintenance-mode", ["no maintenance flag"]), ("notice-late", ["LATE"])]
    cause, evidence, remedy = mw.conclude(problems, previewed, [])
    assert cause == "notice-late"
    assert evidence == ["LATE", "previewed, not approved: reindex", "no maintenance flag"]
    assert remedy == mw.NO_REMEDY["notice-late"]
    assert mw.conclude([], [], ["backup", "analyze"]) == (
        "healthy",
        ["backup: applied", "analyze: applied"],
        None,
    )


def test_maintenance_mode_ends_with_a_scheduled_window_and_is_open_ended_in_an_emergency() -> None:
    start = mw.window_start("", SUNDAY_3AM)
    inside = mw.Window(start, SUNDAY_3AM, False)
    assert mw.mode_until(inside) == datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
    assert mw.mode_reason(inside) == "scheduled maintenance window"
    emergency = mw.Window(mw.window_start("", MONDAY), MONDAY, True)
    assert mw.mode_until(emergency) is None
    assert mw.mode_reason(emergency) == "emergency maintenance"


def test_the_apps_retry_after_counts_down_to_until() -> None:
    from opsbook.sandbox.apps.maintenance import DEFAULT_RETRY_S, Mode

    now = datetime(2026, 11, 29, 3, 0, tzinfo=UTC).timestamp()
    assert Mode(True, "2026-11-29T04:00:00Z").retry_after(now) == 3600
    assert Mode(True, "2026-11-29T02:00:00Z").retry_after(now) == 1  # overdue: retry soon
    assert Mode(True).retry_after(now) == DEFAULT_RETRY_S
    assert Mode(True, "not a time").retry_after(now) == DEFAULT_RETRY_S
