"""D1 statement handling on a real SQLite file: splitting, meta, rows_read and rows_written."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest

from opsbook.sandbox.d1sql import Statement, execute, is_write, split_sql, statements


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(":memory:", isolation_level=None)) as db:
        db.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, author TEXT, title TEXT, created TEXT)")
        db.execute("CREATE INDEX idx_author ON m(author)")
        db.execute("CREATE INDEX idx_created ON m(created)")
        db.executemany(
            "INSERT INTO m(author, title, created) VALUES (?,?,?)",
            [(f"a{i % 100}", f"t{i}", f"2026-01-{i % 28 + 1:02d}") for i in range(5000)],
        )
        yield db


def test_split_respects_strings() -> None:
    assert split_sql("SELECT ';'; SELECT 2;\n") == ["SELECT ';';", "SELECT 2;"]
    assert [
        s.sql for s in statements({"batch": [{"sql": "SELECT 1"}, {"sql": "SELECT 2; SELECT 3"}]})
    ] == [
        "SELECT 1;",
        "SELECT 2;",
        "SELECT 3;",
    ]
    with pytest.raises(ValueError):
        statements({"sql": "SELECT ?; SELECT ?", "params": [1]})
    assert is_write("UPDATE m SET title='x' WHERE id=1") and not is_write("SELECT 1")
    assert is_write("WITH x AS (SELECT 1) DELETE FROM m") and not is_write("PRAGMA integrity_check")


def test_rows_read_index_vs_scan(conn: sqlite3.Connection) -> None:
    _, rows, meta = execute(conn, Statement("SELECT * FROM m WHERE author = ?", ["a7"]))
    assert len(rows) == 50 and meta["rows_read"] == 50
    _, rows, meta = execute(conn, Statement("SELECT * FROM m WHERE title = ?", ["t7"]))
    assert len(rows) == 1 and meta["rows_read"] == 5000  # a full scan
    _, _, meta = execute(conn, Statement("SELECT x.title FROM m AS x WHERE x.title LIKE 't1%'"))
    assert meta["rows_read"] == 5000  # aliases resolve to the table


def test_rows_written_counts_index_entries(conn: sqlite3.Connection) -> None:
    _, _, meta = execute(
        conn, Statement("INSERT INTO m(author, title, created) VALUES ('z','t','x')")
    )
    assert meta["changes"] == 1 and meta["rows_written"] == 3 and meta["last_row_id"] == 5001
    _, _, meta = execute(conn, Statement("UPDATE m SET title = 'new' WHERE author = 'a1'"))
    assert meta["changes"] == 50 and meta["rows_written"] == 50  # no indexed column set
    _, _, meta = execute(conn, Statement("UPDATE m SET author = 'b' WHERE author = 'a2'"))
    assert meta["rows_written"] == 100
    _, _, meta = execute(conn, Statement("DELETE FROM m WHERE author = 'a3'"))
    assert meta["changes"] == 50 and meta["rows_written"] == 150 and meta["changed_db"] is True
    _, _, meta = execute(conn, Statement("SELECT count(*) FROM m"))
    assert meta["rows_written"] == 0 and meta["changed_db"] is False
