"""The PepTalk API (Worker `peptalk-api`), seed 004.

GET  /api/health
POST /auth/login
GET  /api/peptides                    the catalogue
GET  /api/peptides/{slug}             one peptide with its latest studies
GET  /api/peptides/{slug}/pdf         session + active subscription, else 401 / 402
POST /webhooks/stripe                 Stripe-Signature (HMAC-SHA256, 300 s tolerance)
POST /__scheduled                     run the nightly pipeline now (as wrangler dev does)
OPTIONS *                             CORS preflight
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import cf_r2, d1data, stripe_webhooks
from ..platform_view import snapshot
from . import maintenance, manuscript
from .common import AppError, Ctx, require_session, serve
from .pipeline import CRON, run_pipeline, skip_run

PROFILE = "peptalk"
DB = "peptalk-production-db"
TOLERANCE_S = 300


def _route(path: str, method: str, route: str, fn: Any) -> Route:
    async def endpoint(request: Request) -> Response:
        return await serve(request, PROFILE, route, fn)

    return Route(path, endpoint, methods=[method])


def _db(ctx: Ctx) -> Any:
    return d1data.d1_connect(ctx.state, DB)


async def health(ctx: Ctx) -> Response:
    try:
        with _db(ctx) as db:
            db.execute("SELECT 1").fetchone()
    except (d1data.D1Error, sqlite3.DatabaseError) as exc:
        ctx.log("error", "Health check failed:", d1data.d1_error(exc).message)
        return JSONResponse({"status": "degraded", "database": "error"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok", "version": ctx.snap.version_id})


async def peptides(ctx: Ctx) -> Response:
    with _db(ctx) as db:
        db.row_factory = sqlite3.Row
        rows = [
            dict(r)
            for r in db.execute(
                "SELECT slug, name, evidence_grade, page_version, last_pipeline_run FROM peptides ORDER BY name"
            )
        ]
    return JSONResponse({"peptides": rows, "count": len(rows)})


def _peptide(ctx: Ctx, db: sqlite3.Connection) -> dict[str, Any]:
    db.row_factory = sqlite3.Row
    row = db.execute(
        "SELECT * FROM peptides WHERE slug = ?", (ctx.request.path_params["slug"],)
    ).fetchone()
    if row is None:
        raise AppError(404, "Peptide not found")
    return dict(row)


async def peptide(ctx: Ctx) -> Response:
    with _db(ctx) as db:
        item = _peptide(ctx, db)
        item["studies"] = [
            dict(r)
            for r in db.execute(
                "SELECT pmid, title, year, summary FROM studies WHERE peptide_id = ? ORDER BY year DESC LIMIT 20",
                (item["id"],),
            )
        ]
    return JSONResponse(item)


def _active(status: str, period_end: str) -> bool:
    try:
        end = datetime.fromisoformat(period_end.replace("Z", "+00:00"))
    except ValueError:
        return False
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return status in ("active", "trialing") and end > datetime.now(UTC)


async def pdf(ctx: Ctx) -> Response:
    claims = require_session(ctx)
    with _db(ctx) as db:
        item = _peptide(ctx, db)
        sub = db.execute(
            "SELECT status, current_period_end FROM subscriptions WHERE user_id = ? "
            "ORDER BY current_period_end DESC LIMIT 1",
            (claims["sub"],),
        ).fetchone()
    if sub is None or not _active(sub["status"], sub["current_period_end"]):
        ctx.log(
            "warn",
            "PDF access denied",
            {"user_id": claims["sub"], "subscription": dict(sub) if sub else None},
        )
        raise AppError(402, "Subscription required")
    found = cf_r2.get_object(ctx.state, "peptalk-pdfs", f"pdfs/{item['slug']}.pdf")
    if found is None:
        raise AppError(404, "PDF not available")
    ctx.out.subrequests += 1
    return Response(found[0], media_type="application/pdf")


def verify_signature(
    payload: bytes, header: str, secret: str, now: float | None = None
) -> str | None:
    """None when `header` signs `payload` with `secret` (Stripe's scheme), else the reason."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    sigs = [v.strip() for k, v in parts if k.strip() == "v1"]
    if not stamps or not sigs:
        return "Unable to extract timestamp and signatures from header"
    try:
        t = int(stamps[0])
    except ValueError:
        return "Unable to extract timestamp and signatures from header"
    expected = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in sigs):
        return "No signatures found matching the expected signature for payload"
    if t < (now if now is not None else time.time()) - TOLERANCE_S:
        return "Timestamp outside the tolerance zone"
    return None


async def stripe_webhook(ctx: Ctx) -> Response:
    payload = await ctx.request.body()
    secret = ctx.snap.secrets.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        raise AppError(
            500,
            "Webhook secret not configured",
            ["Webhook error:", "STRIPE_WEBHOOK_SECRET is not set"],
        )
    reason = verify_signature(payload, ctx.request.headers.get("stripe-signature", ""), secret)
    if reason:
        raise AppError(
            400,
            "Webhook signature verification failed",
            ["Webhook signature verification failed:", reason],
        )
    try:
        event = json.loads(payload)
    except json.JSONDecodeError:
        raise AppError(400, "Invalid payload") from None
    kind = str(event.get("type", ""))
    ctx.log("log", "Stripe webhook", {"type": kind, "id": event.get("id")})
    started = time.perf_counter()
    # the handler's own work before it answers (entitlements, emails): slow under handler-timeout
    work_s = await asyncio.to_thread(stripe_webhooks.receiver_delay, ctx.state, PROFILE)
    if work_s > 0:
        await asyncio.sleep(work_s)
    if kind.startswith("customer.subscription."):
        _apply_subscription(ctx, (event.get("data") or {}).get("object") or {})
    took = round((time.perf_counter() - started) * 1000)
    ctx.log("log", "Stripe webhook handled", {"type": kind, "id": event.get("id"), "ms": took})
    return JSONResponse({"received": True})


def _apply_subscription(ctx: Ctx, sub: dict[str, Any]) -> None:
    items = ((sub.get("items") or {}).get("data")) or [{}]
    end = items[0].get("current_period_end") or sub.get("current_period_end")
    end_iso = (
        datetime.fromtimestamp(int(end), UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z") if end else None
    )
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with _db(ctx) as db:
        row = db.execute(
            "SELECT id FROM subscriptions WHERE stripe_subscription_id = ?", (sub.get("id"),)
        ).fetchone()
        if row is not None:
            db.execute(
                "UPDATE subscriptions SET status = ?, current_period_end = coalesce(?, current_period_end),"
                " updated_at = ? WHERE id = ?",
                (sub.get("status", "active"), end_iso, now, row[0]),
            )
            ctx.log(
                "log",
                "Subscription updated",
                {"subscription": sub.get("id"), "status": sub.get("status")},
            )
            return
        owner = db.execute(
            "SELECT user_id FROM subscriptions WHERE stripe_customer_id = ? LIMIT 1",
            (sub.get("customer"),),
        ).fetchone()
        if owner is None:
            ctx.log("warn", "No user for Stripe customer", sub.get("customer"))
            return
        db.execute(
            "INSERT INTO subscriptions (id, user_id, stripe_customer_id, stripe_subscription_id, status, plan,"
            " current_period_end, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (f"sub_row_{sub.get('id')}", owner[0], sub.get("customer"), sub.get("id"),
             sub.get("status", "active"), "pro", end_iso or now, now, now),
        )  # fmt: skip


async def scheduled(request: Request) -> Response:
    from ..state import from_request

    body = await request.body()
    only = json.loads(body).get("peptides") if body.strip() else None
    state = from_request(request)
    # like every write path, the pipeline holds off while maintenance mode is on
    mode = await asyncio.to_thread(maintenance.read, state, snapshot(state, PROFILE))
    if mode.on:
        why = "maintenance mode is on" + (f" until {mode.until}" if mode.until else "")
        await asyncio.to_thread(skip_run, state, why)
        return JSONResponse({"cron": CRON, "results": [], "skipped": why})
    results = await asyncio.to_thread(run_pipeline, state, None, only)
    return JSONResponse({"cron": CRON, "results": results})


async def login(ctx: Ctx) -> Response:
    return await manuscript.login_in(ctx, DB)


async def preflight(ctx: Ctx) -> Response:
    return await manuscript.preflight(ctx)


routes: list[BaseRoute] = [
    _route("/api/health", "GET", "GET /api/health", health),
    _route("/auth/login", "POST", "POST /auth/login", login),
    _route("/api/peptides", "GET", "GET /api/peptides", peptides),
    _route("/api/peptides/{slug}", "GET", "GET /api/peptides/:slug", peptide),
    _route("/api/peptides/{slug}/pdf", "GET", "GET /api/peptides/:slug/pdf", pdf),
    _route("/webhooks/stripe", "POST", "POST /webhooks/stripe", stripe_webhook),
    Route("/__scheduled", scheduled, methods=["POST"]),
    _route("/{path:path}", "OPTIONS", "OPTIONS /api/peptides", preflight),
]
