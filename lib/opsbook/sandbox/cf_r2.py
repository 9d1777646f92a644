"""R2: buckets (list, get), objects (get), account usage (/r2/metrics), and objects for the apps.

The seeded object counts and sizes of each bucket are aggregates in `r2_buckets`
(millions of bytes without storing them); objects the apps put are real rows in
`r2_objects`, and both count in the metrics.

For the apps: `put_object(state, bucket, key, data, content_type)`, `get_object(state,
bucket, key) -> (bytes, content_type) | None`, `delete_object(...)`.
"""

from __future__ import annotations

import hashlib
import random
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .cf_account import check_account
from .envelope import CFError, decode_cursor, encode_cursor, ok
from .profiles import PROFILES
from .state import from_request

if TYPE_CHECKING:
    from .state import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS r2_buckets (
    name TEXT PRIMARY KEY, creation_date TEXT NOT NULL, location TEXT NOT NULL,
    storage_class TEXT NOT NULL DEFAULT 'Standard',
    object_count INTEGER NOT NULL DEFAULT 0, payload_size INTEGER NOT NULL DEFAULT 0,
    metadata_size INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS r2_objects (
    bucket TEXT NOT NULL REFERENCES r2_buckets(name) ON DELETE CASCADE, key TEXT NOT NULL,
    body BLOB NOT NULL, content_type TEXT NOT NULL, etag TEXT NOT NULL, uploaded REAL NOT NULL,
    PRIMARY KEY (bucket, key)
);
"""

BUCKETS = "/accounts/{account_id}/r2/buckets"


def put_object(
    state: State, bucket: str, key: str, data: bytes, content_type: str,
    uploaded: float | None = None,
) -> str:  # fmt: skip
    """Store an object; `uploaded` (unix seconds) is when the put happened (default now)."""
    etag = hashlib.md5(data).hexdigest()
    with state.tx() as db:
        db.execute(
            "INSERT OR REPLACE INTO r2_objects VALUES (?,?,?,?,?,?)",
            (bucket, key, data, content_type, etag, time.time() if uploaded is None else uploaded),
        )
    return etag


def get_object(state: State, bucket: str, key: str) -> tuple[bytes, str] | None:
    with state.read() as db:
        row = db.execute(
            "SELECT body, content_type FROM r2_objects WHERE bucket = ? AND key = ?", (bucket, key)
        ).fetchone()
    return (bytes(row["body"]), row["content_type"]) if row else None


def delete_object(state: State, bucket: str, key: str) -> bool:
    with state.tx() as db:
        cur = db.execute("DELETE FROM r2_objects WHERE bucket = ? AND key = ?", (bucket, key))
    return bool(cur.rowcount)


def usage(state: State) -> list[dict[str, Any]]:
    """Per bucket: name, storage_class, objects, payload_size, metadata_size."""
    with state.read() as db:
        rows = db.execute(
            "SELECT b.name, b.storage_class,"
            " b.object_count + COUNT(o.key) AS objects,"
            " b.payload_size + COALESCE(SUM(LENGTH(o.body)), 0) AS payload_size,"
            " b.metadata_size + 64 * COUNT(o.key) AS metadata_size"
            " FROM r2_buckets b LEFT JOIN r2_objects o ON o.bucket = b.name"
            " GROUP BY b.name ORDER BY b.name"
        ).fetchall()
    return [dict(r) for r in rows]


def _bucket_json(row: Any) -> dict[str, Any]:
    return {
        "name": row["name"],
        "creation_date": row["creation_date"],
        "location": row["location"],
        "storage_class": row["storage_class"],
    }


async def list_buckets(request: Request) -> Response:
    check_account(request)
    q = request.query_params
    contains, after = q.get("name_contains", ""), q.get("start_after", "")
    direction = "DESC" if q.get("direction") == "desc" else "ASC"
    with from_request(request).read() as db:
        rows = db.execute(
            f"SELECT * FROM r2_buckets WHERE instr(name, ?) > 0 AND name > ? ORDER BY name {direction}",
            (contains, after),
        ).fetchall()
    try:
        per_page = max(1, min(int(q.get("per_page") or 20), 1000))
    except ValueError:
        raise CFError(400, 10040, "per_page must be an integer") from None
    start = decode_cursor(q["cursor"]) if q.get("cursor") else 0
    chunk = [_bucket_json(r) for r in rows[start : start + per_page]]
    cursor = encode_cursor(start + per_page) if start + per_page < len(rows) else ""
    return ok({"buckets": chunk}, {"cursor": cursor, "per_page": per_page})


async def get_bucket(request: Request) -> Response:
    check_account(request)
    with from_request(request).read() as db:
        row = db.execute(
            "SELECT * FROM r2_buckets WHERE name = ?", (request.path_params["bucket_name"],)
        ).fetchone()
    if row is None:
        raise CFError(404, 10006, "The specified bucket does not exist.")
    return ok(_bucket_json(row))


async def metrics(request: Request) -> Response:
    check_account(request)
    totals = {"standard": [0, 0, 0], "infrequentAccess": [0, 0, 0]}
    for b in usage(from_request(request)):
        cls = "infrequentAccess" if b["storage_class"] == "InfrequentAccess" else "standard"
        for i, field in enumerate(("objects", "payload_size", "metadata_size")):
            totals[cls][i] += int(b[field])

    def block(t: list[int]) -> dict[str, int]:
        return {"objects": t[0], "payloadSize": t[1], "metadataSize": t[2]}

    return ok({cls: {"published": block(t), "uploaded": block(t)} for cls, t in totals.items()})


async def get_object_route(request: Request) -> Response:
    """GET .../r2/buckets/{bucket}/objects/{key} (what `wrangler r2 object get` calls)."""
    check_account(request)
    bucket, key = request.path_params["bucket_name"], request.path_params["key"]
    with from_request(request).read() as db:
        row = db.execute(
            "SELECT body, content_type, etag, uploaded FROM r2_objects WHERE bucket = ? AND key = ?",
            (bucket, key),
        ).fetchone()
    if row is None:
        raise CFError(404, 10007, "The specified key does not exist.")
    modified = datetime.fromtimestamp(float(row["uploaded"]), UTC)
    return Response(
        bytes(row["body"]),
        media_type=row["content_type"],
        headers={
            "ETag": f'"{row["etag"]}"',
            "Last-Modified": modified.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        },
    )


routes = [
    Route(BUCKETS, list_buckets, methods=["GET"]),
    Route(BUCKETS + "/{bucket_name}", get_bucket, methods=["GET"]),
    Route(BUCKETS + "/{bucket_name}/objects/{key:path}", get_object_route, methods=["GET"]),
    Route("/accounts/{account_id}/r2/metrics", metrics, methods=["GET"]),
]


def seed(state: State, rng: random.Random) -> None:
    created = datetime.now(UTC) - timedelta(days=200)
    rows = []
    for profile in PROFILES.values():
        objects = rng.randint(8_000, 20_000)
        avg = 2_400_000 if profile.name == "manuscript" else 1_100_000
        rows.append((profile.r2_bucket, created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                     "ENAM", "Standard", objects, objects * avg, objects * 180))  # fmt: skip
    rows.append(
        ("opsbook-backups", created.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "ENAM",
         "InfrequentAccess", 90, 90 * 35_000_000, 90 * 120)
    )  # fmt: skip
    with state.tx() as db:
        db.executemany("INSERT INTO r2_buckets VALUES (?,?,?,?,?,?,?)", rows)
