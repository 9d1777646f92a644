"""D1 databases: the registry, connections for the apps, and time-travel snapshots.

Each database is one SQLite file, `<state>/d1/<uuid>.sqlite` (rollback journal, as D1's
local mode). The control table `d1_databases` lists them; `d1_snapshots` lists the
time-travel points, each a real copy of the file in `<state>/snapshots/`.

For the apps:

    with d1_connect(state, "peptalk-production-db") as db:   # sqlite3.Connection
        db.execute("SELECT ...")

`d1_connect` raises `D1Error` while the database is unavailable (fault d1-unavailable)
or missing; SQL errors stay `sqlite3.Error` and `d1_error(exc)` turns either into the
D1 error (code 7500, "no such table: x: SQLITE_ERROR").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import sqlite3
import time
import uuid as uuidlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import d1schemas

if TYPE_CHECKING:
    from .state import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS d1_databases (
    uuid TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    version TEXT NOT NULL DEFAULT 'production',
    created_at TEXT NOT NULL,
    available INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS d1_snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    db_uuid TEXT NOT NULL,
    taken_at REAL NOT NULL,
    path TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_d1_snapshots_db ON d1_snapshots(db_uuid, taken_at);
"""

RETENTION_DAYS = 30
KEEP_SNAPSHOTS = 12  # on-demand snapshots kept per database (nightly backups aside)
UNAVAILABLE_MESSAGE = "D1_ERROR: Network connection lost."


class D1Error(Exception):
    """A D1 failure as the API reports it: HTTP status, code and message."""

    def __init__(self, message: str, *, code: int = 7500, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def d1_error(exc: BaseException) -> D1Error:
    """The D1 error for an exception from a D1 database (sqlite3 errors included)."""
    if isinstance(exc, D1Error):
        return exc
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None) or "SQLITE_ERROR"
        status = (
            500 if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_IOERR")) else 400
        )
        return D1Error(f"{exc}: {name}", code=7500, status=status)
    return D1Error(f"D1_ERROR: {exc}", code=7500, status=500)


@dataclass(frozen=True)
class Database:
    uuid: str
    name: str
    version: str
    created_at: str
    available: bool

    def info(self, state: State) -> dict[str, Any]:
        """The API's database object (file_size and num_tables measured from the file)."""
        path = state.d1_path(self.uuid)
        size = path.stat().st_size if path.is_file() else 0
        tables = 0
        with contextlib.suppress(sqlite3.Error, D1Error), _open(path) as db:
            tables = db.execute(
                "SELECT count(*) FROM sqlite_master WHERE type='table' "
                "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'"
            ).fetchone()[0]
        return {
            "uuid": self.uuid,
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at,
            "file_size": size,
            "num_tables": tables,
        }


def databases(state: State) -> list[Database]:
    with state.read() as db:
        rows = db.execute(
            "SELECT uuid, name, version, created_at, available FROM d1_databases ORDER BY created_at"
        ).fetchall()
    return [Database(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]


def find(state: State, name_or_uuid: str) -> Database | None:
    with state.read() as db:
        r = db.execute(
            "SELECT uuid, name, version, created_at, available FROM d1_databases "
            "WHERE uuid = ? OR name = ?",
            (name_or_uuid, name_or_uuid),
        ).fetchone()
    return Database(r[0], r[1], r[2], r[3], bool(r[4])) if r else None


def set_available(state: State, name_or_uuid: str | None, available: bool) -> None:
    """Fault switch: None means every database."""
    with state.tx() as db:
        if name_or_uuid is None:
            db.execute("UPDATE d1_databases SET available = ?", (int(available),))
        else:
            db.execute(
                "UPDATE d1_databases SET available = ? WHERE uuid = ? OR name = ?",
                (int(available), name_or_uuid, name_or_uuid),
            )


def _open(path: os.PathLike[str] | str) -> sqlite3.Connection:
    if not os.path.isfile(path):
        raise D1Error(f"D1_ERROR: database file missing ({os.path.basename(path)})", status=500)
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


@contextlib.contextmanager
def d1_connect(state: State, name_or_uuid: str) -> Iterator[sqlite3.Connection]:
    """A connection to a D1 database (autocommit; close is automatic). Raises D1Error."""
    conn = open_database(state, name_or_uuid)
    try:
        yield conn
    finally:
        conn.close()


def open_database(state: State, name_or_uuid: str) -> sqlite3.Connection:
    """A new connection the caller closes. Raises D1Error when unknown or unavailable."""
    database = find(state, name_or_uuid)
    if database is None:
        raise D1Error(f"D1_ERROR: no database named {name_or_uuid!r}", code=7404, status=404)
    if not database.available:
        raise D1Error(UNAVAILABLE_MESSAGE, code=7500, status=503)
    return _open(state.d1_path(database.uuid))


# ---- snapshots and bookmarks --------------------------------------------------


def _copy_db(src: os.PathLike[str] | str, dst: os.PathLike[str] | str) -> None:
    """A consistent copy (SQLite's backup API; a corrupt file is copied as it is)."""
    tmp = f"{dst}.tmp"
    try:
        with (
            contextlib.closing(sqlite3.connect(src)) as s,
            contextlib.closing(sqlite3.connect(tmp)) as d,
        ):
            s.backup(d)
    except sqlite3.DatabaseError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def snapshot(state: State, database: Database, reason: str, at: float | None = None) -> int:
    """Copy the database file now; returns the snapshot id."""
    taken = time.time() if at is None else at
    state.snapshots_dir.mkdir(parents=True, exist_ok=True)
    name = f"{database.uuid}-{int(taken * 1000)}-{uuidlib.uuid4().hex[:8]}.sqlite"
    path = state.snapshots_dir / name
    _copy_db(state.d1_path(database.uuid), path)
    with state.tx() as db:
        cur = db.execute(
            "INSERT INTO d1_snapshots(db_uuid, taken_at, path, reason) VALUES (?,?,?,?)",
            (database.uuid, taken, name, reason),
        )
        snap_id = int(cur.lastrowid or 0)
    prune(state, database.uuid)
    return snap_id


# Nightly backups and the snapshots faults take (their heal restores them) are never pruned.
_ON_DEMAND = "reason NOT IN ('nightly backup', 'seed') AND reason NOT LIKE 'before fault%'"


def prune(state: State, db_uuid: str, keep: int = KEEP_SNAPSHOTS) -> int:
    """Forget snapshots past the retention window, and all but the newest `keep` taken on
    demand (bookmarks, before writes, restores, imports). Returns the files removed."""
    cutoff = time.time() - RETENTION_DAYS * 86400
    with state.tx() as db:
        old = db.execute(
            f"SELECT id FROM d1_snapshots WHERE db_uuid = ? AND (taken_at < ? OR ({_ON_DEMAND} "
            f"AND id NOT IN (SELECT id FROM d1_snapshots WHERE db_uuid = ? AND {_ON_DEMAND} "
            "ORDER BY taken_at DESC, id DESC LIMIT ?)))",
            (db_uuid, cutoff, db_uuid, keep),
        ).fetchall()
        ids = [r[0] for r in old]
        paths = {
            r[0]
            for r in db.execute(
                f"SELECT path FROM d1_snapshots WHERE id IN ({','.join('?' * len(ids))})", ids
            )
        }
        db.executemany("DELETE FROM d1_snapshots WHERE id = ?", [(i,) for i in ids])
        used = {r[0] for r in db.execute("SELECT DISTINCT path FROM d1_snapshots")}
    removed = 0
    for name in paths - used:
        with contextlib.suppress(FileNotFoundError):
            (state.snapshots_dir / name).unlink()
            removed += 1
    return removed


def _digest(db_uuid: str, snap_id: int) -> str:
    return hashlib.sha256(f"{db_uuid}:{snap_id}".encode()).hexdigest()[:32]


def bookmark_for(db_uuid: str, snap_id: int, taken_at: float) -> str:
    return f"{snap_id:08x}-{int(taken_at):08x}-{0:08x}-{_digest(db_uuid, snap_id)}"


def parse_bookmark(db_uuid: str, bookmark: str) -> int:
    parts = bookmark.split("-")
    try:
        snap_id = int(parts[0], 16)
    except (ValueError, IndexError):
        raise D1Error(f"Invalid bookmark: {bookmark}", code=7400, status=400) from None
    if len(parts) != 4 or parts[3] != _digest(db_uuid, snap_id):
        raise D1Error(f"Invalid bookmark: {bookmark}", code=7400, status=400)
    return snap_id


def _check_window(ts: float) -> None:
    now = time.time()
    if ts < now - RETENTION_DAYS * 86400:
        raise D1Error(
            f"Timestamp is older than the {RETENTION_DAYS}-day Time Travel retention window",
            code=7400,
            status=400,
        )
    if ts > now + 60:
        raise D1Error("Timestamp is in the future", code=7400, status=400)


def bookmark_at(state: State, database: Database, ts: float | None) -> str:
    """The bookmark at `ts` (the last snapshot at or before it), or of the state now."""
    if ts is None:
        snap = snapshot(state, database, "bookmark")
        return bookmark_for(database.uuid, snap, time.time())
    _check_window(ts)
    with state.read() as db:
        r = db.execute(
            "SELECT id, taken_at FROM d1_snapshots WHERE db_uuid = ? AND taken_at <= ? "
            "ORDER BY taken_at DESC, id DESC LIMIT 1",
            (database.uuid, ts),
        ).fetchone()
    if r is None:
        raise D1Error("No bookmark is available at that timestamp", code=7400, status=400)
    return bookmark_for(database.uuid, int(r[0]), float(r[1]))


def restore(state: State, database: Database, bookmark: str) -> dict[str, str]:
    """Replace the database file with the bookmark's snapshot (atomically)."""
    snap_id = parse_bookmark(database.uuid, bookmark)
    with state.read() as db:
        r = db.execute(
            "SELECT path FROM d1_snapshots WHERE id = ? AND db_uuid = ?", (snap_id, database.uuid)
        ).fetchone()
    if r is None:
        raise D1Error(f"Invalid bookmark: {bookmark}", code=7400, status=400)
    before = snapshot(state, database, "before restore")
    previous = bookmark_for(database.uuid, before, time.time())
    target = state.d1_path(database.uuid)
    tmp = target.with_suffix(".restore.tmp")
    shutil.copyfile(state.snapshots_dir / r[0], tmp)
    os.replace(tmp, target)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{target}-journal")
    return {
        "bookmark": bookmark,
        "previous_bookmark": previous,
        "message": "Database restored successfully",
    }


# ---- seed ---------------------------------------------------------------------


def create(state: State, name: str, rng: random.Random, created_at: datetime) -> Database:
    db_uuid = d1schemas.rid(rng)
    path = state.d1_path(db_uuid)
    path.parent.mkdir(parents=True, exist_ok=True)
    with state.tx() as db:
        db.execute(
            "INSERT INTO d1_databases(uuid, name, created_at) VALUES (?,?,?)",
            (db_uuid, name, d1schemas.iso(created_at)),
        )
    return Database(db_uuid, name, "production", d1schemas.iso(created_at), True)


def seed(state: State, rng: random.Random) -> None:
    """Both databases, each in its own thread (SQLite and PBKDF2 release the GIL). A
    database's bulk phase (the 200,000 manuscripts) and its backups then go on in the
    background, deferred on `state`, while the next modules seed from the committed rows."""
    now = datetime.now(UTC)
    jobs = []
    for name, (ddl, seeder) in d1schemas.SEEDERS.items():
        database = create(state, name, rng, now - timedelta(days=rng.uniform(200, 400)))
        jobs.append((database, ddl, seeder, random.Random(rng.getrandbits(64))))
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(_seed_file, state, *job, now) for job in jobs]
        bulks = [future.result() for future in futures]
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opsbook-d1-bulk")
    for (database, *_), bulk in zip(jobs, bulks, strict=True):
        if bulk is None:
            seed_backups(state, database, now)
        else:
            state.defer(
                f"d1data bulk ({database.name})",
                background.submit(_bulk, state, database, bulk, now),
            )
    background.shutdown(wait=False)
    seed_sessions(state, rng, now)


def _connect_for_seed(state: State, database: Database) -> sqlite3.Connection:
    conn = sqlite3.connect(state.d1_path(database.uuid), isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    return conn


def _seed_file(
    state: State, database: Database, ddl: str, seeder: Any, rng: random.Random, now: datetime
) -> d1schemas.Bulk:
    conn = _connect_for_seed(state, database)
    try:
        conn.executescript(ddl)
        conn.execute("BEGIN")
        bulk: d1schemas.Bulk = seeder(conn, rng, now)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return bulk


def _bulk(state: State, database: Database, bulk: Any, now: datetime) -> None:
    """The bulk phase in its own transaction (the SQL runs without the GIL), then backups."""
    conn = _connect_for_seed(state, database)
    try:
        conn.execute("BEGIN")
        bulk(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()
    seed_backups(state, database, now)


def seed_sessions(state: State, rng: random.Random, now: datetime) -> None:
    """Live KV sessions (as the app's login writes them) for the admins and prodtest users."""
    from .state import load_module

    kv = load_module("cf_kv")
    if kv is None:
        return
    for profile, name in d1schemas.PROFILE_DB.items():
        title = f"{profile}-sessions"
        if kv.namespace_id(state, title) is None:
            continue
        with d1_connect(state, name) as db:
            users = db.execute(
                "SELECT id, email FROM users WHERE role = 'admin' OR email LIKE 'prodtest%@example.com'"
            ).fetchall()
        for user_id, email in users:
            created = int(now.timestamp()) - rng.randint(600, 2 * 86400)
            record = {"user_id": user_id, "email": email, "created_at": created}
            key = f"session:{rng.randbytes(16).hex()}"
            kv.kv_put(state, title, key, json.dumps(record), expiration=created + 7 * 86400)


def seed_backups(state: State, database: Database, now: datetime) -> None:
    """Nightly backups (03:00 UTC) for the retention window, sharing one file copy."""
    state.snapshots_dir.mkdir(parents=True, exist_ok=True)
    name = f"{database.uuid}-nightly.sqlite"
    shutil.copyfile(state.d1_path(database.uuid), state.snapshots_dir / name)
    nights = []
    for day in range(RETENTION_DAYS - 1, 0, -1):
        night = (now - timedelta(days=day)).replace(hour=3, minute=0, second=0, microsecond=0)
        nights.append((database.uuid, night.timestamp(), name, "nightly backup"))
    nights.append((database.uuid, now.timestamp(), name, "seed"))
    with state.tx() as db:
        db.executemany(
            "INSERT INTO d1_snapshots(db_uuid, taken_at, path, reason) VALUES (?,?,?,?)", nights
        )


def uuid_for(state: State, name: str) -> str:
    database = find(state, name)
    if database is None:
        raise D1Error(f"D1_ERROR: no database named {name!r}", code=7404, status=404)
    return database.uuid
