"""A bounded live tail of the Worker (`wrangler tail --format json`) with an early stop.

`tail_until(p, seconds, filters, stop=..., during=...)` opens a tail session, reads
TraceItems until `seconds` pass or `stop(events)` says the evidence is conclusive, and
deletes the session. `during` runs once the socket is open (a request or a re-run whose
logs the tail must catch). Shared by pipeline-failed and security-incident.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from ..platform import Platform

Event = dict[str, Any]


def tail_until(
    p: Platform,
    seconds: float,
    filters: list[dict[str, Any]] | None = None,
    *,
    stop: Callable[[list[Event]], bool] | None = None,
    during: Callable[[], Any] | None = None,
) -> tuple[list[Event], Any]:
    """(events, what `during` returned). Raises ApiError when the tail cannot open."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    session = p.cf.create_tail(p.worker, filters)
    events: list[Event] = []
    result: Any = None
    try:
        with connect(session["url"], subprotocols=["trace-v1"], open_timeout=10) as ws:  # type: ignore[list-item]
            ws.send(json.dumps({"debug": False}))
            worker: threading.Thread | None = None
            box: list[Any] = []
            if during is not None:
                worker = threading.Thread(target=lambda: box.append(_call(during)), daemon=True)
                worker.start()
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                try:
                    events.append(json.loads(ws.recv(timeout=min(left, 0.5))))
                except TimeoutError:
                    pass
                except ConnectionClosed:
                    break
                done = worker is None or not worker.is_alive()
                if done and stop is not None and stop(events):
                    break
            if worker is not None:
                worker.join(max(0.0, deadline - time.monotonic()) + 30)
                result = box[0] if box else None
    finally:
        with contextlib.suppress(httpx.HTTPError):
            p.cf.delete_tail(p.worker, session["id"])
    if isinstance(result, BaseException):
        raise result
    return events, result


def _call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:  # re-raised in the caller's thread
        return exc


def log_messages(event: Event) -> list[tuple[str, Any]]:
    """[(first part of the message as text, the second part)] of one TraceItem's logs."""
    out: list[tuple[str, Any]] = []
    for line in event.get("logs") or []:
        msg = line.get("message")
        parts = msg if isinstance(msg, list) else [msg]
        head = str(parts[0]) if parts else ""
        out.append((head, parts[1] if len(parts) > 1 else None))
    return out


def request_of(event: Event) -> dict[str, Any]:
    req = ((event.get("event") or {}).get("request")) or {}
    return req if isinstance(req, dict) else {}
