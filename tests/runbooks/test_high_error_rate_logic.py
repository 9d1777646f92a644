"""high-error-rate and deploys: route failures, error classes, onset vs deployment."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from opsbook import analysis
from opsbook.runbooks import deploys
from opsbook.runbooks import high_error_rate as her

DEPLOYS = [
    {"id": "d3", "created_on": "2026-11-23T09:00:00Z", "versions": [{"version_id": "v3", "percentage": 100}],
     "annotations": {"workers/message": "Add readability score"}},
    {"id": "d2", "created_on": "2026-11-22T09:00:00Z", "versions": [{"version_id": "v2", "percentage": 100}]},
    {"id": "d1", "created_on": "2026-11-21T09:00:00Z", "versions": [{"version_id": "v1", "percentage": 100}]},
]  # fmt: skip


def per_version(now: tuple[int, int], before: tuple[int, int]) -> dict[str, deploys.VersionErrors]:
    return {"v3": deploys.VersionErrors("v3", *now), "v2": deploys.VersionErrors("v2", *before)}


def test_rollback_only_when_the_serving_deployment_began_the_errors() -> None:
    plan = deploys.rollback_plan(DEPLOYS, per_version((1000, 80), (9000, 12)), min_rate=0.05)
    assert plan is not None and plan.target_version == "v2" and "d3" in plan.evidence()
    # the previous version failed as much: the deployment is not to blame
    assert (
        deploys.rollback_plan(DEPLOYS, per_version((1000, 80), (9000, 700)), min_rate=0.05) is None
    )
    # under the threshold: nothing to roll back
    assert (
        deploys.rollback_plan(DEPLOYS, per_version((1000, 10), (9000, 12)), min_rate=0.05) is None
    )
    # the failures ran another version
    assert deploys.rollback_plan(DEPLOYS, per_version((1000, 80), (9000, 12)), min_rate=0.05,
                                 failing_versions=["v9"]) is None  # fmt: skip


def test_rollback_target_skips_split_deployments() -> None:
    split = [DEPLOYS[0], {"id": "dx", "versions": [{"version_id": "a", "percentage": 50},
                                                   {"version_id": "b", "percentage": 50}]}, DEPLOYS[1]]  # fmt: skip
    target = deploys.rollback_target(split, "d3")
    assert target is not None and target["id"] == "d2"


def test_onset_lines_up_with_a_deployment() -> None:
    idx = pd.date_range("2026-11-23T08:00Z", periods=24, freq="5min", name="ts")
    rate = [0.001] * 12 + [0.07] * 12
    series = pd.DataFrame(
        {"requests": 100, "errors": [int(r * 100) for r in rate], "error_rate": rate}, index=idx
    )
    deps = [
        {
            "id": "d",
            "created_on": "2026-11-23T08:58:00Z",
            "versions": [{"version_id": "v", "percentage": 100}],
        }
    ]
    on = deploys.onset(series, deps)
    assert on is not None and on.deployment is not None and on.deployment["id"] == "d"
    assert on.at == pd.Timestamp("2026-11-23T09:00Z") and on.version_id == "v"


def probes_frame(failures: dict[str, int], n: int = 6) -> pd.DataFrame:
    rows = []
    for route, bad in failures.items():
        for i in range(n):
            path = route.split()[1]
            rows.append({"route": route, "url": f"https://x{path}", "path": path, "expected": 401, "status": 500 if i < bad else 401,
                         "ms": 20.0, "error": None, "failed": i < bad})  # fmt: skip
    return pd.DataFrame(rows)


def routes(failures: dict[str, int]) -> list[her.RouteFailures]:
    return her.route_failures(
        probes_frame(failures),
        pd.DataFrame(columns=["url", "path", "outcome", "status", "exceptions", "logs"]),
    )


def rate(sustained: bool) -> her.Rate:
    s = analysis.Sustained(
        pd.Timestamp("2026-11-23T09:00Z"), pd.Timestamp("2026-11-23T10:00Z"), 60, 0.09, 0.08
    )
    return her.Rate(1000, 80 if sustained else 1, s if sustained else None)


def diagnose(r: her.Rate, fails: dict[str, int], errors: Counter[str] | None = None, plan: Any = None) -> tuple[str, list[str], str | None]:  # fmt: skip
    return her.diagnose(rate=r, threshold=0.05, for_minutes=5, routes=routes(fails), errors=errors or Counter(),
                        plan=plan, r2_bucket="peptalk-pdfs", database="peptalk-production-db")  # fmt: skip


ALL = {
    "GET /health": 0,
    "GET /manuscripts": 0,
    "GET /manuscripts/:id": 0,
    "GET /manuscripts/:id/analysis": 0,
}


def test_healthy() -> None:
    assert diagnose(rate(False), ALL)[0] == "healthy"


def test_one_route_failing_names_it_and_rolls_back_only_with_a_plan() -> None:
    fails = {**ALL, "GET /manuscripts/:id/analysis": 6}
    cause, evidence, remedy = diagnose(rate(True), fails)
    assert (
        cause == "one-endpoint-broken"
        and "/manuscripts/:id/analysis" in evidence[0]
        and remedy is None
    )
    plan = deploys.rollback_plan(DEPLOYS, per_version((1000, 80), (9000, 12)), min_rate=0.05)
    cause, _, remedy = diagnose(rate(True), fails, plan=plan)
    assert cause == "one-endpoint-broken" and remedy and "v2" in remedy


def test_d1_and_r2_errors_are_named_by_their_text() -> None:
    d1 = Counter({"Error: D1_ERROR: timeout": 3})
    assert diagnose(rate(True), {**ALL, "GET /manuscripts": 2}, d1)[0] == "d1-overload"
    r2 = Counter({"Error: get: We encountered an internal error. Please try again. (10001)": 4})
    assert diagnose(rate(True), {"GET /api/peptides/:slug/pdf": 4}, r2)[0] == "r2-errors"


def test_scattered_errors_after_a_deploy() -> None:
    plan = deploys.rollback_plan(DEPLOYS, per_version((1000, 70), (9000, 12)), min_rate=0.05)
    fails = {**ALL, "GET /health": 1, "GET /manuscripts/:id": 1}
    cause, evidence, remedy = diagnose(
        rate(True), fails, Counter({"RangeError: Invalid time value": 2}), plan
    )
    assert cause == "error-after-deploy" and "d3" in evidence[0] and remedy and "v2" in remedy
    assert diagnose(rate(True), fails)[0] == "unknown"  # no deployment to blame: not forced


def test_a_stray_d1_error_does_not_outvote_the_bug_that_fails_most_requests() -> None:
    # a healthy app's odd transient D1_ERROR rides along in any 15 minutes of logs
    plan = deploys.rollback_plan(DEPLOYS, per_version((1000, 70), (9000, 12)), min_rate=0.05)
    stray = Counter({"Error: D1_ERROR: Network connection lost.": 1})
    bug = Counter({"RangeError: Invalid time value": 30, **stray})
    fails = {**ALL, "GET /health": 1, "GET /manuscripts/:id": 2, "GET /manuscripts": 1}
    assert diagnose(rate(True), fails, bug, plan)[0] == "error-after-deploy"
    one = Counter({"TypeError: Cannot read properties of undefined (reading 'score')": 89, **stray})
    cause = diagnose(rate(True), {**ALL, "GET /manuscripts/:id/analysis": 6}, one, plan)[0]
    assert cause == "one-endpoint-broken"
    # D1 errors that are most of the errors still name D1
    overload = Counter({"Error: D1_ERROR: timeout": 20, "RangeError: Invalid time value": 3})
    assert diagnose(rate(True), {**ALL, "GET /manuscripts": 3}, overload)[0] == "d1-overload"
    assert her.storage_errors(bug) == (Counter(), Counter())


def test_the_history_stands_for_probes_only_under_a_sustained_error_rate(monkeypatch: Any) -> None:
    history = pd.DataFrame(
        [{"route": "GET /manuscripts/:id/analysis", "url": "https://x/m/1/analysis",
          "path": "/m/1/analysis", "outcome": "exception", "status": 500, "wall_ms": 40.0,
          "exceptions": "Error: D1_ERROR: Network connection lost.", "logs": "", "version": "v3"}]
        + [{"route": "GET /health", "url": "https://x/health", "path": "/health", "outcome": "ok",
            "status": 200, "wall_ms": 10.0, "exceptions": "", "logs": "", "version": "v3"}] * 20
    )  # fmt: skip

    class P:
        def setting(self, name: str) -> Any:
            return [{"route": "GET /health"}, {"route": "GET /manuscripts/:id/analysis"}]

    probed = (pd.DataFrame(), pd.DataFrame(), 1)
    monkeypatch.setattr(her, "probe_rounds", lambda *a, **k: probed)
    kw: dict[str, Any] = {"repeat": 1, "timeout_s": 1.0, "max_rounds": 1}
    # 0.5 % errors: the one failed request is noise, so the routes are probed
    assert her.read_or_probe(P(), rate(False), history, **kw) is probed  # type: ignore[arg-type]
    probes, events, rounds = her.read_or_probe(P(), rate(True), history, **kw)  # type: ignore[arg-type]
    assert rounds == 0 and int(probes["failed"].sum()) == 1 and events is history


R2_TEXT = "Error: get: We encountered an internal error. Please try again. (10001)"
D1_TEXT = "Error: D1_ERROR: Network connection lost."


def test_as_many_d1_as_r2_errors_names_neither_until_another_round_decides(
    monkeypatch: Any,
) -> None:
    # at night the PDF route's probes may fail only once, beside the odd D1 error of the
    # other traffic the tail sees: a tie is not evidence for D1
    tie = Counter({R2_TEXT: 1, D1_TEXT: 1})
    assert her.storage_errors(tie) == (Counter(), Counter()) and her.storage_undecided(tie)
    assert not her.storage_undecided(Counter({R2_TEXT: 2, D1_TEXT: 1}))
    assert diagnose(rate(True), {"GET /api/peptides/:slug/pdf": 1}, tie)[0] != "d1-overload"

    def event(text: str) -> dict[str, Any]:
        return {"url": "https://x/p", "path": "/p", "outcome": "exception", "status": 500,
                "exceptions": text, "logs": "", "version": "v1"}  # fmt: skip

    rounds = iter([[event(R2_TEXT), event(D1_TEXT)], [event(R2_TEXT)], [event(D1_TEXT)]])
    probe = pd.DataFrame([{"route": "GET /api/peptides/:slug/pdf", "failed": True}])
    monkeypatch.setattr(
        "opsbook.runbooks.signals.probe_routes",
        lambda *a, **k: (probe, pd.DataFrame(next(rounds))),
    )
    probes, events, n = her.probe_rounds(
        None,  # type: ignore[arg-type]
        rate(False), repeat=4, timeout_s=1.0, max_rounds=3,
    )  # fmt: skip
    assert n == 2 and len(probes) == 2
    assert her.storage_errors(her.tail_errors(events))[1] == Counter({R2_TEXT: 2})


def test_a_night_window_too_sparse_to_judge_still_earns_more_probe_rounds(
    monkeypatch: Any,
) -> None:
    # 12 requests per 5 minutes (night) failing 8 %: no bucket holds enough requests to
    # judge, so no sustained run, but the window is suspect and the probes go on
    index = pd.date_range("2026-11-24T01:00Z", periods=6, freq="5min")
    night = pd.DataFrame({"requests": [12] * 6, "errors": [1, 1, 0, 1, 2, 1]}, index=index)
    night["error_rate"] = night["errors"] / night["requests"]
    r = her.error_rate(night, 0.05, 5)
    assert r.sustained is None and r.suspect
    quiet = night.assign(errors=[0, 0, 1, 0, 0, 0])
    assert not her.error_rate(quiet.assign(error_rate=quiet["errors"] / 12), 0.05, 5).suspect

    rounds = iter([False, False, True])

    def probe_routes(*a: Any, **k: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
        failed = next(rounds)
        return pd.DataFrame([{"route": "GET /api/peptides", "failed": failed}]), pd.DataFrame()

    monkeypatch.setattr("opsbook.runbooks.signals.probe_routes", probe_routes)
    probes, _, n = her.probe_rounds(None, r, repeat=4, timeout_s=1.0, max_rounds=3)  # type: ignore[arg-type]
    assert n == 3 and int(probes["failed"].sum()) == 1
