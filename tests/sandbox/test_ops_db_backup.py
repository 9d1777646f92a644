"""db-backup and db-restore-check end to end, in real kernels against the sandbox: the
files a backup leaves (dump, checksum, counts), and a test restore that passes a good
backup and names the damage in a bad one."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import opsbook
from opsbook.clients.cloudflare import Cloudflare
from opsbook.sandbox import SandboxInfo

DB = "manuscript-platform"
TABLES = ["users", "subscriptions"]


def count(cf: Cloudflare, table: str) -> int:
    return int(cf.d1_query(DB, f"SELECT COUNT(*) AS n FROM {table}")[0]["results"][0]["n"])


@pytest.fixture(scope="module")
def backup(sandbox: SandboxInfo) -> dict[str, Any]:
    result = opsbook.run("db-backup", parameters={"tables": TABLES})
    assert (result.status, result.exit_code) == ("completed", 0), result.record["error"]
    [action] = result.record["actions"]
    return {"result": result, "action": action, "file": result.run_dir / action["result"]["file"]}


def test_a_sql_backup_is_the_export_with_its_checksum_and_counts(
    backup: dict[str, Any], cf: Cloudflare
) -> None:
    result, action, path = backup["result"], backup["action"], backup["file"]
    assert (action["id"], action["risk"], action["mode"]) == ("export", "read", "applied")
    assert path.name.startswith(f"backup-{DB}-") and path.suffix == ".sql"
    assert path.stat().st_mode & 0o077 == 0
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert (path.parent / f"{path.name}.sha256").read_text() == f"{digest}  {path.name}\n"
    text = data.decode()
    live = {t: count(cf, t) for t in TABLES}
    assert {t: text.count(f'INSERT INTO "{t}" ') for t in TABLES} == live
    assert "CREATE TABLE manuscripts" not in text  # only the tables asked for
    manifest = json.loads((path.parent / f"{path.name}.json").read_text())
    assert manifest["count_at_export"] == live and manifest["sha256"] == digest
    assert result.record["verdict"]["cause"] == "healthy"
    assert result.record["verdict"]["evidence"] == {"rows per table": live}


def test_a_json_backup_reads_every_row_in_pages(sandbox: SandboxInfo, cf: Cloudflare) -> None:
    result = opsbook.run("db-backup", parameters={"tables": ["users"], "format": "json"})
    assert result.exit_code == 0, result.record["error"]
    rows = json.loads((result.run_dir / "users.json").read_text())
    assert len(rows) == count(cf, "users") > 1000  # more than one page of 1,000
    assert len({r["id"] for r in rows}) == len(rows)
    sums = (result.run_dir / "SHA256SUMS").read_text().split()
    assert sums == [
        hashlib.sha256((result.run_dir / "users.json").read_bytes()).hexdigest(),
        "users.json",
    ]


def restore(path: Path) -> opsbook.RunResult:
    return opsbook.run("db-restore-check", parameters={"backup": str(path)})


def test_a_good_backup_restores(backup: dict[str, Any], cf: Cloudflare) -> None:
    result = restore(backup["file"])
    assert (result.status, result.exit_code) == ("completed", 0), result.record["error"]
    verdict = result.record["verdict"]
    assert verdict["cause"] == "healthy"
    assert verdict["evidence"]["rows"] == sum(count(cf, t) for t in TABLES)
    assert not (result.run_dir / "restore-check.sqlite").exists()  # a copy of live data: gone


def damaged_copy(original: Path, folder: Path, keep_sums: bool) -> Path:
    folder.mkdir()
    copy = folder / original.name
    shutil.copy(original.with_name(original.name + ".json"), folder)
    if keep_sums:
        shutil.copy(original.with_name(original.name + ".sha256"), folder)
    return copy


def test_deleted_rows_are_named_by_table_and_checksum(
    backup: dict[str, Any], cf: Cloudflare, tmp_path: Path
) -> None:
    copy = damaged_copy(backup["file"], tmp_path / "deleted", keep_sums=True)
    lines = backup["file"].read_text().splitlines(keepends=True)
    users = [i for i, line in enumerate(lines) if line.startswith('INSERT INTO "users" ')]
    gone = set(users[100:103])
    copy.write_text("".join(line for i, line in enumerate(lines) if i not in gone))

    result = restore(copy)
    assert result.exit_code == 3
    verdict = result.record["verdict"]
    assert verdict["cause"] == "backup-damaged"
    n = count(cf, "users")
    assert verdict["evidence"][0].startswith("checksum mismatch")
    assert (
        f"table users: {n - 3} rows restored, {n} expected ({n - 3} INSERT statements in the dump)"
        in verdict["evidence"]
    )
    assert not any("subscriptions" in e for e in verdict["evidence"])


def test_a_truncated_backup_is_named_with_its_line(backup: dict[str, Any], tmp_path: Path) -> None:
    copy = damaged_copy(backup["file"], tmp_path / "truncated", keep_sums=False)
    text = backup["file"].read_text()
    lines = text.splitlines(keepends=True)
    middle = len(lines) // 2
    assert lines[middle].startswith("INSERT INTO ")
    copy.write_text("".join(lines[:middle]) + lines[middle][:40])  # cut inside a statement
    line = middle + 1

    result = restore(copy)
    assert result.exit_code == 3
    verdict = result.record["verdict"]
    assert verdict["cause"] == "backup-damaged"
    assert verdict["evidence"] == [
        f"the SQL fails to load at line {line}: the file ends inside a statement"
    ]
    assert any(
        "no " in f["message"] and ".sha256" in f["message"] for f in result.record["findings"]
    )


def test_outside_a_run_folder_backups_go_to_the_archive_not_tmp(outputs: Path) -> None:
    """nbval and a notebook opened by hand have no run folder: the files go to
    outputs/backups/ (private), and discard removes only such a folder."""
    from opsbook.runbooks import backups

    run_dir = outputs / "2026-11-23" / "20261123T162545Z-c013_db-backup"
    assert backups.output_folder(run_dir) == run_dir
    folder = backups.output_folder(None)
    assert folder.parent == outputs.resolve() / "backups"
    assert folder.name.startswith("backup-") and folder.stat().st_mode & 0o077 == 0
    (folder / "backup-x.sql").write_text("CREATE TABLE t(a);\n")
    run_dir.mkdir(parents=True)
    backups.discard(run_dir)  # never a run folder
    assert run_dir.is_dir()
    backups.discard(folder)
    assert not folder.exists()
