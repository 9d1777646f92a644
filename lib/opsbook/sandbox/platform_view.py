"""What an app sees of the platform: a behaviour.Snapshot read from the real state.

Everything here is read from the tables and files other parts own (versions, secrets,
KV namespaces, D1 files, the status page), never from the fault table: the apps react
to what a fault *did*, as a real Worker would.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import replace
from datetime import datetime
from typing import Any

from . import cf_kv, conditions, d1data
from . import workers_model as wm
from .behaviour import Snapshot
from .profiles import PROFILES, Profile
from .state import State

# A list query that scans manuscripts without idx_manuscripts_user_id: ~1 ms per 70 rows.
SCAN_MS_PER_ROW = 1 / 70


def ts_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def vars_of(bindings: list[dict[str, Any]]) -> dict[str, str]:
    return {b["name"]: str(b.get("text", "")) for b in bindings if b.get("type") == "plain_text"}


def binding(
    bindings: list[dict[str, Any]], type_: str, name: str | None = None
) -> dict[str, Any] | None:
    return next(
        (b for b in bindings if b.get("type") == type_ and (name is None or b.get("name") == name)),
        None,
    )


def kv_namespace_id(state: State, title: str | None) -> str | None:
    """The id of the KV namespace titled `title`, or None when it does not exist."""
    return cf_kv.namespace_id(state, title) if title else None


def cloudflare_outage(state: State) -> bool:
    """True while the status page reports a major outage of Workers (statuspage state)."""
    with state.read() as db, contextlib.suppress(sqlite3.Error):
        row = db.execute(
            "SELECT count(*) FROM status_components WHERE status IN "
            "('major_outage', 'partial_outage') AND name LIKE '%Workers%'"
        ).fetchone()
        return bool(row and row[0])
    return False


def d1_facts(state: State, profile: Profile) -> dict[str, Any]:
    """Availability, the list query's scan cost and the verification_tokens table."""
    facts: dict[str, Any] = {
        "d1_ok": True,
        "d1_error": "",
        "d1_slow_ms": 0.0,
        "tokens_table_ok": True,
    }
    try:
        conn = d1data.open_database(state, profile.database)
    except d1data.D1Error as exc:
        return {**facts, "d1_ok": False, "d1_error": exc.message}
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if profile.name == "manuscript":
            facts["tokens_table_ok"] = "verification_tokens" in tables
            indexed = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type='index' "
                "AND tbl_name='manuscripts' AND sql LIKE '%(author_id%'"
            ).fetchone()[0]
            if not indexed:
                rows = conn.execute("SELECT max(rowid) FROM manuscripts").fetchone()[0] or 0
                facts["d1_slow_ms"] = rows * SCAN_MS_PER_ROW
    except sqlite3.DatabaseError as exc:  # a corrupt file
        return {**facts, "d1_ok": False, "d1_error": f"D1_ERROR: {exc}: SQLITE_CORRUPT"}
    finally:
        conn.close()
    return facts


def snapshot(state: State, profile_name: str, version: wm.Version | None = None) -> Snapshot:
    """The platform now, for `profile_name`'s worker (serving `version`, default current)."""
    profile = PROFILES[profile_name]
    version = version or wm.current_version(state, profile.worker)
    bindings = version.bindings if version else []
    sessions = binding(bindings, "kv_namespace", "SESSIONS")
    return Snapshot(
        script=profile.worker,
        profile=profile.name,
        version_id=version.id if version else None,
        behaviour=version.behaviour if version else {},
        vars=vars_of(bindings),
        bindings=bindings,
        secrets=wm.secret_values(state, profile.worker),
        required_secrets=profile.required_secrets,
        sessions_ok=kv_namespace_id(state, (sessions or {}).get("namespace_title")) is not None,
        outage=cloudflare_outage(state),
        conds=conditions.load(state),
        **d1_facts(state, profile),
    )


def with_version(snap: Snapshot, version: wm.Version) -> Snapshot:
    return replace(
        snap,
        version_id=version.id,
        behaviour=version.behaviour,
        vars=vars_of(version.bindings),
        bindings=version.bindings,
    )


def timeline(state: State, script: str) -> list[tuple[int, list[tuple[wm.Version, float]]]]:
    """[(from_ms, [(version, percentage)])], oldest first: which versions served when."""
    import json

    by_id = {v.id: v for v in wm.versions(state, script)}
    out: list[tuple[int, list[tuple[wm.Version, float]]]] = []
    for dep in reversed(wm.deployments(state, script)):
        shares = [
            (by_id[e["version_id"]], float(e["percentage"]))
            for e in json.loads(dep["versions"])
            if e["version_id"] in by_id
        ]
        if shares:
            out.append((ts_ms(dep["created_on"]), shares))
    return out
