"""Stripe webhook delivery, as the runbooks see it: the app's endpoint, the events Stripe
has not delivered, a resend, and what the app's receiver answered to it.

The public Stripe API has no per-attempt delivery log (the dashboard has one). What an
operator can see through APIs is: the endpoint (status, URL), the events with
`delivery_success=false` and their `pending_webhooks`, and, while a tail of the Worker is
open, the receiver's own answer to a delivery (status, wall time, log lines). So a
delivery test resends one event with a tail open and reads both sides.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import ApiError

if TYPE_CHECKING:
    from ..platform import Platform

DEFAULT_WEBHOOK_PATH = "/webhooks/stripe"
STRIPE_TIMEOUT_S = 30.0  # Stripe gives up on a delivery after 30 s


def webhook_path(p: Platform) -> str:
    return str(p.setting("app.stripe_webhook_path", DEFAULT_WEBHOOK_PATH))


def iso(ts: float | int | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def app_endpoint(p: Platform) -> dict[str, Any] | None:
    """The Stripe webhook endpoint whose URL is this app's receiver."""
    want = p.app_url(webhook_path(p)).rstrip("/")
    for ep in p.stripe.webhook_endpoints():
        if str(ep.url).rstrip("/") == want:
            return {"id": ep.id, "url": ep.url, "status": ep.status}
    return None


def event_row(event: Any) -> dict[str, Any]:
    raw = event.data.object
    obj: dict[str, Any] = raw.to_dict() if hasattr(raw, "to_dict") else dict(raw or {})
    return {
        "id": event.id,
        "type": event.type,
        "created": iso(event.created),
        "pending_webhooks": int(event.pending_webhooks),
        "object": obj.get("id"),
        "customer": obj.get("customer"),
    }


def undelivered(p: Platform, since: float, types: list[str] | None = None) -> list[dict[str, Any]]:
    """Events since `since` still pending for some endpoint, oldest first."""
    rows = [event_row(e) for e in p.stripe.undelivered_events(since=since, types=types)]
    return sorted(rows, key=lambda r: (r["created"], r["id"]))


def resend_all(p: Platform, event_ids: list[str], endpoint_id: str) -> list[dict[str, Any]]:
    """POST /v1/events/{id}/retry for each event, oldest first; pending_webhooks after."""
    out = []
    for eid in event_ids:
        event = p.stripe.resend_event(eid, endpoint_id)
        out.append({"event": eid, "pending_webhooks": int(event.get("pending_webhooks", 0))})
    return out


def resend_preview(event_ids: list[str], endpoint: dict[str, Any]) -> dict[str, Any]:
    eid = endpoint["id"]
    return {
        "call": ", ".join(f"POST /v1/events/{e}/retry" for e in event_ids)
        + f" (webhook_endpoint={eid})",
        "stripe": " && ".join(
            f"stripe events resend {e} --webhook-endpoint {eid}" for e in event_ids
        ),
        "endpoint": endpoint["url"],
    }


# ---- a delivery test: resend one event while tailing the Worker --------------------------
@dataclass
class DeliveryTest:
    event_id: str
    endpoint_id: str
    answered: bool  # the retry call returned within the wait
    pending_after: int | None
    waited_s: float
    receiver: dict[str, Any] | None = None  # the receiver's invocation, from the tail
    error: str | None = None
    timed_out: bool = False  # the retry call gave up waiting for the receiver

    @property
    def status(self) -> int | None:
        return (self.receiver or {}).get("status")

    @property
    def delivered(self) -> bool:
        return self.answered and self.pending_after == 0

    def summary(self) -> dict[str, Any]:
        r = self.receiver or {}
        return {
            "event": self.event_id,
            "endpoint": self.endpoint_id,
            "retry answered": self.answered,
            "pending_webhooks after": self.pending_after,
            "waited_s": round(self.waited_s, 2),
            "timed out": self.timed_out,
            "receiver status": r.get("status", "-"),
            "receiver wall_ms": r.get("wall_ms", "-"),
            "receiver logs": r.get("logs", "-"),
            **({"error": self.error} if self.error else {}),
        }


def _tail_row(event: dict[str, Any]) -> dict[str, Any]:
    ev = event.get("event") or {}
    req = ev.get("request") or {}
    logs = []
    for line in event.get("logs") or []:
        parts = line.get("message") or []
        logs.append(" ".join(p if isinstance(p, str) else json.dumps(p) for p in parts))
    return {
        "url": req.get("url", ""),
        "method": req.get("method"),
        "status": (ev.get("response") or {}).get("status"),
        "outcome": event.get("outcome"),
        "wall_ms": event.get("wallTime"),
        "logs": " | ".join(logs),
        "exceptions": "; ".join(
            f"{x.get('name')}: {x.get('message')}" for x in event.get("exceptions") or []
        ),
    }


class _Tail:
    """A tail of the Worker (POST only) read in a thread until the receiver shows up."""

    def __init__(self, p: Platform, path: str) -> None:
        self.p, self.path = p, path
        self.found: dict[str, Any] | None = None
        self.ready = threading.Event()
        self.done = threading.Event()
        self.error: str | None = None
        self.session = p.cf.create_tail(p.worker, [{"method": ["POST"]}])
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from websockets.sync.client import connect

        try:
            with connect(self.session["url"], subprotocols=["trace-v1"], open_timeout=5) as ws:  # type: ignore[list-item]
                ws.send(json.dumps({"debug": False}))
                self.ready.set()
                while not self.done.is_set():
                    try:
                        message = ws.recv(timeout=0.2)
                    except TimeoutError:
                        continue
                    row = _tail_row(json.loads(message))
                    if row["url"].split("?")[0].endswith(self.path):
                        self.found = row
                        self.done.set()
        except Exception as exc:  # the tail is evidence, not a requirement
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready.set()

    def wait(self, seconds: float) -> dict[str, Any] | None:
        self.done.wait(seconds)
        return self.found

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=2)
        with contextlib.suppress(ApiError):
            self.p.cf.delete_tail(self.p.worker, self.session["id"])


def delivery_test(
    p: Platform, event_id: str, endpoint_id: str, wait_s: float = 3.0
) -> DeliveryTest:
    """Resend `event_id` to the endpoint with a tail open; wait at most `wait_s`.

    A retry that has not answered within `wait_s` means the receiver is still working:
    Stripe's own limit is 30 s, and a webhook handler should answer within 5 s.
    """
    from ..clients.stripe import Stripe

    tail = _Tail(p, webhook_path(p))
    tail.ready.wait(3)
    quick = Stripe.from_env(p.env, timeout=wait_s, max_network_retries=0)
    started = time.perf_counter()
    answered, pending, error, timed_out = False, None, None, False
    try:
        event = quick.resend_event(event_id, endpoint_id)
        answered, pending = True, int(event.get("pending_webhooks", 0))
    except ApiError as exc:
        error = str(exc)
        timed_out = "timeout" in error.lower().replace(" ", "") or "timed out" in error.lower()
    finally:
        quick.close()
    waited = time.perf_counter() - started
    receiver = tail.wait(1.5 if answered else 0.5)
    tail.close()
    if tail.error and receiver is None:
        error = (error + "; " if error else "") + f"tail: {tail.error}"
    return DeliveryTest(
        event_id, endpoint_id, answered, pending, waited, receiver, error, timed_out
    )
