"""A reset's background seed work: rebuild() returns only once it is done, and its failure
is the reset's failure (by name), never a half-seeded state reported as fine."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from opsbook.sandbox import d1data, d1schemas
from opsbook.sandbox import state as state_mod

SMALL = ("workers_model", "cf_kv", "d1data")


def small_seeders(bulk: Any) -> dict[str, Any]:
    """The real DDL, a few rows, and `bulk` as the background phase."""

    def seeder(db: sqlite3.Connection, rng: Any, now: Any) -> d1schemas.Bulk:
        db.execute(
            "INSERT INTO users VALUES ('u1', 'a@example.com', '', 'admin', '2026-01-01', 1, NULL)"
        )
        return bulk

    return {"manuscript-platform": (d1schemas.MANUSCRIPT_DDL, seeder)}


def test_rebuild_waits_for_the_bulk_phase_and_its_backups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bulk(db: sqlite3.Connection) -> None:
        db.executemany(
            "INSERT INTO manuscripts(id, author_id, title, status, word_count, created_at,"
            " updated_at, r2_key) VALUES (?, 'u1', 't', 'submitted', 1, 'x', 'x', 'k')",
            [(f"m{i}",) for i in range(5000)],
        )

    monkeypatch.setattr(state_mod, "MODULES", SMALL)
    monkeypatch.setattr(d1schemas, "SEEDERS", small_seeders(bulk))
    monkeypatch.setattr(d1schemas, "PROFILE_DB", {"manuscript": "manuscript-platform"})
    state = state_mod.State(tmp_path / "s")
    state.rebuild(3)
    with d1data.d1_connect(state, "manuscript-platform") as db:
        assert db.execute("SELECT count(*) FROM manuscripts").fetchone()[0] == 5000
    with state.read() as db:
        backups = db.execute("SELECT count(*) FROM d1_snapshots").fetchone()[0]
    assert backups == d1data.RETENTION_DAYS  # the nightly backups, taken after the bulk
    assert "d1data bulk (manuscript-platform), overlapped" in state.seed_seconds


def test_a_failing_bulk_phase_fails_the_reset_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bulk(db: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(state_mod, "MODULES", SMALL)
    monkeypatch.setattr(d1schemas, "SEEDERS", small_seeders(bulk))
    monkeypatch.setattr(d1schemas, "PROFILE_DB", {"manuscript": "manuscript-platform"})
    state = state_mod.State(tmp_path / "s")
    with pytest.raises(state_mod.SeedError, match=r"d1data bulk \(manuscript-platform\).*disk I/O"):
        state.rebuild(3)
