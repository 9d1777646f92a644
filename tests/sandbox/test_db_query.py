"""db-query end to end: the notebook in a real kernel against the sandbox, checked by its
effects on D1 (row counts, the rows themselves, the backup file), not only its record."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

import opsbook
from opsbook.clients.cloudflare import Cloudflare
from opsbook.sandbox import SandboxInfo

DB = "manuscript-platform"
PRODTEST = "SELECT email FROM users WHERE email LIKE 'prodtest%@example.com' ORDER BY email"


def scalar(cf: Cloudflare, sql: str) -> Any:
    [row] = cf.d1_query(DB, sql)[0]["results"]
    return next(iter(row.values()))


def counts(cf: Cloudflare) -> dict[str, int]:
    return {t: scalar(cf, f"SELECT COUNT(*) FROM {t}") for t in ("users", "subscriptions")}


def run(params: dict[str, Any], approve: list[str] | None = None) -> opsbook.RunResult:
    return opsbook.run("db-query", parameters=params, approve=approve or [])


@pytest.mark.parametrize("sql", ["DELETE FROM users", "DELETE FROM users WHERE 1=1"])
def test_a_mass_delete_is_refused_even_when_approved(
    sandbox: SandboxInfo, cf: Cloudflare, sql: str
) -> None:
    before = counts(cf)
    result = run({"sql": sql}, approve=["write"])
    assert (result.status, result.exit_code) == ("completed", 3)
    record = result.record
    assert record["verdict"]["cause"] == "refused"
    assert "refused whatever is approved" in record["verdict"]["evidence"][0]
    assert record["actions"] == []
    assert not list(result.run_dir.glob("backup-*"))
    assert counts(cf) == before


def test_an_unapproved_cleanup_previews_the_real_rows_and_changes_nothing(
    sandbox: SandboxInfo, cf: Cloudflare
) -> None:
    before = counts(cf)
    real = len(cf.d1_query(DB, PRODTEST)[0]["results"])
    assert real > 0
    result = run({"query": "cleanup_test_users"})
    assert result.exit_code == 3
    record = result.record
    assert record["verdict"]["cause"] == "write-pending"
    [preview] = [f for f in record["findings"] if "would change" in f["message"]]
    assert preview["evidence"]["touched"] == real
    assert preview["evidence"]["total"] == before["users"]
    # the manuscripts of those users would be left pointing at nobody: said, with the count
    owned = scalar(
        cf,
        "SELECT COUNT(*) FROM manuscripts WHERE author_id IN "
        "(SELECT id FROM users WHERE email LIKE 'prodtest%@example.com')",
    )
    dangling = [f["evidence"] for f in record["findings"] if "dangling" in f["message"]]
    assert dangling == [
        {"table": "manuscripts", "column": "author_id", "references": "users.id", "rows": owned}
    ]
    assert owned > 0
    [action] = record["actions"]
    assert (action["id"], action["mode"], action["risk"]) == ("write", "dry-run", "destructive")
    assert action["preview"]["wrangler"] == (
        f"npx wrangler d1 execute {DB} --remote --command "
        "\"DELETE FROM users WHERE email LIKE 'prodtest%@example.com'\""
    )
    assert action["preview"]["call"].startswith(f"POST /accounts/{sandbox.account_id}/d1/database/")
    assert action["preview"]["call"].endswith(f"{cf.d1_id(DB)}/query")
    assert record["verdict"]["remedy"] == (
        "opsbook run db-query --env local -p query=cleanup_test_users --approve write"
    )
    # the sample of rows is shown, their password hashes are not
    shown = result.notebook.read_text()
    assert "prodtest1@example.com" in shown and "pbkdf2_sha256" not in shown
    assert not list(result.run_dir.glob("backup-*"))
    assert counts(cf) == before


def test_an_approved_cleanup_backs_up_first_then_deletes_exactly_those_rows(
    fresh_sandbox: SandboxInfo, fresh_cf: Cloudflare
) -> None:
    cf = fresh_cf
    before = counts(cf)
    doomed = [r["email"] for r in cf.d1_query(DB, PRODTEST)[0]["results"]]
    result = run({"query": "cleanup_test_users"}, approve=["write"])
    assert (result.status, result.exit_code) == ("completed", 0)
    assert result.record["verdict"]["cause"] == "healthy"
    [action] = result.record["actions"]
    assert action["mode"] == "applied"
    assert action["result"]["changes"] == len(doomed)
    # exactly those rows went, nothing else
    assert cf.d1_query(DB, PRODTEST)[0]["results"] == []
    assert counts(cf) == {**before, "users": before["users"] - len(doomed)}
    # the backup is in the run folder, matches its checksum, and was taken before the
    # delete: it still holds every row the delete removed
    backup = result.run_dir / action["result"]["backup"]["file"]
    assert backup.name == "backup-users.sql"
    data = backup.read_bytes()
    assert hashlib.sha256(data).hexdigest() == action["result"]["backup"]["sha256"]
    text = data.decode()
    assert all(f"'{email}'" in text for email in doomed)
    assert action["result"]["backup"]["rows"] == before["users"]
    assert text.count('INSERT INTO "users" ') == before["users"]


def test_a_read_is_paginated(sandbox: SandboxInfo, cf: Cloudflare) -> None:
    sql = "SELECT email FROM users ORDER BY email"
    expected = [r["email"] for r in cf.d1_query(DB, sql + " LIMIT 7 OFFSET 14")[0]["results"]]
    result = run({"sql": sql, "limit": 7, "page": 3})
    assert result.exit_code == 0
    verdict = result.record["verdict"]
    assert (verdict["cause"], verdict["evidence"]["rows"], verdict["evidence"]["more"]) == (
        "healthy",
        7,
        True,
    )
    [finding] = result.record["findings"]
    assert finding["evidence"]["sql"] == sql + " LIMIT 8 OFFSET 14"
    assert finding["evidence"]["rows_read"] > 0
    shown = result.notebook.read_text()
    assert all(email in shown for email in expected)
    # and nothing from the pages either side
    neighbours = cf.d1_query(DB, sql + " LIMIT 1 OFFSET 13")[0]["results"]
    neighbours += cf.d1_query(DB, sql + " LIMIT 1 OFFSET 21")[0]["results"]
    assert not any(r["email"] in shown for r in neighbours)
