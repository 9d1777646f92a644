"""Stripe /v1 over real sockets, through opsbook.clients.stripe and the official SDK."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
import stripe as stripe_sdk

from opsbook import sandbox as sandbox_api
from opsbook.clients.stripe import Stripe
from opsbook.errors import AuthenticationError, NotFound
from opsbook.sandbox import d1data, stripe_webhooks
from opsbook.sandbox.state import State


@pytest.fixture
def st(sandbox: sandbox_api.SandboxInfo) -> Iterator[Stripe]:
    with Stripe(
        sandbox.credentials["OPSBOOK_SANDBOX_STRIPE_KEY"], sandbox.base_url, max_network_retries=0
    ) as client:
        yield client


def test_customer_by_email_and_search(st: Stripe) -> None:
    cust = st.customer_by_email("prodtest1@example.com")
    assert cust is not None and cust.id.startswith("cus_") and cust.email == "prodtest1@example.com"
    found = st.search_customers("prodtest1@example.com")
    assert {c.id for c in found} >= {cust.id}
    assert st.customer_by_email("Prodtest1@example.com") is None  # exact, case-sensitive
    assert st.customer_by_email("nobody@example.com") is None


def test_subscriptions_carry_period_end_on_items(
    st: Stripe, sandbox: sandbox_api.SandboxInfo
) -> None:
    state = State(sandbox.state_dir)
    with d1data.d1_connect(state, "peptalk-production-db") as db:
        cid, sid = db.execute(
            "SELECT s.stripe_customer_id, s.stripe_subscription_id FROM subscriptions s "
            "JOIN users u ON u.id = s.user_id WHERE u.email = 'prodtest1@example.com'"
        ).fetchone()
    cust = st.customer_by_email("prodtest1@example.com")
    assert cust is not None and cust.id == cid
    subs = st.subscriptions(cid)
    assert [s.id for s in subs] == [sid]
    sub = subs[0]
    assert sub.status == "active" and sub.cancel_at_period_end is False and sub.latest_invoice
    assert "current_period_end" not in sub
    end = Stripe.period_end(sub)
    assert end is not None and end > time.time()
    one = st.call(lambda: st.client.v1.subscriptions.retrieve(sid))
    assert one["items"]["data"][0]["current_period_end"] == end


def test_events_filters_and_paging(st: Stripe) -> None:
    week = time.time() - 7 * 86400
    events = st.events(
        since=week, types=["invoice.paid", "customer.subscription.updated"], limit=250
    )
    assert events and all(e.created >= week for e in events)
    assert {e.type for e in events} <= {"invoice.paid", "customer.subscription.updated"}
    assert [e.created for e in events] == sorted((e.created for e in events), reverse=True)
    assert len({e.id for e in events}) == len(events)
    wild = st.call(
        lambda: st.client.v1.events.list(params={"type": "customer.subscription.*", "limit": 5})
    )
    assert wild.data and all(e.type.startswith("customer.subscription.") for e in wild.data)
    assert st.undelivered_events() == []  # healthy: everything delivered
    one = st.event(events[0].id)
    assert one.pending_webhooks == 0 and one.api_version


def test_retry_really_delivers_with_a_valid_signature(
    fresh_sandbox: sandbox_api.SandboxInfo,
) -> None:
    """Point the endpoint at a local receiver that checks the signature with the SDK."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    state = State(fresh_sandbox.state_dir)
    with state.read() as db:
        ep_id, secret = db.execute(
            "SELECT id, secret FROM stripe_webhook_endpoints WHERE app='peptalk'"
        ).fetchone()
    got: list[dict[str, object]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            header = self.headers["Stripe-Signature"]
            ok = stripe_sdk.WebhookSignature.verify_header(body, header, secret)
            got.append({"ok": ok, "event": json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with Stripe(
            fresh_sandbox.credentials["OPSBOOK_SANDBOX_STRIPE_KEY"], fresh_sandbox.base_url
        ) as st:
            url = f"http://127.0.0.1:{server.server_address[1]}/hook"
            st.call(lambda: st.client.v1.webhook_endpoints.update(ep_id, params={"url": url}))
            event = st.events(types=["invoice.paid"], limit=1)[0]
            result = st.resend_event(event.id, ep_id)
            assert result["id"] == event.id and result["pending_webhooks"] == 0
    finally:
        server.shutdown()
        server.server_close()
    assert len(got) == 1 and got[0]["ok"] is True
    assert got[0]["event"]["id"] == event.id  # type: ignore[index]
    attempts = stripe_webhooks.deliveries(state, event.id)
    assert attempts[-1].status_code == 200 and attempts[-1].ok


def test_endpoint_disable_and_errors(fresh_sandbox: sandbox_api.SandboxInfo) -> None:
    with Stripe(
        fresh_sandbox.credentials["OPSBOOK_SANDBOX_STRIPE_KEY"], fresh_sandbox.base_url
    ) as st:
        eps = st.webhook_endpoints()
        assert {e.status for e in eps} == {"enabled"} and len(eps) == 2
        assert all(e.url.startswith(fresh_sandbox.base_url + "/apps/") for e in eps)
        off = st.enable_endpoint(eps[0].id, enabled=False)
        assert off.status == "disabled"
        with pytest.raises(NotFound):
            st.event("evt_doesnotexist")
        fees = st.balance_fees(time.time() - 30 * 86400)
        assert fees["count"] > 10 and 0 < fees["fee"] < fees["gross"]
        assert fees["net"] == fees["gross"] - fees["fee"]


def test_bad_key_is_a_401_in_stripe_shape(sandbox: sandbox_api.SandboxInfo) -> None:
    r = httpx.get(
        f"{sandbox.base_url}/v1/customers",
        headers={"Authorization": "Bearer sk_test_wrongwrongwrong"},
    )
    assert r.status_code == 401
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"].startswith(
        "Invalid API Key provided: "
    )
    with (
        Stripe("sk_test_wrongwrongwrong", sandbox.base_url, key_name="STRIPE_SECRET_KEY") as st,
        pytest.raises(AuthenticationError, match="STRIPE_SECRET_KEY"),
    ):
        st.customer_by_email("prodtest1@example.com")


def test_unknown_url_is_a_stripe_404(sandbox: sandbox_api.SandboxInfo) -> None:
    key = sandbox.credentials["OPSBOOK_SANDBOX_STRIPE_KEY"]
    r = httpx.get(f"{sandbox.base_url}/v1/charges_nope", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 404
    assert r.json()["error"]["message"].startswith(
        "Unrecognized request URL (GET: /v1/charges_nope)"
    )
    missing = httpx.get(
        f"{sandbox.base_url}/v1/customers/cus_nope", auth=(key, "")
    )  # basic auth, as curl -u
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "type": "invalid_request_error",
        "message": "No such customer: 'cus_nope'",
        "code": "resource_missing",
        "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
        "param": "id",
    }
