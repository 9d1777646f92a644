"""api-down: the API answers 5xx (or nothing). Seed 000 Issue 1, seed 004 Production Down.

The order of the checks is the order of explanation: a Cloudflare outage explains
everything, then a missing secret (every request throws), then D1, then a deployment
the 5xx onset lines up with. Remedies: `rollback` to the version live before the
onset, `put-secret` from a value the operator provides by reference.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pandas as pd

from ..clients.probes import ProbeResult, probe
from ..errors import ApiError
from . import health_check
from . import incident_signals as sig

if TYPE_CHECKING:
    from ..clients.statuspage import Component, Incident
    from ..platform import Platform

CAUSES = {
    "bad-deploy": "the 5xx onset lines up with a deployment",
    "d1-unavailable": "the app's D1 database does not answer",
    "secret-missing": "a required Worker secret is absent",
    "cloudflare-outage": "Cloudflare reports an incident affecting Workers",
}
NO_REMEDY = {
    "d1-unavailable": "no operator fix: D1 is Cloudflare's; watch the status page, open a "
    "Cloudflare support ticket (D1 unavailable), post status updates",
    "cloudflare-outage": "wait for Cloudflare (usually under 15 min); post status updates",
}
PROFILES = ("manuscript", "peptalk")
SEVERITY = "P0"
PLATFORM_WORDS = ("worker", "d1", "api", "kv", "dns", "cdn")
DEPLOY_MATCH = timedelta(minutes=5)  # an onset up to this long after a deployment is its


# ---- evidence ------------------------------------------------------------------------
def probe_app(p: Platform, timeout_s: float = 3.0) -> list[ProbeResult]:
    """The smoke checks (health 200, /manuscripts 401 ...), in parallel, short timeout."""
    targets = health_check.targets(p.env, [])
    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        return list(
            pool.map(
                lambda t: probe(t.url, t.method, t.expected_status, timeout=timeout_s), targets
            )
        )


def is_down(probes: list[ProbeResult]) -> bool:
    return any(r.status is None or r.status >= 500 for r in probes)


def probe_rows(probes: list[ProbeResult]) -> list[str]:
    return [
        f"{r.method} {urlsplit(r.url).path}: "
        + (f"HTTP {r.status}" if r.status is not None else str(r.error))
        + f" (expected {'/'.join(map(str, r.expected))}, {r.elapsed_ms:.0f} ms)"
        for r in probes
    ]


@dataclass
class Outage:
    indicator: str = ""
    description: str = ""
    incidents: list[Incident] = field(default_factory=list)
    degraded: list[Component] = field(default_factory=list)
    error: str | None = None

    @property
    def relevant(self) -> list[Incident]:
        """Unresolved incidents on the products a Worker API runs on."""
        return [
            i
            for i in self.incidents
            if any(w in (c or "").lower() for c in [*i.components, i.name] for w in PLATFORM_WORDS)
        ]

    @property
    def active(self) -> bool:
        return bool(self.relevant) or self.indicator in ("major", "critical")

    def evidence(self) -> list[str]:
        out = [f"Cloudflare status: indicator {self.indicator} ({self.description})"]
        out += [
            f"unresolved incident: {i.name} ({i.status}, impact {i.impact}, since "
            f"{i.created_at}); affects {', '.join(i.components) or 'unspecified components'}"
            for i in self.relevant
        ]
        out += [f"component {c.name}: {c.status}" for c in self.degraded]
        return out


def check_status(p: Platform) -> Outage:
    try:
        st = p.status.status()
        return Outage(
            st.indicator,
            st.description,
            p.status.unresolved_incidents(),
            [c for c in p.status.components() if not c.operational],
        )
    except ApiError as exc:
        return Outage(error=str(exc))


def check_secrets(p: Platform) -> tuple[list[str], list[str]]:
    """(present, missing): the Worker's secrets against params app.required_secrets."""
    present = sorted(s["name"] for s in p.cf.secrets(p.worker))
    required = list(p.setting("app.required_secrets") or [])
    return present, [n for n in required if n not in present]


@dataclass(frozen=True)
class D1Check:
    ok: bool
    detail: str  # the result, or the API's error code and message
    status: int | None = None
    code: Any = None


def check_d1(p: Platform) -> D1Check:
    """`SELECT 1` on the app's database through the D1 query API."""
    try:
        result = p.cf.d1_query(p.database, "SELECT 1")
        ms = ((result[0].get("meta") or {}).get("duration")) if result else None
        return D1Check(True, f"SELECT 1 on {p.database} answered in {ms} ms")
    except ApiError as exc:
        errors = exc.errors or []
        message = "; ".join(f"{e.get('message')} (code {e.get('code')})" for e in errors) or str(
            exc
        )
        return D1Check(
            False,
            f"SELECT 1 on {p.database}: HTTP {exc.status}: {message}",
            exc.status,
            exc.code,
        )


@dataclass
class Traffic:
    rows: list[dict[str, Any]]
    frame: pd.DataFrame
    onset: sig.Onset | None
    deployments: list[dict[str, Any]]
    versions: list[dict[str, Any]]


def check_traffic(p: Platform, window_minutes: int) -> Traffic:
    until = datetime.now(UTC)
    since = until - timedelta(minutes=window_minutes)
    rows = sig.minute_rows(p, since, until)
    frame = sig.series(rows, since, until)
    return Traffic(
        rows, frame, sig.onset(frame), p.cf.deployments(p.worker), p.cf.versions(p.worker)
    )


# ---- the deployment the onset lines up with -------------------------------------------
def _when(text: str) -> pd.Timestamp:
    at = pd.Timestamp(text)
    return at.tz_convert("UTC") if at.tzinfo else at.tz_localize("UTC")


def single_version(deployment: dict[str, Any]) -> str | None:
    shares = deployment.get("versions") or []
    return str(shares[0]["version_id"]) if len(shares) == 1 else None


@dataclass(frozen=True)
class Correlation:
    deployment: dict[str, Any]  # the deployment the onset follows
    version_id: str
    version_number: Any
    deployed_at: pd.Timestamp
    onset: sig.Onset
    serving_now: bool  # that deployment is still the one serving
    good: dict[str, Any] | None  # the deployment live before it (the rollback target)
    good_version_id: str | None
    good_version_number: Any
    bad_rate: dict[str, float]
    good_rate: dict[str, float]

    def evidence(self) -> list[str]:
        d = self.deployment
        msg = (d.get("annotations") or {}).get("workers/message", "")
        out = [
            f"5xx onset at {self.onset.at:%H:%M} UTC: error rate {sig.pct(self.onset.before_rate)} "
            f"before ({self.onset.before_requests} requests), {sig.pct(self.onset.after_rate)} "
            f"after ({self.onset.after_requests} requests) — GraphQL workersInvocationsAdaptive by minute",
            f"deployment {d['id']} at {self.deployed_at:%Y-%m-%d %H:%M:%S} UTC "
            f"({(self.onset.at - self.deployed_at.floor('min')) / pd.Timedelta(minutes=1):.0f} min "
            f'before the onset minute), by {d.get("author_email", "?")}: "{msg}"',
            f"it deployed version {self.version_id} (number {self.version_number}) at 100%: "
            f"{int(self.bad_rate.get('requests', 0))} requests, "
            f"{sig.pct(self.bad_rate.get('rate', 0.0))} errors",
        ]
        if self.good_version_id:
            out.append(
                f"version live before it: {self.good_version_id} (number "
                f"{self.good_version_number}): {int(self.good_rate.get('requests', 0))} requests, "
                f"{sig.pct(self.good_rate.get('rate', 0.0))} errors in the window before the onset"
            )
        return out


def correlate(traffic: Traffic) -> Correlation | None:
    """The latest deployment up to DEPLOY_MATCH before the onset minute (or within it)."""
    on = traffic.onset
    if on is None:
        return None
    deps = sorted(traffic.deployments, key=lambda d: _when(d["created_on"]), reverse=True)
    numbers = {v["id"]: v.get("number") for v in traffic.versions}
    for i, d in enumerate(deps):
        at = _when(d["created_on"])
        if not (on.at - DEPLOY_MATCH <= at < on.at + pd.Timedelta(minutes=1)):
            continue
        vid = single_version(d)
        if vid is None:
            continue
        good = next((g for g in deps[i + 1 :] if single_version(g)), None)
        good_vid = single_version(good) if good else None
        bad_rate = sig.version_rates(traffic.rows, since=on.at).get(vid, {})
        good_rate = (
            sig.version_rates(traffic.rows, until=on.at).get(good_vid, {}) if good_vid else {}
        )
        return Correlation(
            d, vid, numbers.get(vid), at, on, deps[0]["id"] == d["id"], good, good_vid,
            numbers.get(good_vid) if good_vid else None, bad_rate, good_rate,
        )  # fmt: skip
    return None


# ---- the verdict ------------------------------------------------------------------------
@dataclass
class Facts:
    probes: list[ProbeResult]
    outage: Outage
    secrets_missing: list[str]
    d1: D1Check
    traffic: Traffic
    correlation: Correlation | None
    threshold: float = 0.05


def diagnose(f: Facts) -> tuple[str, list[str], str | None]:
    """(cause, evidence, remedy) in the seed's order: outage, secrets, D1, deployment."""
    down = is_down(f.probes)
    seen = probe_rows(f.probes)
    if down and f.outage.active:
        return (
            "cloudflare-outage",
            seen + f.outage.evidence(),
            "Nothing to roll back: wait for Cloudflare (usually under 15 min), post a status "
            "update now and every 30 min, and re-run this runbook when the incident resolves.",
        )
    if f.secrets_missing:
        names = ", ".join(f.secrets_missing)
        return (
            "secret-missing",
            [
                f"required secret(s) missing from the Worker: {names} (npx wrangler secret list)",
                *seen,
            ],
            f"Put the secret back: approve put-secret (the value comes from the reference in "
            f"app.secret_sources, or -p secret_value_ref=env:NAME). Missing: {names}.",
        )
    if not f.d1.ok:
        return (
            "d1-unavailable",
            [f.d1.detail, *seen],
            "No operator fix: check the Cloudflare status page for D1, open a support ticket "
            "(D1 unavailable), and post status updates until it answers again.",
        )
    c = f.correlation
    if down and c is not None and c.serving_now:
        target = (
            f"version {c.good_version_id} (number {c.good_version_number})"
            if c.good_version_id
            else "the previous version"
        )
        return "bad-deploy", c.evidence() + seen, f"Roll back to {target}: approve rollback."
    if down:
        extra = (
            [
                f"5xx since {f.traffic.onset.at:%H:%M} UTC ({sig.pct(f.traffic.onset.after_rate)}); "
                "no deployment in the 5 minutes before it"
            ]
            if f.traffic.onset
            else ["no error onset in the analytics window (widen window_minutes)"]
        )
        return "unknown", seen + extra, "Tail the Worker (npx wrangler tail) and escalate."
    recent = f.traffic.frame.tail(5)
    n = int(recent["requests"].sum())
    rate = float(recent["errors"].sum()) / n if n else 0.0
    if rate > f.threshold:
        return (
            "unknown",
            [*seen, f"the API answers, but {sig.pct(rate)} of the last 5 minutes' requests failed"],
            "Run high-error-rate: the API is up but failing some requests.",
        )
    return (
        "healthy",
        [*seen, f"last 5 minutes: {n} requests, {sig.pct(rate)} errors"],
        None,
    )
