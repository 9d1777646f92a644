"""What both apps share: the request wrapper, JWT sessions, error pages, R2 and logging.

`serve(request, profile, route, handler)` is the Worker's fetch: it reads the platform
(platform_view.snapshot), asks the behaviour model for what the platform does to this
request (a thrown bug of the deployed version, a missing secret, an upstream's latency,
a cold start), runs the app's real handler when nothing stopped it, and records the
invocation in the traffic table as a TraceItem-shaped row.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import behaviour, cf_kv, cf_r2, d1data, trace
from ..behaviour import Endpoint, Outcome, Snapshot
from ..platform_view import binding, snapshot
from ..profiles import PROFILES, Profile
from ..state import State, from_request
from ..traffic import IDLE_COLD_MS
from . import firewall, maintenance

MAX_SLEEP_S = 8.0  # simulated latency actually slept per request (the rest is only logged)
SESSION_TTL_S = 7 * 24 * 3600


class AppError(Exception):
    """A handled error: the app answers `status` with {"error": message}."""

    def __init__(self, status: int, message: str, log: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.log = status, message, log


class Thrown(Exception):
    """An uncaught exception in the Worker: 500 'Worker threw exception' (error 1101)."""


@dataclass
class Ctx:
    request: Request
    state: State
    profile: Profile
    snap: Snapshot
    at: int
    out: Outcome
    rng: random.Random
    user_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def log(self, level: str, *parts: Any) -> None:
        self.out.log(level, int(time.time() * 1000), *parts)


Handler = Callable[[Ctx], Awaitable[Response]]


def endpoint(profile: Profile, route: str) -> Endpoint:
    return next(ep for ep in behaviour.ENDPOINTS[profile.name] if ep.route == route)


def error_1101() -> Response:
    body = "error code: 1101"
    return Response(body, status_code=500, media_type="text/plain")


def _cold(state: State, script: str, at: int) -> bool:
    with state.read() as db:
        row = db.execute(
            "SELECT max(ts_ms) FROM traffic WHERE script = ? AND event_type = 'fetch' AND ts_ms <= ?",
            (script, at),
        ).fetchone()
    return row[0] is None or at - int(row[0]) > IDLE_COLD_MS


async def serve(request: Request, profile_name: str, route: str, handler: Handler) -> Response:
    state = from_request(request)
    profile = PROFILES[profile_name]
    if edge := await asyncio.to_thread(firewall.screen_request, state, request, profile, route):
        return edge  # an IP Access Rule stops it before the Worker runs
    ep = endpoint(profile, route)
    started = time.perf_counter()
    at = int(time.time() * 1000)
    snap = await asyncio.to_thread(snapshot, state, profile_name)
    rng = random.Random()
    cold = await asyncio.to_thread(_cold, state, profile.worker, at)
    model = behaviour.evaluate(snap, ep, at, rng, cold=cold, platform_only=True)
    ctx = Ctx(request, state, profile, snap, at, Outcome(status=200), rng)
    ctx.out.logs, ctx.out.exceptions = model.logs, model.exceptions
    delay_ms = model.wall_ms - model.base_ms
    await asyncio.sleep(min(delay_ms / 1000, MAX_SLEEP_S))
    response: Response
    if model.outcome != "ok" or model.status >= 500:
        ctx.out.outcome, ctx.out.status = model.outcome, model.status
        response = (
            error_1101()
            if model.outcome == "exception"
            else JSONResponse({"error": model.error}, status_code=model.status)
        )
    else:
        try:
            response = await maintenance.gate(ctx, route, handler)  # read-only mode
        except AppError as exc:
            if exc.log:
                ctx.log("error" if exc.status >= 500 else "warn", *exc.log)
            response = JSONResponse({"error": exc.message}, status_code=exc.status)
        except (Thrown, d1data.D1Error, KeyError) as exc:
            text = exc.message if isinstance(exc, d1data.D1Error) else str(exc.args[0])
            ctx.out.throw(text if ": " in text else f"Error: {text}", int(time.time() * 1000))
            response = error_1101()
        ctx.out.status = response.status_code
        origin = request.headers.get("origin")
        if origin and request.method != "OPTIONS":
            response.headers.update(cors_headers(ctx, origin))
    elapsed = (time.perf_counter() - started) * 1000
    slept = min(delay_ms, MAX_SLEEP_S * 1000)
    ctx.out.tokens_used = ctx.out.tokens_used or model.tokens_used
    await asyncio.to_thread(
        _record, ctx, route, response, elapsed + max(delay_ms - slept, 0), model, cold
    )
    return response


def _record(
    ctx: Ctx, route: str, response: Response, wall_ms: float, model: Outcome, cold: bool
) -> None:
    req = ctx.request
    size = int(response.headers.get("content-length") or len(getattr(response, "body", b"") or b""))
    # the URL as the Worker sees it: the sandbox's /apps/<profile> mount is not part of it
    path = req.url.path.split(f"/apps/{ctx.profile.name}", 1)[-1] or "/"
    query = f"?{req.url.query}" if req.url.query else ""
    worker_url = f"{req.url.scheme}://{req.url.netloc}{path}{query}"
    ip = req.headers.get("cf-connecting-ip") or (req.client.host if req.client else "127.0.0.1")
    inv = trace.Invocation(
        ts_ms=ctx.at, script=ctx.profile.worker, version_id=ctx.snap.version_id,
        outcome=ctx.out.outcome, wall_ms=round(wall_ms, 3),
        cpu_ms=round(min(wall_ms, model.cpu_ms), 3), method=req.method, url=worker_url,
        path=path, route=route,
        status=ctx.out.status, subrequests=model.subrequests + ctx.out.subrequests,
        colo="IAD", country=req.headers.get("cf-ipcountry", "US"), client_ip=ip,
        user_agent=req.headers.get("user-agent", ""), logs=ctx.out.logs,
        exceptions=ctx.out.exceptions, tokens_used=ctx.out.tokens_used, response_bytes=size,
        user_id=ctx.user_id, ray_id=f"{random.getrandbits(64):016x}", cold_start=cold,
        synthetic=False, extra={"host": req.url.netloc, **ctx.extra},
    )  # fmt: skip
    with ctx.state.tx() as db:
        trace.insert(db, [inv])


async def json_of(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError:
        raise AppError(400, "Invalid JSON body") from None
    if not isinstance(data, dict):
        raise AppError(400, "Invalid JSON body")
    return data


# ---- JWT (HS256) and KV sessions ------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_sign(claims: dict[str, Any], secret: str) -> str:
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def jwt_verify(token: str, secret: str) -> dict[str, Any] | None:
    try:
        head, body, sig = token.split(".")
        expected = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(sig)):
            return None
        claims = json.loads(_unb64(body))
    except (ValueError, json.JSONDecodeError):
        return None
    if not isinstance(claims, dict) or int(claims.get("exp", 0)) < time.time():
        return None
    return claims


def sessions_namespace(ctx: Ctx) -> str:
    """The title of the SESSIONS namespace, or Thrown as `env.SESSIONS.get` would."""
    b = binding(ctx.snap.bindings, "kv_namespace", "SESSIONS")
    title = (b or {}).get("namespace_title")
    if not title or cf_kv.namespace_id(ctx.state, title) is None:
        raise Thrown("TypeError: Cannot read properties of undefined (reading 'get')")
    return str(title)


def create_session(ctx: Ctx, user: dict[str, Any]) -> str:
    secret = ctx.snap.secrets.get("JWT_SECRET")
    if not secret:
        raise AppError(
            500, "Internal server error", ["Login error:", "JWT_SECRET is not configured"]
        )
    ns = sessions_namespace(ctx)
    sid = random.SystemRandom().randbytes(16).hex()
    now = int(time.time())
    record = {"user_id": user["id"], "email": user["email"], "created_at": now}
    cf_kv.kv_put(ctx.state, ns, f"session:{sid}", json.dumps(record), ttl=SESSION_TTL_S)
    claims = {
        "sub": user["id"],
        "email": user["email"],
        "sid": sid,
        "iat": now,
        "exp": now + SESSION_TTL_S,
    }
    return jwt_sign(claims, secret)


def require_session(ctx: Ctx) -> dict[str, Any]:
    """The session's claims, or AppError 401 (no token, bad signature, session gone)."""
    auth = ctx.request.headers.get("authorization", "")
    token = (
        auth[7:].strip()
        if auth.lower().startswith("bearer ")
        else ctx.request.cookies.get("session", "")
    )
    if not token:
        raise AppError(401, "Unauthorized")
    secret = ctx.snap.secrets.get("JWT_SECRET")
    if not secret:
        raise AppError(
            401, "Unauthorized", ["Session validation failed", {"reason": "JWT_SECRET missing"}]
        )
    claims = jwt_verify(token, secret)
    if claims is None:
        raise AppError(
            401, "Unauthorized", ["Session validation failed", {"reason": "invalid signature"}]
        )
    raw = cf_kv.kv_get(ctx.state, sessions_namespace(ctx), f"session:{claims.get('sid')}")
    if raw is None:
        raise AppError(
            401, "Unauthorized", ["Session validation failed", {"reason": "session not found"}]
        )
    ctx.user_id = str(claims["sub"])
    return claims


# ---- passwords, R2, PDFs ---------------------------------------------------------------
def verify_password(password: str, stored: str) -> bool:
    """PBKDF2-SHA256 (`pbkdf2_sha256$N$salt$hash`, base64), iterations capped at 100,000."""
    try:
        algo, n, salt, digest = stored.split("$")
        iterations = int(n)
    except ValueError:
        return False
    if algo != "pbkdf2_sha256" or iterations > 100_000:
        return False
    want = base64.b64decode(digest)
    got = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), iterations, len(want)
    )
    return hmac.compare_digest(got, want)


def r2_put(state: State, bucket: str, key: str, data: bytes) -> None:
    cf_r2.put_object(state, bucket, key, data, "application/pdf")


def pdf_bytes(title: str) -> bytes:
    """A small, valid one-page PDF naming `title`."""
    text = f"BT /F1 18 Tf 72 720 Td ({title} - PepTalk research summary) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def cors_headers(ctx: Ctx, origin: str | None) -> dict[str, str]:
    """CORS for the frontend: the version's CORS_ORIGIN (default FRONTEND_URL) only."""
    allowed = ctx.snap.vars.get("CORS_ORIGIN") or ctx.snap.vars.get("FRONTEND_URL") or ""
    if not origin or origin != allowed:
        return {"Vary": "Origin"}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Authorization",
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Max-Age": "86400",
        "Vary": "Origin",
    }
