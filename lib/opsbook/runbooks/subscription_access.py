"""subscription-access: a subscriber says the PDF answers "Subscription required".

Seed 004, "User Can't Access PDF". Three sources, compared for one user:
- D1 `subscriptions` (what the Worker's PDF route reads: status and current_period_end);
- Stripe's subscription (the truth: status and `items.data[].current_period_end`) and
  any `customer.subscription.*` event Stripe has not delivered to the app;
- the user's sessions in the SESSIONS KV namespace (`session:<sid>` -> {user_id, email}).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any

from ..errors import ApiError, NotFound, SecretNotFound
from . import webhooks

if TYPE_CHECKING:
    from ..platform import Platform

CAUSES = {
    "expired": "the subscription ended: Stripe and D1 agree it is no longer active",
    "webhook-missed": "Stripe has the subscription active, but D1 is stale: a webhook was not processed",
    "session-invalid": "the subscription is active in both, but the user has no live session",
}
PROFILES = ("peptalk",)
SEVERITY = "P2"
NO_REMEDY = {
    "expired": "nothing on the platform is wrong: direct the user to the billing portal to renew",
    "session-invalid": "nothing on the platform is wrong: the user must log out and log in again",
}
ACTIVE = ("active", "trialing")
SESSION_PREFIX = "session:"
SUBSCRIPTION_EVENTS = [
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
]
MAX_SESSION_KEYS = 5000


def parse_time(value: str | int | float | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def is_active(status: str | None, period_end: datetime | None, now: datetime) -> bool:
    """The app's own rule: status active or trialing, and the period not over."""
    return status in ACTIVE and period_end is not None and period_end > now


def stamp(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else "-"


@dataclass
class Facts:
    email: str
    user: dict[str, Any] | None = None
    d1: dict[str, Any] | None = None  # the subscriptions row the PDF route reads
    stripe: dict[str, Any] | None = None  # {id, customer, status, period_end (datetime)}
    pending: list[dict[str, Any]] = field(default_factory=list)  # undelivered events
    sessions: list[dict[str, Any]] = field(default_factory=list)  # {key, expires, live}

    @property
    def d1_end(self) -> datetime | None:
        return parse_time((self.d1 or {}).get("current_period_end"))

    @property
    def stripe_end(self) -> datetime | None:
        return (self.stripe or {}).get("period_end")

    def agree(self) -> bool:
        """D1 says what Stripe says (status, and the period end within a minute)."""
        if not self.d1 or not self.stripe:
            return False
        d1_end, st_end = self.d1_end, self.stripe_end
        same_end = (
            d1_end is not None
            and st_end is not None
            and abs((d1_end - st_end).total_seconds()) < 60
        )
        return self.d1.get("status") == self.stripe.get("status") and same_end


# ---- gathering ---------------------------------------------------------------------
def find_user(p: Platform, email: str) -> dict[str, Any] | None:
    rows = p.cf.d1_query(
        p.database, "SELECT id, email FROM users WHERE lower(email) = lower(?)", [email]
    )[0]["results"]
    return rows[0] if rows else None


def d1_subscription(p: Platform, user_id: str) -> dict[str, Any] | None:
    """The row the PDF route reads: the user's subscription with the latest period end."""
    rows = p.cf.d1_query(
        p.database,
        "SELECT id, stripe_customer_id, stripe_subscription_id, status, plan, current_period_end, "
        "updated_at FROM subscriptions WHERE user_id = ? ORDER BY current_period_end DESC LIMIT 1",
        [user_id],
    )[0]["results"]
    return rows[0] if rows else None


def _stripe_view(sub: Any) -> dict[str, Any]:
    from ..clients.stripe import Stripe

    end = Stripe.period_end(sub)
    return {
        "id": sub.id,
        "customer": sub.customer,
        "status": sub.status,
        "period_end": parse_time(end),
        "cancel_at_period_end": bool(getattr(sub, "cancel_at_period_end", False)),
    }


def stripe_subscription(
    p: Platform, d1: dict[str, Any] | None, email: str
) -> dict[str, Any] | None:
    """Stripe's subscription: the one D1 names, else the customer's newest by email."""
    if d1 and d1.get("stripe_subscription_id"):
        sid = str(d1["stripe_subscription_id"])
        try:
            sub = p.stripe.call(
                lambda: p.stripe.client.v1.subscriptions.retrieve(sid), f"subscription {sid}"
            )
            return _stripe_view(sub)
        except NotFound:
            pass
    customer = p.stripe.customer_by_email(email)
    if customer is None:
        return None
    subs = p.stripe.subscriptions(customer.id)
    if not subs:
        return None
    return _stripe_view(max(subs, key=lambda s: s.created))


def pending_events(p: Platform, subscription_id: str, days: int = 30) -> list[dict[str, Any]]:
    """Undelivered customer.subscription.* events about this subscription, oldest first."""
    since = time.time() - days * 86400
    return [
        r
        for r in webhooks.undelivered(p, since, SUBSCRIPTION_EVENTS)
        if r["object"] == subscription_id
    ]


def user_sessions(p: Platform, user_id: str, email: str, now: datetime) -> list[dict[str, Any]]:
    """The user's `session:*` keys in the SESSIONS namespace, with their expiry.

    Keys whose metadata names another user are skipped; the others are read (in
    parallel) to match the record's user_id or email.
    """
    ns = str(p.setting("app.kv_sessions"))
    keys = [
        k
        for k in islice(p.cf.kv_keys(ns, prefix=SESSION_PREFIX), MAX_SESSION_KEYS)
        if (k.get("metadata") or {}).get("user_id") in (None, user_id)
    ]

    def read(key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            record = json.loads(p.cf.kv_get(ns, key["name"]))
        except (NotFound, ValueError):
            return None
        if str(record.get("user_id")) != str(user_id) and record.get("email") != email:
            return None
        expires = parse_time(key.get("expiration"))
        return {
            "key": key["name"],
            "created": stamp(parse_time(record.get("created_at"))),
            "expires": stamp(expires),
            "live": expires is None or expires > now,
        }

    with ThreadPoolExecutor(max_workers=8) as pool:
        return [s for s in pool.map(read, keys) if s is not None]


def gather(p: Platform, email: str, now: datetime | None = None) -> Facts:
    now = now or datetime.now(UTC)
    facts = Facts(email)
    facts.user = find_user(p, email)
    if facts.user is None:
        return facts
    facts.d1 = d1_subscription(p, str(facts.user["id"]))
    facts.stripe = stripe_subscription(p, facts.d1, email)
    if facts.stripe:
        facts.pending = pending_events(p, str(facts.stripe["id"]))
    facts.sessions = user_sessions(p, str(facts.user["id"]), email, now)
    return facts


# ---- diagnosis (pure) ----------------------------------------------------------------
def side_by_side(f: Facts) -> dict[str, str]:
    d1, st = f.d1 or {}, f.stripe or {}
    return {
        "D1 subscriptions row": (
            f"{d1.get('stripe_subscription_id')} status={d1.get('status')} "
            f"current_period_end={d1.get('current_period_end')} updated_at={d1.get('updated_at')}"
            if d1
            else "none"
        ),
        "Stripe subscription": (
            f"{st.get('id')} status={st.get('status')} "
            f"items.current_period_end={stamp(st.get('period_end'))}"
            if st
            else "none"
        ),
    }


def diagnose(f: Facts, now: datetime) -> tuple[str, list[str], str | None]:
    """(cause, evidence, remedy) for the user in `f`."""
    who = f"user {f.email}" + (f" (id {f.user['id']})" if f.user else "")
    if f.user is None:
        return (
            "unknown",
            [f"no user with email {f.email} in D1 users"],
            "Check the address the user signed up with.",
        )
    if f.d1 is None and f.stripe is None:
        return (
            "unknown",
            [f"{who} has no subscription in D1 and no Stripe customer/subscription"],
            ("The user never subscribed (or under another email): direct them to checkout."),
        )
    rows = side_by_side(f)
    evidence = [who, *(f"{k}: {v}" for k, v in rows.items())]
    d1_ok = is_active((f.d1 or {}).get("status"), f.d1_end, now)
    st_ok = is_active((f.stripe or {}).get("status"), f.stripe_end, now)
    if not st_ok and not d1_ok:
        ended = f.stripe_end or f.d1_end
        evidence.append(
            f"subscription {(f.stripe or f.d1 or {}).get('id') if f.stripe else (f.d1 or {}).get('stripe_subscription_id')} "
            f"ended {stamp(ended)} (status {(f.stripe or f.d1 or {}).get('status')}); D1 and Stripe agree"
        )
        return (
            "expired",
            evidence,
            (
                "No system change: the subscription really ended. Direct the user to the billing "
                "portal to renew; access returns when Stripe's renewal webhook updates D1."
            ),
        )
    if st_ok and not d1_ok:
        if f.pending:
            evidence += [
                f"undelivered {e['type']} {e['id']} created {e['created']} pending_webhooks={e['pending_webhooks']}"
                for e in f.pending
            ]
        else:
            evidence.append(
                "no undelivered customer.subscription.* event found (older than 30 days, or never sent)"
            )
        return (
            "webhook-missed",
            evidence,
            (
                "Resend the undelivered event(s) to the app's endpoint so its handler updates D1; "
                "if D1 is still stale, update the D1 row from Stripe (sync-subscription)."
            ),
        )
    if d1_ok and not st_ok:
        evidence.append(
            "D1 grants access but Stripe says it ended: the opposite drift, not this symptom"
        )
        return (
            "unknown",
            evidence,
            "D1 is more generous than Stripe; investigate the webhook handler.",
        )
    live = [s for s in f.sessions if s["live"]]
    if not live:
        expired = [s for s in f.sessions if not s["live"]]
        evidence.append(
            f"no live session in KV {SESSION_PREFIX}* for this user"
            + (
                f"; {len(expired)} expired: "
                + ", ".join(f"{s['key'][:20]}… expired {s['expires']}" for s in expired[:5])
                if expired
                else "; no session keys at all"
            )
        )
        evidence.append("the PDF route answers 401 for a token whose session is gone")
        return (
            "session-invalid",
            evidence,
            ("No system change: ask the user to log out and log in again (a new session)."),
        )
    evidence.append(f"{len(live)} live session(s) in KV; D1 and Stripe both active")
    if not f.agree():
        evidence.append("D1 and Stripe differ in detail but both grant access")
    return "healthy", evidence, None


# ---- remedies ------------------------------------------------------------------------
def sync_sql(f: Facts, now: datetime) -> tuple[str, list[Any], str]:
    """(sql, params, the same SQL with values inlined) to bring the row in line with Stripe."""
    assert f.stripe is not None and f.d1 is not None
    end = f.stripe_end
    values = [str(f.stripe["status"]), stamp(end), stamp(now), str(f.d1["stripe_subscription_id"])]
    sql = (
        "UPDATE subscriptions SET status = ?, current_period_end = ?, updated_at = ? "
        "WHERE stripe_subscription_id = ?"
    )
    literal = sql
    for v in values:
        literal = literal.replace("?", "'" + v.replace("'", "''") + "'", 1)
    return sql, values, literal


def sync_preview(p: Platform, f: Facts, now: datetime) -> dict[str, Any]:
    _, _, literal = sync_sql(f, now)
    d1 = f.d1 or {}
    undo = (
        f"UPDATE subscriptions SET status = '{d1.get('status')}', current_period_end = "
        f"'{d1.get('current_period_end')}', updated_at = '{d1.get('updated_at')}' "
        f"WHERE stripe_subscription_id = '{d1.get('stripe_subscription_id')}'"
    )
    return {
        "call": f"POST /accounts/{{account}}/d1/database/{p.database}/query",
        "sql": literal,
        "rows": "1 (the user's subscription only)",
        "wrangler": f'npx wrangler d1 execute {p.database} --remote --command "{literal}"',
        "undo": undo,
    }


def apply_sync(p: Platform, f: Facts, now: datetime) -> dict[str, Any]:
    sql, values, _ = sync_sql(f, now)
    sid = values[-1]
    count = p.cf.d1_query(
        p.database,
        "SELECT count(*) AS n FROM subscriptions WHERE stripe_subscription_id = ?",
        [sid],
    )[0]["results"][0]["n"]
    if count != 1:
        raise ApiError(
            f"refusing the update: {count} rows match stripe_subscription_id {sid}, expected 1"
        )
    result = p.cf.d1_query(p.database, sql, values)[0]
    return {"rows changed": result["meta"].get("changes"), "subscription": sid, "now": values[:2]}


# ---- verification: a fresh login and a PDF request ------------------------------------
def test_password(p: Platform) -> str | None:
    ref = p.setting("app.test_user_password")
    if not ref:
        return None
    try:
        return p.env.secret(str(ref))
    except SecretNotFound:
        return None


def login_and_pdf(p: Platform, email: str, password: str, slug: str) -> dict[str, Any]:
    """POST /auth/login as the user, then GET the PDF with the new session's token."""
    from ..clients.probes import probe

    login = probe(
        p.app_url("/auth/login"),
        "POST",
        200,
        timeout=10,
        json={"email": email, "password": password},
    )
    out: dict[str, Any] = {"login": login.status}
    if login.status != 200:
        return out
    token = login.json().get("token", "")
    path = str(p.setting("app.pdf_path") or "").replace("{slug}", slug)
    if not path:
        return out
    pdf = probe(
        p.app_url(path), "GET", 200, timeout=10, headers={"Authorization": f"Bearer {token}"}
    )
    out.update({"pdf": path, "pdf_status": pdf.status, "pdf_is_pdf": pdf.body.startswith("%PDF")})
    return out
