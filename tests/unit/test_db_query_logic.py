"""db-query's logic without a kernel: choosing the statement, the backup-first rule."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from opsbook import sqlguard
from opsbook.errors import ApiError
from opsbook.runbooks import db_query as dq


@pytest.mark.parametrize(
    ("profile", "query", "sql", "message"),
    [
        ("manuscript", "", "", "not neither"),
        ("manuscript", "user_count", "SELECT 1", "not both"),
        ("manuscript", "nope", "", "No named query 'nope'"),
        ("manuscript", "peptide_count", "", "No named query 'peptide_count' for the manuscript"),
    ],
)
def test_exactly_one_known_statement(profile: str, query: str, sql: str, message: str) -> None:
    with pytest.raises(dq.BadRequest, match=message):
        dq.resolve(profile, query, sql, [])


def test_named_queries_are_the_seeds_sql_and_pass_the_guard() -> None:
    request = dq.resolve("manuscript", "user_count", "", [])
    assert request.sql == (
        "SELECT COUNT(*) as total, SUM(CASE WHEN role='admin' THEN 1 ELSE 0 END) as admins FROM users"
    )
    assert dq.resolve("peptalk", "peptide_count", " ", []).sql == "SELECT COUNT(*) FROM peptides"
    for profile in ("manuscript", "peptalk"):
        for q in dq.named_queries(profile).values():
            g = sqlguard.check(q.sql)
            assert g.ok, (q.name, g.refused)
            assert (g.kind == "write") == (q.name == "cleanup_test_users")


class FakeCloudflare:
    """Records calls; the export answers `dump` or raises."""

    acct = "/accounts/acct"

    def __init__(self, dump: str | Exception) -> None:
        self.dump = dump
        self.calls: list[str] = []

    def d1_id(self, db: str) -> str:
        return "uuid-" + db

    def d1_export(self, db: str, tables: list[str] | None = None) -> str:
        self.calls.append(f"export {tables}")
        if isinstance(self.dump, Exception):
            raise self.dump
        return self.dump

    def d1_query(self, db: str, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        self.calls.append(sql)
        return [{"results": [], "meta": {"changes": 2, "duration": 0.1}}]


DELETE = sqlguard.check("DELETE FROM users WHERE id IN ('a', 'b')")
DUMP = (
    "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE users (id TEXT);\n"
    'INSERT INTO "users" ("id") VALUES(\'a\');\nINSERT INTO "users" ("id") VALUES(\'b\');\n'
)


def test_the_backup_comes_first(tmp_path: Path) -> None:
    cf = FakeCloudflare(DUMP)
    result = dq.apply(cf, "db", DELETE, [], tmp_path)  # type: ignore[arg-type]
    assert cf.calls == ["export ['users']", DELETE.sql]
    assert result["changes"] == 2
    assert result["backup"]["rows"] == 2
    assert (tmp_path / "backup-users.sql").read_text() == DUMP
    assert (tmp_path / "backup-users.sql").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "dump", [ApiError("D1 export of 'db' failed"), "PRAGMA defer_foreign_keys=TRUE;\n"]
)
def test_no_backup_no_write(tmp_path: Path, dump: str | Exception) -> None:
    cf = FakeCloudflare(dump)
    with pytest.raises(ApiError):
        dq.apply(cf, "db", DELETE, [], tmp_path)  # type: ignore[arg-type]
    assert cf.calls == ["export ['users']"]
    assert not (tmp_path / "backup-users.sql").exists()


def test_apply_takes_only_an_allowed_write(tmp_path: Path) -> None:
    cf = FakeCloudflare(DUMP)
    for sql in ("DELETE FROM users", "SELECT * FROM users"):
        with pytest.raises(ValueError, match="a write the guard allowed"):
            dq.apply(cf, "db", sqlguard.check(sql), [], tmp_path)  # type: ignore[arg-type]
    assert cf.calls == []


def test_the_wrangler_command_survives_the_shell() -> None:
    g = sqlguard.check("""UPDATE users SET role = 'x' WHERE email = 'a"$b`c\\\\d'""")
    preview = dq.action_preview(FakeCloudflare(DUMP), "db", g, [])  # type: ignore[arg-type]
    assert preview["call"] == "POST /accounts/acct/d1/database/uuid-db/query"
    assert preview["body"] == {"sql": g.sql}
    # what bash hands wrangler: the exact SQL as one argument
    script = "set -- " + preview["wrangler"] + '; printf "%s\\0" "$@"'
    argv = subprocess.run(["bash", "-c", script], capture_output=True, check=True).stdout
    assert argv.decode().split("\0")[:-1] == [
        "npx", "wrangler", "d1", "execute", "db", "--remote", "--command", g.sql,
    ]  # fmt: skip


def test_secret_looking_columns_are_hidden() -> None:
    rows = [
        {"email": "a@example.com", "password_hash": "pbkdf2$x", "token": "t", "last_login": None}
    ]
    assert dq.redact(rows) == [
        {"email": "a@example.com", "password_hash": "•••", "token": "•••", "last_login": None}
    ]


def test_the_rerun_command_carries_the_statement() -> None:
    named = dq.resolve("manuscript", "cleanup_test_users", "", [])
    assert dq.rerun_command("local", named) == (
        "opsbook run db-query --env local -p query=cleanup_test_users --approve write"
    )
    adhoc = dq.resolve(
        "peptalk", "", "UPDATE peptides SET evidence_grade = ? WHERE slug = ?", ["high", "bpc-157"]
    )
    assert dq.rerun_command("local-peptalk", adhoc, "peptalk-production-db") == (
        "opsbook run db-query --env local-peptalk -p database=peptalk-production-db "
        "-p 'sql=UPDATE peptides SET evidence_grade = ? WHERE slug = ?' "
        '-p \'sql_params=["high", "bpc-157"]\' --approve write'
    )


@pytest.mark.parametrize(
    ("touched", "total", "everything"),
    [(8000, 8000, True), (5, 8000, False), (1, 1, False), (0, 0, False), (None, 10, False)],
)
def test_a_write_over_every_row_is_recognised(
    touched: int | None, total: int, everything: bool
) -> None:
    assert dq.WritePreview(touched, total).everything is everything
