"""`wrangler d1 ...` (the real CLI) against the sandbox's D1 endpoints, when installed."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_wrangler import json_out, wrangler_command, wrangler_for

from opsbook import sandbox as sandbox_api

pytestmark = [
    pytest.mark.wrangler,
    pytest.mark.skipif(
        wrangler_command() is None, reason="wrangler is not installed (see test_wrangler.py)"
    ),
]
DB = "peptalk-production-db"


def test_list_and_execute_json(sandbox: sandbox_api.SandboxInfo, tmp_path: Path) -> None:
    wrangler = wrangler_for(sandbox, tmp_path)
    listed = json_out(wrangler("d1", "list", "--json").stdout)
    assert isinstance(listed, list) and {d["name"] for d in listed} == {"manuscript-platform", DB}
    out = json_out(
        wrangler(
            "d1",
            "execute",
            DB,
            "--remote",
            "--json",
            "--command",
            "SELECT name FROM peptides WHERE slug = 'bpc-157'; SELECT count(*) AS n FROM studies",
        ).stdout
    )
    assert isinstance(out, list) and out[0]["results"] == [{"name": "BPC-157"}]
    assert out[1]["results"][0]["n"] >= 2_500 and out[1]["meta"]["rows_read"] >= 1


def test_export_file_import_and_time_travel(
    fresh_sandbox: sandbox_api.SandboxInfo, tmp_path: Path
) -> None:
    wrangler = wrangler_for(fresh_sandbox, tmp_path)
    info = json_out(wrangler("d1", "time-travel", "info", DB, "--json").stdout)
    assert isinstance(info, dict) and info["bookmark"]
    wrangler("d1", "export", DB, "--remote", "--output", "peptides.sql", "--table", "peptides")
    dump = (tmp_path / "work" / "peptides.sql").read_text()
    assert dump.startswith("PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE peptides")
    script = tmp_path / "work" / "change.sql"
    script.write_text(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\nINSERT INTO notes (body) VALUES ('x');\n"
    )
    wrangler("d1", "execute", DB, "--remote", "--file", str(script), "-y")
    count = json_out(
        wrangler(
            "d1",
            "execute",
            DB,
            "--remote",
            "--json",
            "--command",
            "SELECT count(*) AS n FROM notes",
        ).stdout
    )
    assert isinstance(count, list) and count[0]["results"] == [{"n": 1}]
    restored = json_out(
        wrangler(
            "d1", "time-travel", "restore", DB, "--bookmark", info["bookmark"], "--json"
        ).stdout
    )
    assert isinstance(restored, dict) and restored["bookmark"] == info["bookmark"]
    tables = json_out(
        wrangler(
            "d1",
            "execute",
            DB,
            "--remote",
            "--json",
            "--command",
            "SELECT count(*) AS n FROM sqlite_master WHERE name = 'notes'",
        ).stdout
    )
    assert isinstance(tables, list) and tables[0]["results"] == [{"n": 0}]
