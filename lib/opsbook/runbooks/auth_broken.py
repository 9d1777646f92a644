"""auth-broken: users cannot log in, or every authenticated request answers 401.
Seed 000 Issue 2 (Authentication Broken); the PepTalk API has the same login (JWT + KV).

Checks: JWT_SECRET in the Worker's secrets, the sessions KV namespace and the SESSIONS
binding that points at it, a real login as the test user and an authenticated request
with the token it returns, and the CORS preflight the frontend sends. Remedies:
`rotate-jwt-secret` (destructive: logs everyone out) and `create-sessions-namespace`.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..clients.probes import PreflightResult, ProbeResult, preflight, probe
from ..errors import OpsbookError
from . import incident_signals as sig
from .api_down_remedy import RollbackPlan

if TYPE_CHECKING:
    from ..platform import Platform

CAUSES = {
    "jwt-secret-missing": "JWT_SECRET is missing, or the session tokens it signs are rejected",
    "sessions-kv-missing": "the sessions KV namespace is gone, or the SESSIONS binding points at nothing",
    "cors-misconfigured": "the frontend's CORS preflight is not allowed",
}
CORS_FIX = (
    "set the allowed origin (CORS_ORIGIN or FRONTEND_URL in wrangler.toml [vars]) to the "
    "frontend origin and deploy"
)
PROFILES = ("manuscript", "peptalk")
SEVERITY = "P0"
JWT = "JWT_SECRET"


def auth_check(p: Platform) -> tuple[str, tuple[int, ...]]:
    """The route that needs a session (params app.auth_check) and what a session gets."""
    check = p.setting("app.auth_check") or {"path": "/manuscripts", "status": [200]}
    status = check.get("status", [200])
    return str(check["path"]), tuple(
        int(s) for s in (status if isinstance(status, list) else [status])
    )


# ---- evidence ------------------------------------------------------------------------
@dataclass
class Sessions:
    title: str
    namespace_id: str | None  # the namespace titled app.kv_sessions, if it exists
    binding: dict[str, Any] | None  # the active version's binding of it (SESSIONS)
    version: str = ""

    @property
    def binding_ok(self) -> bool:
        return bool(self.binding and self.namespace_id
                    and self.binding.get("namespace_id") == self.namespace_id)  # fmt: skip

    def evidence(self) -> list[str]:
        ns = (
            f"KV namespace {self.title}: id {self.namespace_id}"
            if self.namespace_id
            else f"KV namespace {self.title} is missing from `wrangler kv namespace list`"
        )
        b = self.binding or {}
        bound = (
            f"version {self.version}: binding {b.get('name')} -> namespace_id "
            f"{b.get('namespace_id')}" + ("" if self.binding_ok else " (no such namespace)")
            if b
            else f"version {self.version} has no KV binding for the sessions namespace"
        )
        return [ns, bound]


def check_sessions(p: Platform) -> Sessions:
    title = str(p.setting("app.kv_sessions"))
    namespaces = p.cf.kv_namespaces()
    ns_id = next((n["id"] for n in namespaces if n["title"] == title), None)
    ids = {n["id"] for n in namespaces}
    current = p.cf.deployments(p.worker)[0]
    vid = current["versions"][0]["version_id"]
    version = p.cf.version(p.worker, vid)
    kv = [b for b in (version.get("resources") or {}).get("bindings", [])
          if b.get("type") == "kv_namespace"]  # fmt: skip
    # the binding of the sessions namespace: by its id, else one that points at nothing
    binding = next((b for b in kv if ns_id and b.get("namespace_id") == ns_id), None) or next(
        (b for b in kv if b.get("namespace_id") not in ids), None
    )
    return Sessions(title, ns_id, binding, f"{version.get('number')} ({vid})")


@dataclass
class Login:
    skipped: str | None = None  # why no login was tried
    login: ProbeResult | None = None
    authed: ProbeResult | None = None  # the authenticated request with the token
    expected: tuple[int, ...] = (200,)
    path: str = ""

    @property
    def token_ok(self) -> bool:
        return self.authed is not None and self.authed.status in self.expected

    def evidence(self, p: Platform) -> list[str]:
        if self.skipped:
            return [f"test login not tried: {self.skipped}"]
        assert self.login is not None
        user = p.setting("app.test_user")
        out = [f"POST /auth/login as {user}: HTTP {self.login.status} {_body(self.login)}"]
        if self.authed is not None:
            out.append(
                f"GET {self.path} with the token it returned: HTTP {self.authed.status} "
                f"{_body(self.authed)} (expected {'/'.join(map(str, self.expected))})"
            )
        return out


def _body(r: ProbeResult) -> str:
    if r.status is not None and r.status < 400:  # never echo user data or tokens
        return "(a session token)" if '"token"' in r.body else f"({len(r.body)} bytes)"
    return (r.body or r.error or "").strip().replace("\n", " ")[:120]


def try_login(p: Platform, timeout_s: float = 5.0) -> Login:
    """Log in as params app.test_user; with the token, call the route that needs one."""
    path, expected = auth_check(p)
    try:
        password = p.env.secret("app.test_user_password")
    except OpsbookError as exc:
        return Login(skipped=str(exc), expected=expected, path=path)
    login = probe(p.app_url("/auth/login"), "POST", 200, timeout=timeout_s,
                  json={"email": p.setting("app.test_user"), "password": password})  # fmt: skip
    result = Login(login=login, expected=expected, path=path)
    if login.status == 200:
        try:
            token = str(login.json().get("token") or "")
        except ValueError:
            token = ""
        if token:
            result.authed = probe(p.app_url(path), "GET", expected, timeout=timeout_s,
                                  headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    return result


def check_cors(p: Platform) -> PreflightResult:
    origin = str(p.setting("app.frontend_origin"))
    return preflight(p.app_url("/auth/login"), origin, "POST")


def cors_evidence(c: PreflightResult) -> str:
    return (
        f"OPTIONS /auth/login from {c.origin}: HTTP {c.status}, Access-Control-Allow-Origin: "
        f"{c.allow_origin or '(absent)'}" + ("" if c.allowed else " — the browser blocks it")
    )


@dataclass(frozen=True)
class CorsChange:
    """The deployment that changed an origin setting, and the rollback to the one before."""

    deployment: dict[str, Any]
    changed: dict[str, tuple[str | None, str | None]]  # var -> (before, now)
    plan: RollbackPlan

    def evidence(self) -> list[str]:
        d = self.deployment
        msg = (d.get("annotations") or {}).get("workers/message", "")
        return [
            f'deployment {d["id"]} at {d["created_on"]} ("{msg}") deployed version '
            f"{self.plan.bad_number} ({self.plan.bad_version_id}), which changed "
            + ", ".join(
                f"{k}: {a or '(unset)'} -> {b or '(unset)'}" for k, (a, b) in self.changed.items()
            ),
            f"version {self.plan.number} ({self.plan.version_id}) was serving before it",
        ]


def _plain(p: Platform, version_id: str) -> dict[str, str]:
    bindings = (p.cf.version(p.worker, version_id).get("resources") or {}).get("bindings") or []
    return {b["name"]: str(b.get("text", "")) for b in bindings if b.get("type") == "plain_text"}


def cors_change(p: Platform) -> CorsChange | None:
    """Did the serving deployment change a var holding an origin (CORS_*, *_ORIGIN, a URL)?"""
    deps = [d for d in p.cf.deployments(p.worker) if len(d.get("versions") or []) == 1]
    if len(deps) < 2:
        return None
    now_id, before_id = (d["versions"][0]["version_id"] for d in deps[:2])
    now, before = _plain(p, now_id), _plain(p, before_id)

    def origin_like(name: str, value: str | None) -> bool:
        return "CORS" in name or "ORIGIN" in name or str(value or "").startswith("http")

    changed = {k: (before.get(k), now.get(k)) for k in sorted(set(now) | set(before))
               if now.get(k) != before.get(k) and origin_like(k, now.get(k) or before.get(k))}  # fmt: skip
    if not changed:
        return None
    numbers = {v["id"]: v.get("number") for v in p.cf.versions(p.worker)}
    plan = RollbackPlan(before_id, numbers.get(before_id), now_id, numbers.get(now_id),
                        f"auth-broken: roll back version {numbers.get(now_id)} (CORS origin)")  # fmt: skip
    return CorsChange(deps[0], changed, plan)


# ---- the verdict ----------------------------------------------------------------------
@dataclass
class Facts:
    secrets: list[str]
    sessions: Sessions
    login: Login
    cors: PreflightResult
    cors_change: CorsChange | None = None


def diagnose(f: Facts, p: Platform) -> tuple[str, list[str], str | None]:
    login_ev = f.login.evidence(p)
    if JWT not in f.secrets:
        return (
            "jwt-secret-missing",
            [
                f"{JWT} is not among the Worker's secrets ({', '.join(f.secrets) or 'none'})",
                *login_ev,
            ],
            f"Set a new {JWT}: approve rotate-jwt-secret (every user must log in again).",
        )
    if not f.sessions.namespace_id or not f.sessions.binding_ok:
        return (
            "sessions-kv-missing",
            f.sessions.evidence() + login_ev,
            f"Create the {f.sessions.title} namespace: approve create-sessions-namespace "
            "(existing sessions are lost; users log in again).",
        )
    lg = f.login
    if (
        lg.login is not None
        and lg.login.status == 200
        and lg.authed is not None
        and not lg.token_ok
    ) and lg.authed.status == 401:
        return (
            "jwt-secret-missing",
            [f"{JWT} is set, but a token it just signed is rejected", *login_ev],
            f"{JWT} is corrupted or read inconsistently: approve rotate-jwt-secret.",
        )
    if not f.cors.allowed:
        change = f.cors_change
        return (
            "cors-misconfigured",
            [cors_evidence(f.cors)] + (change.evidence() if change else []) + login_ev,
            f"Approve rollback to version {change.plan.number}; then {CORS_FIX}."
            if change
            else f"No deployment changed an origin setting: {CORS_FIX}.",
        )
    if lg.skipped:
        return (
            "unknown",
            login_ev + f.sessions.evidence() + [cors_evidence(f.cors)],
            "Provide the test user's password (app.test_user_password) and run again.",
        )
    if lg.login is None or lg.login.status != 200 or not lg.token_ok:
        return "unknown", login_ev + f.sessions.evidence(), "Tail the login route and escalate."
    return "healthy", [*login_ev, cors_evidence(f.cors), *f.sessions.evidence()[:1]], None


# ---- remedies ----------------------------------------------------------------------------
def _acct(p: Platform) -> str:
    return f"/accounts/{p.cf.account_id}"


def rotate_preview(p: Platform) -> dict[str, Any]:
    return {
        "call": f"PUT {_acct(p)}/workers/scripts/{p.worker}/secrets",
        "body": {"name": JWT, "text": "<32 random bytes, base64, generated in the kernel>",
                 "type": "secret_text"},
        "wrangler": f"openssl rand -base64 32 | npx wrangler secret put {JWT} --name {p.worker}",
        "effect": "every existing session token becomes invalid: all users must log in again",
    }  # fmt: skip


def rotate_jwt_secret(p: Platform) -> dict[str, Any]:
    value = base64.b64encode(secrets.token_bytes(32)).decode()
    p.cf.put_secret(p.worker, JWT, value)
    return {"put": JWT, "bytes": 32, "at": sig.fix_time(),
            "note": "all users are logged out"}  # fmt: skip


def namespace_preview(p: Platform, title: str) -> dict[str, Any]:
    return {
        "call": f"POST {_acct(p)}/storage/kv/namespaces",
        "body": {"title": title},
        "wrangler": f"npx wrangler kv namespace create {title}",
        "then": "if the Worker's SESSIONS binding does not resolve to the new id, set it in "
        'wrangler.toml ([[kv_namespaces]] binding = "SESSIONS", id = <new id>) and '
        "npx wrangler deploy",
    }


def create_sessions_namespace(p: Platform, title: str) -> dict[str, Any]:
    created = p.cf.call("POST", f"{_acct(p)}/storage/kv/namespaces", json={"title": title})
    after = check_sessions(p)
    out = {"namespace": created.get("id"), "title": title, "binding_resolves": after.binding_ok}
    if not after.binding_ok:
        out["next"] = (
            f"the SESSIONS binding still points at {((after.binding or {}).get('namespace_id'))}: "
            f'set id = "{created.get("id")}" in wrangler.toml and npx wrangler deploy'
        )
    return out


def verify(p: Platform, cors: bool = False) -> tuple[bool, list[str]]:
    """A fresh login and an authenticated request with its token (and the preflight)."""
    lg = try_login(p)
    ok = lg.login is not None and lg.login.status == 200 and lg.token_ok
    evidence = lg.evidence(p)
    if cors:
        pre = check_cors(p)
        ok = ok and pre.allowed
        evidence.append(cors_evidence(pre))
    return ok, evidence
