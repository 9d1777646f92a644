"""maintenance-window end to end: emergency maintenance with every action approved, in a
real kernel; checked by its effects on D1 (planner statistics exist, the backup was
taken first and is the database's export) and on the Worker's secrets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import opsbook
from opsbook.clients.cloudflare import Cloudflare
from opsbook.sandbox import SandboxInfo

DB = "manuscript-platform"
WORKER = "manuscript-upload-api"
STATS = "SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'sqlite_stat1'"


def test_emergency_maintenance_backs_up_then_analyzes(
    fresh_sandbox: SandboxInfo, fresh_cf: Cloudflare, tmp_path: Path
) -> None:
    assert fresh_cf.d1_query(DB, STATS)[0]["results"][0]["n"] == 0
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_initial_schema.sql").write_text("-- applied already\n")
    (migrations / "0006_add_tags.sql").write_text("ALTER TABLE manuscripts ADD COLUMN tags TEXT;\n")

    result = opsbook.run(
        "maintenance-window",
        parameters={"emergency": True, "migrations_dir": str(migrations)},
        approve=["maintenance-on", "analyze", "reindex", "maintenance-off"],
    )

    assert result.status == "completed", result.record["error"]
    record = result.record
    actions = {a["id"]: a for a in record["actions"]}
    assert [a["id"] for a in record["actions"]] == [
        "backup", "maintenance-on", "analyze", "reindex", "maintenance-off",
    ]  # fmt: skip
    assert all(a["mode"] == "applied" for a in record["actions"])
    # the backup exists, is what it says, and was taken before any task ran
    backup = actions["backup"]["result"]
    path = result.run_dir / f"backup-{DB}.sql"
    assert backup["file"] == path.name
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == backup["sha256"]
    assert b"CREATE TABLE" in data and b"INSERT INTO" in data
    assert actions["backup"]["at"] < actions["maintenance-on"]["at"] < actions["analyze"]["at"]
    # ANALYZE ran: the planner statistics exist now, read through the D1 API
    assert fresh_cf.d1_query(DB, STATS)[0]["results"][0]["n"] == 1
    assert actions["analyze"]["result"]["sqlite_stat1 rows"] > 0
    # maintenance mode was put, then taken off after the smoke tests
    assert actions["maintenance-on"]["result"]["secret"] == "MAINTENANCE_MODE"
    assert "MAINTENANCE_MODE" not in {s["name"] for s in fresh_cf.secrets(WORKER)}
    # the pending migration is named, not applied; it is the verdict
    assert record["verdict"]["cause"] == "migrations-pending"
    assert "0006_add_tags.sql" in record["verdict"]["evidence"]
    columns = {
        r["name"] for r in fresh_cf.d1_query(DB, "PRAGMA table_info(manuscripts)")[0]["results"]
    }
    assert "tags" not in columns
