"""Unusual callers, for the security faults: what they send, as the app logs it.

Each is a condition `attack:<script>:<kind>` (conditions.py) that the traffic model
turns into requests every minute from its onset, the same in history and live:

    brute-force          {"ips": [...], "country", "per_min", "targets": [emails]}
                         POST /auth/login from a few IPs, almost all 401
    compromised-account  {"user_id", "ip", "country", "per_min"}
                         admin actions by a known user from a new IP and country
    leaked-secret        {"ip", "country", "per_min", "key_hint"}
                         requests authenticated with the admin API key from an unknown IP
"""

from __future__ import annotations

import random
from typing import Any

from .. import trace
from ..behaviour import Outcome

SCRIPTED_UA = "python-requests/2.31.0"
ADMIN_ACTIONS = (
    ("GET", "/admin/users/export", "export_users", 200),
    ("POST", "/admin/users/:id/role", "grant_admin", 200),
    ("DELETE", "/manuscripts/:id", "delete_manuscript", 204),
    ("GET", "/admin/subscriptions", "list_subscriptions", 200),
)


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
            if kind == "compromised-account":
                user_id = cond["user_id"]
                res.log("log", at, "Admin action", {"user_id": user_id, "action": action, "ip": ip})
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
