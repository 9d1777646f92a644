"""Each data and Stripe fault: break -> symptom through public APIs -> heal -> gone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from opsbook import sandbox as sandbox_api
from opsbook.clients.statuspage import StatusPage
from opsbook.clients.stripe import Stripe
from opsbook.sandbox import faultctl, stripe_data
from opsbook.sandbox.state import State

ACCOUNT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
LIST_QUERY = "SELECT * FROM manuscripts WHERE author_id = ? ORDER BY created_at DESC"
SUB_QUERY = (
    "SELECT s.status, s.current_period_end FROM subscriptions s JOIN users u ON u.id = s.user_id "
    "WHERE u.email = 'prodtest1@example.com'"
)


class Platform:
    def __init__(self, info: sandbox_api.SandboxInfo) -> None:
        self.info = info
        self.state = State(info.state_dir)
        token = info.credentials["OPSBOOK_SANDBOX_TOKEN"]
        self.cf = httpx.Client(
            base_url=f"{info.base_url}/client/v4/accounts/{ACCOUNT}/d1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        self.http = httpx.Client(base_url=info.base_url, timeout=60)
        self.stripe = Stripe(
            info.credentials["OPSBOOK_SANDBOX_STRIPE_KEY"], info.base_url, max_network_retries=0
        )
        self.status = StatusPage(f"{info.base_url}/status")
        dbs = self.cf.get("/database").json()["result"]
        self.db = {d["name"]: d["uuid"] for d in dbs}

    def close(self) -> None:
        self.cf.close()
        self.http.close()
        self.stripe.close()
        self.status.close()

    def query(self, name: str, sql: str, *params: Any) -> httpx.Response:
        return self.cf.post(
            f"/database/{self.db[name]}/query", json={"sql": sql, "params": list(params)}
        )

    def rows(self, name: str, sql: str, *params: Any) -> list[dict[str, Any]]:
        r = self.query(name, sql, *params)
        assert r.status_code == 200, r.text
        return list(r.json()["result"][0]["results"])

    def login(self, app: str, email: str = "prodtest1@example.com") -> str:
        r = self.http.post(
            f"/apps/{app}/auth/login", json={"email": email, "password": "TestPass123@"}
        )
        assert r.status_code == 200, r.text
        return str(r.json()["token"])

    def pdf(self, token: str) -> int:
        r = self.http.get(
            "/apps/peptalk/api/peptides/bpc-157/pdf", headers={"Authorization": f"Bearer {token}"}
        )
        return r.status_code


@pytest.fixture
def p(fresh_sandbox: sandbox_api.SandboxInfo) -> Iterator[Platform]:
    platform = Platform(fresh_sandbox)
    try:
        yield platform
    finally:
        platform.close()


def test_d1_unavailable(p: Platform) -> None:
    assert p.http.get("/apps/manuscript/health").status_code == 200
    faultctl.break_fault(p.state, "d1-unavailable", {"profile": "manuscript"})
    r = p.query("manuscript-platform", "SELECT 1")
    assert r.status_code >= 500 and r.json()["errors"][0]["code"] == 7500
    assert p.query("peptalk-production-db", "SELECT 1").status_code == 200
    assert p.http.get("/apps/manuscript/health").status_code >= 500
    faultctl.heal(p.state, "d1-unavailable")
    assert p.query("manuscript-platform", "SELECT 1").status_code == 200
    assert p.http.get("/apps/manuscript/health").status_code == 200


def test_cloudflare_outage(p: Platform) -> None:
    assert p.status.status().indicator == "none" and p.status.unresolved_incidents() == []
    faultctl.break_fault(p.state, "cloudflare-outage")
    assert p.status.status().indicator in ("major", "critical")
    incidents = p.status.unresolved_incidents()
    assert len(incidents) == 1 and "Cloudflare Workers" in incidents[0].components
    workers = next(c for c in p.status.components() if c.name == "Cloudflare Workers")
    assert workers.status == "major_outage"
    assert p.http.get("/apps/peptalk/api/health").status_code >= 500  # the app is down with it
    faultctl.heal(p.state, "cloudflare-outage")
    assert p.status.status().indicator == "none" and p.status.unresolved_incidents() == []
    assert all(c.operational for c in p.status.components())
    assert p.http.get("/apps/peptalk/api/health").status_code == 200


def test_verification_tokens_missing(p: Platform) -> None:
    before = p.rows("manuscript-platform", "SELECT count(*) AS n FROM verification_tokens")[0]["n"]
    faultctl.break_fault(p.state, "verification-tokens-missing")
    r = p.query(
        "manuscript-platform",
        "SELECT COUNT(*) FROM verification_tokens WHERE token_type='password_reset'",
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["message"] == "no such table: verification_tokens: SQLITE_ERROR"
    reset = p.http.post(
        "/apps/manuscript/auth/password-reset-request", json={"email": "prodtest1@example.com"}
    )
    assert reset.status_code == 500
    faultctl.heal(p.state, "verification-tokens-missing")
    assert (
        p.rows("manuscript-platform", "SELECT count(*) AS n FROM verification_tokens")[0]["n"]
        == before
    )


def test_missing_index(p: Platform) -> None:
    author = p.rows("manuscript-platform", "SELECT author_id FROM manuscripts LIMIT 1")[0][
        "author_id"
    ]
    fast = p.query("manuscript-platform", LIST_QUERY, author).json()["result"][0]["meta"]
    faultctl.break_fault(p.state, "missing-index")
    plan = p.rows("manuscript-platform", "EXPLAIN QUERY PLAN " + LIST_QUERY, author)
    assert not any("idx_manuscripts_user_id" in r["detail"] for r in plan)
    slow = p.query("manuscript-platform", LIST_QUERY, author).json()["result"][0]["meta"]
    assert slow["rows_read"] >= 200_000 and slow["duration"] > 5 * fast["duration"]
    faultctl.heal(p.state, "missing-index")
    plan = p.rows("manuscript-platform", "EXPLAIN QUERY PLAN " + LIST_QUERY, author)
    assert any("USING INDEX idx_manuscripts_user_id" in r["detail"] for r in plan)


def test_corrupt_and_restore_from_time_travel(p: Platform) -> None:
    ok = p.rows("peptalk-production-db", "PRAGMA integrity_check")
    assert ok == [{"integrity_check": "ok"}]
    hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    faultctl.break_fault(p.state, "corrupt")
    r = p.query("peptalk-production-db", "PRAGMA integrity_check")
    bad = r.status_code != 200 or r.json()["result"][0]["results"] != [{"integrity_check": "ok"}]
    assert bad
    assert (
        p.query(
            "peptalk-production-db", "SELECT count(*), sum(length(summary)) FROM studies"
        ).status_code
        >= 400
    )
    assert p.http.get("/apps/peptalk/api/peptides/bpc-157").status_code >= 500
    # the runbook's remedy: a time-travel restore to before the corruption
    mark = p.cf.get(
        f"/database/{p.db['peptalk-production-db']}/time_travel/bookmark",
        params={"timestamp": hour_ago},
    )
    restored = p.cf.post(
        f"/database/{p.db['peptalk-production-db']}/time_travel/restore",
        params={"bookmark": mark.json()["result"]["bookmark"]},
    )
    assert restored.status_code == 200
    assert p.rows("peptalk-production-db", "PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    assert p.http.get("/apps/peptalk/api/peptides/bpc-157").status_code == 200
    faultctl.heal(p.state, "corrupt")
    assert p.rows("peptalk-production-db", "SELECT count(*) AS n FROM studies")[0]["n"] >= 2_500


def test_corrupt_heal_restores_without_a_runbook(p: Platform) -> None:
    faultctl.break_fault(p.state, "corrupt")
    faultctl.heal(p.state, "corrupt")
    assert p.rows("peptalk-production-db", "PRAGMA integrity_check") == [{"integrity_check": "ok"}]


def test_expired(p: Platform) -> None:
    token = p.login("peptalk")
    assert p.pdf(token) == 200
    faultctl.break_fault(p.state, "expired")
    cust = p.stripe.customer_by_email("prodtest1@example.com")
    assert cust is not None
    sub = p.stripe.subscriptions(cust.id)[0]
    end = Stripe.period_end(sub)
    assert sub.status == "canceled" and end is not None and end < time.time()
    assert p.rows("peptalk-production-db", SUB_QUERY)[0]["status"] == "canceled"
    assert p.pdf(token) == 402
    faultctl.heal(p.state, "expired")
    assert p.pdf(token) == 200


def test_webhook_missed_and_resend_fixes_d1(p: Platform) -> None:
    token = p.login("peptalk")
    faultctl.break_fault(p.state, "webhook-missed")
    cust = p.stripe.customer_by_email("prodtest1@example.com")
    assert cust is not None
    sub = p.stripe.subscriptions(cust.id)[0]
    end = Stripe.period_end(sub)
    assert sub.status == "active" and end is not None and end > time.time()
    row = p.rows("peptalk-production-db", SUB_QUERY)[0]
    assert row["current_period_end"] < time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    assert p.pdf(token) == 402
    pending = p.stripe.undelivered_events(types=["customer.subscription.updated"])
    assert len(pending) == 1 and pending[0].pending_webhooks == 1
    assert pending[0].data.object.id == sub.id
    endpoint = next(e for e in p.stripe.webhook_endpoints() if "/apps/peptalk/" in e.url)
    resent = p.stripe.resend_event(pending[0].id, endpoint.id)  # really delivered to the app
    assert resent["pending_webhooks"] == 0
    assert p.pdf(token) == 200
    faultctl.heal(p.state, "webhook-missed")
    assert p.stripe.undelivered_events() == []


def test_session_invalid(p: Platform) -> None:
    token = p.login("peptalk")
    assert p.pdf(token) == 200
    faultctl.break_fault(p.state, "session-invalid")
    assert p.pdf(token) == 401
    cust = p.stripe.customer_by_email("prodtest1@example.com")
    assert cust is not None and p.stripe.subscriptions(cust.id)[0].status == "active"
    faultctl.heal(p.state, "session-invalid")
    assert p.pdf(p.login("peptalk")) == 200


def _endpoint(p: Platform, app: str) -> Any:
    return next(e for e in p.stripe.webhook_endpoints() if f"/apps/{app}/" in e.url)


def test_signing_secret_mismatch(p: Platform) -> None:
    faultctl.break_fault(p.state, "signing-secret-mismatch")
    pending = p.stripe.undelivered_events()
    assert pending and all(e.pending_webhooks == 1 for e in pending)
    endpoint = _endpoint(p, "peptalk")
    assert endpoint.status == "enabled"
    p.stripe.resend_event(pending[0].id, endpoint.id)
    with p.state.read() as db:
        last = db.execute(
            "SELECT status_code FROM stripe_deliveries ORDER BY id DESC LIMIT 1"
        ).fetchone()[0]
    assert last == 400  # the app receiver rejects the signature
    assert p.stripe.event(pending[0].id).pending_webhooks == 1
    faultctl.heal(p.state, "signing-secret-mismatch")
    assert p.stripe.undelivered_events() == []
    event = p.stripe.events(types=["customer.subscription.updated"], limit=1)[0]
    assert p.stripe.resend_event(event.id, endpoint.id)["pending_webhooks"] == 0


def test_handler_timeout(p: Platform) -> None:
    import inspect

    from opsbook.sandbox.apps import peptalk

    if "receiver_delay" not in inspect.getsource(peptalk):
        pytest.skip("the app's webhook receiver does not apply stripe_webhooks.receiver_delay yet")
    stripe_data.set_setting(p.state, "delivery_timeout_s", "1")  # scaled down for the test
    faultctl.break_fault(p.state, "handler-timeout")
    pending = p.stripe.undelivered_events()
    assert pending and all(e.pending_webhooks == 1 for e in pending)
    endpoint = _endpoint(p, "peptalk")
    started = time.monotonic()
    p.stripe.resend_event(pending[0].id, endpoint.id)
    assert time.monotonic() - started >= 1.0
    with p.state.read() as db:
        last = db.execute(
            "SELECT status_code, error FROM stripe_deliveries ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert last[0] is None and "Timed out" in last[1]
    faultctl.heal(p.state, "handler-timeout")
    assert p.stripe.undelivered_events() == []
    assert p.stripe.resend_event(pending[0].id, endpoint.id)["pending_webhooks"] == 0


def test_endpoint_disabled(p: Platform) -> None:
    faultctl.break_fault(p.state, "endpoint-disabled")
    assert _endpoint(p, "peptalk").status == "disabled"
    assert len(p.stripe.undelivered_events()) >= 3
    faultctl.heal(p.state, "endpoint-disabled")
    assert _endpoint(p, "peptalk").status == "enabled"
    assert p.stripe.undelivered_events() == []


def test_corrupt_the_manuscript_database(p: Platform) -> None:
    faultctl.break_fault(p.state, "corrupt", {"profile": "manuscript"})
    r = p.query("manuscript-platform", "PRAGMA integrity_check")
    assert r.status_code != 200 or r.json()["result"][0]["results"] != [{"integrity_check": "ok"}]
    assert p.rows("peptalk-production-db", "PRAGMA quick_check") == [{"quick_check": "ok"}]
    faultctl.heal(p.state, "corrupt")
    assert p.rows("manuscript-platform", "PRAGMA quick_check") == [{"quick_check": "ok"}]
