"""The sandbox HTTP server: one Starlette app under uvicorn, on 127.0.0.1 only.

Mounts (each module exposes `routes`, with paths relative to its mount):

    /client/v4          cf_account, cf_workers, cf_kv, cf_r2, cf_queues, cf_d1,
                        cf_telemetry (Workers Logs), cf_firewall (IP access rules), tail
    /client/v4/graphql  graphql
    /v1                 stripe_api
    /status             statuspage
    /apps               apps
    /mail               mail
    /                   any module's `public_routes` (signed URLs: no auth)

Modules not written yet are skipped. `server.json` is written only once the socket is
bound and serving, and removed on a clean shutdown (SIGTERM / SIGINT).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import time
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from .auth import AuthMiddleware
from .envelope import CFError, error
from .state import State, load_module, write_json

HOST = "127.0.0.1"
log = logging.getLogger("opsbook.sandbox")
CF_MODULES = (
    "cf_account",
    "cf_workers",
    "cf_kv",
    "cf_r2",
    "cf_queues",
    "cf_d1",
    "cf_telemetry",
    "cf_firewall",
    "tail",
)
MOUNTED_MODULES = (
    ("stripe_api", "/v1"),
    ("statuspage", "/status"),
    ("apps", "/apps"),
    ("mail", "/mail"),
)
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _prefixed(prefix: str, routes: list[BaseRoute]) -> list[BaseRoute]:
    """Routes re-rooted under `prefix` without a Mount (so `/graphql` needs no slash)."""
    out: list[BaseRoute] = []
    for route in routes:
        if isinstance(route, Route):
            path = (prefix + route.path).rstrip("/") or "/"
            out.append(Route(path, route.endpoint, methods=route.methods, name=route.name))
        elif isinstance(route, WebSocketRoute):
            path = (prefix + route.path).rstrip("/") or "/"
            out.append(WebSocketRoute(path, route.endpoint, name=route.name))
        elif isinstance(route, Mount):
            out.append(Mount(prefix + route.path, app=route.app, name=route.name))
        else:
            out.append(route)
    return out


async def _cf_no_route(request: Request) -> Response:
    return error(
        404,
        7003,
        f"Could not route to {request.url.path}, perhaps your object identifier is invalid?",
    )


async def _cf_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CFError)
    return error(exc.status, exc.code, exc.message)


async def _ping(request: Request) -> Response:
    state: State = request.app.state.sandbox
    return JSONResponse(
        {"pid": os.getpid(), "state_dir": str(state.dir), "load_errors": sorted(LOAD_ERRORS)}
    )


LOAD_ERRORS: dict[str, str] = {}


def _module_routes(name: str, attr: str = "routes") -> list[BaseRoute]:
    """A module's routes. A module that fails to import is logged and left out, so one
    broken area does not take the whole sandbox down; /_sandbox/ping lists it."""
    try:
        mod = load_module(name)
    except Exception:
        LOAD_ERRORS[name] = traceback.format_exc()
        log.error(
            "sandbox module %s failed to load; its routes are off:\n%s", name, LOAD_ERRORS[name]
        )
        return []
    return list(getattr(mod, attr, None) or []) if mod is not None else []


def create_app(state: State) -> Starlette:
    """The whole sandbox as one ASGI app serving `state`."""
    cf: list[BaseRoute] = []
    for name in CF_MODULES:
        cf += _prefixed("", _module_routes(name))
    cf += _prefixed("/graphql", _module_routes("graphql"))
    cf.append(Route("/{path:path}", _cf_no_route, methods=ALL_METHODS))

    routes: list[BaseRoute] = [Route("/_sandbox/ping", _ping), Mount("/client/v4", routes=cf)]
    for name, prefix in MOUNTED_MODULES:
        if sub := _module_routes(name):
            routes.append(Mount(prefix, routes=sub))
    for name in (*CF_MODULES, "graphql", *(n for n, _ in MOUNTED_MODULES)):
        routes += _module_routes(name, "public_routes")

    app = Starlette(
        routes=routes,
        exception_handlers={CFError: _cf_error},
        lifespan=_lifespan,
    )
    app.state.sandbox = state
    app.state.tail_port = None
    app.add_middleware(AuthMiddleware, state=state)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """Starts the tail websocket server (apps engineer's tail.start_tail_server) if any.

    Convention: `start_tail_server(state)` (sync or async) returns `(port, stop)`, where
    `stop()` (sync or async) shuts it down. It must bind 127.0.0.1 on port 0.
    """
    stopper: Callable[[], Any] | None = None
    try:
        tail = load_module("tail")
        starter: Callable[..., Any] | None = getattr(tail, "start_tail_server", None)
        if starter is not None:
            started = starter(app.state.sandbox)
            if inspect.isawaitable(started):
                started = await started
            app.state.tail_port, stopper = started
    except Exception:
        LOAD_ERRORS["tail_server"] = traceback.format_exc()
        log.error("the tail server did not start; tails are off:\n%s", LOAD_ERRORS["tail_server"])
    drainer = asyncio.create_task(_drain_forever(app.state.sandbox))
    try:
        yield
    finally:
        drainer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drainer
        if stopper is not None:
            result = stopper()
            if inspect.isawaitable(result):
                await result


async def _drain_forever(state: State) -> None:
    """Queue consumers at work: deliver messages every DRAIN_INTERVAL seconds."""
    from . import queues_model

    while True:
        await asyncio.sleep(queues_model.DRAIN_INTERVAL)
        try:
            await asyncio.to_thread(queues_model.drain_all, state)
        except Exception:
            log.exception("queue drainer tick failed")


def bind(port: int = 0) -> socket.socket:
    """A listening TCP socket on 127.0.0.1: `port` if it is free, else one the OS picks."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError:
        if port == 0:
            sock.close()
            raise
        sock.bind((HOST, 0))
    sock.listen(1024)
    sock.set_inheritable(False)
    return sock


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: State, port: int) -> None:
        super().__init__(config)
        self.sandbox = state
        self.port = port

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit:
            return
        app: Any = self.config.app
        write_json(
            self.sandbox.server_json,
            {
                "pid": os.getpid(),
                "host": HOST,
                "port": self.port,
                "base_url": f"http://{HOST}:{self.port}",
                "tail_port": app.state.tail_port,
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn re-raises SIGTERM after run() returns, so clean up here, not after it
        await super().shutdown(sockets=sockets)
        _forget(self.sandbox)


def _forget(state: State) -> None:
    """Remove server.json if it is this process's."""
    info = state.server_info()
    if info is not None and info.get("pid") == os.getpid():
        state.server_json.unlink(missing_ok=True)


def serve(state: State, port: int = 0) -> None:
    """Run the server in this process until SIGTERM/SIGINT. Blocks."""
    sock = bind(port)
    bound = sock.getsockname()[1]
    (state.dir / ".last_port").write_text(str(bound), encoding="utf-8")
    config = uvicorn.Config(
        create_app(state),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    server = _Server(config, state, bound)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        _forget(state)


__all__ = ["HOST", "bind", "create_app", "serve"]
