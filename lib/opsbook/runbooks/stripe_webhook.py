"""stripe-webhook: Stripe cannot deliver events to the app's receiver.

Seed 004, "Stripe Webhook Failed". Evidence, in order: the app's endpoint in Stripe
(enabled or disabled), the events still undelivered (`delivery_success=false`), and a
delivery test (one undelivered event resent while a tail of the Worker records the
receiver's answer): a 400 naming the signature, or no answer within the wait.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import SecretNotFound
from . import webhooks
from .webhooks import DeliveryTest

if TYPE_CHECKING:
    from ..platform import Platform

CAUSES = {
    "signing-secret-mismatch": (
        "the receiver refuses deliveries with 400: the Worker's STRIPE_WEBHOOK_SECRET is not "
        "the endpoint's signing secret"
    ),
    "handler-timeout": "the receiver takes longer than Stripe waits (30 s): deliveries time out",
    "endpoint-disabled": "the app's webhook endpoint is disabled in Stripe: events pile up undelivered",
}
PROFILES = ("peptalk",)
SEVERITY = "P1"
SECRET_NAME = "STRIPE_WEBHOOK_SECRET"
NO_REMEDY = {
    "handler-timeout": (
        "no API call makes the handler faster: acknowledge first and move the work to a queue "
        "(or optimise it), deploy, then resend the undelivered events"
    ),
}
HANDLER_BUDGET_S = 5.0  # seed: "Webhook handler should be <5s"


def signature_refused(test: DeliveryTest) -> bool:
    r = test.receiver or {}
    return r.get("status") == 400 and "signature" in str(r.get("logs", "")).lower()


def timed_out(test: DeliveryTest) -> bool:
    """No answer within the wait, or the receiver itself ran past Stripe's limit."""
    r = test.receiver or {}
    wall = r.get("wall_ms")
    slow = isinstance(wall, int | float) and wall >= webhooks.STRIPE_TIMEOUT_S * 1000
    return test.timed_out or slow or r.get("outcome") == "canceled"


def diagnose(
    endpoint: dict[str, Any] | None,
    events: list[dict[str, Any]],
    test: DeliveryTest | None,
    secret_names: list[str],
    expected_url: str,
) -> tuple[str, list[str], str | None]:
    """(cause, evidence, remedy)."""
    if endpoint is None:
        return (
            "unknown",
            [f"no Stripe webhook endpoint points at {expected_url}"],
            (
                "Create the endpoint (Dashboard → Developers → Webhooks) and set its signing "
                f"secret as {SECRET_NAME}."
            ),
        )
    where = f"endpoint {endpoint['id']} ({endpoint['url']})"
    backlog = (
        f"{len(events)} undelivered event(s) since {events[0]['created']}, "
        f"types {', '.join(sorted({e['type'] for e in events}))}"
        if events
        else "no undelivered events"
    )
    if endpoint["status"] != "enabled":
        return (
            "endpoint-disabled",
            [f"{where} status={endpoint['status']}", backlog],
            ("Enable the endpoint, then resend the undelivered events."),
        )
    if not events:
        return "healthy", [f"{where} status=enabled", backlog], None
    if test is None:
        return (
            "unknown",
            [f"{where} status=enabled", backlog, "no delivery test was made"],
            (
                "Look at the delivery attempts in the Stripe Dashboard, or run again with test_delivery=True."
            ),
        )
    has_secret = SECRET_NAME in secret_names
    seen = test.summary()
    evidence = [f"{where} status=enabled", backlog]
    if signature_refused(test):
        evidence += [
            f"resent {test.event_id}: the receiver answered {test.status}: {seen['receiver logs']}",
            f"pending_webhooks after the resend: {test.pending_after}",
            f"the Worker has {SECRET_NAME} set"
            if has_secret
            else f"the Worker has no {SECRET_NAME}",
        ]
        return (
            "signing-secret-mismatch",
            evidence,
            (
                f"Set the Worker's {SECRET_NAME} to the endpoint's current signing secret "
                "(Dashboard → Webhooks → Reveal), then resend the undelivered events."
            ),
        )
    if timed_out(test):
        evidence += [
            f"resent {test.event_id}: no answer within {test.waited_s:.1f} s "
            f"(the seed's budget is {HANDLER_BUDGET_S:.0f} s, Stripe gives up at {webhooks.STRIPE_TIMEOUT_S:.0f} s)"
            + (f"; the receiver ran {seen['receiver wall_ms']} ms" if test.receiver else ""),
            "the receiver is still working when Stripe stops waiting: each attempt times out",
        ]
        return "handler-timeout", evidence, NO_REMEDY["handler-timeout"]
    if test.delivered:
        evidence.append(
            f"resent {test.event_id}: delivered now (receiver {seen['receiver status']})"
        )
        return (
            "unknown",
            evidence,
            (
                "The receiver accepts deliveries again (the failures were transient): resend the rest."
            ),
        )
    evidence.append(f"resent {test.event_id}: {seen}")
    return (
        "unknown",
        evidence,
        "The receiver fails for another reason: see its logs (high-error-rate).",
    )


# ---- remedies -------------------------------------------------------------------------
def enable_preview(endpoint: dict[str, Any]) -> dict[str, Any]:
    eid = endpoint["id"]
    return {
        "call": f"POST /v1/webhook_endpoints/{eid}",
        "body": {"disabled": "false"},
        "stripe": f"stripe webhook_endpoints update {eid} --disabled=false",
        "undo": f"stripe webhook_endpoints update {eid} --disabled=true",
    }


def enable(p: Platform, endpoint: dict[str, Any]) -> dict[str, Any]:
    ep = p.stripe.enable_endpoint(endpoint["id"])
    return {"endpoint": ep.id, "status": ep.status}


def secret_ref(p: Platform) -> str:
    return str(p.setting("app.webhook_signing_secret") or f"env:{SECRET_NAME}")


def secret_available(p: Platform) -> bool:
    try:
        p.env.secret(secret_ref(p))
    except SecretNotFound:
        return False
    return True


def put_secret_preview(p: Platform) -> dict[str, Any]:
    ref = secret_ref(p)
    var = ref.split(":", 1)[-1]
    return {
        "call": f"PUT /accounts/{{account}}/workers/scripts/{p.worker}/secrets",
        "body": {"name": SECRET_NAME, "text": f"<the value of {ref}>", "type": "secret_text"},
        "wrangler": f'printf %s "${var}" | npx wrangler secret put {SECRET_NAME} --name {p.worker}',
        "source": f"{ref}: the endpoint's signing secret (Dashboard → Webhooks → Reveal)",
    }


def put_secret(p: Platform) -> dict[str, Any]:
    value = p.env.secret(secret_ref(p))
    result = p.cf.put_secret(p.worker, SECRET_NAME, value)
    return {"secret": result.get("name", SECRET_NAME), "worker": p.worker}


def resend(p: Platform, event_ids: list[str], endpoint: dict[str, Any]) -> dict[str, Any]:
    """The first event with a tail open (the receiver's answer), then the rest."""
    first = webhooks.delivery_test(p, event_ids[0], endpoint["id"], wait_s=10.0)
    rest = webhooks.resend_all(p, event_ids[1:], endpoint["id"])
    return {
        "first": first.summary(),
        "delivered": int(first.delivered) + sum(r["pending_webhooks"] == 0 for r in rest),
        "resent": len(event_ids),
    }
