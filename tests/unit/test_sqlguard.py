"""The SQL guard, table-driven: what may run, what is refused and why."""

from __future__ import annotations

import sqlite3

import pytest

from opsbook.sqlguard import check, dependents_sql, paginate, preview_params, preview_sql

ALWAYS = "refused whatever is approved"

# (sql, kind, refusal substring or None when allowed)
CASES: list[tuple[str, str, str | None]] = [
    # reads
    ("SELECT * FROM users WHERE email='test@example.com' LIMIT 1", "read", None),
    (
        "SELECT COUNT(*) as total, SUM(CASE WHEN role='admin' THEN 1 ELSE 0 END) as admins FROM users",
        "read",
        None,
    ),
    ("WITH a AS (SELECT id FROM users WHERE role='admin') SELECT COUNT(*) FROM a", "read", None),
    ("SELECT 1 UNION SELECT 2", "read", None),
    ("SELECT * FROM users; ", "read", None),
    ("SELECT * FROM pragma_table_info('users')", "read", None),
    # restricted writes
    ("UPDATE users SET email_verified=1 WHERE email='test@example.com'", "write", None),
    ("DELETE FROM users WHERE email LIKE 'prodtest%@example.com'", "write", None),
    ("UPDATE peptides SET evidence_grade = 'high' WHERE slug = 'bpc-157'", "write", None),
    ("DELETE FROM users WHERE id = ?", "write", None),
    ("DELETE FROM users WHERE 1 AND email='x'", "write", None),
    ("DELETE FROM users WHERE id=1 OR 1=0", "write", None),
    ("DELETE FROM users AS u WHERE u.id = 1", "write", None),
    ("DELETE FROM users WHERE id IN (SELECT user_id FROM subscriptions)", "write", None),
    ("DELETE FROM users WHERE id IN (SELECT id FROM users WHERE role='admin')", "write", None),
    (
        "DELETE FROM users WHERE EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = users.id)",
        "write",
        None,
    ),
    (
        "WITH x AS (SELECT id FROM users WHERE role='admin') DELETE FROM users WHERE id IN (SELECT id FROM x)",
        "write",
        None,
    ),
    (
        "UPDATE users SET role='user' FROM subscriptions s WHERE users.id = s.user_id AND s.status='canceled'",
        "write",
        None,
    ),
    ("DELETE FROM users WHERE email LIKE 'a%'", "write", None),
    ("INSERT INTO users (id, email) VALUES ('1', 'a@example.com')", "write", None),
    # no WHERE, or one hidden in a comment
    ("DELETE FROM users", "write", "DELETE without WHERE"),
    ("UPDATE users SET role='admin'", "write", "UPDATE without WHERE"),
    ("DELETE FROM users -- WHERE id=1", "write", "DELETE without WHERE"),
    ("DELETE FROM users /* WHERE id=1 */", "write", "DELETE without WHERE"),
    ("DELETE /* WHERE id=1 */ FROM users WHERE 1", "write", "refers to no column"),
    # tautologies
    ("DELETE FROM users WHERE 1=1", "write", "always true"),
    ("DELETE FROM users WHERE 1", "write", "refers to no column"),
    ("DELETE FROM users WHERE 'a'='a'", "write", "always true"),
    ("DELETE FROM users WHERE TRUE", "write", "always true"),
    ("DELETE FROM users WHERE NOT 0", "write", "refers to no column"),
    ("DELETE FROM users WHERE NOT (1=0)", "write", "always true"),
    ("DELETE FROM users WHERE 2 > 1", "write", "always true"),
    ("DELETE FROM users WHERE NULL IS NULL", "write", "always true"),
    ("DELETE FROM users WHERE ? = ?", "write", "refers to no column"),
    ("DELETE FROM users WHERE id=1 OR 1=1", "write", "always true"),
    ("UPDATE users SET role='admin' WHERE email='x' OR TRUE", "write", "always true"),
    ("DELETE FROM users WHERE id = id", "write", "with itself"),
    ("DELETE FROM users WHERE email='x' OR id=id", "write", "with itself"),
    ("DELETE FROM users WHERE id IS NULL OR id IS NOT NULL", "write", "always true"),
    ("UPDATE users SET role='admin' WHERE email LIKE '%'", "write", "matches every value"),
    (
        "DELETE FROM users WHERE EXISTS (SELECT 1 FROM subscriptions)",
        "write",
        "refers to no column",
    ),
    # subqueries and CTEs that select every row of the target
    ("DELETE FROM users WHERE id IN (SELECT id FROM users)", "write", "selects every row"),
    (
        "DELETE FROM users WHERE id IN (SELECT id FROM users WHERE 1=1)",
        "write",
        "selects every row",
    ),
    (
        "WITH x AS (SELECT id FROM users) DELETE FROM users WHERE id IN (SELECT id FROM x)",
        "write",
        "selects every row",
    ),
    ("WITH x AS (SELECT 1) DELETE FROM users", "write", "DELETE without WHERE"),
    # one statement per call
    ("SELECT 1; SELECT 2", "other", "one statement per call"),
    ("DELETE FROM users WHERE id=1; DROP TABLE users", "other", "2 statements"),
    # schema changes and other statements
    ("DROP TABLE users", "ddl", "db-migrate"),
    ("TRUNCATE TABLE users", "ddl", "db-migrate"),
    ("ALTER TABLE users ADD COLUMN x INTEGER", "ddl", "db-migrate"),
    ("CREATE INDEX idx ON users(email)", "ddl", "db-migrate"),
    ("PRAGMA foreign_keys = OFF", "other", "only SELECT, INSERT, UPDATE and DELETE"),
    ("ATTACH 'other.db' AS o", "other", "only SELECT, INSERT, UPDATE and DELETE"),
    ("BEGIN", "other", "only SELECT, INSERT, UPDATE and DELETE"),
    # parse errors and nothing at all
    ("SELEC * FROM users", "other", "does not parse"),
    ("DELETE FROM users WHERE", "other", "does not parse"),
    ("", "other", "no SQL statement"),
    ("-- WHERE id = 1", "other", "no SQL statement"),
]


@pytest.mark.parametrize(("sql", "kind", "refusal"), CASES, ids=[c[0][:60] for c in CASES])
def test_check(sql: str, kind: str, refusal: str | None) -> None:
    g = check(sql)
    assert g.kind == kind
    if refusal is None:
        assert g.refused is None and g.ok
    else:
        assert g.refused is not None and refusal in g.refused, g.refused
        if kind == "write":
            assert ALWAYS in g.refused


def test_ddl_is_allowed_for_the_migration_runbook_only() -> None:
    assert check("DROP TABLE users").refused
    g = check("DROP TABLE users", allow_ddl=True)
    assert (g.ok, g.kind, g.tables, g.destructive) == (True, "ddl", ["users"], True)


def test_what_was_checked_is_what_runs() -> None:
    g = check("DELETE /* note */ FROM users WHERE id = 1 -- trailing")
    assert g.sql == "DELETE FROM users WHERE id = 1"
    assert (g.target, g.where, g.tables, g.statements) == ("users", "id = 1", ["users"], 1)


def test_tables_exclude_cte_names() -> None:
    g = check(
        "WITH x AS (SELECT user_id FROM subscriptions) DELETE FROM users WHERE id IN (SELECT user_id FROM x)"
    )
    assert g.ok and g.tables == ["subscriptions", "users"] and g.target == "users"


@pytest.fixture
def db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.executescript(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, role TEXT);"
        "CREATE TABLE subs (user_id INTEGER, status TEXT);"
    )
    conn.executemany(
        "INSERT INTO users VALUES (?, ?, ?)",
        [(i, f"{'prodtest' if i % 4 == 0 else 'u'}{i}@example.com", "user") for i in range(1, 41)],
    )
    conn.executemany("INSERT INTO subs VALUES (?, ?)", [(1, "canceled"), (1, "old"), (2, "active")])
    yield conn
    conn.close()


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("DELETE FROM users WHERE email LIKE 'prodtest%@example.com'", []),
        ("UPDATE users SET role = ? WHERE id > ? AND email LIKE ?", ["admin", 10, "prodtest%"]),
        (
            "WITH a AS (SELECT ? AS lo) UPDATE users SET role = ? WHERE id > (SELECT lo FROM a)",
            [30, "x"],
        ),
        (
            "UPDATE users SET role = 'gone' FROM subs WHERE users.id = subs.user_id AND subs.status != ?",
            ["active"],
        ),
    ],
)
def test_preview_touches_exactly_the_rows_the_write_changes(
    db: sqlite3.Connection, sql: str, params: list[object]
) -> None:
    g = check(sql)
    assert g.ok, g.refused
    preview = preview_sql(g.statement)
    args = preview_params(preview, params)
    [(count,)] = db.execute(preview.count_sql, args).fetchall()
    rows = db.execute(preview.rows_sql, args).fetchall()
    before = db.total_changes
    db.execute(g.sql, params)
    changed = db.total_changes - before
    assert count == len(rows) == changed > 0


def test_dependents_counts_the_rows_a_delete_leaves_dangling(db: sqlite3.Connection) -> None:
    g = check("DELETE FROM users WHERE id IN (?, ?, ?)")
    preview = preview_sql(g.statement)
    sql = dependents_sql(preview.rows_sql, "subs", "user_id", "id")
    assert db.execute(sql, [1, 3, 4]).fetchone()[0] == 2  # user 1 has two subs
    assert db.execute(sql, [3, 4, 5]).fetchone()[0] == 0


def test_preview_is_only_for_update_and_delete() -> None:
    with pytest.raises(ValueError, match="only UPDATE and DELETE"):
        preview_sql(check("INSERT INTO users (id) VALUES (1)").statement)


@pytest.mark.parametrize(
    ("sql", "limit", "offset", "expected"),
    [
        ("SELECT * FROM users", 100, 0, list(range(1, 41))),
        ("SELECT * FROM users ORDER BY id", 10, 10, list(range(11, 21))),
        (
            "SELECT * FROM users ORDER BY id LIMIT 5",
            100,
            0,
            [1, 2, 3, 4, 5],
        ),  # a smaller LIMIT wins
        ("SELECT * FROM users ORDER BY id LIMIT 15", 10, 10, [11, 12, 13, 14, 15]),
        ("SELECT * FROM users ORDER BY id LIMIT 15", 10, 20, []),
        ("SELECT * FROM users ORDER BY id LIMIT 10 OFFSET 30", 4, 4, [35, 36, 37, 38]),
        ("SELECT * FROM users ORDER BY id LIMIT 30, 10", 4, 4, [35, 36, 37, 38]),
        ("SELECT * FROM users ORDER BY id LIMIT 2 + 3", 3, 0, [1, 2, 3]),
        (
            "SELECT id FROM users WHERE id < 3 UNION SELECT id FROM users WHERE id > 38",
            2,
            1,
            [2, 39],
        ),
    ],
)
def test_paginate(
    db: sqlite3.Connection, sql: str, limit: int, offset: int, expected: list[int]
) -> None:
    paged = paginate(sql, limit, offset)
    assert [r[0] for r in db.execute(paged)] == expected


def test_paginate_wraps_a_limit_it_cannot_evaluate(db: sqlite3.Connection) -> None:
    paged = paginate("SELECT id FROM users ORDER BY id LIMIT ?", 3, 2)
    assert [r[0] for r in db.execute(paged, [4])] == [3, 4]


@pytest.mark.parametrize("sql", ["DELETE FROM users WHERE id = 1", "SELECT 1; SELECT 2"])
def test_paginate_takes_one_select(sql: str) -> None:
    with pytest.raises(ValueError, match="exactly one SELECT"):
        paginate(sql, 10, 0)
