"""Workers KV: namespaces (page paging, [] past the end), keys (cursor paging), values.

A value GET answers the raw bytes, without the envelope, as the real API does. PUT takes
a raw body or multipart `value` + `metadata` (what wrangler sends). Expired keys vanish.

For the apps (sessions) and faults:

    namespace_id(state, "manuscript-sessions") -> str | None
    kv_put(state, "manuscript-sessions", "session:abc", b"{...}", ttl=3600)
    kv_get(state, "manuscript-sessions", "session:abc") -> bytes | None   (None: missing,
                                                             expired, or no namespace)
    kv_get_with_metadata(state, ns, key) -> (bytes | None, metadata)
    kv_delete(state, ns, key) -> bool
    deleted_ms(state, ns, key) -> int | None       (when the key was last deleted)
"""

from __future__ import annotations

import json
import random
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .cf_account import check_account
from .envelope import CFError, cursor_paged, json_body, multipart, ok, paged
from .profiles import PROFILES
from .state import from_request

if TYPE_CHECKING:
    from .state import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv_namespaces (
    id TEXT PRIMARY KEY, title TEXT NOT NULL UNIQUE,
    supports_url_encoding INTEGER NOT NULL DEFAULT 1, created_on REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kv_values (
    namespace_id TEXT NOT NULL REFERENCES kv_namespaces(id) ON DELETE CASCADE,
    key TEXT NOT NULL, value BLOB NOT NULL, metadata TEXT, expiration INTEGER,
    PRIMARY KEY (namespace_id, key)
);
-- when a key was deleted (the sandbox's own bookkeeping, never served): the traffic model
-- rebuilds past minutes with a revoked session still working until it was revoked
CREATE TABLE IF NOT EXISTS kv_deleted (
    namespace_id TEXT NOT NULL, key TEXT NOT NULL, deleted_ms INTEGER NOT NULL,
    PRIMARY KEY (namespace_id, key)
);
"""

NS = "/accounts/{account_id}/storage/kv/namespaces"
MIN_TTL = 60


# ---- Python API ----------------------------------------------------------------
def namespace_id(state: State, title_or_id: str) -> str | None:
    with state.read() as db:
        row = db.execute(
            "SELECT id FROM kv_namespaces WHERE id = ? OR title = ?", (title_or_id, title_or_id)
        ).fetchone()
    return row["id"] if row else None


def kv_put(
    state: State,
    namespace: str,
    key: str,
    value: bytes | str,
    *,
    metadata: Any = None,
    ttl: int | None = None,
    expiration: int | None = None,
) -> None:
    ns = namespace_id(state, namespace)
    if ns is None:
        raise KeyError(f"no KV namespace {namespace!r}")
    data = value.encode() if isinstance(value, str) else value
    if ttl is not None:
        expiration = int(time.time()) + int(ttl)
    with state.tx() as db:
        db.execute(
            "INSERT OR REPLACE INTO kv_values(namespace_id, key, value, metadata, expiration)"
            " VALUES (?,?,?,?,?)",
            (ns, key, data, None if metadata is None else json.dumps(metadata), expiration),
        )
        db.execute("DELETE FROM kv_deleted WHERE namespace_id = ? AND key = ?", (ns, key))


def kv_get(state: State, namespace: str, key: str) -> bytes | None:
    return kv_get_with_metadata(state, namespace, key)[0]


def kv_get_with_metadata(state: State, namespace: str, key: str) -> tuple[bytes | None, Any]:
    """(value, metadata) as a Worker's `getWithMetadata` reads them; (None, None) when the
    key is missing or expired, or the namespace does not exist."""
    ns = namespace_id(state, namespace)
    if ns is None:
        return None, None
    with state.read() as db:
        row = db.execute(
            "SELECT value, metadata FROM kv_values WHERE namespace_id = ? AND key = ?"
            " AND (expiration IS NULL OR expiration > ?)",
            (ns, key, int(time.time())),
        ).fetchone()
    if row is None:
        return None, None
    meta = json.loads(row["metadata"]) if row["metadata"] is not None else None
    return bytes(row["value"]), meta


def kv_delete(state: State, namespace: str, key: str) -> bool:
    ns = namespace_id(state, namespace)
    if ns is None:
        return False
    with state.tx() as db:
        cur = db.execute("DELETE FROM kv_values WHERE namespace_id = ? AND key = ?", (ns, key))
        if cur.rowcount:
            db.execute(
                "INSERT OR REPLACE INTO kv_deleted(namespace_id, key, deleted_ms) VALUES (?,?,?)",
                (ns, key, int(time.time() * 1000)),
            )
    return bool(cur.rowcount)


def deleted_ms(state: State, namespace: str, key: str) -> int | None:
    """When `key` was last deleted (ms), None when it never was (or was put again)."""
    ns = namespace_id(state, namespace)
    if ns is None:
        return None
    with state.read() as db:
        row = db.execute(
            "SELECT deleted_ms FROM kv_deleted WHERE namespace_id = ? AND key = ?", (ns, key)
        ).fetchone()
    return None if row is None else int(row[0])


def create_namespace(state: State, title: str, ns_id: str | None = None) -> str:
    new_id = ns_id or random.Random(f"{title}:{time.time_ns()}").randbytes(16).hex()
    with state.tx() as db:
        db.execute(
            "INSERT INTO kv_namespaces(id, title, created_on) VALUES (?,?,?)",
            (new_id, title, time.time()),
        )
    return new_id


# ---- routes --------------------------------------------------------------------
def _ns_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "supports_url_encoding": bool(row["supports_url_encoding"]),
    }


def _namespace(request: Request) -> tuple[State, str]:
    check_account(request)
    state = from_request(request)
    ns = request.path_params["namespace_id"]
    with state.read() as db:
        found = db.execute("SELECT 1 FROM kv_namespaces WHERE id = ?", (ns,)).fetchone()
    if found is None:
        raise CFError(404, 10013, "namespace not found")
    return state, ns


async def list_namespaces(request: Request) -> Response:
    check_account(request)
    order = request.query_params.get("order", "id")
    column = {"title": "title", "id": "id"}.get(order, "id")
    direction = "DESC" if request.query_params.get("direction") == "desc" else "ASC"
    with from_request(request).read() as db:
        rows = db.execute(f"SELECT * FROM kv_namespaces ORDER BY {column} {direction}").fetchall()
    return paged(request, [_ns_json(r) for r in rows], per_page=20, max_per_page=1000)


async def post_namespace(request: Request) -> Response:
    check_account(request)
    state = from_request(request)
    title = (await json_body(request)).get("title")
    if not isinstance(title, str) or not title.strip():
        raise CFError(400, 10019, "a namespace needs a title")
    if namespace_id(state, title) is not None:
        raise CFError(400, 10014, "a namespace with this account ID and title already exists")
    new_id = create_namespace(state, title)
    return ok({"id": new_id, "title": title, "supports_url_encoding": True})


async def get_namespace(request: Request) -> Response:
    state, ns = _namespace(request)
    with state.read() as db:
        row = db.execute("SELECT * FROM kv_namespaces WHERE id = ?", (ns,)).fetchone()
    return ok(_ns_json(row))


async def delete_namespace(request: Request) -> Response:
    state, ns = _namespace(request)
    with state.tx() as db:
        db.execute("DELETE FROM kv_namespaces WHERE id = ?", (ns,))
    return ok({})


async def list_keys(request: Request) -> Response:
    state, ns = _namespace(request)
    prefix = request.query_params.get("prefix", "")
    with state.read() as db:
        rows = db.execute(
            "SELECT key, metadata, expiration FROM kv_values WHERE namespace_id = ?"
            " AND substr(key, 1, ?) = ? AND (expiration IS NULL OR expiration > ?)"
            " ORDER BY key",
            (ns, len(prefix), prefix, int(time.time())),
        ).fetchall()
    keys: list[dict[str, Any]] = []
    for r in rows:
        item: dict[str, Any] = {"name": r["key"]}
        if r["expiration"] is not None:
            item["expiration"] = r["expiration"]
        if r["metadata"] is not None:
            item["metadata"] = json.loads(r["metadata"])
        keys.append(item)
    return cursor_paged(request, keys, limit=1000, max_limit=1000)


async def get_value(request: Request) -> Response:
    state, ns = _namespace(request)
    value = kv_get(state, ns, request.path_params["key"])
    if value is None:
        raise CFError(404, 10009, "get: 'key not found'")
    return Response(value, media_type="application/octet-stream")


def _int_query(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise CFError(400, 10016, f"Invalid {name} of {raw}.") from None


async def put_value(request: Request) -> Response:
    state, ns = _namespace(request)
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    metadata: Any = None
    if content_type.startswith("multipart/form-data"):
        parts = {p.name: p.data for p in multipart(content_type, body)}
        if "value" not in parts:
            raise CFError(400, 10019, "multipart body needs a 'value' part")
        body = parts["value"]
        if "metadata" in parts:
            try:
                metadata = json.loads(parts["metadata"])
            except json.JSONDecodeError:
                raise CFError(400, 10019, "metadata must be JSON") from None
    ttl = _int_query(request, "expiration_ttl")
    expiration = _int_query(request, "expiration")
    if ttl is not None and ttl < MIN_TTL:
        raise CFError(
            400, 10016, f"Invalid expiration_ttl of {ttl}. Expiration TTL must be at least 60."
        )
    kv_put(state, ns, request.path_params["key"], body, metadata=metadata, ttl=ttl,
           expiration=expiration)  # fmt: skip
    return ok({})


async def delete_value(request: Request) -> Response:
    state, ns = _namespace(request)
    kv_delete(state, ns, request.path_params["key"])
    return ok({})


routes = [
    Route(NS, list_namespaces, methods=["GET"]),
    Route(NS, post_namespace, methods=["POST"]),
    Route(NS + "/{namespace_id}", get_namespace, methods=["GET"]),
    Route(NS + "/{namespace_id}", delete_namespace, methods=["DELETE"]),
    Route(NS + "/{namespace_id}/keys", list_keys, methods=["GET"]),
    Route(NS + "/{namespace_id}/values/{key:path}", get_value, methods=["GET"]),
    Route(NS + "/{namespace_id}/values/{key:path}", put_value, methods=["PUT"]),
    Route(NS + "/{namespace_id}/values/{key:path}", delete_value, methods=["DELETE"]),
]


# ---- seed ----------------------------------------------------------------------
def seed(state: State, rng: random.Random) -> None:
    titles = [p.kv_sessions for p in PROFILES.values()] + ["feature-flags"]
    now = int(time.time())
    rows: list[tuple[str, str, bytes, str | None, int | None]] = []
    with state.tx() as db:
        for title in titles:
            ns = rng.randbytes(16).hex()
            db.execute(
                "INSERT INTO kv_namespaces(id, title, created_on) VALUES (?,?,?)",
                (ns, title, now - 86400 * 120),
            )
            if title == "feature-flags":
                rows += [(ns, f"flag:{n}", b"true", None, None) for n in ("uploads", "billing")]
                continue
            for user_id in range(1, 26):
                token = rng.randbytes(24).hex()
                created = now - rng.randint(60, 6 * 86400)
                session = {"user_id": user_id, "created_at": created * 1000}
                rows.append((ns, f"session:{token}", json.dumps(session).encode(),
                             json.dumps({"user_id": user_id}), created + 7 * 86400))  # fmt: skip
        db.executemany(
            "INSERT INTO kv_values(namespace_id, key, value, metadata, expiration)"
            " VALUES (?,?,?,?,?)",
            rows,
        )
