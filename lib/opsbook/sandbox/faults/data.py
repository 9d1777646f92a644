"""Data faults: D1 outages, a dropped table or index, a corrupted file, a Cloudflare incident.

Each changes the real D1 files or the status page. Destructive ones take a time-travel
snapshot first, so the database-corruption runbook has a good bookmark to restore.
What heal needs is remembered in control.sqlite (`meta`, key `fault:<name>`).
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import d1data, d1schemas, statuspage
from ..profiles import PROFILES
from ..state import State, load_module
from . import Fault, register

PROFILE_OPTION = {"profile": "manuscript (default) or peptalk", "minutes_ago": "onset (default 10)"}
WORKERS = "Cloudflare Workers"


def remember(state: State, name: str, data: dict[str, Any]) -> None:
    with state.tx() as db:
        db.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
            (f"fault:{name}", json.dumps(data)),
        )


def recall(state: State, name: str) -> dict[str, Any] | None:
    with state.tx() as db:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (f"fault:{name}",)).fetchone()
        db.execute("DELETE FROM meta WHERE key = ?", (f"fault:{name}",))
    return json.loads(row[0]) if row else None


def onset(options: dict[str, Any], default_minutes: int = 10) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=int(options.get("minutes_ago", default_minutes)))


def regenerate(state: State, profile: str, since: datetime) -> None:
    """Rewrite the app's traffic history from the onset (traffic model, if present)."""
    traffic = load_module("traffic")
    if traffic is not None and hasattr(traffic, "regenerate"):
        traffic.regenerate(state, PROFILES[profile].worker, int(since.timestamp() * 1000))


def _database(state: State, name: str) -> d1data.Database:
    database = d1data.find(state, name)
    if database is None:
        raise ValueError(f"no D1 database named {name!r}")
    return database


def _execute(state: State, name: str, *sql: str) -> None:
    database = _database(state, name)
    conn = sqlite3.connect(state.d1_path(database.uuid), isolation_level=None)
    try:
        for statement in sql:
            conn.execute(statement)
    finally:
        conn.close()


# ---- d1-unavailable ------------------------------------------------------------
def apply_d1_unavailable(state: State, options: dict[str, Any]) -> None:
    profile = str(options.get("profile") or "manuscript")
    d1data.set_available(state, PROFILES[profile].database, False)
    remember(state, "d1-unavailable", {"database": PROFILES[profile].database})
    regenerate(state, profile, onset(options))


def heal_d1_unavailable(state: State) -> None:
    memo = recall(state, "d1-unavailable") or {}
    d1data.set_available(state, memo.get("database"), True)


# ---- cloudflare-outage ---------------------------------------------------------
def apply_cloudflare_outage(state: State, options: dict[str, Any]) -> None:
    statuspage.open_incident(
        state,
        "Elevated errors and latency for Cloudflare Workers",
        "We are investigating elevated 5xx errors and increased latency affecting "
        "Cloudflare Workers in multiple regions. D1 and the API are also impacted.",
        {WORKERS: "major_outage", "D1": "degraded_performance", "Cloudflare API": "partial_outage"},
        impact="major",
    )
    since = onset(options, 15)
    for profile in PROFILES:
        regenerate(state, profile, since)


def heal_cloudflare_outage(state: State) -> None:
    statuspage.resolve_all(state)


# ---- verification-tokens-missing -----------------------------------------------
def apply_tokens_missing(state: State, options: dict[str, Any]) -> None:
    database = _database(state, "manuscript-platform")
    snap = d1data.snapshot(state, database, "before fault verification-tokens-missing")
    _execute(state, database.name, "DROP TABLE IF EXISTS verification_tokens")
    remember(state, "verification-tokens-missing", {"snapshot": snap})
    regenerate(state, "manuscript", onset(options, 30))


def heal_tokens_missing(state: State) -> None:
    memo = recall(state, "verification-tokens-missing") or {}
    database = _database(state, "manuscript-platform")
    with state.read() as db:
        row = db.execute(
            "SELECT path FROM d1_snapshots WHERE id = ?", (memo.get("snapshot"),)
        ).fetchone()
    conn = sqlite3.connect(state.d1_path(database.uuid), isolation_level=None)
    try:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'verification_tokens'"
        ).fetchone()
        if exists:
            return
        conn.execute(d1schemas.VERIFICATION_TOKENS_DDL)
        conn.execute(d1schemas.MANUSCRIPT_INDEXES[2])
        if row is not None:
            conn.execute("ATTACH DATABASE ? AS snap", (str(state.snapshots_dir / row[0]),))
            conn.execute("INSERT INTO verification_tokens SELECT * FROM snap.verification_tokens")
            conn.execute("DETACH DATABASE snap")
    finally:
        conn.close()


# ---- missing-index -------------------------------------------------------------
def apply_missing_index(state: State, options: dict[str, Any]) -> None:
    _execute(state, "manuscript-platform", "DROP INDEX IF EXISTS idx_manuscripts_user_id")
    regenerate(state, "manuscript", onset(options, 60))


def heal_missing_index(state: State) -> None:
    _execute(state, "manuscript-platform", d1schemas.MANUSCRIPT_INDEXES[0])


# ---- corrupt -------------------------------------------------------------------
def corrupt_file(
    state: State, database: d1data.Database, rng: random.Random, table: str = "studies"
) -> list[int]:
    """Overwrite some b-tree pages of `table` with garbage. Returns the page numbers."""
    path = state.d1_path(database.uuid)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute(
            "SELECT pageno, pagetype FROM dbstat WHERE name = ? ORDER BY pageno", (table,)
        ).fetchall()
    leaves = [p for p, kind in pages if kind == "leaf" and p > 2]
    if not leaves:
        raise ValueError(f"table {table} has no pages to corrupt in {database.name}")
    # the first leaf holds the first rows (BPC-157's studies), so the damage shows in the app
    hit = sorted({leaves[0], *rng.sample(leaves, min(len(leaves), max(3, len(leaves) // 8)))})
    with path.open("r+b") as fh:
        for pageno in hit:
            fh.seek((pageno - 1) * page_size)
            fh.write(rng.randbytes(page_size))
    return hit


def apply_corrupt(state: State, options: dict[str, Any]) -> None:
    name = str(options.get("db") or PROFILES[str(options.get("profile") or "peptalk")].database)
    database = _database(state, name)
    snap = d1data.snapshot(state, database, "before fault corrupt")
    table = "studies" if name == "peptalk-production-db" else "manuscripts"
    corrupt_file(state, database, random.Random(name), table)
    remember(state, "corrupt", {"database": name, "snapshot": snap})
    regenerate(
        state, "peptalk" if name == "peptalk-production-db" else "manuscript", onset(options, 20)
    )


def heal_corrupt(state: State) -> None:
    memo = recall(state, "corrupt")
    if not memo:
        return
    database = _database(state, memo["database"])
    with contextlib.closing(sqlite3.connect(state.d1_path(database.uuid))) as conn:
        try:
            healthy = conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        except sqlite3.DatabaseError:
            healthy = False
    if not healthy:
        d1data.restore(state, database, d1data.bookmark_for(database.uuid, memo["snapshot"], 0))


register(Fault(
    name="d1-unavailable", runbook="api-down", verdict="d1-unavailable", profiles=("manuscript", "peptalk"),
    summary="The app's D1 database stops answering (D1_ERROR: Network connection lost).",
    symptom="The D1 query API answers 503 with code 7500; the app's DB routes and health check answer 500.",
    apply=apply_d1_unavailable, heal=heal_d1_unavailable, options=PROFILE_OPTION,
))  # fmt: skip
register(Fault(
    name="cloudflare-outage", runbook="api-down", verdict="cloudflare-outage", profiles=("manuscript", "peptalk"),
    summary="Cloudflare reports a major Workers incident (status page: major outage, D1 degraded).",
    symptom="status.json indicator major, an unresolved incident on Cloudflare Workers; the apps answer 5xx.",
    apply=apply_cloudflare_outage, heal=heal_cloudflare_outage,
    options={"profile": "either: the outage hits both apps", "minutes_ago": "onset (default 15)"},
))  # fmt: skip
register(Fault(
    name="verification-tokens-missing", runbook="password-reset", verdict="verification-tokens-missing",
    profiles=("manuscript",),
    summary="The verification_tokens table of manuscript-platform is gone (a bad migration).",
    symptom="POST /auth/password-reset-request answers 500; D1 says no such table: verification_tokens.",
    apply=apply_tokens_missing, heal=heal_tokens_missing, options={"profile": "manuscript", "minutes_ago": "onset (default 30)"},
))  # fmt: skip
register(Fault(
    name="missing-index", runbook="slow-responses", verdict="missing-index", profiles=("manuscript",),
    summary="idx_manuscripts_user_id is dropped: listing a user's manuscripts scans 200,000 rows.",
    symptom="GET /manuscripts is slow; EXPLAIN QUERY PLAN shows a SCAN and rows_read is the whole table.",
    apply=apply_missing_index, heal=heal_missing_index, options={"profile": "manuscript", "minutes_ago": "onset (default 60)"},
))  # fmt: skip
register(Fault(
    name="corrupt", runbook="database-corruption", verdict="corrupt", profiles=("peptalk", "manuscript"),
    summary="Pages of a table (studies; manuscripts in manuscript-platform) in the D1 file are overwritten with garbage.",
    symptom="PRAGMA integrity_check reports errors; queries on studies fail with SQLITE_CORRUPT.",
    apply=apply_corrupt, heal=heal_corrupt,
    options={"profile": "peptalk (default) or manuscript: whose database",
             "db": "database name (overrides profile)", "minutes_ago": "onset (default 20)"},
))  # fmt: skip
