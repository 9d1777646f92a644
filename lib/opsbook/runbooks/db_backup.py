"""db-backup: export a D1 database (or some of its tables) into the run folder
(seed 004 "Backup database" and "Export Data").

`sql`: the D1 export API's dump, wrangler's format. `json`: one `<table>.json` per
table, read in keyset pages through the query API. Either way a checksum file, and the
row counts compared with COUNT(*) taken right after the export.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .backups import Completeness

CAUSES = {
    "backup-incomplete": "the backup holds fewer or more rows than the tables had at export "
    "time (a write during the export, or a truncated export)",
    "bad-request": "an unknown format or table: nothing was exported",
}
NO_REMEDY = {
    "backup-incomplete": "run db-backup again (in a quiet moment, or inside a maintenance window)",
    "bad-request": "run again with -p format=sql|json and tables the database has",
}
FORMATS = ("sql", "json")
ACTION = "export"


def stamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def filename(db: str, now: datetime | None = None) -> str:
    return f"backup-{db}-{stamp(now)}.sql"


def check_request(fmt: str, tables: list[str], known: list[str]) -> list[str]:
    """Why the request cannot run ([] when it can)."""
    problems = []
    if fmt not in FORMATS:
        problems.append(f"format {fmt!r}: use sql or json")
    unknown = [t for t in tables if t not in known]
    if unknown:
        problems.append(f"no such table: {', '.join(unknown)} (tables: {', '.join(known)})")
    return problems


def manual(db: str, tables: list[str], fmt: str) -> str:
    if fmt == "json":
        return " && ".join(
            f'npx wrangler d1 execute {db} --remote --json --command "SELECT * FROM {t}" > {t}.json'
            for t in tables
        )
    flags = "".join(f" --table {t}" for t in tables)
    return f"npx wrangler d1 export {db} --remote --output backup-$(date +%F).sql{flags}"


def conclusion(result: Completeness) -> tuple[str, Any]:
    if result.ok:
        return "healthy", {"rows per table": {t: r["live"] for t, r in result.rows.items()}}
    return "backup-incomplete", [
        f"{t}: {result.rows[t]['backup']} rows in the backup, {result.rows[t]['live']} in the table"
        for t in result.differing
    ]
