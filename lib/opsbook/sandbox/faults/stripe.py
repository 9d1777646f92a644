"""Stripe faults: subscription access (expired, webhook-missed, session-invalid) and
webhook delivery (signing-secret-mismatch, handler-timeout, endpoint-disabled).

They change the Stripe objects, the D1 subscriptions, the KV sessions, the endpoint's
secret or status, and the app receiver's speed. Events since the onset are written with
the delivery attempts Stripe would have made; a retry (POST /v1/events/{id}/retry)
then really delivers under the changed state.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .. import cf_kv, d1data, stripe_data, stripe_webhooks
from .. import workers_model as wm
from ..profiles import PROFILES
from ..state import State
from . import Fault, register
from .data import onset, recall, regenerate, remember

DEFAULT_EMAIL = "prodtest1@example.com"
USER_OPTIONS = {
    "email": f"a subscribed PepTalk user (default {DEFAULT_EMAIL})",
    "profile": "peptalk",
}
HOOK_OPTIONS = {"profile": "peptalk", "minutes_ago": "onset (default 30)"}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _user_sub(state: State, profile: str, email: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(user_id, D1 subscription row, Stripe subscription) of the user with `email`."""
    with d1data.d1_connect(state, PROFILES[profile].database) as db:
        cols = ["id", "user_id", "stripe_customer_id", "stripe_subscription_id", "status", "plan",
                "current_period_end", "created_at", "updated_at"]  # fmt: skip
        row = db.execute(
            f"SELECT {', '.join('s.' + c for c in cols)} FROM subscriptions s JOIN users u ON u.id = s.user_id "
            "WHERE u.email = ? ORDER BY s.created_at DESC LIMIT 1",
            (email,),
        ).fetchone()
    if row is None:
        raise ValueError(f"{email} has no subscription in {PROFILES[profile].database}")
    d1row = dict(zip(cols, row, strict=True))
    with state.read() as db:
        js = db.execute(
            "SELECT json FROM stripe_subscriptions WHERE id = ?", (d1row["stripe_subscription_id"],)
        ).fetchone()
    return str(d1row["user_id"]), d1row, json.loads(js[0])


def _save_sub(state: State, sub: dict[str, Any]) -> None:
    with state.tx() as db:
        db.execute(
            "UPDATE stripe_subscriptions SET status = ?, json = ? WHERE id = ?",
            (sub["status"], json.dumps(sub), sub["id"]),
        )


def _save_d1(state: State, profile: str, row: dict[str, Any]) -> None:
    with d1data.d1_connect(state, PROFILES[profile].database) as db:
        db.execute(
            "UPDATE subscriptions SET status = ?, current_period_end = ?, updated_at = ? WHERE id = ?",
            (row["status"], row["current_period_end"], row["updated_at"], row["id"]),
        )


def _event(state: State, app: str, type_: str, created: int, obj: dict[str, Any], pending: bool,
           attempts: Sequence[tuple[int | None, str | None]], previous: dict[str, Any] | None = None) -> str:  # fmt: skip
    """Write an event (and the delivery attempts Stripe made) to the app's endpoint."""
    rng = random.Random()
    event = stripe_data.event_obj(stripe_data.stripe_id(rng, "evt"), type_, created, obj, previous)
    with state.tx() as db:
        endpoint = stripe_data.endpoint_for(db, app)
        stripe_data.insert_event(db, app, event, [endpoint] if pending and endpoint else [])
        for i, (status, error) in enumerate(attempts):
            db.execute(
                "INSERT INTO stripe_deliveries(event_id, endpoint_id, attempted_at, status_code, duration_ms, error) "
                "VALUES (?,?,?,?,?,?)",
                (event["id"], endpoint, created + 1 + i * 300, status,
                 30_000.0 if error and "Timed out" in error else rng.uniform(30, 200), error),
            )  # fmt: skip
    return str(event["id"])


def _profile(options: dict[str, Any]) -> str:
    return str(options.get("profile") or "peptalk")


# ---- subscription access ----------------------------------------------------------
def apply_expired(state: State, options: dict[str, Any]) -> None:
    profile, email = _profile(options), str(options.get("email") or DEFAULT_EMAIL)
    _, d1row, sub = _user_sub(state, profile, email)
    remember(state, "expired", {"profile": profile, "d1": d1row, "sub": sub})
    ended = int(time.time()) - 3 * 86400
    new = json.loads(json.dumps(sub))
    item = new["items"]["data"][0]
    item["current_period_end"], item["current_period_start"] = ended, ended - 30 * 86400
    new.update(status="canceled", canceled_at=ended, ended_at=ended)
    _save_sub(state, new)
    _save_d1(
        state,
        profile,
        {
            **d1row,
            "status": "canceled",
            "current_period_end": _iso(ended),
            "updated_at": _iso(ended),
        },
    )
    _event(state, profile, "customer.subscription.deleted", ended, new, False, [(200, None)])


def heal_expired(state: State) -> None:
    memo = recall(state, "expired")
    if memo:
        _save_sub(state, memo["sub"])
        _save_d1(state, memo["profile"], memo["d1"])


def apply_webhook_missed(state: State, options: dict[str, Any]) -> None:
    profile, email = _profile(options), str(options.get("email") or DEFAULT_EMAIL)
    _, d1row, sub = _user_sub(state, profile, email)
    remember(state, "webhook-missed", {"profile": profile, "email": email})
    now = int(time.time())
    renewed = now - 3 * 86400
    new = json.loads(json.dumps(sub))
    item = new["items"]["data"][0]
    previous = {
        "items": {
            "data": [{"current_period_end": renewed, "current_period_start": renewed - 30 * 86400}]
        }
    }
    item["current_period_start"], item["current_period_end"] = renewed, renewed + 30 * 86400
    new["status"] = "active"
    _save_sub(state, new)
    # D1 still has the period that ended at the renewal: the update never arrived.
    _save_d1(state, profile, {**d1row, "status": "active", "current_period_end": _iso(renewed),
                              "updated_at": _iso(renewed - 30 * 86400)})  # fmt: skip
    failures = [(500, "HTTP 500: Internal Server Error")] * 3
    _event(
        state,
        profile,
        "invoice.paid",
        renewed,
        stripe_data.invoice_obj(new, renewed, random.Random()),
        False,
        [(200, None)],
    )
    _event(
        state, profile, "customer.subscription.updated", renewed + 2, new, True, failures, previous
    )


def heal_webhook_missed(state: State) -> None:
    """D1 brought in line with Stripe (what a delivered update does); pending cleared."""
    memo = recall(state, "webhook-missed")
    if not memo:
        return
    _, d1row, sub = _user_sub(state, memo["profile"], str(memo["email"]))
    end = sub["items"]["data"][0]["current_period_end"]
    _save_d1(state, memo["profile"], {**d1row, "status": sub["status"], "current_period_end": _iso(end),
                                      "updated_at": _iso(time.time())})  # fmt: skip
    _clear_pending(state, memo["profile"])


def _clear_pending(state: State, app: str) -> None:
    """Every pending event of the app delivered (Stripe's automatic retry succeeded)."""
    with state.tx() as db:
        rows = db.execute(
            "SELECT p.event_id, p.endpoint_id FROM stripe_event_pending p JOIN stripe_events e ON e.id = p.event_id "
            "WHERE e.app = ?", (app,)
        ).fetchall()  # fmt: skip
        for event_id, endpoint_id in rows:
            db.execute(
                "INSERT INTO stripe_deliveries(event_id, endpoint_id, attempted_at, status_code, duration_ms, error) "
                "VALUES (?,?,?,200,120.0,NULL)", (event_id, endpoint_id, time.time())
            )  # fmt: skip
            db.execute(
                "DELETE FROM stripe_event_pending WHERE event_id = ? AND endpoint_id = ?",
                (event_id, endpoint_id),
            )


# ---- session-invalid -----------------------------------------------------------------
def apply_session_invalid(state: State, options: dict[str, Any]) -> None:
    """The user's KV sessions are gone; the one their browser holds has expired."""
    profile, email = _profile(options), str(options.get("email") or DEFAULT_EMAIL)
    user_id, _, _ = _user_sub(state, profile, email)
    ns_title = PROFILES[profile].kv_sessions
    ns = cf_kv.namespace_id(state, ns_title)
    if ns is None:
        raise ValueError(f"no KV namespace {ns_title}")
    removed = []
    with state.tx() as db:
        for key, value in db.execute(
            "SELECT key, value FROM kv_values WHERE namespace_id = ? AND key LIKE 'session:%'",
            (ns,),
        ).fetchall():
            try:
                record = json.loads(bytes(value))
            except ValueError:
                continue
            if str(record.get("user_id")) == user_id or record.get("email") == email:
                removed.append(key)
        for key in removed:
            db.execute("DELETE FROM kv_values WHERE namespace_id = ? AND key = ?", (ns, key))
        expired = int(time.time()) - 3600
        record = {"user_id": user_id, "email": email, "created_at": expired - 7 * 86400}
        db.execute(
            "INSERT OR REPLACE INTO kv_values(namespace_id, key, value, metadata, expiration) VALUES (?,?,?,?,?)",
            (ns, f"session:{random.Random().randbytes(16).hex()}", json.dumps(record).encode(),
             json.dumps({"user_id": user_id}), expired),
        )  # fmt: skip
    remember(state, "session-invalid", {"profile": profile, "email": email, "user_id": user_id})


def heal_session_invalid(state: State) -> None:
    """A fresh live session for the user (they logged out and back in)."""
    memo = recall(state, "session-invalid")
    if memo:
        record = {
            "user_id": memo["user_id"],
            "email": memo["email"],
            "created_at": int(time.time()),
        }
        cf_kv.kv_put(state, PROFILES[memo["profile"]].kv_sessions, f"session:{random.Random().randbytes(16).hex()}",
                     json.dumps(record), ttl=7 * 86400)  # fmt: skip


# ---- webhook delivery ------------------------------------------------------------------
def _recent_events(
    state: State,
    app: str,
    since: datetime,
    attempts: Sequence[tuple[int | None, str | None]],
    n: int = 4,
) -> None:
    """Subscription renewals since the onset whose deliveries failed as `attempts` say."""
    with state.read() as db:
        subs = [json.loads(r[0]) for r in db.execute(
            "SELECT json FROM stripe_subscriptions WHERE app = ? AND status = 'active' ORDER BY id LIMIT ?", (app, n)
        )]  # fmt: skip
    start = int(since.timestamp())
    span = max(60, int(time.time()) - start)
    for i, sub in enumerate(subs):
        created = start + (i * span) // max(1, len(subs))
        _event(state, app, "customer.subscription.updated", created, sub, True, attempts,
               {"cancel_at_period_end": True})  # fmt: skip


def apply_secret_mismatch(state: State, options: dict[str, Any]) -> None:
    """Stripe's endpoint secret is rolled; the worker still has the old one."""
    app = _profile(options)
    new = "whsec_" + random.SystemRandom().randbytes(24).hex()
    with state.tx() as db:
        db.execute("UPDATE stripe_webhook_endpoints SET secret = ? WHERE app = ?", (new, app))
    # What an operator copies from the Stripe dashboard: the endpoint's current secret.
    state.set_credential(f"STRIPE_WEBHOOK_SECRET_{app.upper()}", new)
    error = "HTTP 400: Webhook signature verification failed"
    _recent_events(state, app, onset(options, 30), [(400, error)] * 2)
    remember(state, "signing-secret-mismatch", {"app": app})
    regenerate(state, app, onset(options, 30))


def heal_secret_mismatch(state: State) -> None:
    memo = recall(state, "signing-secret-mismatch")
    if not memo:
        return
    app = memo["app"]
    current = wm.secret_values(state, PROFILES[app].worker).get("STRIPE_WEBHOOK_SECRET")
    secret = current or state.credentials.get(f"STRIPE_WEBHOOK_SECRET_{app.upper()}", "")
    with state.tx() as db:
        db.execute("UPDATE stripe_webhook_endpoints SET secret = ? WHERE app = ?", (secret, app))
    state.set_credential(f"STRIPE_WEBHOOK_SECRET_{app.upper()}", secret)
    _clear_pending(state, app)


def apply_handler_timeout(state: State, options: dict[str, Any]) -> None:
    """The app's webhook handler takes longer than Stripe waits."""
    app = _profile(options)
    timeout = stripe_webhooks.delivery_timeout(state)
    stripe_webhooks.set_receiver_delay(state, app, timeout + max(1.0, timeout / 6))
    error = f"Timed out after {timeout:g} s"
    _recent_events(state, app, onset(options, 30), [(None, error)] * 2)
    remember(state, "handler-timeout", {"app": app})
    regenerate(state, app, onset(options, 30))


def heal_handler_timeout(state: State) -> None:
    memo = recall(state, "handler-timeout")
    if memo:
        stripe_webhooks.set_receiver_delay(state, memo["app"], 0)
        _clear_pending(state, memo["app"])


def apply_endpoint_disabled(state: State, options: dict[str, Any]) -> None:
    """The endpoint is disabled (Stripe does this after days of failures): events pile up."""
    app = _profile(options)
    with state.tx() as db:
        row = db.execute(
            "SELECT id, json FROM stripe_webhook_endpoints WHERE app = ?", (app,)
        ).fetchone()
        obj = json.loads(row[1])
        obj["status"] = "disabled"
        db.execute(
            "UPDATE stripe_webhook_endpoints SET status = 'disabled', json = ? WHERE id = ?",
            (json.dumps(obj), row[0]),
        )
    _recent_events(state, app, onset(options, 30), [], n=6)
    remember(state, "endpoint-disabled", {"app": app})


def heal_endpoint_disabled(state: State) -> None:
    memo = recall(state, "endpoint-disabled")
    if not memo:
        return
    with state.tx() as db:
        row = db.execute(
            "SELECT id, json FROM stripe_webhook_endpoints WHERE app = ?", (memo["app"],)
        ).fetchone()
        obj = json.loads(row[1])
        obj["status"] = "enabled"
        db.execute(
            "UPDATE stripe_webhook_endpoints SET status = 'enabled', json = ? WHERE id = ?",
            (json.dumps(obj), row[0]),
        )
    _clear_pending(state, memo["app"])


# Seed 004's sections: only PepTalk has the webhook receiver and subscribed prodtest users.
PEPTALK = ("peptalk",)
register(Fault(
    name="expired", runbook="subscription-access", verdict="expired", profiles=PEPTALK,
    summary="The user's subscription ended 3 days ago, in Stripe and in D1.",
    symptom="The PDF answers 402 'Subscription required'; Stripe and D1 both show status canceled.",
    apply=apply_expired, heal=heal_expired, options=USER_OPTIONS,
))  # fmt: skip
register(Fault(
    name="webhook-missed", runbook="subscription-access", verdict="webhook-missed", profiles=PEPTALK,
    summary="Stripe renewed the subscription, but the customer.subscription.updated webhook failed.",
    symptom="Stripe: active, period end in the future; D1: current_period_end in the past; the event has pending_webhooks=1.",
    apply=apply_webhook_missed, heal=heal_webhook_missed, options=USER_OPTIONS,
))  # fmt: skip
register(Fault(
    name="session-invalid", runbook="subscription-access", verdict="session-invalid", profiles=PEPTALK,
    summary="The subscription is fine but the user's sessions in KV are gone (the one they hold expired).",
    symptom="The user gets 401 on the PDF; Stripe and D1 agree the subscription is active; no live session in KV.",
    apply=apply_session_invalid, heal=heal_session_invalid, options=USER_OPTIONS,
))  # fmt: skip
register(Fault(
    name="signing-secret-mismatch", runbook="stripe-webhook", verdict="signing-secret-mismatch", profiles=PEPTALK,
    summary="The endpoint's signing secret was rolled in Stripe; the worker's STRIPE_WEBHOOK_SECRET is the old one.",
    symptom="Events pending; deliveries answer 400 'Webhook signature verification failed' (app logs too).",
    apply=apply_secret_mismatch, heal=heal_secret_mismatch, options=HOOK_OPTIONS,
))  # fmt: skip
register(Fault(
    name="handler-timeout", runbook="stripe-webhook", verdict="handler-timeout", profiles=PEPTALK,
    summary="The app's webhook handler takes longer than Stripe's delivery timeout (30 s).",
    symptom="Events pending; deliveries time out; the receiver's requests run past 30 s in the app logs.",
    apply=apply_handler_timeout, heal=heal_handler_timeout, options=HOOK_OPTIONS,
))  # fmt: skip
register(Fault(
    name="endpoint-disabled", runbook="stripe-webhook", verdict="endpoint-disabled", profiles=PEPTALK,
    summary="The app's webhook endpoint is disabled in Stripe; events pile up undelivered.",
    symptom="GET /v1/webhook_endpoints shows status disabled; events since the onset have pending_webhooks=1.",
    apply=apply_endpoint_disabled, heal=heal_endpoint_disabled, options=HOOK_OPTIONS,
))  # fmt: skip
