"""db-migrate and db-backup logic without a kernel: what is pending, the request per
migration, the scratch trial, and the request checks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from opsbook.runbooks import db_backup as bk
from opsbook.runbooks import db_migrate as dm
from opsbook.runbooks.backups import completeness

DUMP = "CREATE TABLE d1_migrations(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE);\n"
DUMP += 'CREATE TABLE t (id INTEGER PRIMARY KEY);\nINSERT INTO "t" ("id") VALUES(1);\n'


def test_pending_is_the_numbered_files_not_applied_in_name_order(tmp_path: Path) -> None:
    for name in ("0010_z.sql", "0002_b.sql", "0001_a.sql", "notes.sql", "0003_c.txt"):
        (tmp_path / name).write_text("SELECT 1;")
    assert [m.name for m in dm.pending(tmp_path, ["0001_a.sql"])] == ["0002_b.sql", "0010_z.sql"]
    assert dm.batch(dm.Migration("0002_b.sql", "SELECT 1;\n")) == (
        "SELECT 1;\nINSERT INTO d1_migrations (name) VALUES ('0002_b.sql');"
    )


def test_the_trial_applies_in_order_and_stops_at_the_broken_one(tmp_path: Path) -> None:
    good = dm.Migration(
        "0002_add_x.sql", "ALTER TABLE t ADD COLUMN x TEXT;\nCREATE INDEX i ON t(x);\n"
    )
    bad = dm.Migration("0003_bad.sql", "CREATE TABLE u (a);\nINSERT INTO nope VALUES (1);\n")
    trial = dm.trial(DUMP, [good, bad], tmp_path / "s.sqlite")
    assert (trial.ok, trial.applied, trial.failed) == (False, ["0002_add_x.sql"], "0003_bad.sql")
    assert trial.error == "OperationalError: line 2: no such table: nope"
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    names = [r[0] for r in conn.execute("SELECT name FROM d1_migrations")]
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    conn.close()
    assert names == ["0002_add_x.sql"] and "u" not in tables  # the failed one rolled back
    before = [("table", "t", "CREATE TABLE t (id INTEGER PRIMARY KEY)")]
    assert dm.changes(before, [s for s in trial.schema if s[1] in ("t", "i")]) == {
        "created": ["index i"], "changed": ["table t"], "dropped": [],
    }  # fmt: skip


def test_backup_requests_and_completeness() -> None:
    assert bk.check_request("csv", ["users", "nope"], ["users"]) == [
        "format 'csv': use sql or json",
        "no such table: nope (tables: users)",
    ]
    assert bk.conclusion(completeness({"users": 3}, {"users": 3}))[0] == "healthy"
    assert bk.conclusion(completeness({"users": 2}, {"users": 3})) == (
        "backup-incomplete",
        ["users: 2 rows in the backup, 3 in the table"],
    )
