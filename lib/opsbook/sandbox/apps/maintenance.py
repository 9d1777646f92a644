"""Maintenance (read-only) mode, the way Workers apps do it: a flag in KV, read per request.

Both apps bind the account's `feature-flags` namespace as `FLAGS` and read, on every
request, their own key in it: `await env.FLAGS.getWithMetadata("flag:maintenance:" +
WORKER_NAME)` (`flag:maintenance:manuscript-upload-api`, `flag:maintenance:peptalk-api`:
one app's window does not stop the other). Operators switch it
through the KV API (`PUT`/`DELETE …/storage/kv/namespaces/{id}/values/{key}`, or
`wrangler kv key put`): no deploy, no secret, and it takes effect on the next request.

With the value `true`:
- writes (POST, PUT, PATCH, DELETE) answer 503 with `Retry-After` and a JSON error;
- reads (GET, HEAD, OPTIONS) are served as usual;
- the health route is always served and reports the mode: `"maintenance": true`, with
  `"maintenance_until"` when the flag's metadata has `until` (an ISO time).

`Retry-After` is the seconds left until the metadata's `until`, else DEFAULT_RETRY_S.
Any other value, or no key, or no FLAGS binding, means normal operation.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from .. import cf_kv
from ..behaviour import Snapshot
from ..platform_view import binding
from ..state import State

if TYPE_CHECKING:
    from .common import Ctx, Handler

BINDING = "FLAGS"
PREFIX = "flag:maintenance:"  # + the Worker's name
ON = "true"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_RETRY_S = 300
MESSAGE = "Service under maintenance: the API is read-only, please retry later"


@dataclass(frozen=True)
class Mode:
    on: bool
    until: str | None = None
    reason: str | None = None

    def retry_after(self, now: float | None = None) -> int:
        if self.until:
            try:
                end = datetime.fromisoformat(self.until.replace("Z", "+00:00")).timestamp()
            except ValueError:
                return DEFAULT_RETRY_S
            return max(1, math.ceil(end - (time.time() if now is None else now)))
        return DEFAULT_RETRY_S


def key(script: str) -> str:
    return PREFIX + script


def read(state: State, snap: Snapshot) -> Mode:
    """The flag as the serving version sees it (through its FLAGS binding)."""
    b = binding(snap.bindings, "kv_namespace", BINDING)
    title = (b or {}).get("namespace_title")
    if not title:
        return Mode(False)
    value, meta = cf_kv.kv_get_with_metadata(state, str(title), key(snap.script))
    if value is None or value.decode(errors="replace").strip().lower() != ON:
        return Mode(False)
    meta = meta if isinstance(meta, dict) else {}
    until, reason = meta.get("until"), meta.get("reason")
    return Mode(True, str(until) if until else None, str(reason) if reason else None)


def _health(response: Response, mode: Mode) -> Response:
    try:
        data = json.loads(bytes(response.body))
    except (ValueError, AttributeError):
        return response
    if not isinstance(data, dict):
        return response
    data["maintenance"] = mode.on
    if mode.on and mode.until:
        data["maintenance_until"] = mode.until
    return JSONResponse(data, status_code=response.status_code)


async def gate(ctx: Ctx, route: str, handler: Handler) -> Response:
    """Run `handler` unless maintenance refuses the request (apps.common.serve's hook)."""
    mode = await asyncio.to_thread(read, ctx.state, ctx.snap)
    if route.endswith("/health"):
        return _health(await handler(ctx), mode)
    if not mode.on or ctx.request.method not in WRITES:
        return await handler(ctx)
    retry = mode.retry_after()
    ctx.log("warn", "Maintenance mode: write refused", {"route": route, "retry_after": retry})
    body: dict[str, Any] = {"error": MESSAGE, "maintenance": True, "retry_after": retry}
    if mode.until:
        body["maintenance_until"] = mode.until
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(retry)})
