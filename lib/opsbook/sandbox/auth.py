"""Authentication the way the real APIs answer it.

- Cloudflare (`/client/v4/...`): `Authorization: Bearer <OPSBOOK_SANDBOX_TOKEN>`.
  Wrong or missing: HTTP 403, `errors: [{"code": 10000, "message": "Authentication error"}]`.
- Stripe (`/v1/...`): the secret key as Bearer or as the basic-auth user.
  Wrong or missing: HTTP 401 with Stripe's error object.
- Everything else (status page, apps, mail, signed URLs) is unauthenticated here.

`AuthMiddleware` guards both prefixes for the whole server. `stripe_auth_error(request,
key)` is the same check as a function, for code that wants it outside the middleware.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .envelope import error
from .state import State

CF_PREFIX = "/client/v4"
STRIPE_PREFIX = "/v1"


class _Credentials:
    """credentials.json, re-read when the file changes (a reset makes new ones)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._stamp: tuple[int, int] | None = None
        self._data: dict[str, str] = {}

    def get(self) -> dict[str, str]:
        try:
            st = self.state.credentials_path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp != self._stamp:
            self._data = self.state.credentials
            self._stamp = stamp
        return self._data


def bearer(headers: Any) -> str | None:
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _stripe_key(headers: Any) -> str | None:
    token = bearer(headers)
    if token:
        return token
    value = headers.get("authorization") or ""
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user = base64.b64decode(encoded.strip()).decode().split(":", 1)[0]
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user or None


def _mask(key: str) -> str:
    if len(key) <= 12:
        return "*" * len(key)
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def stripe_error(status: int, message: str, type_: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status)


def stripe_auth_error(request: Request, expected: str) -> JSONResponse | None:
    """None when the request carries the Stripe key `expected`, else Stripe's 401."""
    key = _stripe_key(request.headers)
    if key is None:
        return stripe_error(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details.",
        )
    if not expected or not hmac.compare_digest(key.encode(), expected.encode()):
        return stripe_error(401, f"Invalid API Key provided: {_mask(key)}")
    return None


def cloudflare_auth_error(request: Request, expected: str) -> JSONResponse | None:
    """None when the request carries the Cloudflare token `expected`, else the 403."""
    token = bearer(request.headers)
    if token and expected and hmac.compare_digest(token.encode(), expected.encode()):
        return None
    return error(403, 10000, "Authentication error")


class AuthMiddleware:
    """ASGI middleware: guards /client/v4 (Cloudflare token) and /v1 (Stripe key)."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.credentials = _Credentials(state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        denied: Response | None = None
        if path == CF_PREFIX or path.startswith(CF_PREFIX + "/"):
            creds = self.credentials.get()
            denied = cloudflare_auth_error(Request(scope), creds.get("OPSBOOK_SANDBOX_TOKEN", ""))
        elif path == STRIPE_PREFIX or path.startswith(STRIPE_PREFIX + "/"):
            creds = self.credentials.get()
            denied = stripe_auth_error(Request(scope), creds.get("OPSBOOK_SANDBOX_STRIPE_KEY", ""))
        if denied is not None:
            await denied(scope, receive, send)
            return
        await self.app(scope, receive, send)
