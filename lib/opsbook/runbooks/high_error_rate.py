"""high-error-rate: 5-10 % of requests fail, no complete outage (seed 000 Issue 4,
seed 004 "High Error Rate").

The error rate and its onset come from Workers analytics (per minute and per version);
which routes fail, and with what, from the recent history in Workers Logs when its
errors already name the database or storage, else from probes of every route while a
tail records them. The exception text tells D1 and R2 failures apart from code bugs; the versions tell
whether the errors began with the deployment serving now.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from .. import analysis

if TYPE_CHECKING:
    from ..platform import Platform
    from .deploys import RollbackPlan

CAUSES = {
    "one-endpoint-broken": "one route carries the errors; the rest of the API works",
    "error-after-deploy": "errors across routes began with the deployment serving now",
    "d1-overload": "D1 queries time out or fail (D1_ERROR) under load",
    "r2-errors": "R2 reads fail with internal errors (the PDF route)",
}
PROFILES = ("manuscript", "peptalk")
SEVERITY = "P1"  # seed 004: an alert at >5 % errors; partial service degradation for users
NO_REMEDY = {
    "d1-overload": "no missing index explains it: reduce the heavy queries (pagination, KV "
    "caching, read replicas); D1 recovers when the load drops",
    "r2-errors": "R2 internal errors are usually transient: check the Cloudflare status page "
    "and watch; retry reads in code",
    "one-endpoint-broken": "the route did not break with a deployment: fix the code and deploy",
}
# a version that fails this often, and 5x the one before it, began the errors
MIN_VERSION_RATE = 0.01
D1_PATTERN = re.compile(r"D1_ERROR|D1 (?:DB|database)|SQLITE_BUSY", re.IGNORECASE)
# R2 binding errors read "<op>: We encountered an internal error. Please try again. (10001)"
R2_PATTERN = re.compile(
    r"\b(?:get|put|head|list|delete): .*\(1\d{4}\)|\bR2\b|internal error.*\(10001\)", re.IGNORECASE
)
# D1 or R2 is the cause only when its errors are most of the errors (more than half): a
# healthy app's odd transient D1_ERROR shows up in any stretch of logs, beside whatever
# else is failing, and at night two R2 errors beside one such D1_ERROR is all there is


def _storage_parts(errors: Counter[str]) -> tuple[Counter[str], Counter[str]]:
    return (
        Counter({t: c for t, c in errors.items() if D1_PATTERN.search(t)}),
        Counter({t: c for t, c in errors.items() if R2_PATTERN.search(t)}),
    )


def storage_errors(errors: Counter[str]) -> tuple[Counter[str], Counter[str]]:
    """(D1 errors, R2 errors) among `errors`, each kept only when it is most of them (so at
    most one of the two is kept)."""
    total = sum(errors.values())
    d1, r2 = _storage_parts(errors)

    def most(part: Counter[str]) -> Counter[str]:
        return part if 2 * sum(part.values()) > total else Counter()

    return most(d1), most(r2)


def storage_undecided(errors: Counter[str]) -> bool:
    """Both D1 and R2 errors, and neither is most of the errors: more evidence is needed."""
    total = sum(errors.values())
    counts = [sum(part.values()) for part in _storage_parts(errors)]
    return all(n > 0 and 2 * n <= total for n in counts)


# ---- the error rate ----------------------------------------------------------------------
@dataclass(frozen=True)
class Rate:
    requests: int
    errors: int
    sustained: analysis.Sustained | None  # the longest run above the threshold
    # the window fails at half the threshold or more without a sustained run: at night the
    # 5-minute buckets hold too few requests to judge, and the errors are still there
    suspect: bool = False

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def error_rate(
    series5: pd.DataFrame, threshold: float, for_minutes: float, min_requests: int = 20
) -> Rate:
    """5-minute buckets (requests, errors, error_rate) -> the window's rate and its sustained
    run above `threshold` for at least `for_minutes`."""
    if series5.empty:
        return Rate(0, 0, None)
    # a bucket of a handful of requests (night traffic) says nothing about a rate
    judged = series5["error_rate"].where(series5["requests"] >= min_requests, 0.0)
    requests, errors = int(series5["requests"].sum()), int(series5["errors"].sum())
    sustained = analysis.sustained(judged, threshold, for_minutes)
    suspect = sustained is None and requests > 0 and errors / requests >= threshold / 2
    return Rate(requests, errors, sustained, suspect)


# ---- the probes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RouteFailures:
    route: str
    probes: int
    failed: int
    errors: tuple[tuple[str, int], ...]  # exception/log text -> count, from the tail

    @property
    def share(self) -> float:
        return self.failed / self.probes if self.probes else 0.0


def route_failures(probes: pd.DataFrame, events: pd.DataFrame) -> list[RouteFailures]:
    """Per route: probes, failed (5xx or no answer), and what the tail logged for the failures."""
    out = []
    for route, grp in probes.groupby("route", sort=False):
        texts: Counter[str] = Counter()
        if len(events):
            mine = events[events["path"].isin(set(grp["path"]))]
            bad = mine[
                (mine["outcome"] != "ok") | (mine["status"].fillna(0).astype("int64") >= 500)
            ]
            for exc, logs in zip(bad["exceptions"].fillna(""), bad["logs"].fillna(""), strict=True):
                texts[exc or _error_line(str(logs)) or "(no exception text)"] += 1
        timeouts = int(grp["error"].fillna("").str.startswith("timeout").sum())
        if timeouts:
            texts[f"no answer within the probe timeout ({timeouts}x)"] += 0
        out.append(RouteFailures(str(route), len(grp), int(grp["failed"].sum()),
                                 tuple(texts.most_common(3))))  # fmt: skip
    return out


def _error_line(logs: str) -> str:
    return next((line for line in logs.splitlines() if line.startswith("(error)")), "")


def tail_errors(events: pd.DataFrame) -> Counter[str]:
    """Exception texts (or error log lines) of every failed invocation the tail saw."""
    texts: Counter[str] = Counter()
    if events.empty:
        return texts
    bad = events[(events["outcome"] != "ok") | (events["status"].fillna(0).astype("int64") >= 500)]
    for exc, logs in zip(bad["exceptions"].fillna(""), bad["logs"].fillna(""), strict=True):
        text = exc or _error_line(str(logs))
        if text:
            texts[text] += 1
    return texts


# ---- the verdict -----------------------------------------------------------------------
def _top(texts: Counter[str], n: int = 3) -> str:
    return "; ".join(f"{c} x {t}" for t, c in texts.most_common(n))


def diagnose(
    *,
    rate: Rate,
    threshold: float,
    for_minutes: float,
    routes: list[RouteFailures],
    errors: Counter[str],
    plan: RollbackPlan | None,
    r2_bucket: str | None,
    database: str,
    seen_in: str = "the tail",
) -> tuple[str, list[str], str | None]:
    """(cause, evidence, remedy). `seen_in`: where the errors were read (the probes' tail,
    or Workers Logs)."""
    window = (f"error rate {rate.rate:.1%} ({rate.errors} of {rate.requests} invocations) over "
              "the window")  # fmt: skip
    if rate.sustained:
        s = rate.sustained
        window += (f"; above {threshold:.0%} for {s.minutes:.0f} min from {s.start:%H:%M} UTC "
                   f"(peak {s.peak:.1%})")  # fmt: skip
    failing = [r for r in routes if r.failed]
    probed = sum(r.probes for r in routes)
    probe_text = ", ".join(f"{r.route} {r.failed}/{r.probes}" for r in routes)
    if not rate.sustained and not failing and plan is None:
        return (
            "healthy",
            [f"{window}: below {threshold:.0%} for {for_minutes:.0f} min",
             f"probes: {probed} sent, none failed ({probe_text})"],
            None,
        )  # fmt: skip
    d1, r2 = storage_errors(errors)
    if d1 and sum(d1.values()) >= sum(r2.values()):
        where = [r.route for r in failing]
        return (
            "d1-overload",
            [
                f"D1 errors in {seen_in}: {_top(d1)}",
                f"database {database}; failing routes: {', '.join(where) or 'none of the probes'} "
                f"({probe_text})",
                window,
            ],
            None,
        )
    if r2:
        return (
            "r2-errors",
            [
                f"R2 errors in {seen_in}: {_top(r2)}",
                f"bucket {r2_bucket or '?'}; failing routes: "
                f"{', '.join(r.route for r in failing) or 'none of the probes'} ({probe_text})",
                window,
            ],
            None,
        )
    broken = [r for r in routes if r.share >= 0.6]
    others = [r for r in routes if r not in broken]
    if len(broken) == 1 and all(r.share <= 0.1 for r in others):
        r = broken[0]
        errs = "; ".join(f"{c} x {t}" for t, c in r.errors if c) or "no exception text"
        evidence = [
            f"endpoint {r.route}: {r.failed} of {r.probes} probes failed ({errs})",
            "every other route answered: " + ", ".join(f"{o.route} {o.failed}/{o.probes}" for o in others),
            window,
        ]  # fmt: skip
        if plan is not None:
            evidence.append(plan.evidence())
            return ("one-endpoint-broken", evidence,
                    f"Roll back to version {plan.target_version}: {r.route} broke with the "
                    "deployment serving now.")  # fmt: skip
        evidence.append("the route did not break with the deployment serving now")
        return "one-endpoint-broken", evidence, None
    if plan is not None and (rate.sustained or failing):
        return (
            "error-after-deploy",
            [
                plan.evidence(),
                f"errors across routes: {probe_text}"
                + (f"; tail: {_top(errors)}" if errors else ""),
                window,
            ],
            f"Roll back to version {plan.target_version} (deployment {plan.target.get('id')}).",
        )
    return (
        "unknown",
        [window, f"probes: {probe_text}", f"tail errors: {_top(errors) or 'none seen'}"],
        "Tail the worker's errors (npx wrangler tail --status error) and compare with recent changes.",
    )


def verify_routes(
    p: Platform, routes: list[str], threshold: float, repeat: int = 6
) -> tuple[bool, list[str]]:
    """Fresh probes after the fix: the named routes (or all) fail below the threshold."""
    from .signals import probe_routes

    probes, _events = probe_routes(p, repeat=repeat, timeout_s=10.0, linger_s=0.0)
    mine = probes[probes["route"].isin(routes)] if routes else probes
    failed, total = int(mine["failed"].sum()), len(mine)
    rate = failed / total if total else 1.0
    current = p.cf.deployments(p.worker)[0]
    version = ((current.get("versions") or [{}])[0]).get("version_id")
    return total > 0 and rate < threshold, [
        f"{total} fresh probes of {', '.join(routes) or 'every route'}: {failed} failed "
        f"({rate:.0%}, threshold {threshold:.0%})",
        f"serving now: deployment {current.get('id')} (version {version})",
    ]


def status_page_note(p: Platform) -> str:
    """What the Cloudflare status page says (seed 004: check it for R2 errors)."""
    try:
        bad = [c for c in p.status.components() if not c.operational]
        incidents = p.status.unresolved_incidents()
    except Exception as exc:  # the status page is advice, not evidence we must have
        return f"status page unreachable: {exc}"
    if not bad and not incidents:
        return "Cloudflare status page: all components operational, no open incident"
    return "Cloudflare status page: " + "; ".join(
        [f"{c.name} {c.status}" for c in bad]
        + [f"incident '{i.name}' ({i.status})" for i in incidents]
    )


def probe_rounds(
    p: Platform, rate: Rate, *, repeat: int, timeout_s: float, max_rounds: int
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Probe every route while tailing; while the analytics show errors (a sustained run,
    or a suspect window) that no probe has reproduced yet, or the tail holds D1 and R2
    errors with neither the most, probe again (at most `max_rounds`): (probes, events,
    rounds)."""
    from .signals import probe_routes

    all_probes: list[pd.DataFrame] = []
    all_events: list[pd.DataFrame] = []
    for _round in range(max_rounds):
        probes, events = probe_routes(p, repeat=repeat, timeout_s=timeout_s, linger_s=0.5)
        all_probes.append(probes)
        if len(events):
            all_events.append(events)
        seen = bool(probes["failed"].any()) or bool(tail_errors(events))
        so_far = tail_errors(pd.concat(all_events, ignore_index=True)) if all_events else Counter()
        if storage_undecided(so_far):
            continue  # as many D1 as R2 errors so far: another round tells them apart
        if seen or not (rate.sustained or rate.suspect):
            break
    events = (
        pd.concat(all_events, ignore_index=True)
        if all_events
        else pd.DataFrame(
            columns=["url", "path", "outcome", "status", "exceptions", "logs", "version"]
        )
    )
    return pd.concat(all_probes, ignore_index=True), events, len(all_probes)


def history_probes(events: pd.DataFrame, routes: Iterable[str]) -> pd.DataFrame:
    """The history's requests to the probed `routes`, in the shape of probe rows (route,
    url, path, expected, status, ms, error, failed): failed is a 5xx or an exception."""
    from .signals import PROBE_COLUMNS

    mine = events[events["route"].isin(set(routes))] if len(events) else events
    if not len(mine):
        return pd.DataFrame(columns=PROBE_COLUMNS)
    failed = (mine["outcome"] != "ok") | (mine["status"].fillna(0).astype("int64") >= 500)
    return pd.DataFrame(
        {"route": mine["route"], "url": mine["url"], "path": mine["path"], "expected": 200,
         "status": mine["status"], "ms": mine["wall_ms"], "error": "", "failed": failed},
        columns=PROBE_COLUMNS,
    ).reset_index(drop=True)  # fmt: skip


def read_or_probe(
    p: Platform,
    rate: Rate,
    history: pd.DataFrame | None,
    *,
    repeat: int,
    timeout_s: float,
    max_rounds: int,
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(probes, events, rounds). When the error rate is above the threshold and the recent
    history (Workers Logs) shows that most of its errors are D1 or R2 errors, its requests
    to the probed routes stand for the probes (rounds 0): no need to wait for the failing
    routes again. Otherwise probe while tailing: below the threshold, the history's odd
    failed request is a healthy app's noise, not a failing route."""
    if (
        rate.sustained
        and history is not None
        and len(history)
        and any(storage_errors(tail_errors(history)))
    ):
        routes = [str(t["route"]) for t in (p.setting("app.probes") or [])]
        return history_probes(history, routes), history, 0
    return probe_rounds(p, rate, repeat=repeat, timeout_s=timeout_s, max_rounds=max_rounds)


def failing_versions(events: pd.DataFrame) -> list[str]:
    if events.empty:
        return []
    bad = events[(events["outcome"] != "ok") | (events["status"].fillna(0).astype("int64") >= 500)]
    return sorted({str(v) for v in bad["version"].dropna()})
