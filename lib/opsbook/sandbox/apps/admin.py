"""Admin routes both apps have, and how they authenticate.

    GET  /admin/users/export         every account (id, email, role, dates)
    POST /admin/users/{id}/role      {"role": "admin" | "user"}
    GET  /admin/subscriptions        every subscription

A caller is either the team's automation, with the Worker's ADMIN_API_KEY secret
(`X-API-Key: …`, or `Authorization: Bearer …` when it is not a JWT), compared with the
secret's current value, so a rotated key stops working at once; or a signed-in admin
(a session JWT whose KV session still exists, of an account that is not disabled).
The app logs "API key auth" / "API key rejected" and "Admin action" lines, as the
security runbook reads them.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import d1data
from ..profiles import PROFILES
from .common import AppError, Ctx, Handler, json_of, require_session, serve
from .firewall import client_ip
from .security import DISABLED

KEY_NAME = "ADMIN_API_KEY"
ROLES = ("admin", "user")


def _presented_key(request: Request) -> str:
    key = request.headers.get("x-api-key", "").strip()
    auth = request.headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer ") and auth.count(".") != 2:
        key = auth[7:].strip()
    return key


def authorize(ctx: Ctx, action: str) -> None:
    """Let an admin caller through (and log it), or raise AppError 401/403."""
    ip = client_ip(ctx.request)
    key = _presented_key(ctx.request)
    if key:
        want = ctx.snap.secrets.get(KEY_NAME) or ""
        if not want or not hmac.compare_digest(key.encode(), want.encode()):
            why = {"key": KEY_NAME, "source_ip": ip, "reason": "invalid key"}
            raise AppError(401, "Unauthorized", ["API key rejected", why])
        ctx.user_id = f"apikey:{KEY_NAME}"
        ctx.log("log", "API key auth", {"key": KEY_NAME, "source_ip": ip, "action": action})
        return
    claims = require_session(ctx)
    with d1data.d1_connect(ctx.state, PROFILES[ctx.profile.name].database) as db:
        row = db.execute(
            "SELECT password_hash, role FROM users WHERE id = ?", (claims["sub"],)
        ).fetchone()
    if row is None or str(row[0]).startswith(DISABLED):
        raise AppError(
            401, "Unauthorized", ["Session validation failed", {"reason": "account disabled"}]
        )
    if row[1] != "admin":
        who = {"user_id": claims["sub"], "action": action, "ip": ip}
        raise AppError(403, "Forbidden", ["Admin action denied", who])
    ctx.log("log", "Admin action", {"user_id": claims["sub"], "action": action, "ip": ip})


def _rows(ctx: Ctx, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with d1data.d1_connect(ctx.state, ctx.profile.database) as db:
        cur = db.execute(sql, params)
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


async def export_users(ctx: Ctx) -> Response:
    authorize(ctx, "export_users")
    users = _rows(
        ctx, "SELECT id, email, role, created_at, last_login FROM users ORDER BY created_at"
    )
    return JSONResponse({"users": users, "count": len(users)})


async def set_role(ctx: Ctx) -> Response:
    authorize(ctx, "grant_admin")
    body = await json_of(ctx.request)
    role = body.get("role")
    if role not in ROLES:
        raise AppError(400, "role must be admin or user")
    user_id = ctx.request.path_params["id"]
    with d1data.d1_connect(ctx.state, ctx.profile.database) as db:
        changed = db.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id)).rowcount
    if not changed:
        raise AppError(404, "User not found")
    return JSONResponse({"id": user_id, "role": role})


async def subscriptions(ctx: Ctx) -> Response:
    authorize(ctx, "list_subscriptions")
    rows = _rows(ctx, "SELECT * FROM subscriptions ORDER BY rowid LIMIT 1000")
    return JSONResponse({"subscriptions": rows, "count": len(rows)})


def routes(profile: str) -> list[BaseRoute]:
    def route(path: str, method: str, name: str, fn: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            return await serve(request, profile, name, fn)

        return Route(path, endpoint, methods=[method])

    return [
        route("/admin/users/export", "GET", "GET /admin/users/export", export_users),
        route("/admin/users/{id}/role", "POST", "POST /admin/users/:id/role", set_role),
        route("/admin/subscriptions", "GET", "GET /admin/subscriptions", subscriptions),
    ]
