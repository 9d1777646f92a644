"""api-down: the 5xx onset on a synthetic minute series, the deployment it lines up with,
and the order in which causes explain an outage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pandas as pd

from opsbook.clients.probes import ProbeResult
from opsbook.clients.statuspage import Incident
from opsbook.runbooks import api_down
from opsbook.runbooks import api_down_remedy as fix
from opsbook.runbooks import incident_signals as sig

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
FAKE = SimpleNamespace(cf=SimpleNamespace(account_id="acct"), worker="w")


def minutes(rates: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """One row per minute from T0: (version, requests, errors)."""
    return [
        {"minute": (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:00Z"), "version": v,
         "requests": n, "errors": e}
        for i, (v, n, e) in enumerate(rates)
    ]  # fmt: skip


def deployment(dep_id: str, version: str, at: datetime) -> dict[str, Any]:
    return {"id": dep_id, "created_on": at.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "versions": [{"version_id": version, "percentage": 100}],
            "annotations": {"workers/message": f"deploy {version}"}, "author_email": "a@b.c"}  # fmt: skip


def traffic(rows: list[dict[str, Any]], deps: list[dict[str, Any]]) -> api_down.Traffic:
    frame = sig.series(rows, T0, T0 + timedelta(minutes=len(rows) - 1))
    versions = [{"id": "v6", "number": 6}, {"id": "v7", "number": 7}]
    return api_down.Traffic(rows, frame, sig.onset(frame), deps, versions)


BAD = minutes([("v6", 20, 0)] * 40 + [("v7", 20, 20)] * 12)
DEPS = [deployment("d7", "v7", T0 + timedelta(minutes=40, seconds=10)),
        deployment("d6", "v6", T0 - timedelta(days=1))]  # fmt: skip


def test_onset_is_the_start_of_the_error_run_lasting_until_now() -> None:
    t = traffic(BAD, DEPS)
    assert t.onset is not None
    assert t.onset.at == pd.Timestamp(T0 + timedelta(minutes=40))
    assert t.onset.before_rate == 0.0 and t.onset.after_rate == 1.0
    assert t.onset.after_requests == 240


def test_no_onset_when_the_newest_minutes_are_healthy() -> None:
    healed = minutes([("v6", 20, 0)] * 30 + [("v7", 20, 20)] * 5 + [("v6", 20, 0)] * 3)
    assert traffic(healed, DEPS).onset is None
    # a lone baseline error is not an onset
    assert (
        sig.onset(
            sig.series(
                minutes([("v6", 20, 0)] * 9 + [("v6", 20, 1)]), T0, T0 + timedelta(minutes=9)
            )
        )
        is None
    )


def test_empty_minutes_are_zero_and_do_not_break_the_run() -> None:
    rows = minutes([("v6", 20, 0)] * 10 + [("v7", 20, 20)] * 3)
    rows = [r for i, r in enumerate(rows) if i != 11]  # a minute without traffic
    frame = sig.series(rows, T0, T0 + timedelta(minutes=12))
    assert int(frame["requests"].iloc[11]) == 0
    on = sig.onset(frame)
    assert on is not None and on.at == pd.Timestamp(T0 + timedelta(minutes=10))


def test_a_lucky_success_at_night_does_not_move_the_onset() -> None:
    # one or two requests a minute: the bad version fails 85 %, and one minute after the
    # deployment happened to succeed (and two minutes had no requests at all)
    night = minutes(
        [("v6", 2, 0), ("v6", 1, 0), ("v6", 2, 0)] * 10
        + [("v7", 1, 1), ("v7", 2, 2), ("v7", 1, 0), ("v7", 0, 0), ("v7", 2, 2), ("v7", 1, 1),
           ("v7", 0, 0), ("v7", 2, 1), ("v7", 1, 1), ("v7", 2, 2)]
    )  # fmt: skip
    t = traffic(night, [deployment("d7", "v7", T0 + timedelta(minutes=30, seconds=5)), DEPS[1]])
    assert t.onset is not None
    assert t.onset.at == pd.Timestamp(T0 + timedelta(minutes=30))
    assert (t.onset.before_rate, t.onset.after_requests) == (0.0, 12)
    c = api_down.correlate(t)
    assert c is not None and c.version_id == "v7"


def test_a_healthy_newest_request_or_two_is_not_yet_a_recovery() -> None:
    # the newest two minutes' single requests succeeded: the five newest still fail 3 of 5
    rows = minutes([("v6", 2, 0)] * 20 + [("v7", 2, 2)] * 5 + [("v7", 1, 0)] * 2)
    on = sig.onset(sig.series(rows, T0, T0 + timedelta(minutes=26)))
    assert on is not None and on.at == pd.Timestamp(T0 + timedelta(minutes=20))
    # but five healthy requests in a row are
    rows = minutes([("v6", 2, 0)] * 20 + [("v7", 2, 2)] * 5 + [("v7", 1, 0)] * 5)
    assert sig.onset(sig.series(rows, T0, T0 + timedelta(minutes=29))) is None


def test_onset_lines_up_with_the_deployment_and_names_the_version_before() -> None:
    c = api_down.correlate(traffic(BAD, DEPS))
    assert c is not None and c.serving_now
    assert (c.version_id, c.version_number, c.good_version_id, c.good_version_number) == (
        "v7",
        7,
        "v6",
        6,
    )
    assert c.bad_rate["rate"] == 1.0 and c.good_rate["rate"] == 0.0
    text = " ".join(c.evidence())
    assert "d7" in text and "v7" in text and "10:40" in text and "100.0%" in text
    plan = fix.rollback_plan(c)
    assert plan is not None and plan.version_id == "v6"
    preview = plan.preview(FAKE)  # type: ignore[arg-type]
    assert preview["call"] == "POST /accounts/acct/workers/scripts/w/deployments"
    assert preview["body"]["versions"] == [{"version_id": "v6", "percentage": 100}]
    assert preview["wrangler"].startswith("npx wrangler rollback v6 --name w -m")


def test_a_deployment_long_before_the_onset_is_not_blamed() -> None:
    old = [deployment("d7", "v7", T0 + timedelta(minutes=20)), DEPS[1]]
    assert api_down.correlate(traffic(BAD, old)) is None


def probes(status: int | None) -> list[ProbeResult]:
    return [ProbeResult("http://x/health", "GET", status, status == 200, 10.0,
                        None if status else "timeout: no answer")]  # fmt: skip


def facts(**kw: Any) -> api_down.Facts:
    base: dict[str, Any] = {
        "probes": probes(500), "outage": api_down.Outage("none", "All Systems Operational"),
        "secrets_missing": [], "d1": api_down.D1Check(True, "SELECT 1 ok"),
        "traffic": traffic(BAD, DEPS), "correlation": api_down.correlate(traffic(BAD, DEPS)),
    }  # fmt: skip
    base.update(kw)
    return api_down.Facts(**base)


OUTAGE = api_down.Outage(
    "major", "Major outage",
    [Incident("i1", "Elevated errors for Cloudflare Workers", "investigating", "major",
              "2026-11-23T10:30:00Z", components=["Cloudflare Workers", "D1"])],
)  # fmt: skip


def test_causes_explain_in_the_seed_order() -> None:
    d1_down = api_down.D1Check(False, "SELECT 1: HTTP 503: D1_ERROR (code 7500)", 503, 7500)
    everything = facts(outage=OUTAGE, secrets_missing=["STRIPE_SECRET_KEY"], d1=d1_down)
    assert api_down.diagnose(everything)[0] == "cloudflare-outage"
    assert "Cloudflare Workers" in " ".join(api_down.diagnose(everything)[1])
    cause, evidence, _ = api_down.diagnose(facts(secrets_missing=["STRIPE_SECRET_KEY"], d1=d1_down))
    assert cause == "secret-missing" and "STRIPE_SECRET_KEY" in evidence[0]
    cause, evidence, _ = api_down.diagnose(facts(d1=d1_down))
    assert cause == "d1-unavailable" and "7500" in evidence[0]
    assert api_down.diagnose(facts())[0] == "bad-deploy"


def test_an_outage_elsewhere_does_not_explain_a_healthy_api() -> None:
    healthy = minutes([("v6", 20, 0)] * 30)
    t = traffic(healthy, DEPS)
    cause, _, remedy = api_down.diagnose(
        facts(probes=probes(200), outage=OUTAGE, traffic=t, correlation=None)
    )
    assert cause == "healthy" and remedy is None


def test_down_without_a_deployment_is_unknown_not_forced() -> None:
    t = traffic(BAD, [DEPS[1]])
    assert api_down.diagnose(facts(traffic=t, correlation=api_down.correlate(t)))[0] == "unknown"


def test_status_page_words_pick_platform_incidents() -> None:
    other = api_down.Outage(
        "minor",
        "Minor",
        [Incident("i2", "Dashboard slow", "monitoring", "minor", "", components=["Dashboard"])],
    )
    assert not other.active and OUTAGE.active
