"""Unusual callers, for the security faults: what they send, as the app logs it.

Each is a condition `attack:<script>:<kind>` (conditions.py) that the traffic model
turns into requests every minute from its onset, the same in history and live:

    brute-force          {"ips": [...], "country", "per_min", "targets": [emails]}
                         POST /auth/login from a few IPs, almost all 401
    compromised-account  {"user_id", "ip", "country", "per_min"}
                         admin actions by a known user from a new IP and country
    leaked-secret        {"ip", "country", "per_min", "key_hint"}
                         requests authenticated with the admin API key from an unknown IP

`arm()` gives the attacker what it holds when the fault starts: a live KV session of the
compromised user (`sid`), or the digest of the API key's value that leaked (the secret is
created, backdated, when the Worker has none). The attacker keeps its access only while
the platform still honours it (`holds`): the session is in KV and the user is not
disabled; the secret still has the leaked value (or had it at the time of the request).
The edge's IP Access Rules apply on top (cf_firewall.screen): a blocked IP gets 403s.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from datetime import datetime, timedelta
from typing import Any

from .. import cf_kv, d1data, trace
from .. import workers_model as wm
from ..behaviour import Outcome
from ..platform_view import ts_ms
from ..profiles import Profile
from ..state import State

SCRIPTED_UA = "python-requests/2.31.0"
ADMIN_ACTIONS = (
    ("GET", "/admin/users/export", "export_users", 200),
    ("POST", "/admin/users/:id/role", "grant_admin", 200),
    ("DELETE", "/manuscripts/:id", "delete_manuscript", 204),
    ("GET", "/admin/subscriptions", "list_subscriptions", 200),
)


DISABLED = "disabled:"  # the prefix a disabled account's password_hash carries


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def arm(
    state: State, profile: Profile, kind: str, data: dict[str, Any], onset: datetime
) -> dict[str, Any]:
    """What the attacker holds from `onset`: merged into the attack's condition."""
    if kind == "compromised-account":
        with d1data.d1_connect(state, profile.database) as db:
            row = db.execute("SELECT email FROM users WHERE id = ?", (data["user_id"],)).fetchone()
        created = int(onset.timestamp())
        sid = random.SystemRandom().randbytes(16).hex()
        record = {"user_id": data["user_id"], "email": row[0] if row else "", "created_at": created}
        cf_kv.kv_put(state, profile.kv_sessions, f"session:{sid}", json.dumps(record),
                     expiration=created + 7 * 86400)  # fmt: skip
        return {"sid": sid}
    if kind == "leaked-secret":
        name = str(data.get("key_hint") or "ADMIN_API_KEY")
        value = wm.secret_values(state, profile.worker).get(name)
        if value is None:  # the Worker's admin key, set long before the leak
            value = random.SystemRandom().randbytes(24).hex()
            wm.put_secret(state, profile.worker, name, value)
            wm.backdate_secret_change(state, profile.worker, name, onset - timedelta(days=15))
        return {"key_sha256": digest(value)}
    return {}


def _session_alive(state: State, profile: Profile, sid: str) -> bool:
    return cf_kv.kv_get(state, profile.kv_sessions, f"session:{sid}") is not None


def _disabled(state: State, profile: Profile, user_id: str) -> bool:
    try:
        with d1data.d1_connect(state, profile.database) as db:
            row = db.execute("SELECT password_hash FROM users WHERE id = ?", (user_id,)).fetchone()
    except (d1data.D1Error, sqlite3.DatabaseError):
        return False
    return row is None or str(row[0]).startswith(DISABLED)


def _key_changed_ms(state: State, script: str, name: str) -> int | None:
    """When the secret last changed (ms), or None when it is gone."""
    with state.read() as db:
        row = db.execute(
            "SELECT updated_on FROM secrets WHERE script = ? AND name = ?", (script, name)
        ).fetchone()
    return ts_ms(row[0]) if row else None


def holds(gen: Any, kind: str, cond: dict[str, Any], at: int) -> str:
    """'' while the attacker's access works at `at`; else why it is refused."""
    cache: dict[str, Any] = gen.__dict__.setdefault("_attack_access", {})
    if kind == "compromised-account" and cond.get("sid"):
        if kind not in cache:
            sid = str(cond["sid"])
            alive = _session_alive(gen.state, gen.profile, sid)
            off = _disabled(gen.state, gen.profile, str(cond["user_id"]))
            why = "account disabled" if off else "" if alive else "session not found"
            # revoked (the session deleted, as disabling the account does): refused from then
            revoked = (
                None
                if alive
                else cf_kv.deleted_ms(gen.state, gen.profile.kv_sessions, f"session:{sid}")
            )
            cache[kind] = (why, revoked)
        why, revoked = cache[kind]
        return "" if revoked is not None and at < revoked else str(why)
    if kind == "leaked-secret" and cond.get("key_sha256"):
        name = str(cond.get("key_hint") or "ADMIN_API_KEY")
        if kind not in cache:
            value = gen.base.secrets.get(name)
            same = value is not None and digest(value) == cond["key_sha256"]
            cache[kind] = (same, _key_changed_ms(gen.state, gen.profile.worker, name))
        same, changed = cache[kind]
        return "" if same or (changed is not None and at < changed) else "invalid key"
    return ""


def attack_minute(
    gen: Any, kind: str, cond: dict[str, Any], m: int, rng: random.Random
) -> list[trace.Invocation]:
    r = random.Random(f"attack:{kind}:{gen.profile.worker}:{m}")
    count = max(0, round(float(cond.get("per_min", 30)) * r.uniform(0.8, 1.2)))
    out: list[trace.Invocation] = []
    for _ in range(count):
        at = m * 60_000 + r.randrange(60_000)
        snap = gen.snap_at(at, r)
        res = Outcome(status=401, wall_ms=r.uniform(60, 140), cpu_ms=r.uniform(30, 45))
        user_id = None
        if kind == "brute-force":
            ip = r.choice(cond["ips"])
            target = r.choice(cond.get("targets") or ["admin@example.com"])
            method, path, route = "POST", "/auth/login", "POST /auth/login"
            res.log("warn", at, "Login failed", {"reason": "invalid_credentials", "email": target})
            res.response_bytes = 40
        else:
            ip = cond["ip"]
            method, pattern, action, status = r.choice(ADMIN_ACTIONS)
            path = pattern.replace(":id", f"{r.getrandbits(48):012x}")
            route = f"{method} {pattern}"
            res.status, res.response_bytes = status, r.randint(200, 90_000)
            refused = holds(gen, kind, cond, at)
            if refused:
                res.status, res.response_bytes = 401, 27
            if kind == "compromised-account" and refused:
                res.log("warn", at, "Session validation failed", {"reason": refused})
            elif kind == "compromised-account":
                user_id = cond["user_id"]
                res.log("log", at, "Admin action", {"user_id": user_id, "action": action, "ip": ip})
            elif refused:
                hint = cond.get("key_hint", "ADMIN_API_KEY")
                res.log(
                    "warn",
                    at,
                    "API key rejected",
                    {"key": hint, "source_ip": ip, "reason": refused},
                )
            else:
                hint = cond.get("key_hint", "ADMIN_API_KEY")
                res.log("log", at, "API key auth", {"key": hint, "source_ip": ip, "action": action})
                user_id = f"apikey:{hint}"
        inv = trace.Invocation(
            ts_ms=at,
            script=gen.profile.worker,
            version_id=snap.version_id,
            outcome="ok",
            wall_ms=round(res.wall_ms, 3),
            cpu_ms=round(res.cpu_ms, 3),
            method=method,
            url=f"https://{gen.host}{path}",
            path=path,
            route=route,
            status=res.status,
            colo={"RU": "DME", "NG": "LOS", "NL": "AMS", "CN": "HKG"}.get(
                cond.get("country", ""), "FRA"
            ),
            country=cond.get("country", "RU"),
            client_ip=ip,
            user_agent=cond.get("user_agent", SCRIPTED_UA),
            logs=res.logs,
            response_bytes=res.response_bytes,
            user_id=user_id,
            ray_id=f"{r.getrandbits(64):016x}",
            extra={"host": gen.host},
        )
        out.append(inv)
    return out
