"""db-migrate end to end on PepTalk's database, in real kernels: a broken migration stops
on the scratch copy and nothing changes for real; an approved run backs up first, then
applies the migration the way wrangler does (the file, then its d1_migrations row)."""

from __future__ import annotations

from pathlib import Path

import opsbook
from opsbook.clients.cloudflare import Cloudflare
from opsbook.sandbox import SandboxInfo

DB = "peptalk-production-db"
ENV = "local-peptalk"
SAMPLE = Path(__file__).resolve().parents[2] / "migrations" / "peptalk"
MIGRATIONS = "SELECT name FROM d1_migrations ORDER BY id"
OBJECTS = "SELECT type, name FROM sqlite_master ORDER BY type, name"


def rows(cf: Cloudflare, sql: str) -> list[dict[str, object]]:
    return list(cf.d1_query(DB, sql)[0]["results"])


def test_a_broken_migration_fails_on_the_scratch_copy_and_nothing_changes(
    sandbox: SandboxInfo, cf: Cloudflare, tmp_path: Path
) -> None:
    before = (rows(cf, MIGRATIONS), rows(cf, OBJECTS))
    folder = tmp_path / "migrations"
    folder.mkdir()
    for f in sorted(SAMPLE.glob("000[1-4]_*.sql")):
        (folder / f.name).write_text(f.read_text())
    (folder / "0005_add_peptide_aliases.sql").write_text(
        (SAMPLE / "0005_add_peptide_aliases.sql").read_text()
    )
    (folder / "0006_broken.sql").write_text(
        "ALTER TABLE peptides ADD COLUMN aliases TEXT;\nUPDATE peptides SET nope = 1;\n"
    )

    result = opsbook.run(
        "db-migrate", ENV, {"migrations_dir": str(folder)}, approve=["apply-migrations"]
    )
    assert (result.status, result.exit_code) == ("completed", 3), result.record["error"]
    verdict = result.record["verdict"]
    assert verdict["cause"] == "scratch-failed"
    assert verdict["evidence"]["failed"] == "0006_broken.sql"
    assert "line 2: no such column: nope" in verdict["evidence"]["error"]
    assert verdict["evidence"]["applied on the copy"] == ["0005_add_peptide_aliases.sql"]
    assert result.record["actions"] == []  # approved, but neither backed up nor applied
    assert (rows(cf, MIGRATIONS), rows(cf, OBJECTS)) == before  # not even 0005
    assert not list(result.run_dir.glob("*.sqlite")) and not list(result.run_dir.glob("pre-*"))


def test_an_approved_run_backs_up_then_applies_and_verifies(
    fresh_sandbox: SandboxInfo, fresh_cf: Cloudflare
) -> None:
    cf = fresh_cf
    applied_before = [r["name"] for r in rows(cf, MIGRATIONS)]
    assert "0005_add_peptide_aliases.sql" not in applied_before

    result = opsbook.run(
        "db-migrate", ENV, {"migrations_dir": "migrations/peptalk"}, approve=["apply-migrations"]
    )
    assert (result.status, result.exit_code) == ("completed", 0), result.record["error"]
    record = result.record
    assert [(a["id"], a["mode"]) for a in record["actions"]] == [
        ("backup", "applied"),
        ("apply-migrations", "applied"),
    ]
    # the backup was taken before: it is the database without the new table
    backup = result.run_dir / record["actions"][0]["result"]["file"]
    text = backup.read_text()
    assert "CREATE TABLE peptides" in text and "peptide_aliases" not in text
    assert "0004_pipeline_runs.sql" in text
    # applied for real, recorded as wrangler records it
    assert [r["name"] for r in rows(cf, MIGRATIONS)] == [
        *applied_before,
        "0005_add_peptide_aliases.sql",
    ]
    names = {(r["type"], r["name"]) for r in rows(cf, OBJECTS)}
    assert {("table", "peptide_aliases"), ("index", "idx_peptide_aliases_peptide_id")} <= names
    check = record["verification"]
    assert check["passed"] is True
    assert check["evidence"]["schema differences with the scratch copy"] == []
    assert record["verdict"]["cause"] == "healthy"
