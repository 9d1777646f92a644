"""Platform faults: break -> the symptom shows through the public APIs -> heal -> gone."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from opsbook import sandbox as sandbox_api
from opsbook.clients.cloudflare import Cloudflare
from opsbook.errors import InputError
from opsbook.sandbox import faultctl, faults
from opsbook.sandbox.state import State

MANUSCRIPT = "manuscript-upload-api"
TEST_USER = {"email": "prodtest3@example.com", "password": "TestPass123@"}


def app_get(info: sandbox_api.SandboxInfo, app: str, path: str) -> httpx.Response:
    return httpx.get(f"{info.urls()['apps.' + app]}{path}", timeout=10)


def login(info: sandbox_api.SandboxInfo, app: str = "manuscript") -> httpx.Response:
    return httpx.post(f"{info.urls()['apps.' + app]}/auth/login", json=TEST_USER, timeout=20)


def minutes_since(stamp: str) -> float:
    return (
        datetime.now(UTC) - datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    ).total_seconds() / 60


ANALYTICS = """query($acct:String!,$s:Time!,$e:Time!,$w:String!){viewer{accounts(filter:{accountTag:$acct}){
 workersInvocationsAdaptive(limit:1000,filter:{scriptName:$w,datetime_geq:$s,datetime_leq:$e}){
  sum{requests errors}}}}}"""


def requests_and_errors(
    cf: Cloudflare, script: str, minutes_from: float, minutes_to: float
) -> tuple[int, int]:
    """Workers analytics (GraphQL) between `minutes_from` and `minutes_to` minutes ago."""
    now = time.time()

    def iso(minutes_ago: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60 * minutes_ago))

    variables = {"acct": cf.account_id, "w": script, "s": iso(minutes_from), "e": iso(minutes_to)}
    data = cf.graphql(ANALYTICS, variables)
    rows = data["viewer"]["accounts"][0]["workersInvocationsAdaptive"]
    return sum(r["sum"]["requests"] for r in rows), sum(r["sum"]["errors"] for r in rows)


def test_registry_has_every_platform_fault_with_its_runbook() -> None:
    known = {f.name: f for f in faultctl.load_all()}
    expected = {
        "bad-deploy": ("api-down", "bad-deploy"),
        "secret-missing": ("api-down", "secret-missing"),
        "jwt-secret-missing": ("auth-broken", "jwt-secret-missing"),
        "sessions-kv-missing": ("auth-broken", "sessions-kv-missing"),
        "consumer-missing": ("queue-backlog", "consumer-missing"),
        "high-volume": ("queue-backlog", "high-volume"),
    }
    for name, (runbook, verdict) in expected.items():
        assert (known[name].runbook, known[name].verdict) == (runbook, verdict)
        assert known[name].summary and known[name].symptom and "profile" in known[name].options


def test_unknown_fault_and_option_are_input_errors(sandbox: sandbox_api.SandboxInfo) -> None:
    state = State(sandbox.state_dir)
    with pytest.raises(faults.UnknownFault, match=r"Did you mean 'bad-deploy'.*Known faults:"):
        faultctl.break_fault(state, "bad-deploi")
    with pytest.raises(InputError, match="no option 'colour'"):
        faultctl.break_fault(state, "bad-deploy", {"colour": "red"})
    with pytest.raises(InputError, match="profiles"):
        faultctl.break_fault(state, "bad-deploy", {"profile": "nope"})
    assert faultctl.active(state) == []


def test_bad_deploy_until_rollback(
    fresh_sandbox: sandbox_api.SandboxInfo, fresh_cf: Cloudflare
) -> None:
    info, cf = fresh_sandbox, fresh_cf
    assert app_get(info, "manuscript", "/health").status_code == 200
    good = cf.deployments(MANUSCRIPT)[0]["versions"][0]["version_id"]

    faultctl.break_fault(State(info.state_dir), "bad-deploy")
    assert [a["name"] for a in faultctl.active(State(info.state_dir))] == ["bad-deploy"]
    assert app_get(info, "manuscript", "/health").status_code == 500
    assert app_get(info, "manuscript", "/manuscripts").status_code == 500
    assert app_get(info, "peptalk", "/api/health").status_code == 200  # the other app is fine
    current = cf.deployments(MANUSCRIPT)[0]
    assert 11 <= minutes_since(current["created_on"]) <= 13
    requests, errors = requests_and_errors(cf, MANUSCRIPT, 10, 0)  # since the deployment
    assert requests > 5 and errors / requests > 0.5
    # before it: healthy, but for the traffic model's rare background errors (a D1
    # "Network connection lost" now and then, as on the real platform)
    before_requests, before_errors = requests_and_errors(cf, MANUSCRIPT, 30, 15)
    assert before_requests > 5 and before_errors / before_requests < 0.02
    assert current["versions"][0]["version_id"] == cf.versions(MANUSCRIPT)[0]["id"] != good

    cf.rollback(MANUSCRIPT, good, "Rollback due to issue")  # the runbook's remedy
    assert app_get(info, "manuscript", "/health").status_code == 200
    faultctl.heal(State(info.state_dir))
    assert cf.deployments(MANUSCRIPT)[0]["versions"][0]["version_id"] == good
    assert faultctl.active(State(info.state_dir)) == []


def test_bad_deploy_heal_rolls_back(fresh_sandbox: sandbox_api.SandboxInfo) -> None:
    state = State(fresh_sandbox.state_dir)
    faultctl.break_fault(state, "bad-deploy", {"profile": "peptalk", "minutes_ago": "3"})
    assert app_get(fresh_sandbox, "peptalk", "/api/health").status_code == 500
    assert faultctl.heal(state, "bad-deploy") == ["bad-deploy"]
    assert app_get(fresh_sandbox, "peptalk", "/api/health").status_code == 200


def test_secret_missing(fresh_sandbox: sandbox_api.SandboxInfo, fresh_cf: Cloudflare) -> None:
    state = State(fresh_sandbox.state_dir)
    faultctl.break_fault(state, "secret-missing", {"profile": "peptalk", "name": "OPENAI_API_KEY"})
    assert "OPENAI_API_KEY" not in {s["name"] for s in fresh_cf.secrets("peptalk-api")}
    response = app_get(fresh_sandbox, "peptalk", "/api/health")
    assert response.status_code == 500
    faultctl.heal(state)
    assert "OPENAI_API_KEY" in {s["name"] for s in fresh_cf.secrets("peptalk-api")}
    assert app_get(fresh_sandbox, "peptalk", "/api/health").status_code == 200


def test_secret_missing_default_breaks_every_route(
    fresh_sandbox: sandbox_api.SandboxInfo, fresh_cf: Cloudflare
) -> None:
    faultctl.break_fault(State(fresh_sandbox.state_dir), "secret-missing")
    assert "STRIPE_SECRET_KEY" not in {s["name"] for s in fresh_cf.secrets(MANUSCRIPT)}
    requests, errors = requests_and_errors(fresh_cf, MANUSCRIPT, 9, 0)  # onset: 10 min ago
    assert requests > 5 and errors == requests
    for path in ("/health", "/manuscripts"):
        assert app_get(fresh_sandbox, "manuscript", path).status_code == 500
    with pytest.raises(ValueError, match="not a required secret"):
        faultctl.break_fault(State(fresh_sandbox.state_dir), "secret-missing", {"name": "NOPE"})


def test_jwt_secret_missing(fresh_sandbox: sandbox_api.SandboxInfo, fresh_cf: Cloudflare) -> None:
    state = State(fresh_sandbox.state_dir)
    assert login(fresh_sandbox).status_code == 200
    faultctl.break_fault(state, "jwt-secret-missing")
    assert "JWT_SECRET" not in {s["name"] for s in fresh_cf.secrets(MANUSCRIPT)}
    assert login(fresh_sandbox).status_code == 500
    assert app_get(fresh_sandbox, "manuscript", "/health").status_code == 200
    faultctl.heal(state)
    assert login(fresh_sandbox).status_code == 200


def test_jwt_secret_changed_invalidates_sessions(fresh_sandbox: sandbox_api.SandboxInfo) -> None:
    state = State(fresh_sandbox.state_dir)
    token = login(fresh_sandbox).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{fresh_sandbox.urls()['apps.manuscript']}/manuscripts?limit=1"
    assert httpx.get(url, headers=headers, timeout=10).status_code == 200
    faultctl.break_fault(state, "jwt-secret-missing", {"mode": "changed"})
    assert httpx.get(url, headers=headers, timeout=10).status_code == 401
    faultctl.heal(state)
    assert httpx.get(url, headers=headers, timeout=10).status_code == 200


def test_sessions_kv_missing(fresh_sandbox: sandbox_api.SandboxInfo, fresh_cf: Cloudflare) -> None:
    state = State(fresh_sandbox.state_dir)
    ns = fresh_cf.kv_namespace_id("manuscript-sessions")
    keys = len(list(fresh_cf.kv_keys(ns)))
    faultctl.break_fault(state, "sessions-kv-missing")
    assert "manuscript-sessions" not in {n["title"] for n in fresh_cf.kv_namespaces()}
    assert login(fresh_sandbox).status_code >= 500
    faultctl.heal(state)
    assert fresh_cf.kv_namespace_id("manuscript-sessions") == ns
    assert len(list(fresh_cf.kv_keys(ns))) == keys
    assert login(fresh_sandbox).status_code == 200


def _backlog(cf: Cloudflare, queue: str) -> int:
    return int(cf.queue_metrics(queue)["backlog_count"])


def test_consumer_missing(fresh_sandbox: sandbox_api.SandboxInfo, fresh_cf: Cloudflare) -> None:
    cf, queue = fresh_cf, "manuscript-analysis-queue"
    faultctl.break_fault(State(fresh_sandbox.state_dir), "consumer-missing")
    assert cf.queue_consumers(queue) == []
    metrics = cf.queue_metrics(queue)
    assert metrics["backlog_count"] >= 400
    age_min = (time.time() * 1000 - metrics["oldest_message_timestamp_ms"]) / 60000
    assert 40 <= age_min <= 50
    time.sleep(2.5)  # nobody consumes: the backlog does not move
    assert _backlog(cf, queue) == metrics["backlog_count"]

    faultctl.heal(State(fresh_sandbox.state_dir))
    [consumer] = cf.queue_consumers(queue)
    assert consumer["dead_letter_queue"] == "manuscript-analysis-dlq"
    deadline = time.monotonic() + 20
    while _backlog(cf, queue) >= metrics["backlog_count"] and time.monotonic() < deadline:
        time.sleep(0.25)
    assert _backlog(cf, queue) < metrics["backlog_count"]


def test_high_volume_drains(fresh_sandbox: sandbox_api.SandboxInfo, fresh_cf: Cloudflare) -> None:
    cf, queue = fresh_cf, "peptalk-pipeline-queue"
    faultctl.break_fault(
        State(fresh_sandbox.state_dir), "high-volume", {"profile": "peptalk", "messages": "2000"}
    )
    assert len(cf.queue_consumers(queue)) == 1
    first = _backlog(cf, queue)
    assert first >= 1500
    time.sleep(2.5)
    second = _backlog(cf, queue)
    assert 0 < second < first  # draining, not drained
    assert _backlog(cf, "peptalk-pipeline-dlq") == 0
    faultctl.heal(State(fresh_sandbox.state_dir))
    assert _backlog(cf, queue) == 0
