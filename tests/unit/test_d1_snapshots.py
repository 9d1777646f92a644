"""D1 time-travel snapshots on a real state folder: bookmarks, restore, pruning."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from opsbook.sandbox import d1data
from opsbook.sandbox.state import CORE_SCHEMA, State


@pytest.fixture
def state(tmp_path: Path) -> State:
    st = State(tmp_path)
    with closing(st.control()) as db:
        db.executescript(CORE_SCHEMA + d1data.SCHEMA)
    return st


def _db(state: State) -> d1data.Database:
    import random
    from datetime import UTC, datetime

    database = d1data.create(state, "tiny", random.Random(1), datetime.now(UTC))
    with closing(sqlite3.connect(state.d1_path(database.uuid))) as conn:
        conn.execute("CREATE TABLE t (v INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
    return database


def _values(state: State, database: d1data.Database) -> list[int]:
    with d1data.d1_connect(state, database.name) as conn:
        return [r[0] for r in conn.execute("SELECT v FROM t ORDER BY v")]


def test_bookmark_restore_roundtrip(state: State) -> None:
    database = _db(state)
    mark = d1data.bookmark_at(state, database, None)
    with d1data.d1_connect(state, database.uuid) as conn:
        conn.execute("INSERT INTO t VALUES (2)")
    assert _values(state, database) == [1, 2]
    result = d1data.restore(state, database, mark)
    assert result["bookmark"] == mark and _values(state, database) == [1]
    d1data.restore(state, database, result["previous_bookmark"])  # undo the restore
    assert _values(state, database) == [1, 2]
    with pytest.raises(d1data.D1Error):
        d1data.restore(state, database, mark[:-1] + ("1" if mark.endswith("0") else "0"))
    with pytest.raises(d1data.D1Error, match="30-day"):
        d1data.bookmark_at(state, database, time.time() - 31 * 86400)


def test_prune_keeps_nightlies_fault_snapshots_and_the_newest(state: State) -> None:
    database = _db(state)
    now = time.time()
    nightly = d1data.snapshot(state, database, "nightly backup", at=now - 5 * 86400)
    fault = d1data.snapshot(state, database, "before fault corrupt", at=now - 3600)
    ids = [
        d1data.snapshot(state, database, "before write", at=now + i)
        for i in range(d1data.KEEP_SNAPSHOTS + 5)
    ]
    with state.read() as db:
        kept = {r[0] for r in db.execute("SELECT id FROM d1_snapshots")}
        files = {r[0] for r in db.execute("SELECT path FROM d1_snapshots")}
    assert {nightly, fault} <= kept
    assert set(ids[-d1data.KEEP_SNAPSHOTS :]) <= kept and not set(ids[:5]) & kept
    on_disk = {p.name for p in state.snapshots_dir.iterdir()}
    assert on_disk == files
