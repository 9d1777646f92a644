"""capacity on the sandbox: the counts it reports are the database's own, and the
manuscript database (over 200k rows) is over the seed's 100k-row free tier."""

from __future__ import annotations

from typing import Any

import opsbook
from opsbook.clients.cloudflare import Cloudflare
from opsbook.runbooks.capacity import Usage
from opsbook.sandbox import SandboxInfo

DB = "manuscript-platform"


def test_days_left_and_status_follow_the_rate() -> None:
    soon = Usage("rows", 90_000, 100_000, "rows", 500.0, "test")
    assert soon.days_left == 20
    assert soon.status(30) == "warn"
    assert soon.status(10) == "pass"
    assert Usage("rows", 100_001, 100_000, "rows", 0.0, "test").status(30) == "fail"
    flat = Usage("rows", 10, 100, "rows", None, "test")
    assert (flat.days_left, flat.status(30)) == (None, "pass")


def test_capacity_counts_every_table_and_flags_the_row_limit(
    sandbox: SandboxInfo, cf: Cloudflare
) -> None:
    tables = [
        r["name"]
        for r in cf.d1_query(DB, "SELECT name FROM sqlite_master WHERE type = 'table'")[0][
            "results"
        ]
        if r["name"] not in ("d1_migrations", "sqlite_sequence")
    ]
    total = sum(
        next(iter(cf.d1_query(DB, f"SELECT COUNT(*) FROM {t}")[0]["results"][0].values()))
        for t in tables
    )
    result = opsbook.run("capacity", env="local")
    assert (result.status, result.exit_code) == ("completed", 3), result.record.get("error")
    findings: dict[str, dict[str, Any]] = {
        f["message"].split(":", 1)[0]: f for f in result.record["findings"]
    }
    rows = findings["D1 rows"]["evidence"]
    assert rows["used"] == total > 100_000
    assert rows["limit"] == 100_000  # params limits.d1_rows, the seed's free tier
    assert findings["D1 rows"]["severity"] == "error"
    size = findings["D1 storage"]["evidence"]
    assert size["used"] == cf.d1_database(DB)["file_size"]
    assert result.record["verdict"]["cause"] == "over-limit"
    assert result.record["verdict"]["evidence"][0].startswith("D1 rows:")
