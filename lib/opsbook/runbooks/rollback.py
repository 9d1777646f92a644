"""rollback: seed 000 "Emergency Rollback" — go back to the last known-good version.

Health per version comes from Workers analytics (GraphQL `workersInvocationsAdaptive`
grouped by `scriptVersion`): invocations, errors (outcome not ok) and the wall-time P90 /
P99 (the analytics have no P95; the P95 of the live probes is in the verification).
A version is *known good* when it served traffic in the window with an error rate under
`thresholds.error_rate` and a P90 under `thresholds.p95_ms` (P90 <= P95: a version whose
P90 is over the P95 budget is over it for sure). A version with no traffic in the window
is *unknown*, never good.

The rollback deploys the target version at 100 % (`POST .../deployments`, what
`wrangler rollback <id>` does). Cloudflare refuses with 10220 when a secret changed since
that version was created; only inside the approved action is it retried with
`?force=true` (the current secrets are kept), and the result says so.

Shared with deploy (its watch and its proposed rollback).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..clients.probes import ProbeResult
from ..errors import ConflictError
from . import health_check as hc
from .deploys import rollback_preview, version_of

if TYPE_CHECKING:
    from ..platform import Platform

CAUSES = {
    "bad-version": "the version serving now fails (smoke checks, or its error rate or latency "
    "over the thresholds) and an earlier version was known good: roll back to it",
    "requested": "a rollback to a named version was requested (version_id)",
    "no-known-good": "the version serving now fails and no earlier version was known good "
    "in the window: there is nothing safe to roll back to",
}
NO_REMEDY = {
    "no-known-good": "no earlier version served traffic healthily in the window: fix forward "
    "(deploy a fix) or widen window_hours and roll back by hand to a version you trust",
}
PROFILES = ("manuscript", "peptalk")

VERSION_QUERY = """query($acct:String!,$s:Time!,$e:Time!,$w:String!){viewer{accounts(filter:{accountTag:$acct}){
 workersInvocationsAdaptive(limit:1000,filter:{scriptName:$w,datetime_geq:$s,datetime_leq:$e}){
  dimensions{scriptVersion} sum{requests errors} quantiles{wallTimeP90 wallTimeP99}}}}}"""


def gql_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Thresholds:
    error_rate: float
    p95_ms: float

    @classmethod
    def of(cls, p: Platform) -> Thresholds:
        return cls(
            float(p.setting("thresholds.error_rate.value", 0.05)),
            float(p.setting("thresholds.p95_ms.value", 2000)),
        )


@dataclass(frozen=True)
class VersionHealth:
    version_id: str
    requests: int
    errors: int
    p90_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def good(self, t: Thresholds) -> bool | None:
        """True / False, or None (unknown) without traffic."""
        if not self.requests:
            return None
        return self.rate < t.error_rate and self.p90_ms < t.p95_ms

    def text(self) -> str:
        return (
            f"{self.requests} invocations, {self.errors} errors ({self.rate:.1%}), "
            f"wall P90 {self.p90_ms:.0f} ms, P99 {self.p99_ms:.0f} ms"
        )


def version_health(
    p: Platform, since: datetime, until: datetime | None = None
) -> dict[str, VersionHealth]:
    until = until or datetime.now(UTC)
    data = p.cf.graphql(
        VERSION_QUERY,
        {"acct": p.cf.account_id, "s": gql_time(since), "e": gql_time(until), "w": p.worker},
    )
    accounts = (data.get("viewer") or {}).get("accounts") or [{}]
    out: dict[str, VersionHealth] = {}
    for r in accounts[0].get("workersInvocationsAdaptive") or []:
        v = str(r["dimensions"].get("scriptVersion") or "")
        q = r.get("quantiles") or {}
        out[v] = VersionHealth(
            v,
            int(r["sum"]["requests"]),
            int(r["sum"]["errors"]),
            float(q.get("wallTimeP90") or 0) / 1000,  # µs -> ms
            float(q.get("wallTimeP99") or 0) / 1000,
        )
    return out


def numbers(p: Platform) -> dict[str, Any]:
    """version id -> its number (v1, v2, ...) and tag, from the versions list."""
    return {
        str(v["id"]): f"{v.get('number')}"
        + (f" ({tag})" if (tag := (v.get("annotations") or {}).get("workers/tag")) else "")
        for v in p.cf.versions(p.worker)
    }


def deployment_rows(
    deployments: Sequence[dict[str, Any]],
    health: dict[str, VersionHealth],
    names: dict[str, Any],
    t: Thresholds,
) -> list[dict[str, Any]]:
    rows = []
    for i, d in enumerate(deployments):
        v = str(version_of(d) or "")
        h = health.get(v)
        good = h.good(t) if h else None
        rows.append(
            {
                "deployment": str(d.get("id", ""))[:8],
                "created_on": d.get("created_on"),
                "version": v,
                "number": names.get(v, "?"),
                "message": (d.get("annotations") or {}).get("workers/message", ""),
                "serving": i == 0,
                "traffic in window": h.text() if h else "no traffic in the window",
                "health": {True: "good", False: "failing", None: "unknown"}[good],
            }
        )
    return rows


def smoke(p: Platform, rounds: int = 1, timeout_s: float = 10.0) -> list[ProbeResult]:
    """The environment's smoke checks (`app.smoke`), `rounds` times."""
    targets = hc.targets(p.env, [])
    return [r for _ in range(rounds) for r in hc.probe_all(targets, timeout_s, 10_000)]


def smoke_text(results: Sequence[ProbeResult]) -> list[str]:
    return [
        f"{r.method} {r.url} -> {r.status if r.status is not None else r.error} "
        f"(expected {'/'.join(map(str, r.expected))}, {r.elapsed_ms:.0f} ms)"
        for r in results
    ]


def last_known_good(
    deployments: Sequence[dict[str, Any]], health: dict[str, VersionHealth], t: Thresholds
) -> str | None:
    """The newest earlier deployment's version, other than the serving one, known good."""
    if not deployments:
        return None
    current = version_of(deployments[0])
    for d in deployments[1:]:
        v = version_of(d)
        if v and v != current and (h := health.get(v)) is not None and h.good(t):
            return str(v)
    return None


@dataclass(frozen=True)
class Diagnosis:
    cause: str
    evidence: list[str]
    target: str | None
    remedy: str | None


def diagnose(
    deployments: Sequence[dict[str, Any]],
    health: dict[str, VersionHealth],
    probes: Sequence[ProbeResult],
    t: Thresholds,
    requested: str = "",
    known_versions: Sequence[str] = (),
) -> Diagnosis:
    current = str(version_of(deployments[0]) or "") if deployments else ""
    h = health.get(current)
    failed_probes = [r for r in probes if not r.ok]
    now = [
        f"serving: version {current}: " + (h.text() if h else "no traffic in the window"),
        f"smoke checks now: {len(probes) - len(failed_probes)}/{len(probes)} as expected"
        + ("; failing: " + "; ".join(smoke_text(failed_probes)) if failed_probes else ""),
    ]
    if requested:
        if requested not in known_versions:
            raise ValueError(
                f"version_id={requested!r} is not a deployable version of this worker. "
                f"Known: {', '.join(known_versions)}"
            )
        if requested == current:
            raise ValueError(f"version_id={requested!r} is the version serving now")
        rh = health.get(requested)
        return Diagnosis(
            "requested",
            [*now, f"requested: version {requested}: " + (rh.text() if rh else "no traffic")],
            requested,
            f"Roll back to version {requested} (approve `rollback`).",
        )
    failing = bool(failed_probes) or (h is not None and h.good(t) is False)
    if not failing:
        return Diagnosis("healthy", now, None, None)
    target = last_known_good(deployments, health, t)
    if target is None:
        return Diagnosis("no-known-good", now, None, NO_REMEDY["no-known-good"])
    return Diagnosis(
        "bad-version",
        [*now, f"last known good: version {target}: {health[target].text()}"],
        target,
        f"Roll back to version {target} (approve `rollback`).",
    )


def preview(p: Platform, version_id: str, message: str) -> dict[str, Any]:
    out = rollback_preview(p, version_id, message)
    out["on 10220"] = (
        "a secret changed since that version: retried with ?force=true inside the approved "
        "action (the current secrets are kept), as wrangler does"
    )
    return out


def apply(p: Platform, version_id: str, message: str) -> dict[str, Any]:
    """The approved rollback: deploy `version_id` at 100 %; force past a 10220 only here."""
    forced = "no (no 10220 refusal)"
    try:
        made = p.cf.create_deployment(p.worker, version_id, message)
    except ConflictError as exc:
        made = p.cf.create_deployment(p.worker, version_id, message, force=True)
        forced = f"Cloudflare refused with 10220 ({exc}); retried with ?force=true"
    return {
        "deployment": made.get("id"),
        "version_id": version_id,
        "forced": forced,
        "at": gql_time(datetime.now(UTC)),
    }


def verify(
    p: Platform, version_id: str, since: datetime, t: Thresholds, rounds: int = 3
) -> tuple[bool, list[str]]:
    """Fresh evidence after the rollback: the target serves, the smoke checks pass
    `rounds` times, and its analytics since the rollback are under the thresholds."""
    serving = str(version_of(p.cf.deployments(p.worker)[0]) or "")
    probes = smoke(p, rounds)
    after = version_health(p, since - timedelta(seconds=1)).get(version_id)
    ok = serving == version_id and all(r.ok for r in probes)
    if after is not None and after.good(t) is False:
        ok = False
    evidence = [
        f"serving now: version {serving}",
        *smoke_text(probes),
        f"since the rollback: version {version_id}: "
        + (after.text() if after else "no invocations in the analytics yet"),
    ]
    return ok, evidence
