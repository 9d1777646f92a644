"""HTTP probes of the app itself, with timing: is it up, how fast, does CORS allow the frontend.

    probe(url, method="GET", expected_status=200, timeout=10, budget_ms=None, headers, json)
        -> ProbeResult(url, method, status, ok, elapsed_ms, error, headers, body)
    preflight(url, origin, method="POST") -> PreflightResult (allowed, allow_origin, ...)

A probe never raises for an HTTP answer or a network failure: the result says what
happened (`error` is set when there was no answer at all).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class ProbeResult:
    url: str
    method: str
    status: int | None
    ok: bool
    elapsed_ms: float
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    expected: tuple[int, ...] = (200,)
    over_budget: bool = False

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def probe(
    url: str,
    method: str = "GET",
    expected_status: int | Iterable[int] = 200,
    timeout: float = 10.0,
    budget_ms: float | None = None,
    headers: dict[str, str] | None = None,
    json: Any = None,
    client: httpx.Client | None = None,
) -> ProbeResult:
    expected = (expected_status,) if isinstance(expected_status, int) else tuple(expected_status)
    own = client is None
    http = client or httpx.Client(timeout=timeout, follow_redirects=False)
    started = time.perf_counter()
    try:
        resp = http.request(method, url, headers=headers, json=json, timeout=timeout)
        elapsed = (time.perf_counter() - started) * 1000
    except httpx.HTTPError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "unreachable"
        return ProbeResult(url, method, None, False, elapsed, f"{kind}: {exc}", expected=expected)
    finally:
        if own:
            http.close()
    over = budget_ms is not None and elapsed > budget_ms
    ok = resp.status_code in expected and not over
    return ProbeResult(
        url,
        method,
        resp.status_code,
        ok,
        elapsed,
        None,
        {k.lower(): v for k, v in resp.headers.items()},
        resp.text[:4000],
        expected,
        over,
    )


@dataclass(frozen=True)
class PreflightResult:
    url: str
    origin: str
    status: int | None
    allowed: bool
    allow_origin: str | None
    allow_methods: str | None
    allow_headers: str | None
    elapsed_ms: float
    error: str | None = None


def preflight(
    url: str,
    origin: str,
    method: str = "POST",
    request_headers: str = "content-type,authorization",
    timeout: float = 10.0,
) -> PreflightResult:
    """An OPTIONS preflight as a browser sends it; `allowed` when the origin is echoed back."""
    res = probe(
        url,
        "OPTIONS",
        expected_status=(200, 204),
        timeout=timeout,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": request_headers,
        },
    )
    allow = res.headers.get("access-control-allow-origin")
    return PreflightResult(
        url,
        origin,
        res.status,
        res.status in (200, 204) and allow in (origin, "*"),
        allow,
        res.headers.get("access-control-allow-methods"),
        res.headers.get("access-control-allow-headers"),
        res.elapsed_ms,
        res.error,
    )
