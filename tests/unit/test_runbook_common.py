from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from opsbook import environments
from opsbook.runbooks import common

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def env() -> environments.Environment:
    return environments.load("local")


def test_incident_start_forms() -> None:
    assert common.incident_start("", NOW) == NOW
    assert common.incident_start("45m", NOW) == NOW - timedelta(minutes=45)
    assert common.incident_start("-2h", NOW) == NOW - timedelta(hours=2)
    assert common.incident_start("2026-11-23T10:02Z", NOW) == datetime(
        2026, 11, 23, 10, 2, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="use an ISO time"):
        common.incident_start("yesterday", NOW)


@pytest.mark.parametrize(
    ("minutes", "level", "contact", "next_in"),
    [
        (5, "Self-service", "the on-call engineer, with this runbook", 25),
        (45, "Development escalation", "scarter4work@yahoo.com", 75),
        (180, "Infrastructure escalation", "Cloudflare Support", None),
    ],
)
def test_escalation_follows_the_seed_matrix(
    env: environments.Environment, minutes: int, level: str, contact: str, next_in: int | None
) -> None:
    esc = common.escalation(env, NOW - timedelta(minutes=minutes), NOW)
    assert esc.level == level
    assert esc.contact.startswith(contact)
    assert esc.next_in_minutes == next_in
    assert f"{minutes} min since the incident started" in esc.text()


def test_peptalk_matrix() -> None:
    env = environments.load("local-peptalk")
    assert common.escalation(env, NOW - timedelta(minutes=40), NOW).contact == "eng@peptalk.com"


def test_status_update_states(env: environments.Environment) -> None:
    started = NOW - timedelta(minutes=20)
    identified = common.status_update(
        env, "P0", "API down", "bad-deploy", "a bad deployment", started, False, False
    )
    assert identified.startswith(
        "[P0 · Identified] API down: We have identified the cause of the problem affecting Manuscript platform since 11:40 UTC"
    )
    assert "[P0 · Monitoring]" in common.status_update(
        env, "P0", "API down", "bad-deploy", "x", started, True, False
    )
    assert "[P0 · Resolved]" in common.status_update(
        env, "P0", "API down", "bad-deploy", "x", started, True, True
    )
    assert "[P0 · Investigating]" in common.status_update(
        env, "P0", "API down", "unknown", "x", started, False, False
    )
