"""costs on the sandbox: LLM tokens summed from a real log export (the sandbox's traffic
written as `wrangler tail --format json`), priced per model, against the budgets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import opsbook
from opsbook.clients.logs import iter_concatenated
from opsbook.runbooks.checks import Item
from opsbook.runbooks.costs import Spend, judge
from opsbook.sandbox import SandboxInfo, traffic
from opsbook.sandbox.state import State


def test_alert_levels() -> None:
    budgets = {"llm": 100, "warn_share": 0.8}

    def level(usd: float | None) -> Item:
        return judge(Spend("llm", usd, "test", {}), budgets)

    assert [level(v).status for v in (50, 85, 120, None)] == ["pass", "warn", "fail", "manual"]
    assert "over" in level(120).summary


def tokens_logged(path: Path) -> int:
    total = 0
    for event in iter_concatenated(path):
        for line in event.get("logs") or []:
            msg = line.get("message") or []
            if len(msg) > 1 and msg[0] == "tokens_used":
                total += int(msg[1])
    return total


def test_costs_sums_the_tokens_of_a_log_export(sandbox: SandboxInfo, tmp_path: Path) -> None:
    export = tmp_path / "tail.json"
    since = int((time.time() - 6 * 3600) * 1000)
    assert (
        traffic.export(State(sandbox.state_dir), "manuscript-upload-api", export, since_ms=since)
        > 0
    )
    expected = tokens_logged(export)
    assert expected > 0
    result = opsbook.run("costs", env="local", parameters={"logs_file": str(export)})
    assert result.status == "completed", result.record.get("error")
    findings: dict[str, dict[str, Any]] = {
        f["message"].split(":", 1)[0]: f for f in result.record["findings"]
    }
    llm = findings["llm spend"]["evidence"]
    assert llm["tokens"] == expected
    assert llm["budget"] == 200  # params budgets.llm
    assert 0 < llm["span_days"] <= 0.26
    # priced at the params rate for claude-3-5-sonnet ($15 per million), scaled to 30 days
    assert abs(llm["usd_in_export"] - expected / 1e6 * 15.0) < 0.01
    fees = findings["stripe_fees spend"]["evidence"]
    assert fees["fee"] > 0 and fees["count"] > 0
    cause = result.record["verdict"]["cause"]
    severities = {f["severity"] for f in result.record["findings"]}
    assert cause == ("over-budget" if "error" in severities else
                     "near-budget" if "warning" in severities else "healthy")  # fmt: skip
