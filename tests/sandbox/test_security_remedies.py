"""IP Access Rules API, the apps' answers to blocked IPs, disabled accounts and rotated
keys, and the security faults: break -> symptom -> remedy -> gone."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import opsbook
from opsbook import sandbox as sandbox_api
from opsbook.clients.cloudflare import Cloudflare
from opsbook.errors import ApiError
from opsbook.platform import Platform
from opsbook.runbooks import security_actions as sx
from opsbook.sandbox import SandboxInfo, cf_firewall, faultctl, trace, traffic
from opsbook.sandbox import workers_model as wm
from opsbook.sandbox.faults.traffic import BRUTE_IPS
from opsbook.sandbox.profiles import PROFILES
from opsbook.sandbox.state import State

RULES = "firewall/access_rules/rules"
PASSWORD = "TestPass123@"


def rules_path(cf: Cloudflare, rule_id: str = "") -> str:
    return f"{cf.acct}/{RULES}" + (f"/{rule_id}" if rule_id else "")


def block(cf: Cloudflare, value: str, target: str = "ip", mode: str = "block") -> dict[str, Any]:
    body = {"mode": mode, "configuration": {"target": target, "value": value}, "notes": "test"}
    return dict(cf.call("POST", rules_path(cf), json=body))


def app(info: SandboxInfo, profile: str, path: str) -> str:
    return f"{info.base_url}/apps/{profile}{path}"


@pytest.fixture(scope="module", autouse=True)
def pristine_afterwards(sandbox: SandboxInfo, sandbox_pristine: Path) -> Iterator[None]:
    """These tests block IPs and a country, disable accounts and rotate keys: the tests
    after them get the session sandbox back as it was."""
    yield
    sandbox_api.stop(sandbox.state_dir)
    for entry in sandbox.state_dir.iterdir():
        if entry.name in (".lock", ".last_port", "server.log"):
            continue
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for entry in sandbox_pristine.iterdir():
        copy = shutil.copytree if entry.is_dir() else shutil.copy2
        copy(entry, sandbox.state_dir / entry.name)
    restarted = sandbox_api.start(sandbox.state_dir)
    for f in dataclasses.fields(restarted):
        setattr(sandbox, f.name, getattr(restarted, f.name))


@pytest.fixture
def connect() -> Iterator[Callable[[str], Platform]]:
    """connect(env), closed after the test."""
    opened: list[Platform] = []

    def open_(env: str) -> Platform:
        opened.append(opsbook.connect(env))
        return opened[-1]

    yield open_
    for p in opened:
        p.close()


def error_code(exc: pytest.ExceptionInfo[ApiError]) -> tuple[int | None, int | str | None]:
    return exc.value.status, exc.value.code


# ---- the API -----------------------------------------------------------------------------
def test_access_rules_crud_paging_and_errors(fresh_cf: Cloudflare) -> None:
    cf = fresh_cf
    made = block(cf, "185.220.101.34")
    assert made["mode"] == "block" and made["configuration"] == {
        "target": "ip",
        "value": "185.220.101.34",
    }
    assert set(made["allowed_modes"]) >= {"block", "challenge", "whitelist"}
    assert made["scope"]["type"] == "organization" and made["notes"] == "test"
    assert made["created_on"].endswith("Z") and len(made["id"]) == 32

    block(cf, "45.155.205.0/24", "ip_range", "challenge")
    block(cf, "AS64500", "asn", "js_challenge")
    block(cf, "ru", "country", "managed_challenge")
    block(cf, "192.0.2.1", mode="whitelist")

    with pytest.raises(ApiError) as dup:
        block(cf, "185.220.101.34", mode="challenge")
    assert error_code(dup) == (400, 10009)
    assert "duplicate_of_existing" in str(dup.value)
    for value, target, mode in (
        ("185.220.101.34", "ip", "deny"),
        ("not-an-ip", "ip", "block"),
        ("10.0.0.0/8", "ip_range", "block"),
        ("Russia", "country", "block"),
        ("x", "hostname", "block"),
    ):
        with pytest.raises(ApiError) as bad:
            block(cf, value, target, mode)
        assert error_code(bad) == (400, 10001), (value, target, mode)

    response = cf.request("GET", rules_path(cf), params={"per_page": 2, "page": 1})
    body = response.json()
    assert body["success"] and len(body["result"]) == 2
    assert body["result_info"] == {
        "page": 1, "per_page": 2, "count": 2, "total_count": 5, "total_pages": 3,
    }  # fmt: skip
    every = list(cf.pages(rules_path(cf), per_page=2))
    assert len(every) == 5 and len({r["id"] for r in every}) == 5

    blocks = cf.call("GET", rules_path(cf), params={"mode": "block"})
    assert [r["configuration"]["value"] for r in blocks] == ["185.220.101.34"]
    ranged = cf.call(
        "GET",
        rules_path(cf),
        params={"configuration.target": "country", "configuration.value": "RU"},
    )
    assert [r["mode"] for r in ranged] == ["managed_challenge"]
    either = cf.call(
        "GET",
        rules_path(cf),
        params={"mode": "whitelist", "configuration.target": "asn", "match": "any"},
    )
    assert {r["mode"] for r in either} == {"whitelist", "js_challenge"}
    ordered = cf.call(
        "GET", rules_path(cf), params={"order": "mode", "direction": "desc", "per_page": 50}
    )
    assert [r["mode"] for r in ordered] == sorted((r["mode"] for r in ordered), reverse=True)

    got = cf.call("GET", rules_path(cf, made["id"]))
    assert got["id"] == made["id"]
    edited = cf.call(
        "PATCH", rules_path(cf, made["id"]), json={"mode": "challenge", "notes": "edited"}
    )
    assert edited["mode"] == "challenge" and edited["notes"] == "edited"
    assert edited["configuration"]["value"] == "185.220.101.34"
    with pytest.raises(ApiError) as moved:
        cf.call(
            "PATCH",
            rules_path(cf, made["id"]),
            json={"configuration": {"target": "ip", "value": "1.2.3.4"}},
        )
    assert error_code(moved) == (400, 10001)

    assert cf.call("DELETE", rules_path(cf, made["id"])) == {"id": made["id"]}
    with pytest.raises(ApiError) as gone:
        cf.call("GET", rules_path(cf, made["id"]))
    assert gone.value.status == 404
    with pytest.raises(ApiError) as other:
        cf.call("GET", f"/accounts/{'0' * 32}/{RULES}")
    assert error_code(other) == (403, 9109)


# ---- the apps --------------------------------------------------------------------------------
def test_a_blocked_ip_gets_error_1006_and_no_worker_run(fresh_sandbox: SandboxInfo) -> None:
    info = fresh_sandbox
    with Cloudflare(
        info.urls()["cloudflare"], info.account_id, info.credentials["OPSBOOK_SANDBOX_TOKEN"]
    ) as cf:
        rule = block(cf, "203.0.113.9")
        block(cf, "RU", "country")
        block(cf, "198.51.100.7", mode="whitelist")
    since = int(time.time() * 1000)
    login = {"email": "prodtest3@example.com", "password": "wrong"}
    r = httpx.post(
        app(info, "manuscript", "/auth/login"),
        json=login,
        headers={"cf-connecting-ip": "203.0.113.9"},
        timeout=20,
    )
    assert r.status_code == 403 and "1006" in r.text and "Access denied" in r.text
    assert "203.0.113.9" in r.text and r.headers["cf-ray"].endswith("-IAD")
    ru = {"cf-connecting-ip": "198.51.100.8", "cf-ipcountry": "RU"}
    assert httpx.get(app(info, "peptalk", "/api/health"), headers=ru, timeout=20).status_code == 403
    allowed = {"cf-connecting-ip": "198.51.100.7", "cf-ipcountry": "RU"}
    assert httpx.get(app(info, "peptalk", "/api/health"), headers=allowed, timeout=20).is_success
    other = {"cf-connecting-ip": "198.51.100.9"}
    r = httpx.post(app(info, "manuscript", "/auth/login"), json=login, headers=other, timeout=20)
    assert r.status_code == 401

    rows = traffic.rows(State(info.state_dir), PROFILES["manuscript"].worker, since)
    blocked = [r for r in rows if r["client_ip"] == "203.0.113.9"]
    assert [r["status"] for r in blocked] == [403]
    assert json.loads(blocked[0]["logs"]) == []
    assert json.loads(blocked[0]["extra"])["firewall"] == {"action": "block", "rule_id": rule["id"]}
    assert "Login failed" in next(r["logs"] for r in rows if r["client_ip"] == "198.51.100.9")


def _login(info: SandboxInfo, email: str) -> httpx.Response:
    return httpx.post(
        app(info, "manuscript", "/auth/login"),
        json={"email": email, "password": PASSWORD},
        timeout=20,
    )


def test_a_disabled_account_cannot_log_in_and_loses_its_sessions(
    fresh_sandbox: SandboxInfo, connect: Callable[[str], Platform]
) -> None:
    info = fresh_sandbox
    p = connect("local")
    r = _login(info, "admin@example.com")
    assert r.status_code == 200
    token, uid = r.json()["token"], r.json()["user"]["id"]
    auth = {"Authorization": f"Bearer {token}"}
    export = app(info, "manuscript", "/admin/users/export")
    assert httpx.get(export, headers=auth, timeout=20).status_code == 200
    assert sx.user_sessions(p, uid)

    done = sx.disable_account(p, uid)
    assert done["rows_changed"] == 1 and done["sessions_revoked"] >= 1
    assert sx.is_disabled(p, uid) and sx.user_sessions(p, uid) == []
    assert httpx.get(export, headers=auth, timeout=20).status_code == 401
    assert (
        httpx.get(app(info, "manuscript", "/manuscripts"), headers=auth, timeout=20).status_code
        == 401
    )
    assert _login(info, "admin@example.com").status_code == 401

    plain = _login(info, "prodtest3@example.com").json()["token"]
    r = httpx.get(export, headers={"Authorization": f"Bearer {plain}"}, timeout=20)
    assert r.status_code == 403  # a user account is no admin


def test_a_rotated_admin_key_is_refused(
    fresh_sandbox: SandboxInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    connect: Callable[[str], Platform],
) -> None:
    info = fresh_sandbox
    monkeypatch.setenv("OPSBOOK_SECRETS_DIR", str(tmp_path / "vault"))
    state = State(info.state_dir)
    faultctl.break_fault(state, "leaked-secret", {"profile": "peptalk"})
    p = connect("local-peptalk")
    assert "ADMIN_API_KEY" in {s["name"] for s in p.cf.secrets(p.worker)}
    old = wm.secret_values(state, p.worker)["ADMIN_API_KEY"]  # what leaked
    export = app(info, "peptalk", "/admin/users/export")
    caller = {"cf-connecting-ip": "194.26.29.113"}
    r = httpx.get(export, headers={**caller, "X-API-Key": old}, timeout=20)
    assert r.status_code == 200 and r.json()["count"] > 0

    since = int(time.time() * 1000)
    done = sx.rotate_secret(p, "ADMIN_API_KEY")
    new = Path(done["new_value_in"]).read_text()
    r = httpx.get(export, headers={**caller, "Authorization": f"Bearer {old}"}, timeout=20)
    assert r.status_code == 401
    assert httpx.get(export, headers={"X-API-Key": new}, timeout=20).status_code == 200
    logs = "\n".join(r["logs"] for r in traffic.rows(state, p.worker, since))
    assert "API key rejected" in logs and "API key auth" in logs
    faultctl.heal(state, "leaked-secret")


def test_a_deleted_rule_still_applies_to_the_minutes_it_lived(fresh_sandbox: SandboxInfo) -> None:
    """Rebuilt traffic history sees the edge as it was: blocked while the rule lived."""
    info, ip = fresh_sandbox, "203.0.113.50"
    with Cloudflare(
        info.urls()["cloudflare"], info.account_id, info.credentials["OPSBOOK_SANDBOX_TOKEN"]
    ) as cf:
        rule = block(cf, ip)
        time.sleep(0.05)
        assert cf.call("DELETE", rules_path(cf, rule["id"])) == {"id": rule["id"]}
        assert rule["id"] not in {r["id"] for r in cf.call("GET", rules_path(cf))}
        again = block(cf, ip)  # a new rule for the same IP is not a duplicate of the deleted one
        cf.call("DELETE", rules_path(cf, again["id"]))
    state = State(info.state_dir)
    assert cf_firewall.load_rules(state) == []
    (old,) = [r for r in cf_firewall.history_rules(state) if r.id == rule["id"]]
    assert old.deleted_ms is not None and old.created_ms < old.deleted_ms
    during, after = (old.created_ms + old.deleted_ms) // 2, old.deleted_ms + 1
    history = cf_firewall.history_rules(state)
    assert getattr(cf_firewall.decide(history, ip, at_ms=during), "id", None) == rule["id"]
    assert cf_firewall.decide(history, ip, at_ms=after) is None
    live = httpx.get(
        app(info, "manuscript", "/health"), headers={"cf-connecting-ip": ip}, timeout=20
    )
    assert live.status_code == 200


# ---- faults: break -> symptom -> remedy -> gone -----------------------------------------------
def _next_minutes(
    info: SandboxInfo, profile: str, count: int = 2, first: int | None = None
) -> list[trace.Invocation]:
    """The traffic model's coming minutes (or `count` from minute `first`), under the state
    as it is now (not stored)."""
    state = State(info.state_dir)
    p = PROFILES[profile]
    with state.read() as db:
        meta = dict(
            db.execute("SELECT * FROM traffic_meta WHERE script = ?", (p.worker,)).fetchone()
        )
    gen = traffic.Generator(state, p, meta)
    first = int(time.time() * 1000) // 60_000 + 1 if first is None else first
    out: list[trace.Invocation] = []
    for m in range(first, first + count):
        out += gen.minute(m, m * 60_000)[0]
    return out


def _heads(inv: trace.Invocation) -> list[str]:
    heads = []
    for line in inv.logs:
        message = line.get("message") or []
        heads.append(str(message[0]) if message else "")
    return heads


@pytest.mark.parametrize("profile", ["manuscript", "peptalk"])
def test_brute_force_is_blocked_at_the_edge(
    fresh_sandbox: SandboxInfo, profile: str, connect: Callable[[str], Platform]
) -> None:
    info = fresh_sandbox
    state = State(info.state_dir)
    faultctl.break_fault(state, "brute-force", {"profile": profile, "per_min": "60"})
    attack = [i for i in _next_minutes(info, profile) if i.client_ip in BRUTE_IPS]
    assert len(attack) > 60 and all(i.status == 401 for i in attack)
    assert all("Login failed" in _heads(i) for i in attack)

    p = connect("local" if profile == "manuscript" else "local-peptalk")
    sx.block_ips(p, list(BRUTE_IPS), "test")
    assert sx.blocked_ips(p) >= set(BRUTE_IPS)
    after = [i for i in _next_minutes(info, profile) if i.client_ip in BRUTE_IPS]
    assert after and all(i.status == 403 and not i.logs for i in after)
    assert not any("Login failed" in _heads(i) for i in after)
    faultctl.heal(state, "brute-force")
    assert not [i for i in _next_minutes(info, profile) if i.client_ip in BRUTE_IPS]


def test_compromised_account_stops_once_disabled(
    fresh_sandbox: SandboxInfo, connect: Callable[[str], Platform]
) -> None:
    info = fresh_sandbox
    state = State(info.state_dir)
    faultctl.break_fault(state, "compromised-account", {"profile": "peptalk", "per_min": "20"})
    p = connect("local-peptalk")
    actions = [i for i in _next_minutes(info, "peptalk") if "Admin action" in _heads(i)]
    assert actions and all(i.status is not None and i.status < 400 for i in actions)
    uid = str(actions[0].user_id)
    assert sx.user_sessions(p, uid)  # the session the attacker holds

    sx.disable_account(p, uid)
    after = [i for i in _next_minutes(info, "peptalk") if i.client_ip == actions[0].client_ip]
    assert after and all(i.status == 401 for i in after)
    assert not any("Admin action" in _heads(i) for i in after)
    # minutes before the revocation, rebuilt now, still show the attack as it happened
    earlier = int(time.time() * 1000) // 60_000 - 5
    before = [i for i in _next_minutes(info, "peptalk", first=earlier) if i.user_id == uid]
    assert before and all(i.status is not None and i.status < 400 for i in before)
    faultctl.heal(state, "compromised-account")


def test_leaked_key_is_refused_after_rotation(
    fresh_sandbox: SandboxInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    connect: Callable[[str], Platform],
) -> None:
    info = fresh_sandbox
    monkeypatch.setenv("OPSBOOK_SECRETS_DIR", str(tmp_path / "vault"))
    state = State(info.state_dir)
    faultctl.break_fault(state, "leaked-secret", {"profile": "manuscript", "per_min": "20"})
    uses = [i for i in _next_minutes(info, "manuscript") if "API key auth" in _heads(i)]
    assert uses and all(i.status is not None and i.status < 400 for i in uses)

    p = connect("local")
    sx.rotate_secret(p, "ADMIN_API_KEY")
    after = [i for i in _next_minutes(info, "manuscript") if i.client_ip == uses[0].client_ip]
    assert after and all(i.status == 401 for i in after)
    assert all(_heads(i) == ["API key rejected"] for i in after)
    faultctl.heal(state, "leaked-secret")


def test_the_official_sdk_manages_access_rules(fresh_sandbox: SandboxInfo) -> None:
    cloudflare = pytest.importorskip("cloudflare")
    info = fresh_sandbox
    with cloudflare.Cloudflare(
        api_token=info.credentials["OPSBOOK_SANDBOX_TOKEN"],
        base_url=info.urls()["cloudflare"],
        max_retries=0,
    ) as sdk:
        rules = sdk.firewall.access_rules
        made = [
            rules.create(
                account_id=info.account_id,
                configuration={"target": "ip", "value": f"185.220.101.{n}"},
                mode="block",
                notes=f"sdk {n}",
            )
            for n in range(30, 55)
        ]
        assert made[0].mode == "block" and made[0].configuration.value == "185.220.101.30"
        listed = list(rules.list(account_id=info.account_id, per_page=10))  # auto-paging
        assert len(listed) == 25
        one = rules.list(
            account_id=info.account_id,
            configuration={"target": "ip", "value": "185.220.101.31"},
        )
        assert [r.notes for r in one] == ["sdk 31"]
        assert rules.delete(made[0].id, account_id=info.account_id).id == made[0].id
        with pytest.raises(cloudflare.BadRequestError):
            rules.create(
                account_id=info.account_id,
                configuration={"target": "ip", "value": "185.220.101.31"},
                mode="challenge",
            )
