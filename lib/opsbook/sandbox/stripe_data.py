"""Stripe objects in the control database, seeded from the D1 subscriptions.

Tables (objects are stored as the JSON the API returns; a few columns are indexed):

    stripe_customers(id, app, email, created, json)
    stripe_subscriptions(id, app, customer, status, created, json)
    stripe_events(seq, id, app, type, created, json)        json without pending_webhooks
    stripe_event_pending(event_id, endpoint_id)             pending_webhooks = count
    stripe_deliveries(id, event_id, endpoint_id, attempted_at, status_code, duration_ms, error)
    stripe_webhook_endpoints(id, app, url, status, secret, created, json)
    stripe_balance_transactions(id, created, json)
    stripe_settings(key, value)                             delivery_timeout_s (default 30)
    webhook_receiver_delays(app, seconds)                   the app receiver's extra work

Customers and subscriptions carry the same ids as the D1 `subscriptions` rows, and
metadata {app, user_id}. Endpoint URLs are stored with `{sandbox}` and expanded per
request. Each app's endpoint secret is the STRIPE_WEBHOOK_SECRET_<APP> credential.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from datetime import datetime
from typing import Any

from . import d1data
from .d1schemas import PROFILE_DB, stripe_id
from .state import State

API_VERSION = "2026-10-28.endive"
WEBHOOK_PATHS = {
    "manuscript": "/apps/manuscript/webhooks/stripe",
    "peptalk": "/apps/peptalk/webhooks/stripe",
}
ENABLED_EVENTS = [
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
]
PRICES = {
    "writer_monthly": (1200, "month"),
    "writer_annual": (9900, "year"),
    "pro_monthly": (1900, "month"),
    "pro_annual": (14900, "year"),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS stripe_customers (
    id TEXT PRIMARY KEY, app TEXT NOT NULL, email TEXT NOT NULL, created INTEGER NOT NULL,
    json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_stripe_customers_email ON stripe_customers(email);
CREATE TABLE IF NOT EXISTS stripe_subscriptions (
    id TEXT PRIMARY KEY, app TEXT NOT NULL, customer TEXT NOT NULL, status TEXT NOT NULL,
    created INTEGER NOT NULL, json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_stripe_subscriptions_customer ON stripe_subscriptions(customer);
CREATE TABLE IF NOT EXISTS stripe_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, app TEXT NOT NULL,
    type TEXT NOT NULL, created INTEGER NOT NULL, json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_stripe_events_created ON stripe_events(created, seq);
CREATE TABLE IF NOT EXISTS stripe_event_pending (
    event_id TEXT NOT NULL, endpoint_id TEXT NOT NULL, PRIMARY KEY (event_id, endpoint_id));
CREATE TABLE IF NOT EXISTS stripe_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, endpoint_id TEXT NOT NULL,
    attempted_at REAL NOT NULL, status_code INTEGER, duration_ms REAL NOT NULL, error TEXT);
CREATE INDEX IF NOT EXISTS idx_stripe_deliveries_event ON stripe_deliveries(event_id);
CREATE TABLE IF NOT EXISTS stripe_webhook_endpoints (
    id TEXT PRIMARY KEY, app TEXT NOT NULL, url TEXT NOT NULL, status TEXT NOT NULL,
    secret TEXT NOT NULL, created INTEGER NOT NULL, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stripe_balance_transactions (
    id TEXT PRIMARY KEY, created INTEGER NOT NULL, json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_stripe_balance_created ON stripe_balance_transactions(created);
CREATE TABLE IF NOT EXISTS stripe_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS webhook_receiver_delays (app TEXT PRIMARY KEY, seconds REAL NOT NULL);
"""


def ts(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def customer_obj(cid: str, email: str, created: int, app: str, user_id: str) -> dict[str, Any]:
    name = email.split("@")[0].replace(".", " ").title()
    return {
        "id": cid,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": created,
        "currency": "usd",
        "default_source": None,
        "delinquent": False,
        "description": None,
        "email": email,
        "invoice_prefix": cid[4:12].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {"app": app, "user_id": user_id},
        "name": name,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def subscription_obj(
    sid: str,
    customer: str,
    status: str,
    plan: str,
    created: int,
    period_end: int,
    app: str,
    user_id: str,
    rng: random.Random,
) -> dict[str, Any]:
    amount, interval = PRICES.get(plan, (1900, "month"))
    period = 365 * 86400 if interval == "year" else 30 * 86400
    ended = status in ("canceled", "incomplete_expired")
    item = {
        "id": stripe_id(rng, "si"),
        "object": "subscription_item",
        "created": created,
        "current_period_start": period_end - period,
        "current_period_end": period_end,
        "discounts": [],
        "metadata": {},
        "plan": {
            "id": f"price_{plan}",
            "object": "plan",
            "active": True,
            "amount": amount,
            "currency": "usd",
            "interval": interval,
            "interval_count": 1,
            "product": f"prod_{plan}",
        },
        "price": {
            "id": f"price_{plan}",
            "object": "price",
            "active": True,
            "currency": "usd",
            "lookup_key": plan,
            "product": f"prod_{plan}",
            "recurring": {"interval": interval, "interval_count": 1, "usage_type": "licensed"},
            "type": "recurring",
            "unit_amount": amount,
        },
        "quantity": 1,
        "subscription": sid,
    }
    return {
        "id": sid,
        "object": "subscription",
        "application": None,
        "billing_cycle_anchor": created,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": period_end if ended else None,
        "collection_method": "charge_automatically",
        "created": created,
        "currency": "usd",
        "customer": customer,
        "default_payment_method": None,
        "ended_at": period_end if ended else None,
        "items": {
            "object": "list",
            "data": [item],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/subscription_items?subscription={sid}",
        },
        "latest_invoice": stripe_id(rng, "in"),
        "livemode": False,
        "metadata": {"app": app, "user_id": user_id},
        "start_date": created,
        "status": status,
        "trial_end": None,
        "trial_start": None,
    }


def event_obj(
    eid: str, type_: str, created: int, obj: dict[str, Any], previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {
        "id": eid,
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
    }


def invoice_obj(
    sub: dict[str, Any], created: int, rng: random.Random, status: str = "paid"
) -> dict[str, Any]:
    item = sub["items"]["data"][0]
    amount = item["price"]["unit_amount"]
    return {
        "id": sub["latest_invoice"] if status == "paid" else stripe_id(rng, "in"),
        "object": "invoice",
        "amount_due": amount,
        "amount_paid": amount if status == "paid" else 0,
        "created": created,
        "currency": "usd",
        "customer": sub["customer"],
        "status": status,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": sub["id"]},
        },
        "period_start": item["current_period_start"],
        "period_end": item["current_period_end"],
    }


def insert_event(
    db: sqlite3.Connection, app: str, event: dict[str, Any], pending: list[str]
) -> None:
    db.execute(
        "INSERT INTO stripe_events(id, app, type, created, json) VALUES (?,?,?,?,?)",
        (event["id"], app, event["type"], event["created"], json.dumps(event)),
    )
    db.executemany(
        "INSERT OR IGNORE INTO stripe_event_pending(event_id, endpoint_id) VALUES (?, ?)",
        [(event["id"], ep) for ep in pending],
    )


def endpoint_for(db: sqlite3.Connection, app: str) -> str | None:
    row = db.execute("SELECT id FROM stripe_webhook_endpoints WHERE app = ?", (app,)).fetchone()
    return str(row[0]) if row else None


def _seed_app(state: State, db: sqlite3.Connection, app: str, rng: random.Random, now: int) -> None:
    secret = (
        state.credentials.get(f"STRIPE_WEBHOOK_SECRET_{app.upper()}")
        or "whsec_" + rng.randbytes(24).hex()
    )
    ep_id = stripe_id(rng, "we")
    created = now - 200 * 86400
    endpoint: dict[str, Any] = {
        "id": ep_id,
        "object": "webhook_endpoint",
        "api_version": API_VERSION,
        "application": None,
        "created": created,
        "description": f"{app} production webhook",
        "enabled_events": ENABLED_EVENTS,
        "livemode": False,
        "metadata": {},
        "status": "enabled",
        "url": "{sandbox}" + WEBHOOK_PATHS[app],
    }
    db.execute(
        "INSERT INTO stripe_webhook_endpoints VALUES (?,?,?,?,?,?,?)",
        (ep_id, app, endpoint["url"], "enabled", secret, created, json.dumps(endpoint)),
    )
    with d1data.d1_connect(state, PROFILE_DB[app]) as d1:
        rows = d1.execute(
            "SELECT s.user_id, s.stripe_customer_id, s.stripe_subscription_id, s.status, s.plan, "
            "s.current_period_end, s.created_at, u.email FROM subscriptions s JOIN users u ON u.id = s.user_id"
        ).fetchall()
    window = now - 30 * 86400
    for user_id, cid, sid, status, plan, end_iso, created_iso, email in rows:
        created = ts(created_iso)
        cust = customer_obj(cid, email, created, app, user_id)
        sub = subscription_obj(sid, cid, status, plan, created, ts(end_iso), app, user_id, rng)
        db.execute(
            "INSERT INTO stripe_customers VALUES (?,?,?,?,?)",
            (cid, app, email, created, json.dumps(cust)),
        )
        db.execute(
            "INSERT INTO stripe_subscriptions VALUES (?,?,?,?,?,?)",
            (sid, app, cid, status, created, json.dumps(sub)),
        )
        item = sub["items"]["data"][0]
        renewed = item["current_period_start"]
        if status == "active" and renewed >= window:
            inv = invoice_obj(sub, renewed, rng)
            _delivered(
                db, app, ep_id, event_obj(stripe_id(rng, "evt"), "invoice.paid", renewed, inv), rng
            )
            prev = {
                "items": {
                    "data": [
                        {
                            "current_period_end": renewed,
                            "current_period_start": renewed
                            - (item["current_period_end"] - renewed),
                        }
                    ]
                }
            }
            ev = event_obj(
                stripe_id(rng, "evt"), "customer.subscription.updated", renewed + 2, sub, prev
            )
            _delivered(db, app, ep_id, ev, rng)
            fee = round(inv["amount_paid"] * 0.029) + 30
            txn = {
                "id": stripe_id(rng, "txn"),
                "object": "balance_transaction",
                "amount": inv["amount_paid"],
                "available_on": renewed + 2 * 86400,
                "created": renewed,
                "currency": "usd",
                "description": f"Subscription update ({app})",
                "exchange_rate": None,
                "fee": fee,
                "fee_details": [
                    {
                        "amount": fee,
                        "application": None,
                        "currency": "usd",
                        "description": "Stripe processing fees",
                        "type": "stripe_fee",
                    }
                ],
                "net": inv["amount_paid"] - fee,
                "reporting_category": "charge",
                "source": stripe_id(rng, "ch"),
                "status": "available",
                "type": "charge",
            }
            db.execute(
                "INSERT INTO stripe_balance_transactions VALUES (?,?,?)",
                (txn["id"], renewed, json.dumps(txn)),
            )
        if created >= window:
            session = {
                "id": stripe_id(rng, "cs"),
                "object": "checkout.session",
                "customer": cid,
                "customer_email": email,
                "mode": "subscription",
                "payment_status": "paid",
                "status": "complete",
                "subscription": sid,
                "created": created,
            }
            _delivered(
                db,
                app,
                ep_id,
                event_obj(stripe_id(rng, "evt"), "checkout.session.completed", created, session),
                rng,
            )


def _delivered(
    db: sqlite3.Connection, app: str, endpoint: str, event: dict[str, Any], rng: random.Random
) -> None:
    insert_event(db, app, event, [])
    db.execute(
        "INSERT INTO stripe_deliveries(event_id, endpoint_id, attempted_at, status_code, duration_ms, error) "
        "VALUES (?,?,?,?,?,NULL)",
        (event["id"], endpoint, event["created"] + rng.uniform(0.5, 3), 200, rng.uniform(40, 400)),
    )


def seed(state: State, rng: random.Random) -> None:
    now = int(time.time())
    with state.tx() as db:
        db.execute("INSERT OR REPLACE INTO stripe_settings VALUES ('delivery_timeout_s', '30')")
        for app in ("manuscript", "peptalk"):
            _seed_app(state, db, app, rng, now)
    # events are listed newest first by (created, seq): renumber seq in created order
    with state.tx() as db:
        db.execute("CREATE TEMP TABLE _ev AS SELECT * FROM stripe_events ORDER BY created, seq")
        db.execute("DELETE FROM stripe_events")
        db.execute(
            "INSERT INTO stripe_events(id, app, type, created, json) SELECT id, app, type, created, json FROM _ev"
        )
        db.execute("DROP TABLE _ev")


def setting(state: State, key: str, default: str) -> str:
    with state.read() as db:
        row = db.execute("SELECT value FROM stripe_settings WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row else default


def set_setting(state: State, key: str, value: str) -> None:
    with state.tx() as db:
        db.execute("INSERT OR REPLACE INTO stripe_settings VALUES (?, ?)", (key, value))
