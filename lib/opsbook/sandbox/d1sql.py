"""Running SQL on a D1 database the way the D1 query API does, with honest meta.

`duration` and `timings.sql_duration_ms` are measured around SQLite. `rows_read` comes
from SQLite's own query plan: every table the plan SCANs (no index) counts all its rows;
a SEARCH through an index counts the rows it returned. So a dropped index shows up as
a full scan in `rows_read`, as it does in D1's meta.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

READ_ONLY = ("SELECT", "EXPLAIN", "VALUES")
SCAN = re.compile(r"^SCAN (\S+)(?: USING (COVERING )?INDEX (\S+))?")
SEARCH = re.compile(r"^SEARCH (\S+)")


@dataclass
class Statement:
    sql: str
    params: list[Any] = field(default_factory=list)


def split_sql(sql: str) -> list[str]:
    """Split a script into complete statements (semicolons inside strings respected)."""
    out: list[str] = []
    buf = ""
    for piece in sql.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \t\r\n;"):
                out.append(buf.strip())
            buf = ""
    if buf.strip(" \t\r\n;"):
        out.append(buf.strip().rstrip(";"))
    return out


def statements(body: dict[str, Any]) -> list[Statement]:
    """The statements of a query body: {sql, params} or {batch: [{sql, params}]}."""
    items = body["batch"] if isinstance(body.get("batch"), list) else [body]
    out: list[Statement] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("sql"), str):
            raise ValueError("A request must have a 'sql' string or a 'batch' of {sql, params}")
        params = item.get("params") or []
        parts = split_sql(item["sql"])
        if params and len(parts) > 1:
            raise ValueError("params can only be bound to a single statement")
        out += [Statement(p, list(params)) for p in parts]
    return out


def is_write(sql: str) -> bool:
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    if head == "WITH":
        return bool(re.search(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b", sql, re.I))
    if head == "PRAGMA":
        return "=" in sql
    return head not in READ_ONLY


def _aliases(sql: str) -> dict[str, str]:
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except (sqlglot.errors.ParseError, ValueError):
        return {}
    out: dict[str, str] = {}
    for table in tree.find_all(exp.Table):
        out[table.alias_or_name] = table.name
        out[table.name] = table.name
    return out


def _plan(conn: sqlite3.Connection, stmt: Statement) -> list[str]:
    try:
        return [str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN " + stmt.sql, stmt.params)]
    except sqlite3.Error:
        return []


def _count(conn: sqlite3.Connection, table: str, cache: dict[str, int]) -> int:
    if table not in cache:
        try:
            cache[table] = int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
        except sqlite3.Error:
            cache[table] = 0
    return cache[table]


def rows_read(
    conn: sqlite3.Connection, stmt: Statement, plan: list[str], returned: int, changes: int
) -> int:
    aliases = _aliases(stmt.sql) if plan else {}
    counts: dict[str, int] = {}
    total, searched = 0, False
    for line in plan:
        if m := SCAN.match(line):
            name = m.group(1)
            if name in ("CONSTANT", "SUBQUERY") or name.startswith("("):
                continue
            total += _count(conn, aliases.get(name, name), counts)
        elif SEARCH.match(line):
            searched = True
    if searched:
        total += max(returned, changes, 1)
    return total


def rows_written(conn: sqlite3.Connection, sql: str, changes: int) -> int:
    """Rows plus index entries written, as D1 counts them: an INSERT or DELETE writes every
    index of the table; an UPDATE writes the indexes over the columns it sets."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except (sqlglot.errors.ParseError, ValueError):
        return changes
    if not isinstance(tree, exp.Insert | exp.Update | exp.Delete):
        return changes
    table = tree.find(exp.Table)
    if table is None:
        return changes
    indexes = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table.name,)
        )
    ]
    if isinstance(tree, exp.Update):
        set_cols = {e.this.name for e in tree.expressions if isinstance(e, exp.EQ)}
        indexes = [
            name
            for name in indexes
            if set_cols & {r[2] for r in conn.execute(f'PRAGMA index_info("{name}")')}
        ]
    return changes * (1 + len(indexes))


def execute(
    conn: sqlite3.Connection, stmt: Statement
) -> tuple[list[str], list[tuple[Any, ...]], dict[str, Any]]:
    """Run one statement: (columns, rows, meta). Raises sqlite3.Error."""
    plan = (
        _plan(conn, stmt) if not stmt.sql.lstrip().upper().startswith(("PRAGMA", "EXPLAIN")) else []
    )
    before = conn.total_changes
    started = time.perf_counter()
    cur = conn.execute(stmt.sql, stmt.params)
    rows = cur.fetchall() if cur.description else []
    elapsed = (time.perf_counter() - started) * 1000
    columns = [d[0] for d in cur.description] if cur.description else []
    changes = conn.total_changes - before
    last_row_id = cur.lastrowid or 0
    cur.close()
    write = is_write(stmt.sql)
    meta = {
        "served_by": "v3-prod",
        "served_by_region": "ENAM",
        "served_by_primary": True,
        "timings": {"sql_duration_ms": round(elapsed, 4)},
        "duration": round(elapsed, 4),
        "changes": changes,
        "last_row_id": last_row_id,
        "changed_db": write
        and (
            changes > 0 or not stmt.sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
        ),
        "size_after": 0,
        "rows_read": rows_read(conn, stmt, plan, len(rows), changes) if plan else len(rows),
        "rows_written": rows_written(conn, stmt.sql, changes) if write and changes else 0,
    }
    return columns, rows, meta
