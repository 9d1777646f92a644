"""The manuscript platform API (Worker `manuscript-upload-api`), seed 000.

    GET  /health                          D1 ping; 503 when the database is unavailable
    POST /auth/login                      PBKDF2 verify, KV session, HS256 JWT
    POST /auth/password-reset-request     verification_tokens row + mail via /mail/tx/v1/send
    GET  /manuscripts                     401 without a session; ?page&limit (max 100)
    GET  /manuscripts/{id}                one manuscript of the caller
    GET  /manuscripts/{id}/analysis       the analysis (an Anthropic call)
    POST /manuscripts                     insert + enqueue on manuscript-analysis-queue
    OPTIONS *                             CORS preflight for the frontend origin

The queue consumer (`consume_job`) is registered in queues_model.HANDLERS.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import behaviour, d1data, queues_model, trace
from ..platform_view import SCAN_MS_PER_ROW, snapshot
from .common import (
    AppError,
    Ctx,
    Thrown,
    cors_headers,
    create_session,
    json_of,
    require_session,
    serve,
)
from .common import verify_password as _verify

PROFILE = "manuscript"
DB = "manuscript-platform"
LIST_SQL = "SELECT * FROM manuscripts WHERE author_id=? ORDER BY created_at DESC"


def _iso(when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _route(path: str, method: str, route: str, fn: Any) -> Route:
    async def endpoint(request: Request) -> Response:
        return await serve(request, PROFILE, route, fn)

    return Route(path, endpoint, methods=[method])


async def health(ctx: Ctx) -> Response:
    try:
        with d1data.d1_connect(ctx.state, DB) as db:
            db.execute("SELECT 1").fetchone()
    except (d1data.D1Error, sqlite3.DatabaseError) as exc:
        ctx.log("error", "Health check failed:", d1data.d1_error(exc).message)
        return JSONResponse({"status": "degraded", "database": "error"}, status_code=503)
    return JSONResponse(
        {"status": "ok", "database": "ok", "version": ctx.snap.version_id, "timestamp": _iso()}
    )


async def login(ctx: Ctx) -> Response:
    return await login_in(ctx, DB)


async def login_in(ctx: Ctx, database: str) -> Response:
    """POST /auth/login for either app: PBKDF2 verify, KV session, JWT."""
    body = await json_of(ctx.request)
    email, password = str(body.get("email", "")).strip().lower(), str(body.get("password", ""))
    if not email or not password:
        raise AppError(400, "Email and password are required")
    with d1data.d1_connect(ctx.state, database) as db:
        row = db.execute(
            "SELECT id, email, password_hash, role FROM users WHERE lower(email) = ?", (email,)
        ).fetchone()
    ok = row is not None and await asyncio.to_thread(_verify, password, row[2])
    if not ok or row is None:
        ctx.log(
            "warn",
            "Login failed",
            {"reason": "invalid_credentials", "email_domain": email.split("@")[-1]},
        )
        return JSONResponse({"error": "Invalid email or password"}, status_code=401)
    user = {"id": row[0], "email": row[1], "role": row[3]}
    token = create_session(ctx, user)
    with d1data.d1_connect(ctx.state, database) as db:
        db.execute("UPDATE users SET last_login = ? WHERE id = ?", (_iso(), user["id"]))
    ctx.user_id = user["id"]
    ctx.log("log", "Login success", {"user_id": user["id"]})
    return JSONResponse({"token": token, "user": user, "expires_in": 7 * 24 * 3600})


async def password_reset(ctx: Ctx) -> Response:
    body = await json_of(ctx.request)
    email = str(body.get("email", "")).strip().lower()
    if "@" not in email:
        raise AppError(400, "A valid email is required")
    done = {"message": "If an account exists for that email, a reset link has been sent."}
    with d1data.d1_connect(ctx.state, DB) as db:
        user = db.execute("SELECT id FROM users WHERE lower(email) = ?", (email,)).fetchone()
        if user is None:
            return JSONResponse(done)
        token = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(hours=1)
        try:
            db.execute(
                "INSERT INTO verification_tokens (token, user_id, token_type, expires_at, used, created_at)"
                " VALUES (?, ?, 'password_reset', ?, 0, ?)",
                (token, user[0], _iso(expires), _iso()),
            )
        except sqlite3.Error as exc:
            raise AppError(
                500,
                "Failed to process request",
                ["Password reset error:", d1data.d1_error(exc).message],
            ) from None
    sender = ctx.snap.vars.get("EMAIL_FROM")
    if not sender:
        raise AppError(
            500, "Failed to send email", ["Email configuration missing:", ["EMAIL_FROM"]]
        )
    message = {
        "personalizations": [{"to": [{"email": email}]}],
        "from": {"email": sender, "name": ctx.snap.vars.get("EMAIL_FROM_NAME", "")},
        "subject": "Reset your password",
        "content": [
            {
                "type": "text/plain",
                "value": f"Reset link: {ctx.snap.vars.get('FRONTEND_URL', '')}/reset?token={token}",
            }
        ],
    }
    base = str(ctx.request.base_url).rstrip("/")
    ctx.out.subrequests += 1
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.post(f"{base}/mail/tx/v1/send", json=message)
    if resp.status_code != 202:
        detail: Any = (
            resp.json()
            if resp.headers.get("content-type", "").startswith("application/json")
            else resp.text
        )
        raise AppError(
            500, "Failed to send email", ["MailChannels send failed", resp.status_code, detail]
        )
    ctx.log("log", "Password reset email sent", {"provider": "mailchannels", "status": 202})
    return JSONResponse(done)


def _page(ctx: Ctx) -> tuple[int, int]:
    try:
        page = max(1, int(ctx.request.query_params.get("page", "1")))
        limit = min(100, max(1, int(ctx.request.query_params.get("limit", "20"))))
    except ValueError:
        raise AppError(400, "page and limit must be integers") from None
    return page, limit


def _analysis_text(mid: str) -> dict[str, Any]:
    r = random.Random(mid)
    return {
        "score": round(r.uniform(40, 97), 1),
        "summary": " ".join(
            r.choice(("pacing", "voice", "structure", "dialogue", "tension", "arc"))
            for _ in range(1500)
        ),
    }


async def list_manuscripts(ctx: Ctx) -> Response:
    claims = require_session(ctx)
    page, limit = _page(ctx)
    paginate = ctx.snap.behaviour.get("pagination", True)
    started = time.perf_counter()
    with d1data.d1_connect(ctx.state, DB) as db:
        db.row_factory = sqlite3.Row
        plan = " ".join(
            str(r[-1]) for r in db.execute("EXPLAIN QUERY PLAN " + LIST_SQL, (claims["sub"],))
        )
        sql = f"{LIST_SQL} LIMIT ? OFFSET ?" if paginate else LIST_SQL
        args = (claims["sub"], limit, (page - 1) * limit) if paginate else (claims["sub"],)
        rows = [dict(r) for r in db.execute(sql, args)]
        total = db.execute(
            "SELECT count(*) FROM manuscripts WHERE author_id=?", (claims["sub"],)
        ).fetchone()[0]
        scanned = db.execute("SELECT max(rowid) FROM manuscripts").fetchone()[0] or 0
    took = (time.perf_counter() - started) * 1000
    if "USING INDEX" not in plan or "author_id" not in plan:  # a full scan, as D1 bills it
        extra = scanned * SCAN_MS_PER_ROW
        await asyncio.sleep(min(extra, 8000) / 1000)
        took += extra
    ctx.log("log", "D1 query", {"sql": LIST_SQL, "duration_ms": round(took, 1), "rows": len(rows)})
    if not paginate:
        for row in rows:
            row["analysis"] = _analysis_text(row["id"])
        return JSONResponse({"manuscripts": rows, "total": total})
    return JSONResponse({"manuscripts": rows, "page": page, "limit": limit, "total": total})


def _own(ctx: Ctx) -> dict[str, Any]:
    claims = require_session(ctx)
    with d1data.d1_connect(ctx.state, DB) as db:
        db.row_factory = sqlite3.Row
        row = db.execute(
            "SELECT * FROM manuscripts WHERE id = ? AND author_id = ?",
            (ctx.request.path_params["id"], claims["sub"]),
        ).fetchone()
    if row is None:
        raise AppError(404, "Manuscript not found")
    return dict(row)


async def get_manuscript(ctx: Ctx) -> Response:
    return JSONResponse(_own(ctx))


async def get_analysis(ctx: Ctx) -> Response:
    row = _own(ctx)
    if row["status"] != "analyzed":
        return JSONResponse({"manuscript_id": row["id"], "status": row["status"], "analysis": None})
    return JSONResponse(
        {"manuscript_id": row["id"], "status": "analyzed", "analysis": _analysis_text(row["id"])}
    )


async def create_manuscript(ctx: Ctx) -> Response:
    claims = require_session(ctx)
    body = await json_of(ctx.request)
    title = str(body.get("title", "")).strip()
    if not title:
        raise AppError(400, "title is required")
    mid, now = uuid.uuid4().hex, _iso()
    with d1data.d1_connect(ctx.state, DB) as db:
        db.execute(
            "INSERT INTO manuscripts (id, author_id, title, status, word_count, created_at, updated_at, r2_key)"
            " VALUES (?, ?, ?, 'submitted', ?, ?, ?, ?)",
            (
                mid,
                claims["sub"],
                title,
                int(body.get("word_count", 0)),
                now,
                now,
                f"manuscripts/{mid}.docx",
            ),
        )
    queues_model.enqueue(
        ctx.state, "manuscript-analysis-queue", {"manuscript_id": mid, "author_id": claims["sub"]}
    )
    ctx.out.subrequests += 2
    ctx.log("log", "Queued analysis", {"queue": "manuscript-analysis-queue"}, 1)
    return JSONResponse({"id": mid, "status": "submitted"}, status_code=201)


async def preflight(ctx: Ctx) -> Response:
    return Response(status_code=204, headers=cors_headers(ctx, ctx.request.headers.get("origin")))


def consume_job(state: Any, body: Any) -> None:
    """The queue consumer: one analysis job. Raises to retry (then the DLQ)."""
    snap = snapshot(state, PROFILE)
    at = int(time.time() * 1000)
    job = str((body or {}).get("manuscript_id", "")) if isinstance(body, dict) else str(body)
    res = behaviour.consume(snap, at, random.Random(), job)
    inv = trace.Invocation(
        ts_ms=at, script=snap.script, version_id=snap.version_id, event_type="queue",
        outcome=res.outcome, wall_ms=res.wall_ms, cpu_ms=res.cpu_ms, subrequests=res.subrequests,
        logs=res.logs, exceptions=res.exceptions, tokens_used=res.tokens_used, synthetic=False,
        extra={"queue": "manuscript-analysis-queue", "batchSize": 1},
    )  # fmt: skip
    with state.tx() as db:
        trace.insert(db, [inv])
    if res.outcome != "ok" or res.retry:
        raise Thrown(res.error or "Error: Anthropic rate limited (429)")
    try:
        with d1data.d1_connect(state, DB) as db:
            db.execute(
                "UPDATE manuscripts SET status = 'analyzed', updated_at = ? WHERE id = ?",
                (_iso(), job),
            )
    except d1data.D1Error as exc:
        raise Thrown(exc.message) from None


queues_model.HANDLERS["manuscript-analysis-queue"] = consume_job

routes: list[BaseRoute] = [
    _route("/health", "GET", "GET /health", health),
    _route("/auth/login", "POST", "POST /auth/login", login),
    _route(
        "/auth/password-reset-request", "POST", "POST /auth/password-reset-request", password_reset
    ),
    _route("/manuscripts", "GET", "GET /manuscripts", list_manuscripts),
    _route("/manuscripts", "POST", "POST /manuscripts", create_manuscript),
    _route("/manuscripts/{id}", "GET", "GET /manuscripts/:id", get_manuscript),
    _route("/manuscripts/{id}/analysis", "GET", "GET /manuscripts/:id/analysis", get_analysis),
    _route("/{path:path}", "OPTIONS", "OPTIONS /manuscripts", preflight),
]
