"""deploy: seed 000 "Standard Deployment" — deploy an uploaded version, verify, watch.

1. Pre-checks: the version exists and is not the one serving; the app is healthy now
   (smoke checks); with `app_repo`, the app's recorded test result passes and is newer
   than its last commit.
2. Deploy (guarded `deploy`, reversible): `POST .../deployments` with the version at
   100 %, what `npx wrangler versions deploy <id>@100% -y` does.
3. Verify: the smoke checks (`app.smoke`: `/manuscripts` answers 401 for the manuscript
   app, `/health` 200).
4. Watch for `watch_minutes`: a live tail of the worker while the smoke checks are
   probed every few seconds, then the analytics of the new version since the deploy.
   Over `thresholds.error_rate` or `thresholds.p95_ms`: `degraded`, and the rollback to
   the version serving before is proposed (guarded `rollback`).
5. The changelog (`changelog.md` in the archive, see `changelog`) gets one line per
   applied deploy or rollback.

The test result file is `test-results/junit.xml` in the app repository (JUnit XML, what
`vitest --reporter=junit --outputFile=test-results/junit.xml` and most runners write):
it must exist, hold at least one test, no failure or error, and be modified after the
repository's last commit (`git log -1 --format=%cI`): a result older than the code it
claims to test proves nothing.
"""

from __future__ import annotations

import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import ConflictError
from . import rollback as rb
from .deploys import version_of
from .signals import LiveTail

if TYPE_CHECKING:
    from ..clients.probes import ProbeResult
    from ..platform import Platform

CAUSES = {
    "predeploy-failed": "a pre-check failed (the version, the app's health now, the app's "
    "test result) or Cloudflare refused the deploy (10220): nothing was deployed",
    "nothing-to-deploy": "no uploaded version newer than the one serving: nothing to deploy",
    "deploy-pending": "the pre-checks passed and the deploy was previewed, not approved: "
    "nothing changed",
    "degraded": "after the deploy, the smoke checks failed or the error rate or latency "
    "went over the thresholds: roll back",
}
NO_REMEDY = {
    "predeploy-failed": "fix what the pre-check names (tests, the app's health) and run again",
    "nothing-to-deploy": "upload a version first (npx wrangler versions upload)",
    "deploy-pending": "approve `deploy` to apply",
}
PROFILES = ("manuscript", "peptalk")
TEST_RESULT = "test-results/junit.xml"


# ---- which version ----------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    version_id: str | None
    serving: str | None
    evidence: list[str]
    problem: str | None  # why it cannot be deployed


def target(p: Platform, version_id: str = "") -> Target:
    """The version to deploy: `version_id`, or the newest uploaded version never deployed."""
    versions = p.cf.versions(p.worker)  # newest first
    deployments = p.cf.deployments(p.worker)
    serving = str(version_of(deployments[0])) if deployments else None
    deployed = {version_of(d) for d in deployments}
    names = {str(v["id"]): v for v in versions}
    if version_id:
        if version_id not in names:
            return Target(None, serving, [], f"version {version_id} is not a deployable version")
        if version_id == serving:
            return Target(
                version_id, serving, [], f"version {version_id} is already the one serving"
            )
        chosen = names[version_id]
    else:
        number = {str(v["id"]): int(v.get("number") or 0) for v in versions}
        floor = number.get(serving or "", 0)
        fresh = [v for v in versions if v["id"] not in deployed and number[v["id"]] > floor]
        if not fresh:
            return Target(
                None, serving, [f"no version newer than the one serving ({serving})"], None
            )
        chosen = max(fresh, key=lambda v: number[str(v["id"])])
    notes = chosen.get("annotations") or {}
    meta = chosen.get("metadata") or {}
    return Target(
        str(chosen["id"]),
        serving,
        [
            f"to deploy: version {chosen['id']} (number {chosen.get('number')}, "
            f"tag {notes.get('workers/tag', '-')}, uploaded {meta.get('created_on', '?')}, "
            f"'{notes.get('workers/message', '')}')",
            f"serving now: version {serving}",
        ],
        None,
    )


# ---- the app's test result ----------------------------------------------------------------
def recorded_tests(repo: str | Path) -> tuple[bool, list[str]]:
    """(passed, evidence) for `<repo>/test-results/junit.xml` against the last commit."""
    root = Path(repo).expanduser()
    report = root / TEST_RESULT
    if not report.is_file():
        return False, [
            f"no recorded test result at {report}: run the tests with a JUnit reporter first"
        ]
    try:
        tree = ET.parse(report).getroot()
    except ET.ParseError as exc:
        return False, [f"{report} is not JUnit XML: {exc}"]
    suites = [tree] if tree.tag == "testsuite" else tree.findall("testsuite")
    counts = {
        k: sum(int(s.get(k, 0) or 0) for s in suites)
        for k in ("tests", "failures", "errors", "skipped")
    }
    evidence = [
        f"{TEST_RESULT}: {counts['tests']} tests, {counts['failures']} failures, "
        f"{counts['errors']} errors, {counts['skipped']} skipped"
    ]
    ok = counts["tests"] > 0 and counts["failures"] == 0 and counts["errors"] == 0
    written = datetime.fromtimestamp(report.stat().st_mtime, UTC)
    git = subprocess.run(
        ["git", "-C", str(root), "log", "-1", "--format=%cI %h"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if git.returncode != 0 or not git.stdout.strip():
        return False, [*evidence, f"{root} is not a git repository with a commit: {git.stderr}"]
    stamp, commit = git.stdout.split()
    committed = datetime.fromisoformat(stamp)
    fresh = written >= committed
    evidence.append(
        f"result written {written:%Y-%m-%d %H:%M:%S} UTC; last commit {commit} at "
        f"{committed.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        + ("" if fresh else ": the result is older than the code, run the tests again")
    )
    return ok and fresh, evidence


# ---- the deploy ---------------------------------------------------------------------------
def message_for(version_id: str, message: str) -> str:
    return message or f"opsbook deploy {version_id}"


def preview(p: Platform, version_id: str, message: str) -> dict[str, Any]:
    msg = message_for(version_id, message)
    return {
        "call": f"POST /accounts/{p.cf.account_id}/workers/scripts/{p.worker}/deployments",
        "body": {
            "strategy": "percentage",
            "versions": [{"version_id": version_id, "percentage": 100}],
            "annotations": {"workers/message": msg},
        },
        "wrangler": f'npx wrangler versions deploy {version_id}@100% -y --name {p.worker} -m "{msg}"',
        "undo": "npx wrangler rollback <the version serving before> -m ... (or this runbook's `rollback`)",
    }


def apply(p: Platform, version_id: str, message: str) -> dict[str, Any]:
    """Deploy at 100 %. A 10220 refusal is reported, not forced: deploying a version
    uploaded before a secret changed is a decision for a person."""
    try:
        made = p.cf.create_deployment(p.worker, version_id, message_for(version_id, message))
    except ConflictError as exc:
        raise ConflictError(
            f"Cloudflare refused the deploy ({exc}): a secret changed after version "
            f"{version_id} was uploaded. Upload the version again, or deploy by hand."
        ) from exc
    return {
        "deployment": made.get("id"),
        "version_id": version_id,
        "at": rb.gql_time(datetime.now(UTC)),
    }


# ---- the watch ----------------------------------------------------------------------------
@dataclass
class Watch:
    version_id: str
    since: datetime
    probes: list[ProbeResult]
    tail: pd.DataFrame
    analytics: rb.VersionHealth | None
    rounds: int = 1

    def probe_failures(self) -> list[ProbeResult]:
        return [r for r in self.probes if r.status is None or r.status >= 500]

    def tail_stats(self) -> tuple[int, int, float | None]:
        """(events of the new version, 5xx or not-ok among them, their wall-time P95 ms)."""
        t = self.tail
        if t.empty:
            return 0, 0, None
        mine = t[t["version"] == self.version_id] if "version" in t else t
        if mine.empty:
            return 0, 0, None
        bad = (mine["status"].fillna(0).astype(int) >= 500) | (mine["outcome"] != "ok")
        return len(mine), int(bad.sum()), float(mine["wall_ms"].quantile(0.95))

    def probe_p95(self) -> float | None:
        times = [r.elapsed_ms for r in self.probes if r.status is not None]
        return float(pd.Series(times).quantile(0.95)) if times else None


def failed_rounds(rounds: Sequence[Sequence[ProbeResult]]) -> int:
    """How many of the latest rounds in a row had a 5xx or an unanswered smoke check."""
    n = 0
    for batch in reversed(rounds):
        if not any(r.status is None or r.status >= 500 for r in batch):
            break
        n += 1
    return n


def watch(
    p: Platform,
    version_id: str,
    since: datetime,
    minutes: float,
    every_s: float = 5.0,
    stop_after: int = 3,
) -> Watch:
    """Tail the worker and probe the smoke checks every `every_s` for `minutes` (one round
    at least), then read the version's analytics since the deploy. The watch ends early
    when `stop_after` rounds in a row failed: waiting out the window on a broken app only
    delays the rollback."""
    rounds: list[list[ProbeResult]] = []
    deadline = time.monotonic() + max(0.0, minutes) * 60
    with LiveTail(p) as live:
        while True:
            rounds.append(rb.smoke(p))
            if failed_rounds(rounds) >= stop_after or time.monotonic() + every_s > deadline:
                break
            time.sleep(every_s)
        events = live.stop(1.0)
    analytics = rb.version_health(p, since).get(version_id)
    probes = [r for batch in rounds for r in batch]
    return Watch(version_id, since, probes, events, analytics, len(rounds))


def judge(w: Watch, t: rb.Thresholds) -> tuple[bool, list[str]]:
    """(degraded, evidence): any threshold crossed by the probes, the tail or analytics."""
    problems: list[str] = []
    evidence: list[str] = []
    failed = w.probe_failures()
    wrong = [r for r in w.probes if not r.ok]
    evidence.append(
        f"probes: {len(w.probes)} smoke checks in {w.rounds} rounds since the deploy, {len(failed)} failed (5xx or "
        f"no answer), {len(wrong)} not as expected"
        + (f"; p95 {w.probe_p95():.0f} ms" if w.probe_p95() is not None else "")
    )
    if w.probes and (len(failed) / len(w.probes) >= t.error_rate or wrong):
        problems.append("smoke checks failed: " + "; ".join(rb.smoke_text(wrong)[:3]))
    n, bad, p95 = w.tail_stats()
    if n:
        evidence.append(
            f"tail: {n} invocations of version {w.version_id}, {bad} failed ({bad / n:.1%}), "
            f"wall p95 {p95:.0f} ms"
        )
        if bad / n >= t.error_rate:
            problems.append(f"tail error rate {bad / n:.1%} >= {t.error_rate:.0%}")
        if p95 is not None and p95 > t.p95_ms:
            problems.append(f"tail p95 {p95:.0f} ms > {t.p95_ms:.0f} ms")
    else:
        evidence.append("tail: no invocation of the new version was logged")
    a = w.analytics
    evidence.append(
        f"analytics since {rb.gql_time(w.since)}: "
        + (a.text() if a else "no invocations of the new version yet")
    )
    if a is not None and a.good(t) is False:
        problems.append(f"analytics: {a.text()}")
    return bool(problems), problems + evidence
