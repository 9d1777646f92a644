"""health-check: probe a list of URLs for expected status, reachability and latency.

Works against any site. With no URLs given it probes the environment's app smoke
checks (`app.smoke` in params, e.g. `/health` answers 200 and `/manuscripts` 401).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..clients.probes import ProbeResult, probe
from ..environments import Environment

CAUSES = {
    "unreachable": "a URL did not answer (connection refused, DNS failure or timeout)",
    "wrong-status": "a URL answered with an unexpected HTTP status",
    "too-slow": "every URL answered as expected, but some over the latency budget",
}

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")


@dataclass(frozen=True)
class Target:
    method: str
    url: str
    expected_status: int


def parse_target(text: str) -> Target:
    """`URL`, `URL 401` or `POST URL 200`."""
    parts = text.split()
    method = "GET"
    if parts and parts[0].upper() in METHODS:
        method = parts.pop(0).upper()
    if not parts or len(parts) > 2 or not parts[0].startswith(("http://", "https://")):
        raise ValueError(
            f"{text!r} is not a probe target. Write 'URL', 'URL STATUS' or 'METHOD URL STATUS', "
            "e.g. 'https://api.example.com/health 200'."
        )
    status = 200
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError(f"{text!r}: the expected status must be a number, got {parts[1]!r}.")
        status = int(parts[1])
    return Target(method, parts[0], status)


def targets(env: Environment, urls: list[str]) -> list[Target]:
    if urls:
        return [parse_target(u) for u in urls]
    base = str(env.require("app.api_url")).rstrip("/")
    smoke = env.get("app.smoke") or [{"path": env.get("app.health_path", "/health"), "status": 200}]
    return [
        Target(
            str(s.get("method", "GET")).upper(), base + str(s["path"]), int(s.get("status", 200))
        )
        for s in smoke
    ]


def probe_all(items: list[Target], timeout_s: float, budget_ms: float) -> list[ProbeResult]:
    return [
        probe(
            t.url,
            method=t.method,
            expected_status=t.expected_status,
            timeout=timeout_s,
            budget_ms=budget_ms,
        )
        for t in items
    ]


def rows(results: list[ProbeResult]) -> list[dict[str, Any]]:
    return [
        {
            "url": r.url,
            "expected": "/".join(map(str, r.expected)),
            "status": r.status if r.status is not None else "-",
            "ms": round(r.elapsed_ms, 1) if r.elapsed_ms is not None else "-",
            "result": "ok"
            if r.ok
            else (r.error or ("over budget" if r.over_budget else "wrong status")),
        }
        for r in results
    ]


def diagnose(results: list[ProbeResult], budget_ms: float) -> tuple[str, list[str], str | None]:
    """(cause, evidence, remedy) — the worst problem wins: unreachable, wrong status, slow."""
    down = [r for r in results if r.status is None]
    wrong = [r for r in results if r.status is not None and r.status not in r.expected]
    slow = [r for r in results if r.status in r.expected and r.over_budget]
    if down:
        return (
            "unreachable",
            [f"{r.url}: {r.error}" for r in down],
            "Check DNS, the deployment and the platform status; run api-down for a Worker API.",
        )
    if wrong:
        return (
            "wrong-status",
            [
                f"{r.method} {r.url}: answered {r.status}, expected "
                f"{'/'.join(map(str, r.expected))} ({r.elapsed_ms:.0f} ms)"
                for r in wrong
            ],
            "Look at the failing endpoint's logs; a 5xx across endpoints calls for api-down, "
            "a single endpoint for high-error-rate.",
        )
    if slow:
        return (
            "too-slow",
            [f"{r.url}: {r.elapsed_ms:.0f} ms > budget {budget_ms:.0f} ms" for r in slow],
            "Run slow-responses to find the cause (indexes, upstreams, payload size).",
        )
    return (
        "healthy",
        [f"{len(results)} URL(s) answered as expected within {budget_ms:.0f} ms"],
        None,
    )
