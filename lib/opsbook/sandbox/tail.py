"""`wrangler tail`: the tail sessions API and a minimal RFC 6455 websocket server.

    POST   /accounts/{acct}/workers/scripts/{name}/tails   {"filters":[...]} (text/plain)
           -> result {id, url: ws://127.0.0.1:<tail_port>/tail/<id>, expires_at}
    DELETE /accounts/{acct}/workers/scripts/{name}/tails/{id}

The websocket server is our own (`ws_server`), on a second loopback port as Cloudflare
serves tails from another host: wrangler sends its first frame, `{"debug":false}`,
UNMASKED, which RFC 6455 forbids and the `websockets` library rejects. Each server text
frame is one TraceItem read from the traffic table (live rows only), after the session's
filters: sampling_rate, outcome, method, client_ip, query, header, scriptVersion.

`start_tail_server(state) -> (port, stop)` is called by server.py's lifespan. It also
starts the live traffic ticker (traffic.start_ticker), so tails always have events.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .envelope import CFError, json_body, ok
from .state import State, from_request

SCHEMA = """
CREATE TABLE IF NOT EXISTS tails (
    id TEXT PRIMARY KEY,
    script TEXT NOT NULL,
    filters TEXT NOT NULL DEFAULT '[]',
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
"""

TAIL_TTL_MS = 6 * 3600 * 1000
KNOWN_FILTERS = {
    "sampling_rate",
    "outcome",
    "method",
    "client_ip",
    "query",
    "header",
    "scriptVersion",
}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_filters(filters: Any) -> list[dict[str, Any]]:
    if not isinstance(filters, list):
        raise CFError(400, 10021, "filters must be a list")
    for entry in filters:
        if not isinstance(entry, dict) or not entry or not set(entry) <= KNOWN_FILTERS:
            raise CFError(400, 10021, f"invalid tail filter: {json.dumps(entry)}")
    return filters


def _script_exists(state: State, script: str) -> bool:
    with state.read() as db:
        try:
            row = db.execute("SELECT 1 FROM scripts WHERE name = ?", (script,)).fetchone()
        except Exception:  # the scripts table is core's; tolerate its absence
            return True
    return row is not None


async def create_tail(request: Request) -> Response:
    state = from_request(request)
    script = request.path_params["name"]
    if request.path_params["acct"] != state.account_id:
        raise CFError(403, 10000, "Authentication error")
    if not _script_exists(state, script):
        raise CFError(404, 10007, "This Worker does not exist on your account.")
    body = await json_body(request)
    filters = _check_filters(body.get("filters", []))
    tail_id = secrets.token_hex(16)
    now = int(time.time() * 1000)
    with state.tx() as db:
        db.execute(
            "INSERT INTO tails (id, script, filters, created_ms, expires_ms) VALUES (?,?,?,?,?)",
            (tail_id, script, json.dumps(filters), now, now + TAIL_TTL_MS),
        )
    port = getattr(request.app.state, "tail_port", None)
    if not port:
        raise CFError(503, 10013, "the tail service is not running")
    url = f"ws://127.0.0.1:{port}/tail/{tail_id}"
    return ok({"id": tail_id, "url": url, "expires_at": _iso(now + TAIL_TTL_MS)})


async def delete_tail(request: Request) -> Response:
    state = from_request(request)
    with state.tx() as db:
        cur = db.execute(
            "UPDATE tails SET deleted = 1 WHERE id = ? AND script = ?",
            (request.path_params["tail_id"], request.path_params["name"]),
        )
    if cur.rowcount == 0:
        raise CFError(404, 10007, "tail not found")
    return ok(None)


_BASE = "/accounts/{acct}/workers/scripts/{name}/tails"
routes: list[BaseRoute] = [
    Route(_BASE, create_tail, methods=["POST"]),
    Route(_BASE + "/{tail_id}", delete_tail, methods=["DELETE"]),
]


# ---- filters -----------------------------------------------------------------------
Check = Callable[[Mapping[str, Any]], bool]


def _check(entry: dict[str, Any], rng: random.Random) -> Check | None:
    """The predicate of one filter entry (None when it keeps everything)."""
    if "sampling_rate" in entry:
        rate = float(entry["sampling_rate"])
        return lambda _item: rng.random() < rate
    if "outcome" in entry:
        outcomes = set(entry["outcome"])
        return lambda item: item.get("outcome") in outcomes
    if "method" in entry:
        methods = {m.upper() for m in entry["method"]}
        return lambda item: _request(item).get("method") in methods
    if "client_ip" in entry:
        ips = {ip for ip in entry["client_ip"] if ip != "self"}
        return (lambda item: _headers(item).get("cf-connecting-ip") in ips) if ips else None
    if "query" in entry:
        needle = str(entry["query"]).lower()
        return lambda item: needle in _searchable(item)
    if "header" in entry:
        key = str(entry["header"].get("key", "")).lower()
        query = entry["header"].get("query")
        return lambda item: _header_match(item, key, query)
    if "scriptVersion" in entry:
        vid = entry["scriptVersion"]
        return lambda item: (item.get("scriptVersion") or {}).get("id") == vid
    return None


def make_filter(filters: list[dict[str, Any]], seed: str) -> Check:
    """A predicate over TraceItems implementing wrangler's tail filters (all must match)."""
    rng = random.Random(seed)
    checks: list[Check] = []
    for entry in filters:
        for key in entry:  # an entry may hold several filters
            check = _check({key: entry[key]}, rng)
            if check is not None:
                checks.append(check)
    return lambda item: all(check(item) for check in checks)


def _request(item: Mapping[str, Any]) -> dict[str, Any]:
    event = item.get("event") or {}
    req = event.get("request") if isinstance(event, dict) else None
    return req if isinstance(req, dict) else {}


def _headers(item: Mapping[str, Any]) -> dict[str, Any]:
    return _request(item).get("headers") or {}


def _header_match(item: Mapping[str, Any], key: str, query: str | None) -> bool:
    value = {k.lower(): v for k, v in _headers(item).items()}.get(key)
    return value is not None and (query is None or str(query) in str(value))


def _searchable(item: Mapping[str, Any]) -> str:
    """What `wrangler tail --search` matches: console.log messages and exceptions."""
    parts = [json.dumps(log.get("message"), ensure_ascii=False) for log in item.get("logs", [])]
    parts += [f"{e.get('name')}: {e.get('message')}" for e in item.get("exceptions", [])]
    return "\n".join(parts).lower()


def start_tail_server(state: State) -> tuple[int, Callable[[], None]]:
    """Start the tail websocket server and the live traffic ticker; returns (port, stop)."""
    from . import traffic
    from .ws_server import TailServer

    server = TailServer(state)
    port = server.start()
    stop_ticker = traffic.start_ticker(state)

    def stop() -> None:
        stop_ticker()
        server.stop()

    return port, stop
