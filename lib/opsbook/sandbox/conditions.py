"""The outside world's condition: upstream APIs, platform services, visitor volume.

A condition is a fact about something the apps depend on but do not own, with the time
it started (`since_ms`), so history regenerated from an onset and live requests agree:

    upstream:anthropic   {"latency_ms": 6000}                 slow LLM API
                         {"error_status": 429, "rate": 0.7}   rate limited
                         {"error_status": 529, "rate": 1.0, "peptides": ["BPC-157"]}
    upstream:pubmed      {"timeout_ms": 30000, "peptides": [...] | null (all)}
    upstream:compliance  {"fail": ["BPC-157"] | null (all)}  LLM output fails the check
    upstream:anthropic   {"valid_key_sha256": "..."}          the provider accepts only this key
                         (any condition may carry "until_ms": a transient outage that ended)
    d1:<database>        {"load": 0.3}                        overload: heavy queries time out
    r2:<bucket>          {"error_rate": 0.35}                 R2 internal errors
    mail                 {"down": true}                       the mail provider answers 503
    visitors:<script>    {"volume": 4.0} or {"per_minute": 0.3} visitor volume factor, or a flat rate
                         or {"min_per_minute": 8.0}          a floor under the daily curve
                                                              (error-after-deploy, d1-overload)
    attack:<script>      {...}                                unusual callers (security faults)

Runbooks never read this table: they see its effects in the apps' responses, logs and
analytics. Faults write it (`set_condition`) and clear it (`clear`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from .state import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS conditions (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    since_ms INTEGER NOT NULL
);
"""


def now_ms() -> int:
    return int(time.time() * 1000)


def set_condition(
    state: State, name: str, data: dict[str, Any], since_ms: int | None = None
) -> None:
    with state.tx() as db:
        db.execute(
            "INSERT OR REPLACE INTO conditions (name, data, since_ms) VALUES (?, ?, ?)",
            (name, json.dumps(data), since_ms if since_ms is not None else now_ms()),
        )


def clear(state: State, name: str) -> None:
    with state.tx() as db:
        db.execute("DELETE FROM conditions WHERE name = ?", (name,))


def load(state: State) -> dict[str, tuple[int, dict[str, Any]]]:
    """name -> (since_ms, data) for every condition in force."""
    with state.read() as db:
        try:
            rows = db.execute("SELECT name, data, since_ms FROM conditions").fetchall()
        except Exception:  # a state folder from before this table existed
            return {}
    return {r["name"]: (int(r["since_ms"]), json.loads(r["data"])) for r in rows}


def active(
    conds: dict[str, tuple[int, dict[str, Any]]], name: str, at_ms: int
) -> dict[str, Any] | None:
    """The condition's data if it is in force at `at_ms` (a transient one ends at `until_ms`)."""
    found = conds.get(name)
    if found is None or at_ms < found[0]:
        return None
    until = found[1].get("until_ms")
    if until is not None and at_ms >= int(until):
        return None
    return found[1]
