"""D1 API routes: list, get, query, raw, export, import, time travel (reference §1.3).

Errors are D1's own: HTTP 400 with code 7500 and SQLite's message plus its error name
("no such table: verification_tokens: SQLITE_ERROR"). A write through the API takes a
time-travel snapshot first (at most one per 10 s), so a bad UPDATE can be undone.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid as uuidlib
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import d1data, d1sql, d1transfer
from .cf_account import check_account
from .envelope import CFError, json_body, ok, page_slice
from .state import State, from_request

BASE = "/accounts/{account_id}/d1/database"
DB = BASE + "/{database_id}"
WRITE_SNAPSHOT_EVERY_S = 10.0


def _cf(exc: BaseException) -> CFError:
    err = d1data.d1_error(exc)
    return CFError(err.status, err.code, err.message)


def _database(request: Request, *, data: bool = True) -> tuple[State, d1data.Database]:
    """The path's database; with `data`, also check it answers (fault d1-unavailable)."""
    check_account(request)
    state = from_request(request)
    database = d1data.find(state, request.path_params["database_id"])
    if database is None or database.uuid != request.path_params["database_id"]:
        raise CFError(404, 7404, "The database could not be found")
    if data and not database.available:
        raise CFError(503, 7500, d1data.UNAVAILABLE_MESSAGE)
    return state, database


async def list_databases(request: Request) -> Response:
    check_account(request)
    state = from_request(request)
    name = request.query_params.get("name") or ""
    items = [db.info(state) for db in d1data.databases(state) if name in db.name]
    chunk, info = page_slice(request, items, per_page=1000, max_per_page=10_000)
    return ok(chunk, info)


async def get_database(request: Request) -> Response:
    state, database = _database(request, data=False)
    info = database.info(state)
    info["running_in_region"] = "ENAM"
    info["read_replication"] = {"mode": "disabled"}
    return ok(info)


def _maybe_snapshot(state: State, database: d1data.Database) -> None:
    with state.read() as db:
        last = db.execute(
            "SELECT max(taken_at) FROM d1_snapshots WHERE db_uuid = ?", (database.uuid,)
        ).fetchone()[0]
    if last is None or time.time() - float(last) > WRITE_SNAPSHOT_EVERY_S:
        d1data.snapshot(state, database, "before write")


def run_query(
    state: State, database: d1data.Database, body: dict[str, Any], raw: bool
) -> list[dict[str, Any]]:
    """Execute the body's statements in one transaction; D1's result list."""
    try:
        stmts = d1sql.statements(body)
    except ValueError as exc:
        raise CFError(400, 7400, str(exc)) from None
    if not stmts:
        raise CFError(400, 7500, "No SQL statements detected.")
    conn = d1data.open_database(state, database.uuid)
    try:
        if any(d1sql.is_write(s.sql) for s in stmts):
            _maybe_snapshot(state, database)
        results: list[dict[str, Any]] = []
        conn.execute("BEGIN")
        for stmt in stmts:
            columns, rows, meta = d1sql.execute(conn, stmt)
            if raw:
                out: Any = {"columns": columns, "rows": [list(r) for r in rows]}
            else:
                out = [dict(zip(columns, r, strict=False)) for r in rows]
            results.append({"results": out, "success": True, "meta": meta})
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise _cf(exc) from None
    finally:
        conn.close()
    size = state.d1_path(database.uuid).stat().st_size
    for r in results:
        r["meta"]["size_after"] = size
    return results


async def _query(request: Request, raw: bool) -> Response:
    state, database = _database(request)
    body = await json_body(request)
    try:
        results = await run_in_threadpool(run_query, state, database, body, raw)
    except d1data.D1Error as exc:
        raise _cf(exc) from None
    return ok(results)


async def query(request: Request) -> Response:
    return await _query(request, raw=False)


async def raw_query(request: Request) -> Response:
    return await _query(request, raw=True)


# ---- export -------------------------------------------------------------------


def _write_export(
    state: State, database: d1data.Database, options: dict[str, Any]
) -> tuple[str, str]:
    bookmark = d1data.bookmark_at(state, database, None)
    name = f"{database.name}-{bookmark}-{uuidlib.uuid4().hex[:8]}.sql"
    path = d1transfer.transfer_dir(state) / name
    tables = [str(t) for t in options.get("tables") or []]
    conn = d1data.open_database(state, database.uuid)
    tmp = path.with_suffix(".part")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for line in d1transfer.dump(
                conn,
                tables=tables,
                no_schema=bool(options.get("no_schema")),
                no_data=bool(options.get("no_data")),
            ):
                fh.write(line + "\n")
        tmp.replace(path)
    except sqlite3.Error as exc:
        raise _cf(exc) from None
    finally:
        conn.close()
    return name, bookmark


async def export(request: Request) -> Response:
    state, database = _database(request)
    body = await json_body(request)
    if body.get("output_format", "polling") != "polling":
        raise CFError(400, 7400, "output_format must be 'polling'")
    options = body.get("dump_options") or {}
    try:
        name, bookmark = await run_in_threadpool(_write_export, state, database, options)
    except d1data.D1Error as exc:
        raise _cf(exc) from None
    url = d1transfer.signed_url(str(request.base_url), state, "GET", name)
    return ok(
        {
            "success": True,
            "type": "export",
            "at_bookmark": bookmark,
            "messages": [f"Generating {name}", "Uploaded part 1", "Export complete"],
            "status": "complete",
            "result": {"filename": name, "signed_url": url},
        }
    )


# ---- import -------------------------------------------------------------------


def _ingest(state: State, database: d1data.Database, path: Path) -> dict[str, Any]:
    d1data.snapshot(state, database, "before import")
    started = time.perf_counter()
    conn = d1data.open_database(state, database.uuid)
    try:
        count = d1transfer.run_script(conn, path.read_text(encoding="utf-8"))
    except sqlite3.Error as exc:
        raise _cf(exc) from None
    finally:
        conn.close()
    elapsed = (time.perf_counter() - started) * 1000
    final = d1data.bookmark_at(state, database, None)
    meta = {
        "served_by": "v3-prod",
        "duration": round(elapsed, 3),
        "changes": count,
        "last_row_id": 0,
        "changed_db": True,
        "size_after": state.d1_path(database.uuid).stat().st_size,
        "rows_read": 0,
        "rows_written": count,
    }
    return {"final_bookmark": final, "num_queries": count, "meta": meta}


async def import_(request: Request) -> Response:
    state, database = _database(request)
    body = await json_body(request)
    action = body.get("action")
    if action == "init":
        etag = str(body.get("etag") or "")
        name = f"{database.uuid}-{etag or uuidlib.uuid4().hex}.sql"
        url = d1transfer.signed_url(str(request.base_url), state, "PUT", name)
        return ok({"success": True, "type": "import", "upload_url": url, "filename": name})
    if action == "ingest":
        name = str(body.get("filename") or "")
        path = d1transfer.transfer_dir(state) / Path(name).name
        if not name or not path.is_file():
            raise CFError(400, 7400, f"No uploaded file named {name!r}: PUT it to upload_url first")
        if body.get("etag") and d1transfer.md5_file(path) != body["etag"]:
            raise CFError(400, 7400, "The uploaded file does not match its etag")
        try:
            result = await run_in_threadpool(_ingest, state, database, path)
        except d1data.D1Error as exc:
            raise _cf(exc) from None
        bookmark = result["final_bookmark"]
        (d1transfer.transfer_dir(state) / f"{bookmark}.import.json").write_text(json.dumps(result))
        return ok(
            {
                "success": True,
                "type": "import",
                "at_bookmark": bookmark,
                "status": "complete",
                "messages": ["Import complete"],
                "result": result,
            }
        )
    if action == "poll":
        bookmark = str(body.get("current_bookmark") or "")
        saved = d1transfer.transfer_dir(state) / f"{Path(bookmark).name}.import.json"
        polled = json.loads(saved.read_text()) if bookmark and saved.is_file() else None
        if polled is None:
            raise CFError(400, 7400, f"No import at bookmark {bookmark!r}")
        return ok(
            {
                "success": True,
                "type": "import",
                "at_bookmark": bookmark,
                "status": "complete",
                "messages": ["Import complete"],
                "result": polled,
            }
        )
    raise CFError(400, 7400, "action must be one of init, ingest, poll")


# ---- time travel --------------------------------------------------------------


def _timestamp(raw: str) -> float:
    try:
        return (
            float(raw)
            if raw.replace(".", "", 1).isdigit()
            else datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
        )
    except ValueError:
        raise CFError(400, 7400, f"Invalid timestamp: {raw}") from None


async def bookmark(request: Request) -> Response:
    state, database = _database(request)
    raw = request.query_params.get("timestamp")
    try:
        mark = await run_in_threadpool(
            d1data.bookmark_at, state, database, _timestamp(raw) if raw else None
        )
    except d1data.D1Error as exc:
        raise _cf(exc) from None
    return ok({"bookmark": mark})


async def restore(request: Request) -> Response:
    state, database = _database(request)
    mark = request.query_params.get("bookmark")
    raw = request.query_params.get("timestamp")
    try:
        if not mark and raw:
            mark = d1data.bookmark_at(state, database, _timestamp(raw))
        if not mark:
            raise CFError(400, 7400, "Either bookmark or timestamp is required")
        result = await run_in_threadpool(d1data.restore, state, database, mark)
    except d1data.D1Error as exc:
        raise _cf(exc) from None
    return ok(result)


# ---- the signed file URLs (no auth: the signature is the credential) -----------


async def download(request: Request) -> Response:
    state = from_request(request)
    name = Path(request.path_params["name"]).name
    reason = d1transfer.check_signature(state, "GET", name, dict(request.query_params))
    path = d1transfer.transfer_dir(state) / name
    if reason:
        return PlainTextResponse(reason, status_code=403)
    if not path.is_file():
        return PlainTextResponse("NoSuchKey", status_code=404)
    return FileResponse(path, media_type="application/sql")


async def upload(request: Request) -> Response:
    state = from_request(request)
    name = Path(request.path_params["name"]).name
    reason = d1transfer.check_signature(state, "PUT", name, dict(request.query_params))
    if reason:
        return PlainTextResponse(reason, status_code=403)
    path = d1transfer.transfer_dir(state) / name
    tmp = path.with_suffix(".part")
    with tmp.open("wb") as fh:
        async for chunk in request.stream():
            fh.write(chunk)
    tmp.replace(path)
    etag = await run_in_threadpool(d1transfer.md5_file, path)
    return Response(status_code=200, headers={"ETag": f'"{etag}"'})


routes = [
    Route(BASE, list_databases, methods=["GET"]),
    Route(DB, get_database, methods=["GET"]),
    Route(DB + "/query", query, methods=["POST"]),
    Route(DB + "/raw", raw_query, methods=["POST"]),
    Route(DB + "/export", export, methods=["POST"]),
    Route(DB + "/import", import_, methods=["POST"]),
    Route(DB + "/time_travel/bookmark", bookmark, methods=["GET"]),
    Route(DB + "/time_travel/restore", restore, methods=["POST"]),
]
public_routes = [
    Route(d1transfer.PREFIX + "/{name}", download, methods=["GET"]),
    Route(d1transfer.PREFIX + "/{name}", upload, methods=["PUT"]),
]
