"""D1 export and import: the SQL dump wrangler writes, and the signed-URL file store.

The dump reads like `wrangler d1 export`'s:

    PRAGMA defer_foreign_keys=TRUE;
    CREATE TABLE users (...);
    INSERT INTO "users" ("id","email",...) VALUES('…','…',…);
    ...
    CREATE INDEX idx_manuscripts_user_id ON manuscripts(author_id);

Files live in `<state>/snapshots/transfer/`. Their URLs are served without auth but
carry an HMAC signature (keyed by the sandbox's token) and expire after one hour.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .d1sql import split_sql
from .state import State

URL_TTL_S = 3600
PREFIX = "/d1-files"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, bytes):
        return "X'" + value.hex().upper() + "'"
    return "'" + str(value).replace("'", "''") + "'"


def dump(
    conn: sqlite3.Connection,
    *,
    tables: list[str] | None = None,
    no_schema: bool = False,
    no_data: bool = False,
) -> Iterator[str]:
    """Lines of the dump (each one statement, ending with ';')."""
    yield "PRAGMA defer_foreign_keys=TRUE;"
    objects = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL "
        "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' ORDER BY rowid"
    ).fetchall()
    wanted = set(tables or [])
    seq = False
    for type_, name, _, sql in objects:
        if type_ != "table" or (wanted and name not in wanted):
            continue
        if not no_schema:
            yield f"{sql};"
        if no_data:
            continue
        cur = conn.execute(f"SELECT * FROM {_quote_ident(name)}")
        cols = ",".join(_quote_ident(d[0]) for d in cur.description)
        head = f"INSERT INTO {_quote_ident(name)} ({cols}) VALUES("
        for row in cur:
            yield head + ",".join(sql_literal(v) for v in row) + ");"
        seq = seq or "AUTOINCREMENT" in sql.upper()
    if not no_schema:
        for type_, _name, tbl, sql in objects:
            if type_ != "table" and (not wanted or tbl in wanted):
                yield f"{sql};"
    if seq and not no_data:
        rows = conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall()
        rows = [r for r in rows if not wanted or r[0] in wanted]
        if rows:
            yield "DELETE FROM sqlite_sequence;"
            for name, value in rows:
                yield f'INSERT INTO "sqlite_sequence" VALUES({sql_literal(name)},{value});'


def transfer_dir(state: State) -> Path:
    path = state.snapshots_dir / "transfer"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _signature(state: State, method: str, name: str, expires: int) -> str:
    key = state.credentials.get("OPSBOOK_SANDBOX_TOKEN", "").encode()
    return hmac.new(key, f"{method}\n{name}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signed_url(base_url: str, state: State, method: str, name: str) -> str:
    expires = int(time.time()) + URL_TTL_S
    sig = _signature(state, method, name, expires)
    return f"{base_url.rstrip('/')}{PREFIX}/{name}?X-Amz-Expires={URL_TTL_S}&Expires={expires}&X-Amz-Signature={sig}"


def check_signature(state: State, method: str, name: str, query: dict[str, str]) -> str | None:
    """None when the URL's signature is valid and unexpired, else the reason."""
    try:
        expires = int(query.get("Expires", ""))
    except ValueError:
        return "missing expiry"
    if expires < time.time():
        return "Request has expired"
    good = _signature(state, method, name, expires)
    if not hmac.compare_digest(good, query.get("X-Amz-Signature", "")):
        return "The request signature we calculated does not match the signature you provided."
    return None


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_script(conn: sqlite3.Connection, text: str) -> int:
    """Execute an SQL file in one transaction; returns the number of statements."""
    count = 0
    buf: list[str] = []
    conn.execute("BEGIN")
    try:
        for line in text.splitlines(keepends=True):
            buf.append(line)
            chunk = "".join(buf)
            if line.rstrip().endswith(";") and sqlite3.complete_statement(chunk):
                if chunk.strip().upper().startswith(("BEGIN", "COMMIT", "END TRANSACTION")):
                    buf = []
                    continue
                for statement in split_sql(chunk):
                    conn.execute(statement)
                    count += 1
                buf = []
        rest = "".join(buf).strip()
        for statement in split_sql(rest):
            conn.execute(statement)
            count += 1
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return count
