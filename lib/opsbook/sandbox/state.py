"""The sandbox's state folder: control.sqlite, D1 files, credentials, and the seed order.

Every sandbox module may define

    SCHEMA: str                                            # DDL run on control.sqlite
    def seed(state: State, rng: random.Random) -> None     # seeded data

`rebuild()` runs every module's SCHEMA, then every seed(), in `MODULES` order. Modules
that are not written yet are skipped, so the tree works while it is being built.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import random
import secrets
import shutil
import sqlite3
import string
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..errors import OpsbookError
from .d1schemas import TEST_PASSWORD

ACCOUNT_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
ACCOUNT_NAME = "Ops Sandbox Account"
USER_EMAIL = "ops@sandbox.opsbook.dev"

# The one place that says which modules own state and in which order they seed.
# workers_model first: it writes the STRIPE_WEBHOOK_SECRET_<PROFILE> credentials that
# stripe_api's webhook endpoints must match.
MODULES = (
    "workers_model",
    "cf_kv",
    "cf_r2",
    "cf_firewall",
    "queues_model",
    "d1data",
    "stripe_api",
    "statuspage",
    "traffic",
)

CORE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS active_faults (
    name TEXT PRIMARY KEY,
    options TEXT NOT NULL DEFAULT '{}',
    applied_at TEXT NOT NULL
);
"""

_TOKEN_ALPHABET = string.ascii_letters + string.digits + "_-"
_KEY_ALPHABET = string.ascii_letters + string.digits


def _random_string(rng: random.Random | secrets.SystemRandom, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def new_credentials() -> dict[str, str]:
    """Fresh credentials. They come from the OS's random source, never from the seed."""
    sysrand = secrets.SystemRandom()
    return {
        "OPSBOOK_SANDBOX_TOKEN": _random_string(sysrand, _TOKEN_ALPHABET, 40),
        "OPSBOOK_SANDBOX_STRIPE_KEY": "sk_test_51" + _random_string(sysrand, _KEY_ALPHABET, 60),
        # the documented password of the seeded prodtest*/admin users (d1schemas.TEST_PASSWORD),
        # so runbooks reach it by reference (env:OPSBOOK_TEST_USER_PASSWORD) like any secret
        "OPSBOOK_TEST_USER_PASSWORD": TEST_PASSWORD,
    }


def load_module(name: str) -> Any | None:
    """`opsbook.sandbox.<name>`, or None when that module does not exist (yet)."""
    full = f"opsbook.sandbox.{name}"
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError as exc:
        if exc.name in (full, f"opsbook.sandbox.{name.split('.')[0]}"):
            return None
        raise


def schema_fingerprint() -> str:
    """A digest of every module's SCHEMA (the tables a state has). A state built with
    other tables is reseeded; code changes that keep the tables do not trigger it."""
    digest = hashlib.sha256(CORE_SCHEMA.encode())
    for name in MODULES:
        mod = load_module(name)
        digest.update(f"{name}:{getattr(mod, 'SCHEMA', None) or '-'}".encode())
    return digest.hexdigest()[:16]


class SeedError(OpsbookError):
    """A module's seed() failed during a reset."""


class State:
    """One sandbox state folder. Connections are opened per use; close what you open."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)
        self.seed_seconds: dict[str, float] = {}  # per module, from the last rebuild()
        self._deferred: list[tuple[str, Future[None], float]] = []

    def __repr__(self) -> str:
        return f"State({str(self.dir)!r})"

    # ---- paths ---------------------------------------------------------------
    @property
    def control_path(self) -> Path:
        return self.dir / "control.sqlite"

    @property
    def server_json(self) -> Path:
        return self.dir / "server.json"

    @property
    def credentials_path(self) -> Path:
        return self.dir / "credentials.json"

    @property
    def snapshots_dir(self) -> Path:
        return self.dir / "snapshots"

    @property
    def account_id(self) -> str:
        return ACCOUNT_ID

    def d1_path(self, uuid: str) -> Path:
        return self.dir / "d1" / f"{uuid}.sqlite"

    def is_seeded(self) -> bool:
        """True when the state has this code's tables (else it needs a reset)."""
        if not (self.control_path.is_file() and self.credentials_path.is_file()):
            return False
        try:
            with self.read() as db:
                row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.DatabaseError:
            return False
        return row is not None and row["value"] == schema_fingerprint()

    # ---- databases -----------------------------------------------------------
    def control(self) -> sqlite3.Connection:
        """A new connection to control.sqlite (WAL, busy timeout, Row rows). Close it.

        Autocommit mode: use `tx()` for a transaction. WAL is set once, at rebuild()."""
        conn = sqlite3.connect(self.control_path, timeout=10, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """`with state.tx() as db:` one transaction (BEGIN IMMEDIATE), committed, closed."""
        conn = self.control()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """`with state.read() as db:` a connection for reads, closed afterwards."""
        conn = self.control()
        try:
            yield conn
        finally:
            conn.close()

    # ---- credentials ---------------------------------------------------------
    @property
    def credentials(self) -> dict[str, str]:
        if not self.credentials_path.is_file():
            return {}
        data = json.loads(self.credentials_path.read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in data.items()}

    def set_credential(self, name: str, value: str) -> None:
        creds = self.credentials
        creds[name] = value
        write_json(self.credentials_path, creds, private=True)

    # ---- server.json ---------------------------------------------------------
    def server_info(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.server_json.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    # ---- reset ---------------------------------------------------------------
    def rebuild(self, seed: int = 7) -> float:
        """Recreate every file of the state from `seed`. Returns the seconds it took.

        The server must not be running on this folder (sandbox.reset() stops it first).
        """
        started = time.perf_counter()
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in ("control.sqlite", "control.sqlite-wal", "control.sqlite-shm"):
            (self.dir / name).unlink(missing_ok=True)
        for sub in ("d1", "snapshots"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
            (self.dir / sub).mkdir()
        write_json(self.credentials_path, new_credentials(), private=True)

        modules = [(name, mod) for name in MODULES if (mod := load_module(name)) is not None]
        conn = self.control()
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
            conn.executescript(CORE_SCHEMA)
            for _, mod in modules:
                ddl = getattr(mod, "SCHEMA", None)
                if ddl:
                    conn.executescript(ddl)
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('seed', ?), ('created_at', ?),"
                " ('schema', ?)",
                (str(seed), str(time.time()), schema_fingerprint()),
            )
        finally:
            conn.close()
        try:
            for name, mod in modules:
                seeder = getattr(mod, "seed", None)
                if seeder is None:
                    continue
                t0 = time.perf_counter()
                try:
                    seeder(self, random.Random(f"{seed}:{name}"))
                except Exception as exc:
                    raise _seed_error(f"module {name}", exc, self.dir) from exc
                self.seed_seconds[name] = time.perf_counter() - t0
        finally:
            self._join_deferred()
        return time.perf_counter() - started

    def defer(self, name: str, work: Future[None]) -> None:
        """Seed work a module left running in the background; rebuild() waits for it
        before returning (and reports it as failed, by `name`, if it raised)."""
        self._deferred.append((name, work, time.perf_counter()))

    def _join_deferred(self) -> None:
        pending, self._deferred = self._deferred, []
        failure: SeedError | None = None
        for name, work, since in pending:
            try:
                work.result()
            except Exception as exc:
                failure = failure or _seed_error(name, exc, self.dir)
            self.seed_seconds[f"{name}, overlapped"] = time.perf_counter() - since
        if failure is not None:
            raise failure


def _seed_error(name: str, exc: Exception, directory: Path) -> SeedError:
    return SeedError(
        f"Sandbox reset failed: {name} could not seed its data ({type(exc).__name__}: "
        f"{exc}). The state in {directory} is incomplete; fix the module and run "
        "`opsbook sandbox reset` again."
    )


def write_json(path: Path, data: Any, *, private: bool = False) -> None:
    """Atomic JSON write (temp file + rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if private:
        os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def from_request(request: Any) -> State:
    """The State a Starlette request is served from (`request.app.state.sandbox`)."""
    state: State = request.app.state.sandbox
    return state
