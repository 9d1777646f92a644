"""security-incident: gather the evidence, contain, remediate, verify.

Containment uses the production interfaces: Cloudflare IP Access Rules (account level) to
block IPs, one D1 UPDATE (WHERE id = ?) plus the user's KV sessions to disable an
account, a Worker secret PUT with a value generated here to rotate a credential.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ApiError
from ..platform import Platform
from ..sqlguard import check
from . import security_incident as si
from .live_tail import tail_until

DISABLED = "disabled:"  # prefix on password_hash: no password verifies, the hash is kept for undo
RESET_PATHS = {"manuscript": "/auth/password-reset-request"}


def trusted_ips(p: Platform) -> set[str]:
    return {str(ip) for ip in (p.setting("security.trusted_ips") or [])}


def watch(p: Platform, seconds: float) -> list[si.Seen]:
    """Tail the Worker for up to `seconds`, stopping once the evidence is conclusive."""
    trusted = trusted_ips(p)
    found: list[si.Seen] = []

    def stop(events: list[dict[str, Any]]) -> bool:
        found[:] = si.parse(events)
        return si.conclusive(found, trusted)

    events, _ = tail_until(p, seconds, [], stop=stop)
    return si.parse(events)


def _rows(p: Platform, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    out = p.cf.d1_query(p.database, sql, params)
    return list(out[0]["results"]) if out else []


def users_by_id(p: Platform, ids: list[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    marks = ",".join("?" for _ in ids)
    rows = _rows(
        p, f"SELECT id, email, role, last_login FROM users WHERE id IN ({marks})", list(ids)
    )
    return {str(r["id"]): r for r in rows}


def users_by_email(p: Platform, emails: list[str]) -> dict[str, dict[str, Any]]:
    emails = [e.lower() for e in emails if "@" in e]
    if not emails:
        return {}
    marks = ",".join("?" for _ in emails)
    rows = _rows(
        p,
        f"SELECT id, email, role, last_login FROM users WHERE lower(email) IN ({marks})",
        emails,
    )
    return {str(r["email"]).lower(): r for r in rows}


# ---- block-ips ----------------------------------------------------------------------------
def _rules_path(p: Platform) -> str:
    return f"{p.cf.acct}/firewall/access_rules/rules"


def block_preview(p: Platform, ips: list[str], why: str) -> dict[str, Any]:
    body = {"mode": "block", "configuration": {"target": "ip", "value": ips[0] if ips else ""},
            "notes": why}  # fmt: skip
    return {
        "call": f"POST /accounts/{p.cf.account_id}/firewall/access_rules/rules (one per IP)",
        "ips": ips,
        "body": body,
        "curl": (
            f"curl -X POST https://api.cloudflare.com/client/v4/accounts/{p.cf.account_id}"
            "/firewall/access_rules/rules -H 'Authorization: Bearer $CLOUDFLARE_API_TOKEN' "
            f"--json '{json.dumps(body)}'"
        ),
        "wrangler": "none: wrangler has no IP rules; Dashboard → Security → WAF → Tools → IP Access Rules",
        "undo": "DELETE …/firewall/access_rules/rules/{rule_id}",
    }


def block_ips(p: Platform, ips: list[str], why: str) -> list[dict[str, Any]]:
    out = []
    for ip in ips:
        body = {"mode": "block", "configuration": {"target": "ip", "value": ip}, "notes": why}
        rule = p.cf.call("POST", _rules_path(p), json=body)
        out.append({"ip": ip, "rule_id": (rule or {}).get("id")})
    return out


def blocked_ips(p: Platform) -> set[str]:
    rules = p.cf.call("GET", _rules_path(p), params={"mode": "block", "per_page": 1000}) or []
    return {str((r.get("configuration") or {}).get("value")) for r in rules}


# ---- disable-account ------------------------------------------------------------------------
def disable_sql() -> str:
    return (
        f"UPDATE users SET password_hash = '{DISABLED}' || password_hash "
        f"WHERE id = ? AND password_hash NOT LIKE '{DISABLED}%'"
    )


def disable_preview(p: Platform, user: dict[str, Any]) -> dict[str, Any]:
    uid = user.get("id", "?")
    return {
        "call": f"POST /accounts/{p.cf.account_id}/d1/database/{{uuid of {p.database}}}/query",
        "sql": disable_sql(),
        "params": [uid],
        "user": user.get("email"),
        "also": f"DELETE every session:* key of user {uid} in KV {p.setting('app.kv_sessions')}",
        "wrangler": f"npx wrangler d1 execute {p.database} --remote --command "
        f'"{disable_sql().replace("?", repr(uid))}"',
        "undo": f"UPDATE users SET password_hash = substr(password_hash, {len(DISABLED) + 1}) "
        f"WHERE id = '{uid}' AND password_hash LIKE '{DISABLED}%'",
    }


def user_sessions(p: Platform, user_id: str) -> list[str]:
    ns = str(p.setting("app.kv_sessions"))
    keys = []
    for k in p.cf.kv_keys(ns, prefix="session:"):
        meta = k.get("metadata") or {}
        if "user_id" in meta:
            if str(meta["user_id"]) == user_id:
                keys.append(k["name"])
            continue
        try:
            value = json.loads(p.cf.kv_get(ns, k["name"]))
        except (ApiError, ValueError):
            continue
        if isinstance(value, dict) and str(value.get("user_id")) == user_id:
            keys.append(k["name"])
    return keys


def revoke_sessions(p: Platform, user_id: str) -> int:
    ns = str(p.setting("app.kv_sessions"))
    keys = user_sessions(p, user_id)
    for key in keys:
        p.cf.kv_delete(ns, key)
    return len(keys)


def disable_account(p: Platform, user_id: str) -> dict[str, Any]:
    g = check(disable_sql())
    if not g.ok:
        raise RuntimeError(f"refused by the SQL guard: {g.refused}")
    before = _rows(p, "SELECT count(*) AS n FROM users WHERE id = ?", [user_id])[0]["n"]
    if before != 1:
        raise RuntimeError(f"expected exactly one user with id {user_id}, found {before}")
    out = p.cf.d1_query(p.database, disable_sql(), [user_id])
    changes = ((out[0] if out else {}).get("meta") or {}).get("changes")
    return {
        "user_id": user_id,
        "rows_changed": changes,
        "sessions_revoked": revoke_sessions(p, user_id),
    }


def is_disabled(p: Platform, user_id: str) -> bool:
    rows = _rows(p, "SELECT password_hash FROM users WHERE id = ?", [user_id])
    return bool(rows) and str(rows[0]["password_hash"]).startswith(DISABLED)


# ---- force-password-reset --------------------------------------------------------------------
def reset_preview(p: Platform, users: list[dict[str, Any]]) -> dict[str, Any]:
    path = RESET_PATHS.get(p.profile)
    return {
        "users": [u.get("email") for u in users],
        "sessions": f"DELETE every session:* key of these users in KV {p.setting('app.kv_sessions')}",
        "reset": (
            f"POST {p.app_url(path)} {{'email': …}} (the app's own reset link by mail)"
            if path
            else "the app has no password-reset route: support sends the reset by hand"
        ),
        "wrangler": f"npx wrangler kv key delete session:<sid> --namespace-id <{p.setting('app.kv_sessions')}> --remote",
    }


def force_reset(p: Platform, users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import httpx

    path = RESET_PATHS.get(p.profile)
    out = []
    for u in users:
        item: dict[str, Any] = {
            "user": u["email"],
            "sessions_revoked": revoke_sessions(p, str(u["id"])),
        }
        if path:
            resp = httpx.post(p.app_url(path), json={"email": u["email"]}, timeout=15)
            item["reset_request"] = resp.status_code
        out.append(item)
    return out


# ---- rotate-secret ----------------------------------------------------------------------------
def vault() -> Path:
    return Path(os.environ.get("OPSBOOK_SECRETS_DIR") or Path.home() / ".opsbook" / "rotated")


def rotate_preview(p: Platform, name: str) -> dict[str, Any]:
    return {
        "call": f"PUT /accounts/{p.cf.account_id}/workers/scripts/{p.worker}/secrets",
        "body": {
            "name": name,
            "text": "<48 random bytes, generated in the kernel>",
            "type": "secret_text",
        },
        "value": f"never shown or archived: written to {vault()}/<worker>-{name}-<time> (mode 0600) "
        "for the key's owners",
        "wrangler": f"openssl rand -base64 48 | npx wrangler secret put {name} --name {p.worker}",
    }


def rotate_secret(p: Platform, name: str) -> dict[str, Any]:
    value = secrets.token_urlsafe(48)
    p.cf.put_secret(p.worker, name, value)
    folder = vault()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{p.worker}-{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return {"secret": name, "worker": p.worker, "new_value_in": str(path)}


# ---- verify ----------------------------------------------------------------------------------
def verify(
    p: Platform, d: si.Diagnosis, applied: set[str], seconds: float
) -> tuple[bool, list[str]]:
    """Fresh evidence: rules and rows as changed, and a new tail with no more of the attack."""
    lines: list[str] = []
    passed = True
    if "block-ips" in applied:
        try:
            rules = blocked_ips(p)
        except ApiError as exc:
            rules = set()
            lines.append(f"IP access rules could not be read: {exc}")
        missing = [ip for ip in d.block if ip not in rules]
        passed = passed and not missing
        lines.append(f"block rules present for {len(d.block) - len(missing)}/{len(d.block)} IPs")
    if "disable-account" in applied:
        for uid in d.disable:
            off, left = is_disabled(p, uid), len(user_sessions(p, uid))
            passed = passed and off and left == 0
            lines.append(f"user {uid}: login disabled={off}, sessions left={left}")
    if "force-password-reset" in applied:
        for uid in d.reset:
            left = len(user_sessions(p, uid))
            passed = passed and left == 0
            lines.append(f"user {uid}: sessions left={left}")
    if "rotate-secret" in applied:
        names = {s["name"] for s in p.cf.secrets(p.worker)}
        for name in d.rotate:
            passed = passed and name in names
            lines.append(f"secret {name} is set on {p.worker}: {name in names}")
    since = datetime.now(UTC)
    seconds = d.watch_seconds(seconds)  # long enough to expect the attacker at its old rate
    offending: list[str] = []

    def still(events: list[dict[str, Any]]) -> bool:
        offending[:] = [
            _offense(s, d) for s in si.parse(events) if s.ts >= since and _offense(s, d)
        ]
        return bool(offending)

    tail_until(p, seconds, [], stop=still)
    if offending:
        passed = False
        lines.append(
            f"the attack still reaches the Worker after the fix: {offending[0]} (+{len(offending) - 1} more)"
        )
    else:
        lines.append(
            f"no request from {d.block or 'the attacker'} reached the Worker in a {seconds:.0f} s tail since the fix "
            f"(at the {d.per_min:.1f}/min seen before it, ≥ 3 would have)"
        )
    return passed, lines


def _offense(s: si.Seen, d: si.Diagnosis) -> str:
    """What a request still shows of the attack: served from a blocked IP (not 403), or
    a disabled account's or a rotated key's action that succeeded."""
    who = ""
    served = s.status is None or s.status < 400
    if s.ip in d.block and s.status != 403:
        who = f"{s.ip} {s.method} {s.path} -> {s.status}"
    elif s.kind == "admin-action" and str(s.detail.get("user_id")) in d.disable and served:
        who = f"user {s.detail.get('user_id')} {s.detail.get('action')} from {s.ip}"
    elif s.kind == "api-key" and str(s.detail.get("key")) in d.rotate and served:
        who = f"{s.detail.get('key')} used from {s.ip}"
    return f"{si.t(s.ts)} {who}" if who else ""
