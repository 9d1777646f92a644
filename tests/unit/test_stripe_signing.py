"""Stripe-Signature: the sandbox's signer agrees with the official SDK, both ways."""

from __future__ import annotations

import json
import time

import pytest
import stripe

from opsbook.sandbox.stripe_webhooks import sign, verify

SECRET = "whsec_test_0123456789abcdef"
PAYLOAD = json.dumps({"id": "evt_1", "object": "event", "type": "invoice.paid"}, indent=2)


def test_sdk_accepts_our_header() -> None:
    header = sign(PAYLOAD, SECRET)
    assert stripe.WebhookSignature.verify_header(PAYLOAD, header, SECRET)
    event = stripe.Webhook.construct_event(PAYLOAD, header, SECRET)
    assert event.id == "evt_1"


def test_sdk_rejects_another_secret() -> None:
    header = sign(PAYLOAD, "whsec_rolled")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(PAYLOAD, header, SECRET)


def test_we_accept_the_sdks_header() -> None:
    header = stripe.WebhookSignature.generate_signature_header(PAYLOAD, SECRET)
    assert verify(PAYLOAD, header, SECRET)
    assert not verify(PAYLOAD + " ", header, SECRET)
    assert not verify(PAYLOAD, header, "whsec_other")


def test_header_shape_and_tolerance() -> None:
    t = int(time.time())
    header = sign(PAYLOAD, SECRET, timestamp=t)
    assert header.startswith(f"t={t},v1=") and len(header.split("v1=")[1]) == 64
    old = sign(PAYLOAD, SECRET, timestamp=t - 301)
    assert not verify(PAYLOAD, old, SECRET)
    assert verify(PAYLOAD, old, SECRET, tolerance=0)
    # several v1 values (secret rotation): any match is enough
    both = f"{sign(PAYLOAD, 'whsec_old', t)},v1={sign(PAYLOAD, SECRET, t).split('v1=')[1]}"
    assert verify(PAYLOAD, both, SECRET)
