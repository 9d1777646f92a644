"""db-restore-check: restore a D1 backup into a scratch database and compare it with the
source (seed 000 monthly "Backup verification - test restore").

The scratch database is a local SQLite file in the run folder, loaded with Python's
sqlite3: the dump is SQL, and the Cloudflare API's D1 create/delete are not offered by
every environment (the embedded sandbox has none). On production the equivalent is
`npx wrangler d1 create restore-test` + `npx wrangler d1 execute restore-test --remote
--file BACKUP` + `npx wrangler d1 delete restore-test`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clients.cloudflare import Cloudflare
from . import backups

CAUSES = {
    "backup-damaged": "the backup does not restore to what it should: checksum mismatch, "
    "SQL that fails to load, integrity errors, or row counts that differ",
}
NO_REMEDY = {
    "backup-damaged": "take a new backup (opsbook run db-backup) and find what damaged this one "
    "(storage, transfer, a hand edit); keep the damaged file for the postmortem",
}
SCRATCH = "restore-check.sqlite"
SCHEMA_SQL = (
    "SELECT type, name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index') "
    "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' ORDER BY type, name"
)


def resolve(path: str, home: Path) -> Path:
    """A backup path: absolute, or relative to the opsbook project folder."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else home / p


def checksum(path: Path) -> dict[str, Any] | None:
    """Check path against path.sha256 (sha256sum format); None when there is none."""
    sums = path.with_name(path.name + ".sha256")
    if not sums.is_file():
        return None
    expected = sums.read_text().split()[0]
    actual = backups.sha256(path.read_bytes())
    return {"file": sums.name, "expected": expected, "actual": actual, "ok": expected == actual}


def manifest(path: Path) -> dict[str, Any] | None:
    meta = path.with_name(path.name + ".json")
    return json.loads(meta.read_text()) if meta.is_file() else None


@dataclass
class Load:
    statements: int = 0
    error: str | None = None
    line: int | None = None  # the 1-based line where the failing statement starts
    text: str = ""  # its start


def load(text: str, target: Path) -> Load:
    """Run the dump into a new SQLite file one statement at a time, stopping at the
    first failure (its line), or at a last statement the file cuts off."""
    target.unlink(missing_ok=True)
    out = Load()
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for line, statement, complete in backups.statements(text):
            if not complete:
                out.error, out.line = "the file ends inside a statement", line
                out.text = statement[:200]
                conn.execute("ROLLBACK")
                return out
            try:
                conn.execute(statement)
            except sqlite3.Error as exc:
                out.error, out.line = f"{type(exc).__name__}: {exc}", line
                out.text = statement[:200]
                conn.execute("ROLLBACK")
                return out
            out.statements += 1
        conn.execute("COMMIT")
    finally:
        conn.close()
    return out


@dataclass
class Scratch:
    integrity: list[str]
    schema: list[tuple[str, str, str]]
    counts: dict[str, int] = field(default_factory=dict)


def inspect(target: Path) -> Scratch:
    conn = sqlite3.connect(target)
    try:
        integrity = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
        schema = [tuple(map(str, r)) for r in conn.execute(SCHEMA_SQL)]
        tables = [n for t, n, _ in schema if t == "table"]
        counts = {
            t: int(conn.execute(f"SELECT COUNT(*) FROM {backups.quote(t)}").fetchone()[0])
            for t in tables
        }
    finally:
        conn.close()
    return Scratch(integrity, schema, counts)  # type: ignore[arg-type]


def source_schema(cf: Cloudflare, db: str, tables: list[str]) -> list[tuple[str, str, str]]:
    rows = cf.d1_query(db, SCHEMA_SQL)[0]["results"]
    return [
        (str(r["type"]), str(r["name"]), str(r["tbl_name"]))
        for r in rows
        if r["tbl_name"] in tables
    ]


def compare(
    scratch: Scratch,
    expected_counts: dict[str, int],
    expected_schema: list[tuple[str, str, str]],
    in_dump: dict[str, int],
) -> list[str]:
    """What differs, one line each naming the table or object; [] when the restore matches."""
    problems: list[str] = []
    if scratch.integrity != ["ok"]:
        problems += [f"integrity_check: {line}" for line in scratch.integrity[:10]]
    for table, want in sorted(expected_counts.items()):
        got = scratch.counts.get(table)
        if got is None:
            problems.append(f"table {table}: missing from the restore")
        elif got != want:
            problems.append(
                f"table {table}: {got} rows restored, {want} expected "
                f"({in_dump.get(table, 0)} INSERT statements in the dump)"
            )
    restored = {(t, n) for t, n, _ in scratch.schema}
    for type_, name, table in expected_schema:
        if (type_, name) not in restored:
            problems.append(f"{type_} {name} (on {table}): missing from the restore")
    known = {(t, n) for t, n, _ in expected_schema}
    for type_, name, table in scratch.schema:
        if (type_, name) not in known:
            problems.append(f"{type_} {name} (on {table}): in the restore, not in the source")
    return problems
