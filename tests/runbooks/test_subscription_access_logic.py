"""subscription-access: the pure diagnosis over D1, Stripe, undelivered events and sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from opsbook.runbooks import subscription_access as sa

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SUB = "sub_123"


def facts(
    d1_status: str = "active",
    d1_end: datetime | None = NOW + timedelta(days=10),
    st_status: str = "active",
    st_end: datetime | None = NOW + timedelta(days=10),
    live: int = 1,
    expired: int = 0,
    pending: int = 0,
) -> sa.Facts:
    f = sa.Facts("user@example.com", user={"id": "u1", "email": "user@example.com"})
    f.d1 = {
        "stripe_subscription_id": SUB,
        "status": d1_status,
        "current_period_end": sa.stamp(d1_end),
        "updated_at": "2026-10-01T00:00:00Z",
    }
    f.stripe = {"id": SUB, "customer": "cus_1", "status": st_status, "period_end": st_end}
    f.sessions = [{"key": f"session:{i:032x}", "expires": "x", "live": True} for i in range(live)]
    f.sessions += [
        {"key": f"session:{i + 99:032x}", "expires": "2026-11-22T00:00:00Z", "live": False}
        for i in range(expired)
    ]
    f.pending = [
        {"id": f"evt_{i}", "type": "customer.subscription.updated", "created": "t",
         "pending_webhooks": 1, "object": SUB}
        for i in range(pending)
    ]  # fmt: skip
    return f


def test_active_in_both_with_a_live_session_is_healthy() -> None:
    cause, evidence, remedy = sa.diagnose(facts(), NOW)
    assert cause == "healthy" and remedy is None
    assert any("1 live session" in e for e in evidence)


def test_ended_in_both_is_expired_with_the_period_end() -> None:
    ended = NOW - timedelta(days=3)
    cause, evidence, remedy = sa.diagnose(facts("canceled", ended, "canceled", ended, live=1), NOW)
    assert cause == "expired"
    text = " ".join(evidence)
    assert SUB in text and sa.stamp(ended) in text and "user@example.com" in text
    assert remedy and "billing portal" in remedy


def test_stripe_active_d1_stale_is_webhook_missed_with_the_event() -> None:
    cause, evidence, _ = sa.diagnose(facts(d1_end=NOW - timedelta(days=3), pending=1), NOW)
    assert cause == "webhook-missed"
    text = " ".join(evidence)
    assert "evt_0" in text and "pending_webhooks=1" in text
    assert "D1 subscriptions row" in text and "Stripe subscription" in text


def test_webhook_missed_without_a_pending_event_still_names_the_drift() -> None:
    cause, evidence, _ = sa.diagnose(facts(d1_status="past_due"), NOW)
    assert cause == "webhook-missed"
    assert any("no undelivered" in e for e in evidence)


def test_active_without_a_live_session_is_session_invalid() -> None:
    cause, evidence, _ = sa.diagnose(facts(live=0, expired=1), NOW)
    assert cause == "session-invalid"
    assert any("1 expired" in e for e in evidence)
    assert sa.diagnose(facts(live=0), NOW)[0] == "session-invalid"


def test_d1_more_generous_than_stripe_is_unknown() -> None:
    cause, _, _ = sa.diagnose(facts(st_status="canceled", st_end=NOW - timedelta(days=1)), NOW)
    assert cause == "unknown"


def test_unknown_user_is_unknown() -> None:
    cause, evidence, _ = sa.diagnose(sa.Facts("nobody@example.com"), NOW)
    assert cause == "unknown" and "nobody@example.com" in evidence[0]


def test_the_app_rule_for_access() -> None:
    assert sa.is_active("trialing", NOW + timedelta(seconds=1), NOW)
    assert not sa.is_active("active", NOW, NOW)
    assert not sa.is_active("past_due", NOW + timedelta(days=1), NOW)
    assert not sa.is_active("active", None, NOW)


def test_agree_tolerates_a_minute_and_compares_status() -> None:
    f = facts(d1_end=NOW + timedelta(days=10, seconds=30))
    assert f.agree()
    assert not facts(d1_end=NOW + timedelta(days=9)).agree()
    assert not facts(d1_status="trialing").agree()


def test_sync_sql_touches_one_subscription_and_carries_stripes_values() -> None:
    f = facts(d1_end=NOW - timedelta(days=3))
    sql, values, literal = sa.sync_sql(f, NOW)
    assert sql.endswith("WHERE stripe_subscription_id = ?")
    assert values == ["active", sa.stamp(NOW + timedelta(days=10)), sa.stamp(NOW), SUB]
    assert f"WHERE stripe_subscription_id = '{SUB}'" in literal and "?" not in literal


def test_parse_time_reads_d1_and_stripe_shapes() -> None:
    assert sa.parse_time("2026-12-12T20:33:53.000Z") == datetime(
        2026, 12, 12, 20, 33, 53, tzinfo=UTC
    )
    assert sa.parse_time(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert sa.parse_time("not a time") is None and sa.parse_time(None) is None


def test_no_remedy_is_declared_for_the_causes_without_a_platform_change() -> None:
    assert set(sa.NO_REMEDY) == {"expired", "session-invalid"}
    assert set(sa.NO_REMEDY) <= set(sa.CAUSES)
