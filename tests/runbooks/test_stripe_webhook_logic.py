"""stripe-webhook: the verdict from the endpoint, the backlog and the delivery test."""

from __future__ import annotations

from typing import Any

from opsbook.runbooks import stripe_webhook as sw
from opsbook.runbooks.webhooks import DeliveryTest

URL = "https://api.example.com/webhooks/stripe"
ENABLED = {"id": "we_1", "url": URL, "status": "enabled"}
EVENTS = [
    {"id": f"evt_{i}", "type": "customer.subscription.updated", "created": f"2026-11-23T1{i}:00:00Z",
     "pending_webhooks": 1}
    for i in range(3)
]  # fmt: skip
SECRETS = ["JWT_SECRET", "STRIPE_WEBHOOK_SECRET"]


def delivery(
    receiver: dict[str, Any] | None,
    answered: bool = True,
    pending: int | None = 1,
    timed_out: bool = False,
    waited: float = 0.3,
) -> DeliveryTest:
    return DeliveryTest("evt_0", "we_1", answered, pending, waited, receiver, None, timed_out)


def diagnose(
    endpoint: dict[str, Any] | None, events: list[dict[str, Any]], t: DeliveryTest | None
) -> tuple[str, list[str], str | None]:
    return sw.diagnose(endpoint, events, t, SECRETS, URL)


def test_nothing_pending_is_healthy() -> None:
    cause, _, remedy = diagnose(ENABLED, [], None)
    assert cause == "healthy" and remedy is None


def test_disabled_endpoint_wins() -> None:
    cause, evidence, _ = diagnose({**ENABLED, "status": "disabled"}, EVENTS, None)
    assert cause == "endpoint-disabled"
    assert "we_1" in evidence[0] and "status=disabled" in evidence[0]
    assert "3 undelivered" in evidence[1]


def test_a_400_naming_the_signature_is_a_secret_mismatch() -> None:
    receiver = {"status": 400, "wall_ms": 30,
                "logs": "Webhook signature verification failed: No signatures found matching"}  # fmt: skip
    cause, evidence, remedy = diagnose(ENABLED, EVENTS, delivery(receiver))
    assert cause == "signing-secret-mismatch"
    assert any("answered 400" in e for e in evidence)
    assert any("has STRIPE_WEBHOOK_SECRET set" in e for e in evidence)
    assert remedy and "STRIPE_WEBHOOK_SECRET" in remedy


def test_a_400_for_another_reason_is_not_a_secret_mismatch() -> None:
    cause, _, _ = diagnose(ENABLED, EVENTS, delivery({"status": 400, "logs": "Invalid payload"}))
    assert cause == "unknown"


def test_no_answer_within_the_wait_is_a_handler_timeout() -> None:
    cause, evidence, remedy = diagnose(ENABLED, EVENTS, delivery(None, answered=False, pending=None,
                                                             timed_out=True, waited=3.0))  # fmt: skip
    assert cause == "handler-timeout"
    assert any("no answer within 3.0 s" in e for e in evidence)
    assert remedy == sw.NO_REMEDY["handler-timeout"]


def test_a_receiver_running_past_stripes_limit_is_a_handler_timeout() -> None:
    cause, _, _ = diagnose(ENABLED, EVENTS, delivery({"status": 200, "wall_ms": 35_000}))
    assert cause == "handler-timeout"


def test_a_delivery_that_now_succeeds_is_not_forced_into_a_cause() -> None:
    cause, _, remedy = diagnose(
        ENABLED, EVENTS, delivery({"status": 200, "wall_ms": 50}, pending=0)
    )
    assert cause == "unknown" and remedy and "resend" in remedy


def test_no_endpoint_for_the_app_is_unknown() -> None:
    cause, evidence, _ = diagnose(None, EVENTS, None)
    assert cause == "unknown" and URL in evidence[0]


def test_pending_events_without_a_test_are_unknown() -> None:
    assert diagnose(ENABLED, EVENTS, None)[0] == "unknown"


def test_enable_preview_is_stripes_disabled_flag() -> None:
    preview = sw.enable_preview(ENABLED)
    assert preview["call"] == "POST /v1/webhook_endpoints/we_1"
    assert preview["body"] == {"disabled": "false"}
    assert "--disabled=true" in preview["undo"]
