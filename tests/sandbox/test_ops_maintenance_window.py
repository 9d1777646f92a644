"""maintenance-window end to end: emergency maintenance with every action approved, in a
real kernel; checked by its effects on D1 (planner statistics exist, the backup was
taken first and is the database's export), on the KV flag, and on the app itself (writes
refused while maintenance mode is on, accepted after). And the apps' maintenance mode
on its own, switched through the KV API as an operator would."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

import opsbook
from opsbook.clients.cloudflare import Cloudflare
from opsbook.errors import NotFound
from opsbook.sandbox import SandboxInfo, faultctl
from opsbook.sandbox.state import State

DB = "manuscript-platform"
FLAGS = "feature-flags"
KEY = "flag:maintenance:manuscript-upload-api"
STATS = "SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'sqlite_stat1'"
TEST_USER = {"email": "prodtest3@example.com", "password": "TestPass123@"}


def app(info: SandboxInfo, profile: str = "manuscript") -> str:
    return info.urls()[f"apps.{profile}"]


def flag_value(cf: Cloudflare, key: str = KEY) -> bytes | None:
    try:
        return cf.kv_get(FLAGS, key)
    except NotFound:
        return None


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
    # the backup exists, is what it says (db-backup's export and .sha256), taken first
    backup = actions["backup"]["result"]
    path = result.run_dir / f"backup-{DB}.sql"
    assert backup["file"] == path.name
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == backup["sha256"]
    assert (result.run_dir / f"{path.name}.sha256").read_text().startswith(backup["sha256"])
    assert b"CREATE TABLE" in data and b"INSERT INTO" in data
    assert actions["backup"]["at"] < actions["maintenance-on"]["at"] < actions["analyze"]["at"]
    # ANALYZE ran: the planner statistics exist now, read through the D1 API
    assert fresh_cf.d1_query(DB, STATS)[0]["results"][0]["n"] == 1
    assert actions["analyze"]["result"]["sqlite_stat1 rows"] > 0
    # maintenance mode: the KV flag was put, writes were refused while it was on ...
    on = actions["maintenance-on"]["result"]
    assert on["flag"].startswith(KEY) and on["value"] == "true"
    assert "/auth/login -> 503 (Retry-After: " in on["write probe"]
    during = [f for f in record["findings"] if f["message"].startswith("Writes during maintenance")]
    assert [f["severity"] for f in during] == ["info"] and "-> 503" in during[0]["message"]
    # ... then it was deleted after the smoke tests, and writes reach the app again
    off = actions["maintenance-off"]["result"]
    assert off["deleted"] and "-> 503" not in off["write probe"]
    assert flag_value(fresh_cf) is None
    login = httpx.post(f"{app(fresh_sandbox)}/auth/login", json=TEST_USER, timeout=20)
    assert login.status_code == 200 and login.json().get("token")
    assert httpx.get(f"{app(fresh_sandbox)}/health", timeout=10).json()["maintenance"] is False
    # the pending migration is named, not applied; it is the verdict
    assert record["verdict"]["cause"] == "migrations-pending"
    assert "0006_add_tags.sql" in record["verdict"]["evidence"]
    columns = {
        r["name"] for r in fresh_cf.d1_query(DB, "PRAGMA table_info(manuscripts)")[0]["results"]
    }
    assert "tags" not in columns


def test_without_approval_nothing_is_switched(
    fresh_sandbox: SandboxInfo, fresh_cf: Cloudflare
) -> None:
    result = opsbook.run("maintenance-window", parameters={"emergency": True, "tasks": []})
    assert result.status == "completed", result.record["error"]
    modes = {a["id"]: a["mode"] for a in result.record["actions"]}
    assert modes == {"backup": "applied", "maintenance-on": "dry-run"}
    assert result.record["verdict"]["cause"] == "awaiting-approval"
    assert flag_value(fresh_cf) is None
    assert httpx.post(f"{app(fresh_sandbox)}/auth/login", json={}, timeout=10).status_code != 503


def test_the_kv_flag_makes_the_app_read_only(
    fresh_sandbox: SandboxInfo, fresh_cf: Cloudflare
) -> None:
    base = app(fresh_sandbox)
    token = httpx.post(f"{base}/auth/login", json=TEST_USER, timeout=20).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    fresh_cf.kv_put(FLAGS, KEY, "true", metadata={"until": "2999-01-01T00:00:00Z"})

    write = httpx.post(f"{base}/manuscripts", json={"title": "t"}, headers=auth, timeout=10)
    assert write.status_code == 503
    assert int(write.headers["retry-after"]) > 3600  # counts down to the flag's `until`
    assert write.json()["maintenance"] is True and "maintenance" in write.json()["error"]
    assert httpx.post(f"{base}/auth/login", json=TEST_USER, timeout=20).status_code == 503
    # reads keep working, with the sessions made before
    assert httpx.get(f"{base}/manuscripts", headers=auth, timeout=10).status_code == 200
    assert httpx.get(f"{base}/manuscripts", timeout=10).status_code == 401
    health = httpx.get(f"{base}/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["maintenance"] is True
    assert health.json()["maintenance_until"] == "2999-01-01T00:00:00Z"
    # the other app has its own key: its writes are not held back
    other = httpx.post(f"{app(fresh_sandbox, 'peptalk')}/auth/login", json={}, timeout=10)
    assert other.status_code != 503
    # any value but "true" is normal operation; deleting the key too
    fresh_cf.kv_put(FLAGS, KEY, "false")
    assert httpx.post(f"{base}/auth/login", json={}, timeout=10).status_code == 400
    fresh_cf.kv_put(FLAGS, KEY, "true")
    refused = httpx.post(f"{base}/auth/login", json={}, timeout=10)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "300"
    fresh_cf.kv_delete(FLAGS, KEY)
    made = httpx.post(f"{base}/manuscripts", json={"title": "After maintenance"}, headers=auth,
                      timeout=10)  # fmt: skip
    assert made.status_code == 201, made.text


def test_database_corruption_stops_and_resumes_writes_with_the_same_flag(
    fresh_sandbox: SandboxInfo, fresh_cf: Cloudflare
) -> None:
    state = State(fresh_sandbox.state_dir)
    faultctl.break_fault(state, "corrupt", {"profile": "peptalk"})
    result = opsbook.run(
        "database-corruption",
        env="local-peptalk",
        approve=["stop-writes", "restore", "resume-writes"],
    )
    assert result.status == "completed", result.record["error"]
    actions = {a["id"]: a for a in result.record["actions"]}
    assert [a["id"] for a in result.record["actions"]] == [
        "stop-writes",
        "restore",
        "resume-writes",
    ]
    assert all(a["mode"] == "applied" for a in result.record["actions"])
    stop = actions["stop-writes"]["result"]
    assert stop["flag"].startswith("flag:maintenance:peptalk-api")
    assert "-> 503 (Retry-After: 300)" in stop["write probe"]
    assert stop["metadata"]["reason"].startswith("database corruption")
    assert "-> 503" not in actions["resume-writes"]["result"]["write probe"]
    assert flag_value(fresh_cf, "flag:maintenance:peptalk-api") is None
    health = httpx.get(f"{app(fresh_sandbox, 'peptalk')}/api/health", timeout=10)
    assert health.status_code == 200 and health.json()["maintenance"] is False
