"""db-restore-check's checks without a kernel: checksum, load (with the failing line),
and the comparison that names the table or index."""

from __future__ import annotations

from pathlib import Path

from opsbook.runbooks import backups
from opsbook.runbooks import db_restore_check as rc

DUMP = """PRAGMA defer_foreign_keys=TRUE;
CREATE TABLE users (id TEXT PRIMARY KEY, note TEXT);
INSERT INTO "users" ("id","note") VALUES('a','one
two');
INSERT INTO "users" ("id","note") VALUES('b',NULL);
CREATE INDEX idx_users_note ON users(note);
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "backup.sql"
    path.write_text(text)
    (tmp_path / "backup.sql.sha256").write_text(f"{backups.sha256(DUMP.encode())}  backup.sql\n")
    return path


def test_a_good_dump_loads_and_matches(tmp_path: Path) -> None:
    path = write(tmp_path, DUMP)
    assert rc.checksum(path) == {
        "file": "backup.sql.sha256", "expected": backups.sha256(DUMP.encode()),
        "actual": backups.sha256(DUMP.encode()), "ok": True,
    }  # fmt: skip
    loaded = rc.load(DUMP, tmp_path / "s.sqlite")
    assert (loaded.error, loaded.statements) == (None, 5)
    scratch = rc.inspect(tmp_path / "s.sqlite")
    assert scratch.counts == {"users": 2} and scratch.integrity == ["ok"]
    schema = [("index", "idx_users_note", "users"), ("table", "users", "users")]
    assert rc.compare(scratch, {"users": 2}, schema, backups.rows_in_dump(DUMP)) == []
    assert backups.rows_in_dump(DUMP) == {"users": 2}


def test_flipped_bytes_fail_the_checksum_and_the_load_names_the_line(tmp_path: Path) -> None:
    bad = DUMP.replace(
        'INSERT INTO "users" ("id","note") VALUES(\'b\'',
        'INSERT INTO "users" ("id","note") VALUES(\'b\'\'',
    )
    path = write(tmp_path, bad)
    assert rc.checksum(path)["ok"] is False  # type: ignore[index]
    loaded = rc.load(bad, tmp_path / "s.sqlite")
    # the quote swallows the rest: the file ends inside a statement that starts on line 5
    assert (loaded.line, loaded.error) == (5, "the file ends inside a statement")
    broken = DUMP.replace(
        'INSERT INTO "users" ("id","note") VALUES(\'b\'',
        'INSERT INTO "usrs" ("id","note") VALUES(\'b\'',
    )
    loaded = rc.load(broken, tmp_path / "s.sqlite")
    assert loaded.line == 5 and "no such table: usrs" in str(loaded.error)
    assert loaded.statements == 3


def test_a_lost_index_and_missing_rows_are_named(tmp_path: Path) -> None:
    lossy = "\n".join(line for line in DUMP.splitlines() if "CREATE INDEX" not in line) + "\n"
    rc.load(lossy, tmp_path / "s.sqlite")
    scratch = rc.inspect(tmp_path / "s.sqlite")
    schema = [("index", "idx_users_note", "users"), ("table", "users", "users")]
    assert rc.compare(scratch, {"users": 3}, schema, {"users": 2}) == [
        "table users: 2 rows restored, 3 expected (2 INSERT statements in the dump)",
        "index idx_users_note (on users): missing from the restore",
    ]
