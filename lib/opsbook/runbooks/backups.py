"""D1 backups, shared by db-query, db-backup and db-restore-check.

A backup is the SQL dump of the D1 export API (wrangler's format, what
`npx wrangler d1 export DB --remote --output FILE` writes), saved into the run folder
readable by the operator only, next to `FILE.sha256` (`sha256sum -c` checks it) and,
when the live row counts were taken, `FILE.json` (the counts at export time).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import config
from ..clients.cloudflare import Cloudflare
from ..errors import ApiError

TABLES_SQL = (
    "SELECT name FROM sqlite_master WHERE type = 'table' "
    "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' ORDER BY name"
)
INSERT = re.compile(r'^INSERT INTO "((?:[^"]|"")+)" ')


UNRECORDED = "backups"  # outputs/backups/: backups taken outside a run folder
PREFIX = "backup-"


def output_folder(run_dir: Path | None) -> Path:
    """Where backup files go: the run folder; outside one (a notebook opened by hand, nbval),
    a new private folder in the archive, outputs/backups/backup-<UTC time>-<random>/ (never
    the notebook's own folder, never /tmp: rows of live tables stay with the records)."""
    if run_dir is not None:
        return run_dir
    parent = config.outputs_dir() / UNRECORDED
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{stamp}-", dir=parent))


def discard(folder: Path) -> None:
    """Remove a folder made by output_folder outside a run folder (never a run folder)."""
    parent = (config.outputs_dir() / UNRECORDED).resolve()
    if folder.name.startswith(PREFIX) and folder.resolve().parent == parent:
        shutil.rmtree(folder)


def _private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)  # rows of live tables: readable by the operator only
    path.chmod(0o600)
    path.write_bytes(data)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rows_in_dump(text: str) -> dict[str, int]:
    """INSERT statements per table in a dump (one statement a line, as the export writes)."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        m = INSERT.match(line)
        if m:
            name = m.group(1).replace('""', '"')
            counts[name] = counts.get(name, 0) + 1
    counts.pop("sqlite_sequence", None)
    return counts


def statements(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line where it starts, statement, complete) for each statement of an SQL file;
    the last one is incomplete when the file ends inside it."""
    buf: list[str] = []
    start = 1
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        if not buf:
            start = number
        buf.append(line)
        chunk = "".join(buf)
        if sqlite3.complete_statement(chunk):
            buf = []
            yield start, chunk, True
    rest = "".join(buf)
    if rest.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in rest.splitlines()
    ):
        yield start, rest, False


def has_table(text: str, table: str) -> bool:
    return f"CREATE TABLE {table}" in text or f'CREATE TABLE "{table}"' in text


def export_sql(
    cf: Cloudflare, db: str, folder: Path, tables: list[str] | None = None, name: str = ""
) -> dict[str, Any]:
    """Export `db` (or only `tables`) to folder/<name> (default backup-<db>.sql) with its
    .sha256 file; raise if the export fails or misses a table asked for."""
    dump = cf.d1_export(db, tables=list(tables) if tables else None)
    if not tables and "CREATE TABLE" not in dump:
        raise ApiError(f"The export of {db} holds no table: not a usable backup.")
    for table in tables or []:
        if not has_table(dump, table):
            raise ApiError(
                f"The export of {db} has no CREATE TABLE {table}: not a usable backup; "
                "nothing was changed."
            )
    path = folder / (name or f"backup-{db}.sql")
    data = dump.encode()
    _private(path, data)
    digest = sha256(data)
    (folder / f"{path.name}.sha256").write_text(f"{digest}  {path.name}\n")
    rows = rows_in_dump(dump)
    return {
        "file": path.name,
        "sha256": digest,
        "bytes": len(data),
        "rows": sum(rows[t] for t in tables) if tables else sum(rows.values()),
        "rows_per_table": rows,
    }


def export_preview(cf: Cloudflare, db: str, tables: list[str], output: str) -> dict[str, Any]:
    flags = "".join(f" --table {t}" for t in tables)
    return {
        "call": f"POST {cf.acct}/d1/database/{cf.d1_id(db)}/export "
        '{"output_format": "polling"}, then GET the signed URL',
        "wrangler": f"npx wrangler d1 export {db} --remote --output {output}{flags}",
    }


def user_tables(cf: Cloudflare, db: str) -> list[str]:
    return [str(r["name"]) for r in cf.d1_query(db, TABLES_SQL)[0]["results"]]


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def live_counts(cf: Cloudflare, db: str, tables: list[str]) -> dict[str, int]:
    return {
        t: int(cf.d1_query(db, f"SELECT COUNT(*) AS n FROM {quote(t)}")[0]["results"][0]["n"])
        for t in tables
    }


def write_manifest(
    folder: Path, backup: dict[str, Any], db: str, counts: dict[str, int], taken_at: str
) -> Path:
    path = folder / f"{backup['file']}.json"
    manifest = {
        "database": db,
        "file": backup["file"],
        "sha256": backup["sha256"],
        "taken_at": taken_at,
        "count_at_export": counts,
    }
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def export_json(
    cf: Cloudflare, db: str, folder: Path, tables: list[str], page_size: int = 1000
) -> dict[str, dict[str, Any]]:
    """Each table to folder/<table>.json, read in pages of `page_size` rows by rowid
    (keyset pagination: never one giant query). Returns {table: {file, rows, sha256}}."""
    out: dict[str, dict[str, Any]] = {}
    for table in tables:
        rows: list[dict[str, Any]] = []
        last: int | None = None
        while True:
            where = "" if last is None else "WHERE rowid > ? "
            sql = f"SELECT rowid AS _rowid_, * FROM {quote(table)} {where}ORDER BY rowid LIMIT ?"
            args: list[Any] = ([last] if last is not None else []) + [page_size]
            page = list(cf.d1_query(db, sql, args)[0]["results"] or [])
            for row in page:
                last = int(row.pop("_rowid_"))
                rows.append(row)
            if len(page) < page_size:
                break
        data = json.dumps(rows, ensure_ascii=False, indent=0).encode()
        path = folder / f"{table}.json"
        _private(path, data)
        out[table] = {"file": path.name, "rows": len(rows), "sha256": sha256(data)}
    lines = "".join(f"{v['sha256']}  {v['file']}\n" for v in out.values())
    (folder / "SHA256SUMS").write_text(lines)
    return out


@dataclass
class Completeness:
    ok: bool
    rows: dict[str, dict[str, int]]  # table -> {backup, live}

    @property
    def differing(self) -> list[str]:
        return [t for t, r in self.rows.items() if r["backup"] != r["live"]]


def completeness(in_backup: dict[str, int], live: dict[str, int]) -> Completeness:
    rows = {t: {"backup": in_backup.get(t, 0), "live": n} for t, n in live.items()}
    return Completeness(all(r["backup"] == r["live"] for r in rows.values()), rows)
