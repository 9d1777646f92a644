"""db-query: run one SQL statement on the environment's D1 database, safely.

Seed 000 "Safe Query Practices" and "Common Database Tasks", seed 004 "Run Query".
Every statement goes through `opsbook.sqlguard` first. Reads run paginated. A write is
previewed (how many rows, which ones), then runs only as the approved action `write`,
which first exports the table it changes into the run folder and stops if that fails.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import sqlguard
from ..clients.cloudflare import Cloudflare
from . import backups

CAUSES = {
    "refused": "the statement was refused before it ran (the SQL guard, or not exactly one "
    "of query/sql): nothing ran",
    "write-pending": "a write was previewed but not approved: nothing changed",
}

ACTION = "write"
SAMPLE_ROWS = 10
TEST_USERS = "email LIKE 'prodtest%@example.com'"


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    sql: str
    profiles: tuple[str, ...] = ("manuscript", "peptalk")


# The seeds' own SQL, word for word where they give it.
QUERIES: tuple[NamedQuery, ...] = (
    NamedQuery(
        "user_count",
        "Total users and admins (seed 000, Check User Count)",
        "SELECT COUNT(*) as total, SUM(CASE WHEN role='admin' THEN 1 ELSE 0 END) as admins FROM users",
    ),
    NamedQuery(
        "recent_registrations",
        "The 10 newest users (seed 000, View Recent Registrations)",
        "SELECT email, role, created_at, email_verified FROM users ORDER BY created_at DESC LIMIT 10",
    ),
    NamedQuery(
        "test_users",
        "The production test users, prodtest%@example.com (seed 000, Add Test User)",
        "SELECT email, role, created_at, email_verified, last_login FROM users "
        f"WHERE {TEST_USERS} ORDER BY email",
    ),
    NamedQuery(
        "cleanup_test_users",
        "DESTRUCTIVE: delete the production test users (seed 000, Clean Up Test Data)",
        f"DELETE FROM users WHERE {TEST_USERS}",
    ),
    NamedQuery(
        "peptide_count",
        "Peptides (seed 004, Run Query)",
        "SELECT COUNT(*) FROM peptides",
        ("peptalk",),
    ),
    NamedQuery(
        "study_count",
        "Studies, and the peptides they cover",
        "SELECT COUNT(*) AS studies, COUNT(DISTINCT peptide_id) AS peptides FROM studies",
        ("peptalk",),
    ),
)


def named_queries(profile: str) -> dict[str, NamedQuery]:
    return {q.name: q for q in QUERIES if profile in q.profiles}


def catalogue(profile: str) -> list[dict[str, str]]:
    return [
        {"query": q.name, "description": q.description, "sql": q.sql}
        for q in named_queries(profile).values()
    ]


class BadRequest(ValueError):
    """Not exactly one of query/sql, or an unknown named query."""


@dataclass(frozen=True)
class Request:
    sql: str
    params: list[Any]
    name: str | None = None


def resolve(profile: str, query: str, sql: str, sql_params: list[Any]) -> Request:
    if bool(query.strip()) == bool(sql.strip()):
        given = "both" if query.strip() else "neither"
        raise BadRequest(
            f"db-query runs exactly one statement: give -p query=NAME (a named query) or "
            f'-p sql="..." (ad hoc), not {given}. Named queries: {", ".join(named_queries(profile))}.'
        )
    if sql.strip():
        return Request(sql, list(sql_params))
    known = named_queries(profile)
    if query not in known:
        raise BadRequest(
            f"No named query {query!r} for the {profile} profile. Known: {', '.join(known)}."
        )
    return Request(known[query].sql, list(sql_params), name=query)


def rerun_command(env: str, request: Request, database: str = "") -> str:
    """The command that runs this same statement approved."""
    args = ["opsbook", "run", "db-query", "--env", env]
    if database:
        args += ["-p", f"database={database}"]
    if request.name:
        args += ["-p", f"query={request.name}"]
    else:
        args += ["-p", shlex.quote(f"sql={request.sql}")]
    if request.params:
        args += ["-p", shlex.quote("sql_params=" + json.dumps(request.params))]
    return " ".join([*args, "--approve", ACTION])


HIDDEN = ("password", "secret", "token", "api_key", "hash")


def redact(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows to show and archive: values of secret-looking columns (password_hash,
    token...) are hidden. The backup file keeps them; the record does not."""
    return [
        {
            k: ("•••" if v is not None and any(h in k.lower() for h in HIDDEN) else v)
            for k, v in r.items()
        }
        for r in rows
    ]


# ---- reads ---------------------------------------------------------------------


@dataclass
class Page:
    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    sql: str
    page: int
    limit: int
    more: bool


def read(
    cf: Cloudflare, db: str, g: sqlguard.Guarded, params: list[Any], limit: int, page: int
) -> Page:
    """One page of a read: `limit` rows from row (page-1)*limit; one more is asked for
    to know whether there is a next page."""
    if limit < 1 or page < 1:
        raise BadRequest(f"limit and page must be at least 1 (got limit={limit}, page={page})")
    paged = sqlguard.paginate(g.sql, limit + 1, (page - 1) * limit)
    result = cf.d1_query(db, paged, params)[0]
    rows = list(result.get("results") or [])
    return Page(rows[:limit], dict(result.get("meta") or {}), paged, page, limit, len(rows) > limit)


def meta_summary(meta: dict[str, Any]) -> dict[str, Any]:
    keys = ("duration", "rows_read", "rows_written", "changes", "served_by_region")
    return {k: meta[k] for k in keys if k in meta}


# ---- writes --------------------------------------------------------------------


@dataclass
class WritePreview:
    touched: int | None  # rows the write would change; None for an INSERT
    total: int | None  # rows in the target table now
    sample: list[dict[str, Any]] = field(default_factory=list)
    count_sql: str = ""
    rows_sql: str = ""

    @property
    def everything(self) -> bool:
        """It would change every row of a table with more than one."""
        return (
            self.touched is not None
            and self.total is not None
            and self.total > 1
            and self.touched >= self.total
        )


def preview(cf: Cloudflare, db: str, g: sqlguard.Guarded, params: list[Any]) -> WritePreview:
    if g.statement is None:
        raise ValueError("preview() takes a checked statement")
    total_sql = sqlguard.count_rows_sql(g.statement)
    total = int(cf.d1_query(db, total_sql)[0]["results"][0]["n"])
    if g.statement.key not in ("update", "delete"):
        return WritePreview(None, total)
    p = sqlguard.preview_sql(g.statement)
    args = sqlguard.preview_params(p, params)
    touched = int(cf.d1_query(db, p.count_sql, args)[0]["results"][0]["n"])
    sample_sql = sqlguard.paginate(p.rows_sql, SAMPLE_ROWS, 0)
    sample = list(cf.d1_query(db, sample_sql, args)[0]["results"] or [])
    return WritePreview(touched, total, sample, p.count_sql, p.rows_sql)


TABLES_SQL = (
    "SELECT name FROM sqlite_master WHERE type = 'table' "
    "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'"
)
FOREIGN_KEYS_SQL = (
    'SELECT "from" AS col, "to" AS ref, "table" AS parent FROM pragma_foreign_key_list(?)'
)


def dependents(
    cf: Cloudflare, db: str, g: sqlguard.Guarded, params: list[Any]
) -> list[dict[str, Any]]:
    """For a DELETE: rows of other tables whose foreign keys point at the rows it
    removes ({table, column, references, rows}), found through the schema."""
    if g.statement is None or g.statement.key != "delete" or g.target is None:
        return []
    target = g.target.split(".")[-1]
    p = sqlguard.preview_sql(g.statement)
    args = sqlguard.preview_params(p, params)
    found = []
    for row in cf.d1_query(db, TABLES_SQL)[0]["results"]:
        child = str(row["name"])
        for fk in cf.d1_query(db, FOREIGN_KEYS_SQL, [child])[0]["results"]:
            if fk["parent"] != target or not fk["ref"]:
                continue
            sql = sqlguard.dependents_sql(p.rows_sql, child, fk["col"], fk["ref"])
            n = int(cf.d1_query(db, sql, args)[0]["results"][0]["n"])
            if n:
                found.append(
                    {
                        "table": child,
                        "column": fk["col"],
                        "references": f"{target}.{fk['ref']}",
                        "rows": n,
                    }
                )
    return found


def _shell_double_quoted(text: str) -> str:
    for ch in ("\\", '"', "$", "`"):
        text = text.replace(ch, "\\" + ch)
    return f'"{text}"'


def action_preview(
    cf: Cloudflare, db: str, g: sqlguard.Guarded, params: list[Any]
) -> dict[str, Any]:
    """The exact API call and the wrangler command (stable: no counts, so a re-run of
    the same incident recognises an action that already succeeded)."""
    body: dict[str, Any] = {"sql": g.sql, **({"params": params} if params else {})}
    wrangler = f"npx wrangler d1 execute {db} --remote --command {_shell_double_quoted(g.sql)}"
    out: dict[str, Any] = {
        "backup first": f"npx wrangler d1 export {db} --remote --table {g.target} "
        f"--output backup-{g.target}.sql",
        "call": f"POST {cf.acct}/d1/database/{cf.d1_id(db)}/query",
        "body": body,
        "wrangler": wrangler,
    }
    if params:
        out["note"] = "wrangler --command has no bind parameters: put the values into the SQL"
    return out


def backup(cf: Cloudflare, db: str, table: str, folder: Path) -> dict[str, Any]:
    """Export `table` (schema and rows) to folder/backup-<table>.sql (and its .sha256);
    raise if it fails or the dump does not hold the table."""
    saved = backups.export_sql(cf, db, folder, [table], name=f"backup-{table}.sql")
    return {k: saved[k] for k in ("file", "sha256", "bytes", "rows")}


def apply(
    cf: Cloudflare, db: str, g: sqlguard.Guarded, params: list[Any], folder: Path
) -> dict[str, Any]:
    """The approved write: the backup first (no backup, no write), then the statement."""
    if g.target is None or not g.ok or g.kind != sqlguard.WRITE:
        raise ValueError("apply() takes a write the guard allowed")
    saved = backup(cf, db, g.target.split(".")[-1], folder)
    result = cf.d1_query(db, g.sql, params)[0]
    meta = dict(result.get("meta") or {})
    return {"backup": saved, "changes": meta.get("changes"), "meta": meta_summary(meta)}
