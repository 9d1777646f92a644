"""Stripe webhook signing and real delivery to the apps' receivers.

`deliver(state, base_url, event_id, endpoint_id)` POSTs the event to the endpoint's URL
(on this same server) with `Stripe-Signature: t=<unix>,v1=<HMAC-SHA256(secret,
"t.body")>`, through an async httpx client, so the server never blocks on itself.
Every attempt is recorded in `stripe_deliveries`; a 2xx clears the event's pending
row for that endpoint. The timeout is the `delivery_timeout_s` setting (Stripe: 30 s).

For the apps engineer: `receiver_delay(state, app)` is the extra time the app's webhook
handler spends before answering (set by fault handler-timeout); the receiver should
`await asyncio.sleep(receiver_delay(state, app))` and log it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from . import stripe_data
from .state import State

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header value for `payload`."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(payload: str, header: str, secret: str, tolerance: int = 300) -> bool:
    """Stripe's check: some v1 matches HMAC(secret, t.payload) and t is recent enough."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k == "t"]
    sigs = [v for k, v in parts if k == "v1"]
    if not stamps or not sigs or not stamps[0].isdigit():
        return False
    t = int(stamps[0])
    if tolerance and t < time.time() - tolerance:
        return False
    good = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(good, s) for s in sigs)


def receiver_delay(state: State, app: str) -> float:
    with state.read() as db:
        row = db.execute(
            "SELECT seconds FROM webhook_receiver_delays WHERE app = ?", (app,)
        ).fetchone()
    return float(row[0]) if row else 0.0


def set_receiver_delay(state: State, app: str, seconds: float) -> None:
    with state.tx() as db:
        if seconds > 0:
            db.execute(
                "INSERT OR REPLACE INTO webhook_receiver_delays VALUES (?, ?)", (app, seconds)
            )
        else:
            db.execute("DELETE FROM webhook_receiver_delays WHERE app = ?", (app,))


def delivery_timeout(state: State) -> float:
    return float(stripe_data.setting(state, "delivery_timeout_s", "30"))


@dataclass
class Delivery:
    event_id: str
    endpoint_id: str
    status_code: int | None
    duration_ms: float
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def event_json(state: State, event_id: str) -> dict[str, Any] | None:
    with state.read() as db:
        row = db.execute("SELECT json FROM stripe_events WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            return None
        pending = db.execute(
            "SELECT count(*) FROM stripe_event_pending WHERE event_id = ?", (event_id,)
        ).fetchone()[0]
    event: dict[str, Any] = json.loads(row[0])
    event["pending_webhooks"] = int(pending)
    return event


def record(state: State, d: Delivery) -> None:
    with state.tx() as db:
        db.execute(
            "INSERT INTO stripe_deliveries(event_id, endpoint_id, attempted_at, status_code, duration_ms, error) "
            "VALUES (?,?,?,?,?,?)",
            (
                d.event_id,
                d.endpoint_id,
                time.time(),
                d.status_code,
                round(d.duration_ms, 1),
                d.error,
            ),
        )
        if d.ok:
            db.execute(
                "DELETE FROM stripe_event_pending WHERE event_id = ? AND endpoint_id = ?",
                (d.event_id, d.endpoint_id),
            )
        else:
            db.execute(
                "INSERT OR IGNORE INTO stripe_event_pending(event_id, endpoint_id) VALUES (?, ?)",
                (d.event_id, d.endpoint_id),
            )


async def deliver(state: State, base_url: str, event_id: str, endpoint_id: str) -> Delivery:
    """POST the event to the endpoint, signed with its secret; record the attempt."""
    with state.read() as db:
        ep = db.execute(
            "SELECT url, secret FROM stripe_webhook_endpoints WHERE id = ?", (endpoint_id,)
        ).fetchone()
    event = event_json(state, event_id)
    if ep is None or event is None:
        raise KeyError(endpoint_id if ep is None else event_id)
    url = str(ep["url"]).replace("{sandbox}", base_url.rstrip("/"))
    payload = json.dumps(event, indent=2)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "Stripe-Signature": sign(payload, str(ep["secret"])),
    }
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    try:
        async with httpx.AsyncClient(timeout=delivery_timeout(state)) as client:
            r = await client.post(url, content=payload.encode(), headers=headers)
        status = r.status_code
        if not r.is_success:
            error = f"HTTP {r.status_code}: {r.text[:200]}"
    except httpx.TimeoutException:
        error = f"Timed out after {delivery_timeout(state):g} s"
    except httpx.TransportError as exc:
        error = f"Could not connect: {exc}"
    delivery = Delivery(
        event_id, endpoint_id, status, (time.perf_counter() - started) * 1000, error
    )
    record(state, delivery)
    return delivery


def deliveries(state: State, event_id: str) -> list[Delivery]:
    """Every recorded attempt for an event, oldest first (no public Stripe API has this)."""
    with state.read() as db:
        rows = db.execute(
            "SELECT event_id, endpoint_id, status_code, duration_ms, error FROM stripe_deliveries "
            "WHERE event_id = ? ORDER BY id",
            (event_id,),
        ).fetchall()
    return [Delivery(r[0], r[1], r[2], r[3], r[4]) for r in rows]
