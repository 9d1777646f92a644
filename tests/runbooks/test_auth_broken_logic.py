"""auth-broken: which evidence names which cause, in order; secrets and tokens never echoed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from opsbook.clients.probes import PreflightResult, ProbeResult
from opsbook.runbooks import auth_broken as ab

SETTINGS = {"app.test_user": "prodtest3@example.com", "app.name": "Manuscript platform"}
P: Any = SimpleNamespace(setting=lambda k, d=None: SETTINGS.get(k, d))
SECRETS = ["ANTHROPIC_API_KEY", "JWT_SECRET", "STRIPE_SECRET_KEY"]
NS = "3426b64d16e99ba72d3468879fe9365e"


def sessions(ns_id: str | None = NS, bound: str | None = NS) -> ab.Sessions:
    binding = {"type": "kv_namespace", "name": "SESSIONS", "namespace_id": bound}
    return ab.Sessions("manuscript-sessions", ns_id, binding, "6 (v6)")


def result(status: int, body: str = "") -> ProbeResult:
    return ProbeResult("http://x", "POST", status, status == 200, 5.0, body=body)


def login(login_status: int = 200, authed: int | None = 200) -> ab.Login:
    token_body = '{"token":"eyJhbGciOiJIUzI1NiJ9.e30.sig","user":{}}'
    return ab.Login(
        login=result(login_status, token_body if login_status == 200 else '{"error":"Internal server error"}'),
        authed=result(authed, '{"manuscripts":[{"title":"private"}]}') if authed else None,
        expected=(200,), path="/manuscripts",
    )  # fmt: skip


def cors(allowed: bool = True) -> PreflightResult:
    origin = "https://scarter4workmanuscripthub.com"
    return PreflightResult("http://x/auth/login", origin, 204, allowed,
                           origin if allowed else None, None, None, 3.0)  # fmt: skip


def diagnose(**kw: Any) -> tuple[str, list[str], str | None]:
    base: dict[str, Any] = {
        "secrets": SECRETS,
        "sessions": sessions(),
        "login": login(),
        "cors": cors(),
    }
    base.update(kw)
    return ab.diagnose(ab.Facts(**base), P)


def test_healthy_and_no_user_data_or_token_in_the_evidence() -> None:
    cause, evidence, remedy = diagnose()
    assert cause == "healthy" and remedy is None
    text = " ".join(evidence)
    assert "eyJ" not in text and "private" not in text and "(a session token)" in text


def test_missing_jwt_secret_first() -> None:
    cause, evidence, remedy = diagnose(
        secrets=["STRIPE_SECRET_KEY"], sessions=sessions(None, None), login=login(500, None)
    )
    assert cause == "jwt-secret-missing" and "JWT_SECRET" in evidence[0]
    assert remedy is not None and "rotate-jwt-secret" in remedy


def test_a_token_the_app_just_issued_and_rejects_is_the_jwt_secret() -> None:
    assert diagnose(login=login(200, 401))[0] == "jwt-secret-missing"


def test_missing_namespace_or_dangling_binding_is_sessions_kv() -> None:
    cause, evidence, _ = diagnose(sessions=sessions(None, None), login=login(500, None))
    assert cause == "sessions-kv-missing" and "manuscript-sessions" in evidence[0]
    assert diagnose(sessions=sessions(NS, "deadbeef"))[0] == "sessions-kv-missing"


def test_cors_without_a_deployment_to_blame_says_what_to_change() -> None:
    cause, evidence, remedy = diagnose(cors=cors(False))
    assert cause == "cors-misconfigured" and "(absent)" in evidence[0]
    assert remedy is not None and "wrangler.toml" in remedy


def test_no_password_is_unknown_not_healthy() -> None:
    skipped = ab.Login(skipped="Environment variable OPSBOOK_TEST_USER_PASSWORD is not set")
    assert diagnose(login=skipped)[0] == "unknown"
