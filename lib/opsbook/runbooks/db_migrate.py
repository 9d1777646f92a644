"""db-migrate: apply the pending D1 migrations of a folder, the safe way (seed 004
"Apply Migration": test first, back up, apply, check).

Pending = the folder's NNNN_name.sql files that `d1_migrations` does not list, in name
order (wrangler's rule). Each is first applied to a scratch copy (the export loaded into a
local SQLite file) and the copy's integrity checked; then, approved, the database is
backed up into the run folder and each file runs through the D1 query API in one request
together with its `d1_migrations` row, as `wrangler d1 migrations apply` does.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clients.cloudflare import Cloudflare
from . import backups
from . import db_restore_check as rc

CAUSES = {
    "pending": "migrations in the folder are not applied yet (d1_migrations does not list them)",
    "scratch-failed": "a pending migration fails on the scratch copy: nothing was applied for real",
    "migration-failed": "a migration failed on the database itself: the ones before it are "
    "applied, it and the ones after are not",
}
NO_REMEDY = {
    "scratch-failed": "fix the migration (the error names it and the statement), then run db-migrate again",
    "migration-failed": "read the error; restore from the backup in the run folder if the data changed "
    "(npx wrangler d1 execute DB --remote --file BACKUP into a new database, or time travel)",
}
ACTION = "apply-migrations"
NAME = re.compile(r"^\d{4}_[A-Za-z0-9_.-]+\.sql$")
APPLIED_SQL = "SELECT name FROM d1_migrations ORDER BY id"
SCHEMA_SQL = (
    "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
    "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' ORDER BY type, name"
)


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str


def folder(migrations_dir: str, home: Path) -> Path | None:
    """The migrations folder: absolute, or relative to the opsbook project; None if not given."""
    if not migrations_dir.strip():
        return None
    path = rc.resolve(migrations_dir, home)
    if not path.is_dir():
        raise FileNotFoundError(f"migrations_dir {path} is not a folder")
    return path


def applied(cf: Cloudflare, db: str) -> list[str]:
    return [str(r["name"]) for r in cf.d1_query(db, APPLIED_SQL)[0]["results"]]


def pending(path: Path, done: list[str]) -> list[Migration]:
    names = sorted(p.name for p in path.glob("*.sql") if NAME.match(p.name))
    return [Migration(n, (path / n).read_text()) for n in names if n not in set(done)]


def record_sql(m: Migration) -> str:
    return f"INSERT INTO d1_migrations (name) VALUES ('{m.name}');"  # NAME has no quote


def batch(m: Migration) -> str:
    """The one request for a migration: its SQL then its d1_migrations row."""
    return m.sql.rstrip().rstrip(";") + ";\n" + record_sql(m)


# ---- the scratch copy --------------------------------------------------------------
@dataclass
class Trial:
    ok: bool
    applied: list[str] = field(default_factory=list)
    failed: str | None = None
    error: str | None = None
    integrity: list[str] = field(default_factory=list)
    schema: list[tuple[str, str, str]] = field(default_factory=list)

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"applied on the copy": self.applied, "integrity": self.integrity}
        if self.failed:
            out.update({"failed": self.failed, "error": self.error})
        return out


def schema(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    return [(str(t), str(n), str(s)) for t, n, s in conn.execute(SCHEMA_SQL)]


def trial(dump: str, migrations: list[Migration], target: Path) -> Trial:
    """Load the export into target, then apply each migration (one transaction each, as
    D1 does) and check the copy's integrity."""
    loaded = rc.load(dump, target)
    if loaded.error:
        return Trial(False, error=f"the export did not load at line {loaded.line}: {loaded.error}")
    conn = sqlite3.connect(target, isolation_level=None)
    out = Trial(True)
    try:
        for m in migrations:
            conn.execute("BEGIN")
            try:
                for line, statement, complete in backups.statements(batch(m)):
                    if not complete:
                        raise sqlite3.OperationalError(f"incomplete statement at line {line}")
                    try:
                        conn.execute(statement)
                    except sqlite3.Error as exc:
                        raise type(exc)(f"line {line}: {exc}") from None
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                out.ok, out.failed, out.error = False, m.name, f"{type(exc).__name__}: {exc}"
                break
            out.applied.append(m.name)
        out.integrity = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
        out.ok = out.ok and out.integrity == ["ok"]
        out.schema = schema(conn)
    finally:
        conn.close()
    return out


# ---- for real --------------------------------------------------------------------
def preview(cf: Cloudflare, db: str, migrations: list[Migration]) -> dict[str, Any]:
    return {
        "backup first": f"npx wrangler d1 export {db} --remote --output pre-migration-backup.sql",
        "call": f"POST {cf.acct}/d1/database/{cf.d1_id(db)}/query, once per migration, in order",
        "migrations": [m.name for m in migrations],
        "each": "the file's SQL, then " + "INSERT INTO d1_migrations (name) VALUES ('<file>')",
        "wrangler": f"npx wrangler d1 migrations apply {db} --remote",
    }


def apply(cf: Cloudflare, db: str, migrations: list[Migration]) -> dict[str, Any]:
    """Each migration in order, one request (one D1 transaction) each; stops at the first
    failure (raising), the ones before it stay applied as with wrangler."""
    done: list[dict[str, Any]] = []
    for m in migrations:
        results = cf.d1_query(db, batch(m))
        ms = sum(float((r.get("meta") or {}).get("duration") or 0) for r in results)
        done.append({"migration": m.name, "statements": len(results), "ms": round(ms, 1)})
    return {"applied": done}


def live_schema(cf: Cloudflare, db: str) -> list[tuple[str, str, str]]:
    rows = cf.d1_query(db, SCHEMA_SQL)[0]["results"]
    return [(str(r["type"]), str(r["name"]), str(r["sql"])) for r in rows]


def changes(
    before: list[tuple[str, str, str]], after: list[tuple[str, str, str]]
) -> dict[str, list[str]]:
    """Schema objects the migrations created, changed (their CREATE text) or dropped."""
    old = {(t, n): sql for t, n, sql in before}
    new = {(t, n): sql for t, n, sql in after}
    return {
        "created": sorted(f"{t} {n}" for t, n in new.keys() - old.keys()),
        "changed": sorted(
            f"{t} {n}" for t, n in new.keys() & old.keys() if new[(t, n)] != old[(t, n)]
        ),
        "dropped": sorted(f"{t} {n}" for t, n in old.keys() - new.keys()),
    }


def verify(
    done: list[str], migrations: list[Migration], live: list[tuple[str, str, str]], copy: Trial
) -> tuple[bool, dict[str, Any]]:
    """Applied for real = d1_migrations lists every one, and the schema is the copy's."""
    missing = [m.name for m in migrations if m.name not in done]
    differ = sorted({f"{t} {n}" for t, n, _ in set(live) ^ set(copy.schema)})
    evidence = {
        "d1_migrations now lists": [m.name for m in migrations if m.name in done],
        "missing from d1_migrations": missing,
        "schema differences with the scratch copy": differ,
    }
    return not missing and not differ, evidence
