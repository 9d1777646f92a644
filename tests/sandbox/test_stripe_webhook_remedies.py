"""The webhook delivery faults against their remedies: break -> symptom -> remedy -> gone.

signing-secret-mismatch: the endpoint's current secret put as the Worker's
STRIPE_WEBHOOK_SECRET, then a resend delivers and pending_webhooks drains.
handler-timeout: the PepTalk receiver really works longer than Stripe waits (the delivery
timeout is scaled down here), so the delivery times out while the receiver's own
invocation runs past it; healed, the same resend is delivered at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from opsbook import environments
from opsbook import sandbox as sandbox_api
from opsbook.clients.cloudflare import Cloudflare
from opsbook.clients.stripe import Stripe
from opsbook.sandbox import faultctl, stripe_data, traffic
from opsbook.sandbox.state import State

Info = sandbox_api.SandboxInfo
ACCOUNT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture
def st(fresh_sandbox: Info) -> Iterator[Stripe]:
    client = Stripe(
        fresh_sandbox.credentials["OPSBOOK_SANDBOX_STRIPE_KEY"],
        fresh_sandbox.base_url,
        max_network_retries=0,
    )
    try:
        yield client
    finally:
        client.close()


def endpoint(st: Stripe) -> Any:
    return next(e for e in st.webhook_endpoints() if "/apps/peptalk/" in e.url)


def last_delivery(state: State) -> tuple[int | None, str | None]:
    with state.read() as db:
        row = db.execute(
            "SELECT status_code, error FROM stripe_deliveries ORDER BY id DESC LIMIT 1"
        ).fetchone()
    return row[0], row[1]


def receiver_rows(state: State, since_ms: int) -> list[Any]:
    return [
        r
        for r in traffic.rows(state, "peptalk-api", since_ms)
        if r["route"] == "POST /webhooks/stripe"
    ]


def test_putting_the_endpoint_secret_and_resending_drains_the_backlog(
    fresh_sandbox: Info, st: Stripe
) -> None:
    state = State(fresh_sandbox.state_dir)
    faultctl.break_fault(state, "signing-secret-mismatch", {})
    try:
        pending = st.undelivered_events()
        ep = endpoint(st)
        assert pending and st.resend_event(pending[0].id, ep.id)["pending_webhooks"] == 1
        assert last_delivery(state)[0] == 400
        # the remedy, as the runbook does it: the secret by reference, then every resend
        env = environments.load("local-peptalk")
        secret = env.secret(env.get("app.webhook_signing_secret"))
        with Cloudflare(
            f"{fresh_sandbox.base_url}/client/v4",
            ACCOUNT,
            fresh_sandbox.credentials["OPSBOOK_SANDBOX_TOKEN"],
        ) as cf:
            cf.put_secret("peptalk-api", "STRIPE_WEBHOOK_SECRET", secret)
        for event in pending:
            assert st.resend_event(event.id, ep.id)["pending_webhooks"] == 0
        assert last_delivery(state) == (200, None)
        assert st.undelivered_events() == []
    finally:
        faultctl.heal(state, "signing-secret-mismatch")
    assert faultctl.active(state) == []


def test_the_receiver_really_outlasts_the_delivery_timeout(fresh_sandbox: Info, st: Stripe) -> None:
    state = State(fresh_sandbox.state_dir)
    stripe_data.set_setting(state, "delivery_timeout_s", "1")  # Stripe's 30 s, scaled down
    faultctl.break_fault(state, "handler-timeout", {})
    try:
        pending = st.undelivered_events()
        ep = endpoint(st)
        since = int(time.time() * 1000)
        started = time.monotonic()
        assert st.resend_event(pending[0].id, ep.id)["pending_webhooks"] == 1
        assert time.monotonic() - started >= 1.0
        status, error = last_delivery(state)
        assert status is None and error and error.startswith("Timed out after 1 s")
        deadline = time.monotonic() + 10  # the receiver is still working: wait for its record
        while not receiver_rows(state, since) and time.monotonic() < deadline:
            time.sleep(0.2)
        (row,) = receiver_rows(state, since)
        assert row["wall_ms"] > 1000 and "Stripe webhook handled" in row["logs"]
    finally:
        faultctl.heal(state, "handler-timeout")
    started = time.monotonic()
    assert st.resend_event(pending[0].id, ep.id)["pending_webhooks"] == 0
    assert time.monotonic() - started < 1.0
