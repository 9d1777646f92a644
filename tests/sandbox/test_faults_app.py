"""App and outside-world faults: break -> symptom through public APIs, logs, data -> heal -> gone."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from opsbook import analysis
from opsbook import sandbox as sandbox_api
from opsbook.clients.logs import to_frame
from opsbook.clients.probes import preflight
from opsbook.sandbox import conditions, d1data, faultctl, queues_model, trace, traffic
from opsbook.sandbox.state import State

Info = sandbox_api.SandboxInfo
MS = "manuscript-upload-api"
PT = "peptalk-api"
USERS = {"manuscript": "prodtest3@example.com", "peptalk": "prodtest1@example.com"}


def app(info: Info, name: str, path: str) -> str:
    return f"{info.base_url}/apps/{name}{path}"


def bearer(info: Info, name: str = "manuscript") -> dict[str, str]:
    r = httpx.post(
        app(info, name, "/auth/login"),
        json={"email": USERS[name], "password": "TestPass123@"},
        timeout=20,
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def recent(info: Info, script: str, minutes: float) -> object:
    """The last minutes of the script's events, as a tail/export DataFrame."""
    state = State(info.state_dir)
    since = int(time.time() * 1000) - int(minutes * 60_000)
    return to_frame(trace.trace_item(r) for r in traffic.rows(state, script, since))


def logs_since(info: Info, script: str, since_ms: int) -> str:
    rows = traffic.rows(State(info.state_dir), script, since_ms)
    return "\n".join(r["logs"] + r["exceptions"] for r in rows)


def password_reset(info: Info) -> int:
    r = httpx.post(
        app(info, "manuscript", "/auth/password-reset-request"),
        json={"email": USERS["manuscript"]},
        timeout=20,
    )
    return r.status_code


def fault_cycle(
    info: Info,
    name: str,
    options: dict[str, str],
    broken: Callable[[], None],
    healed: Callable[[], None],
) -> None:
    state = State(info.state_dir)
    faultctl.break_fault(state, name, options)
    broken()
    faultctl.heal(state, name)
    healed()
    assert faultctl.active(state) == []


def test_registry() -> None:
    known = {f.name: f for f in faultctl.load_all()}
    for name, runbook in {
        "cors-misconfigured": "auth-broken", "email-config-missing": "password-reset",
        "mail-provider-down": "password-reset", "one-endpoint-broken": "high-error-rate",
        "error-after-deploy": "high-error-rate", "d1-overload": "high-error-rate", "r2-errors": "high-error-rate",
        "slow-upstream": "slow-responses", "large-payload": "slow-responses", "cold-start": "slow-responses",
        "jobs-failing": "queue-backlog", "rate-limited": "queue-backlog", "pubmed-timeout": "pipeline-failed",
        "llm-error": "pipeline-failed", "compliance-failed": "pipeline-failed", "brute-force": "security-incident",
        "compromised-account": "security-incident", "leaked-secret": "security-incident",
    }.items():  # fmt: skip
        assert (
            known[name].runbook == runbook and known[name].verdict == name and known[name].symptom
        )


def test_cors_misconfigured(fresh_sandbox: Info) -> None:
    origin = "https://scarter4workmanuscripthub.com"
    check = lambda: preflight(app(fresh_sandbox, "manuscript", "/auth/login"), origin)  # noqa: E731
    assert check().allowed
    fault_cycle(
        fresh_sandbox,
        "cors-misconfigured",
        {},
        lambda: _assert(not check().allowed),
        lambda: _assert(check().allowed),
    )


def _assert(cond: bool, message: str = "") -> None:
    assert cond, message


def test_email_config_missing(fresh_sandbox: Info) -> None:
    def broken() -> None:
        t0 = int(time.time() * 1000)
        assert password_reset(fresh_sandbox) == 500
        assert "Email configuration missing" in logs_since(fresh_sandbox, MS, t0)

    fault_cycle(
        fresh_sandbox,
        "email-config-missing",
        {},
        broken,
        lambda: _assert(password_reset(fresh_sandbox) == 200),
    )


def test_mail_provider_down(sandbox: Info) -> None:
    def broken() -> None:
        t0 = int(time.time() * 1000)
        assert password_reset(sandbox) == 500
        assert "MailChannels send failed" in logs_since(sandbox, MS, t0)

    fault_cycle(
        sandbox,
        "mail-provider-down",
        {"minutes_ago": "1"},
        broken,
        lambda: _assert(password_reset(sandbox) == 200),
    )


def test_one_endpoint_broken(fresh_sandbox: Info) -> None:
    h = bearer(fresh_sandbox)
    listing = httpx.get(
        app(fresh_sandbox, "manuscript", "/manuscripts?limit=1"), headers=h, timeout=20
    ).json()
    mid = listing["manuscripts"][0]["id"]
    analysis_url = app(fresh_sandbox, "manuscript", f"/manuscripts/{mid}/analysis")

    def broken() -> None:
        assert httpx.get(analysis_url, headers=h, timeout=20).status_code == 500
        assert (
            httpx.get(
                app(fresh_sandbox, "manuscript", f"/manuscripts/{mid}"), headers=h, timeout=20
            ).status_code
            == 200
        )
        df = recent(fresh_sandbox, MS, 120)
        stats = analysis.endpoint_stats(df).set_index("route")
        failing = stats[stats["error_rate"] > 0.5]
        assert list(failing.index) == ["GET /manuscripts/:id/analysis"]
        rate = stats["errors"].sum() / stats["requests"].sum()
        assert 0.04 < rate < 0.14, rate

    fault_cycle(fresh_sandbox, "one-endpoint-broken", {}, broken,
                lambda: _assert(httpx.get(analysis_url, headers=h, timeout=20).status_code == 200))  # fmt: skip


def test_error_after_deploy(fresh_sandbox: Info) -> None:
    state = State(fresh_sandbox.state_dir)
    from opsbook.sandbox import workers_model as wm

    good = wm.current_version(state, MS)

    def broken() -> None:
        # the deploy an hour ago: enough requests at the night-time trough for a 7 % rate
        # to show and to reach several endpoints (20 minutes there can hold a few dozen)
        df = recent(fresh_sandbox, MS, 58)
        series = analysis.error_series(df, "1min")
        assert 0.03 < series["errors"].sum() / series["requests"].sum() < 0.14
        stats = analysis.endpoint_stats(df)
        assert (stats["errors"] > 0).sum() >= 3  # spread across endpoints
        longer = recent(fresh_sandbox, MS, 120)
        deps = wm.deployments(state, MS)
        points = analysis.change_points(analysis.error_series(longer, "5min"), deps, window=4)
        assert any(p.deployment is not None and p.deployment["id"] == deps[0]["id"] for p in points)

    def healed() -> None:
        current = wm.current_version(state, MS)
        assert good is not None and current is not None and current.id == good.id

    fault_cycle(fresh_sandbox, "error-after-deploy", {"minutes_ago": "60"}, broken, healed)


def test_d1_overload_comes_with_load_whatever_the_hour(fresh_sandbox: Info) -> None:
    state = State(fresh_sandbox.state_dir)

    def broken() -> None:
        # 30 minutes at 10 visitors a minute or more (night or day), 8 % of them timing out
        df = recent(fresh_sandbox, MS, 29)
        assert len(df) >= 29 * 8
        timeouts = df["exceptions"].fillna("").str.contains("D1_ERROR: timeout").sum()
        assert 0.03 * len(df) < timeouts < 0.16 * len(df)

    def healed() -> None:
        assert "visitors:" + MS not in conditions.load(state)

    fault_cycle(fresh_sandbox, "d1-overload", {"minutes_ago": "30"}, broken, healed)


def test_large_payload(fresh_sandbox: Info) -> None:
    h = bearer(fresh_sandbox)
    page = app(fresh_sandbox, "manuscript", "/manuscripts?limit=2")
    normal = len(httpx.get(page, headers=h, timeout=30).content)

    def broken() -> None:
        body = httpx.get(page, headers=h, timeout=30)
        assert body.status_code == 200 and len(body.content) > 10 * normal
        assert len(body.json()["manuscripts"]) > 2

    fault_cycle(fresh_sandbox, "large-payload", {}, broken,
                lambda: _assert(len(httpx.get(page, headers=h, timeout=30).content) == normal))  # fmt: skip


@pytest.mark.parametrize(
    ("name", "options", "script", "needle", "route", "minutes"),
    [
        ("d1-overload", {}, MS, "D1_ERROR: timeout", "GET /manuscripts", 15),
        # the PDF route is 12 % of PepTalk's requests: an hour holds enough at night
        (
            "r2-errors",
            {},
            PT,
            "We encountered an internal error",
            "GET /api/peptides/:slug/pdf",
            60,
        ),
        ("rate-limited", {}, MS, "rate limited (429)", None, 15),
        ("brute-force", {"profile": "peptalk"}, PT, "invalid_credentials", "POST /auth/login", 15),
        ("compromised-account", {"profile": "peptalk"}, PT, "Admin action", None, 15),
        ("leaked-secret", {"profile": "peptalk"}, PT, "API key auth", None, 15),
    ],
)
def test_condition_faults_show_in_logs(
    sandbox: Info, name: str, options: dict[str, str], script: str, needle: str,
    route: str | None, minutes: int,
) -> None:  # fmt: skip
    state = State(sandbox.state_dir)
    since = int(time.time() * 1000) - minutes * 60_000
    assert needle not in logs_since(sandbox, script, since) or name == "brute-force"
    faultctl.break_fault(state, name, {**options, "minutes_ago": str(minutes)})
    try:
        # the history shows the fault's minutes at once; a live consumer (rate-limited's
        # backlog) logs from the server's drainer, which ticks every second
        deadline = time.monotonic() + 20
        while (count := logs_since(sandbox, script, since).count(needle)) < 3:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert count >= 3, name
        if route:
            df = recent(sandbox, script, minutes)
            hits = df[df["route"] == route]
            bad = hits[(hits["outcome"] != "ok") | (hits["status"] >= 400)]
            assert len(bad) >= 3
        if name == "brute-force":
            df = recent(sandbox, script, minutes)
            attackers = df[(df["route"] == "POST /auth/login") & (df["status"] == 401)][
                "client_ip"
            ].value_counts()
            assert attackers.iloc[0] > 100 and len(attackers[attackers > 100]) <= 4
    finally:
        faultctl.heal(state, name)
    healed_at = int(time.time() * 1000)
    traffic.advance(state)  # what the ticker does: the next minutes are generated healthy
    later = traffic.rows(state, script, healed_at)
    assert not any(needle in r["logs"] + r["exceptions"] for r in later)


def test_slow_upstream_and_cold_start(sandbox: Info) -> None:
    state = State(sandbox.state_dir)
    faultctl.break_fault(state, "slow-upstream", {"minutes_ago": "30"})
    try:
        stats = analysis.endpoint_stats(recent(sandbox, MS, 30)).set_index("route")
        assert stats.loc["GET /manuscripts/:id/analysis", "p50_ms"] > 4000
        assert stats.loc["GET /manuscripts", "p50_ms"] < 1000
    finally:
        faultctl.heal(state, "slow-upstream")
    faultctl.break_fault(state, "cold-start", {"profile": "peptalk", "minutes_ago": "60"})
    try:
        with state.read() as db:
            rows = db.execute(
                "SELECT cold_start, wall_ms FROM traffic WHERE script = ? AND ts_ms >= ? AND event_type = 'fetch' AND synthetic = 1",
                (PT, int(time.time() * 1000) - 60 * 60_000),
            ).fetchall()
        assert 5 < len(rows) < 200  # few visitors
        cold = [w for c, w in rows if c]
        warm = [w for c, w in rows if not c]
        assert cold and min(cold) > 1000 and (not warm or sorted(warm)[len(warm) // 2] < 300)
    finally:
        faultctl.heal(state, "cold-start")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("pubmed-timeout", "PubMed API timeout"),
        ("llm-error", "LLM API error: 529"),
        ("compliance-failed", "Compliance check failed"),
    ],
)
def test_pipeline_faults(sandbox: Info, name: str, reason: str) -> None:
    state = State(sandbox.state_dir)

    def latest(peptide: str) -> tuple[str, str | None]:
        with d1data.d1_connect(state, "peptalk-production-db") as db:
            row = db.execute(
                "SELECT r.status, r.error FROM pipeline_runs r JOIN peptides p ON p.id = r.peptide_id"
                " WHERE p.name = ? ORDER BY r.started_at DESC, r.id DESC LIMIT 1",
                (peptide,),
            ).fetchone()
        return row[0], row[1]

    since = int(time.time() * 1000) - 36 * 3600_000
    faultctl.break_fault(state, name, {})
    status, error = latest("BPC-157")
    assert status == "failed" and error and error.startswith(reason)
    assert latest("TB-500")[0] == "success"
    assert f"Pipeline failed for BPC-157: {reason}" in logs_since(sandbox, PT, since)
    faultctl.heal(state, name)
    assert latest("BPC-157")[0] == "success"


def test_jobs_failing(fresh_sandbox: Info) -> None:
    state = State(fresh_sandbox.state_dir)
    t0 = int(time.time() * 1000)
    faultctl.break_fault(state, "jobs-failing", {"messages": "5"})
    history = logs_since(fresh_sandbox, MS, t0 - 30 * 60_000)
    assert "SyntaxError" in history
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "SyntaxError" not in logs_since(fresh_sandbox, MS, t0):
        time.sleep(0.5)  # the queue drainer delivers the real messages to the consumer
    live = [
        r for r in traffic.rows(state, MS, t0) if r["event_type"] == "queue" and r["synthetic"] == 0
    ]
    assert live and all(r["outcome"] == "exception" for r in live)
    dlq = "manuscript-analysis-dlq"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and queues_model.backlog(state, dlq)["backlog_count"] < 3:
        time.sleep(0.5)
    assert queues_model.backlog(state, dlq)["backlog_count"] >= 3  # dead-lettered
    faultctl.heal(state, "jobs-failing")
    healed = int(time.time() * 1000)
    h = bearer(fresh_sandbox)
    assert (
        httpx.post(
            app(fresh_sandbox, "manuscript", "/manuscripts"),
            json={"title": "After heal"},
            headers=h,
            timeout=20,
        ).status_code
        == 201
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "Analysis complete" not in logs_since(
        fresh_sandbox, MS, healed
    ):
        time.sleep(0.5)
    assert "Analysis complete" in logs_since(fresh_sandbox, MS, healed)
