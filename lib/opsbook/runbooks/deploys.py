"""Deployments as evidence and as a remedy: did the symptom begin with a deployment,
and the rollback to the version before it (what `wrangler rollback` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from .. import analysis

if TYPE_CHECKING:
    from ..platform import Platform


@dataclass(frozen=True)
class Onset:
    at: pd.Timestamp
    before: float
    after: float
    deployment: dict[str, Any] | None  # the deployment the onset follows, if any
    lag_minutes: float | None

    @property
    def version_id(self) -> str | None:
        if not self.deployment:
            return None
        return ((self.deployment.get("versions") or [{}])[0]).get("version_id")


def version_of(deployment: dict[str, Any]) -> str | None:
    return ((deployment.get("versions") or [{}])[0]).get("version_id")


def onset(
    series: pd.DataFrame,
    deployments: Sequence[dict[str, Any]],
    *,
    min_jump: float = 0.02,
    window: int = 5,
    match_minutes: float = 30,
) -> Onset | None:
    """The largest rise of the error rate, lined up with the deployment just before it."""
    points = analysis.change_points(
        series, deployments, min_jump=min_jump, window=window, match_minutes=match_minutes
    )
    if not points:
        return None
    best = max(points, key=lambda c: c.after - c.before)
    return Onset(best.at, best.before, best.after, best.deployment, best.lag_minutes)


def rollback_target(
    deployments: Sequence[dict[str, Any]], bad_deployment_id: str
) -> dict[str, Any] | None:
    """The deployment before `bad_deployment_id` whose single version served 100 %."""
    ids = [d.get("id") for d in deployments]
    if bad_deployment_id not in ids:
        return None
    for d in deployments[ids.index(bad_deployment_id) + 1 :]:
        versions = d.get("versions") or []
        if len(versions) == 1 and float(versions[0].get("percentage", 0)) >= 100:
            return d
    return None


def rollback_preview(p: Platform, version_id: str, message: str) -> dict[str, Any]:
    return {
        "call": f"POST /accounts/{p.cf.account_id}/workers/scripts/{p.worker}/deployments",
        "body": {
            "strategy": "percentage",
            "versions": [{"version_id": version_id, "percentage": 100}],
            "annotations": {"workers/message": message},
        },
        "wrangler": f'npx wrangler rollback {version_id} -m "{message}" -y',
    }


def rollback(p: Platform, version_id: str, message: str) -> dict[str, Any]:
    """Deploy `version_id` at 100 % (force past a changed secret, as wrangler does)."""
    made = p.cf.rollback(p.worker, version_id, message, force=True)
    return {"deployment": made.get("id"), "version_id": version_id, "message": message}


def error_onset(
    p: Platform, minutes: int
) -> tuple[pd.DataFrame, list[dict[str, Any]], Onset | None]:
    """The worker's per-minute error series (GraphQL), its deployments, and the onset."""
    from .signals import error_series, invocations

    series = error_series(invocations(p, minutes))
    deployments = p.cf.deployments(p.worker)
    return series, deployments, onset(series, deployments)


@dataclass(frozen=True)
class VersionErrors:
    version_id: str
    requests: int
    errors: int

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def text(self) -> str:
        return f"{self.errors} errors in {self.requests} invocations ({self.rate:.1%})"


def version_errors(frame: pd.DataFrame) -> dict[str, VersionErrors]:
    """Analytics rows with a scriptVersion column -> errors per version."""
    if frame.empty:
        return {}
    per = frame.groupby("scriptVersion")[["requests", "errors"]].sum()
    return {
        str(v): VersionErrors(str(v), int(r["requests"]), int(r["errors"]))
        for v, r in per.iterrows()
    }


@dataclass(frozen=True)
class RollbackPlan:
    bad: dict[str, Any]  # the deployment serving now, with which the errors began
    target: dict[str, Any]  # the deployment to go back to
    now: VersionErrors
    before: VersionErrors

    @property
    def target_version(self) -> str:
        return str(version_of(self.target))

    def evidence(self) -> str:
        message = (self.bad.get("annotations") or {}).get("workers/message", "")
        return (
            f"the errors began with deployment {self.bad.get('id')} at "
            f"{pd.Timestamp(self.bad['created_on']):%H:%M} UTC (version {self.now.version_id}, "
            f"'{message}'): {self.now.text()}; the version before it, "
            f"{self.before.version_id}: {self.before.text()}"
        )


def rollback_plan(
    deployments: Sequence[dict[str, Any]],
    per_version: dict[str, VersionErrors],
    *,
    min_rate: float,
    failing_versions: Sequence[str] = (),
) -> RollbackPlan | None:
    """Roll back only when the deployment serving now is where the errors began: its
    version fails at `min_rate` or more, at least 5x the rate of the version before it,
    and (when known) the failing invocations ran it."""
    if not deployments:
        return None
    current = deployments[0]
    target = rollback_target(deployments, str(current.get("id")))
    now_v, before_v = version_of(current), version_of(target) if target else None
    if target is None or now_v is None or before_v is None or now_v == before_v:
        return None
    if failing_versions and now_v not in failing_versions:
        return None
    now, before = per_version.get(now_v), per_version.get(before_v)
    if now is None or now.rate < min_rate:
        return None
    before = before or VersionErrors(before_v, 0, 0)
    if before.requests and now.rate < 5 * before.rate:
        return None
    return RollbackPlan(current, target, now, before)
