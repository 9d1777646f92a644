"""`opsbook sandbox ...` through click's runner, and `python -m opsbook.sandbox`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from opsbook import sandbox as sandbox_api
from opsbook.cli.sandbox import sandbox as cli
from opsbook.sandbox import faultctl
from opsbook.sandbox.state import State


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "command", ["start", "stop", "status", "env", "reset", "faults", "break", "heal"]
)
def test_every_command_has_help_with_an_example(command: str) -> None:
    code, out = run(command, "--help")
    assert code == 0
    assert "Example" in out, out
    assert len(out.splitlines()) > 5


def test_status_json(sandbox: sandbox_api.SandboxInfo) -> None:
    code, out = run("status", "--json", "--state", str(sandbox.state_dir))
    assert code == 0
    data = json.loads(out)
    assert data["running"] and data["pid"] == sandbox.pid
    assert data["account_id"] == "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    assert data["urls"]["cloudflare"] == f"{sandbox.base_url}/client/v4"
    assert data["urls"]["stripe"] == sandbox.base_url
    assert data["urls"]["statuspage"] == f"{sandbox.base_url}/status"
    assert data["urls"]["apps.manuscript"] == f"{sandbox.base_url}/apps/manuscript"


def test_status_table_uses_the_environment_variable(sandbox: sandbox_api.SandboxInfo) -> None:
    assert os.environ["OPSBOOK_SANDBOX_DIR"] == str(sandbox.state_dir)
    code, out = run("status")
    assert code == 0 and "/client/v4" in out and "apps.peptalk" in out


def test_env_prints_shell_exports(sandbox: sandbox_api.SandboxInfo) -> None:
    code, out = run("env", "--state", str(sandbox.state_dir))
    assert code == 0
    exports = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    assert exports["CLOUDFLARE_API_BASE_URL"] == f"{sandbox.base_url}/client/v4"
    assert exports["CLOUDFLARE_API_TOKEN"] == sandbox.credentials["OPSBOOK_SANDBOX_TOKEN"]
    assert exports["CLOUDFLARE_ACCOUNT_ID"] == sandbox.account_id
    assert exports["STRIPE_API_KEY"] == sandbox.credentials["OPSBOOK_SANDBOX_STRIPE_KEY"]
    assert exports["STRIPE_API_BASE"] == sandbox.base_url
    assert exports["WRANGLER_SEND_METRICS"] == "false"


def test_faults_lists_runbooks_and_verdicts() -> None:
    code, out = run("faults", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["bad-deploy"]["runbook"] == "api-down"
    assert rows["consumer-missing"]["verdict"] == "consumer-missing"
    code, table = run("faults")
    assert code == 0 and "bad-deploy" in table and "queue-backlog" in table


def test_break_unknown_fault_exits_2_listing_known_ones() -> None:
    result = CliRunner().invoke(cli, ["break", "bad-deploi"])
    assert result.exit_code == 2
    assert "No fault named 'bad-deploi'. Did you mean 'bad-deploy'?" in result.output
    assert "Known faults:" in result.output and "consumer-missing" in result.output


def test_break_bad_option_exits_2(sandbox: sandbox_api.SandboxInfo) -> None:
    result = CliRunner().invoke(cli, ["break", "bad-deploy", "--option", "nonsense"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output
    result = CliRunner().invoke(cli, ["break", "secret-missing", "-o", "name=NOPE"])
    assert result.exit_code == 2 and "not a required secret" in result.output


def test_break_and_heal(fresh_sandbox: sandbox_api.SandboxInfo) -> None:
    state = fresh_sandbox.state_dir
    code, out = run("break", "secret-missing", "--state", str(state), "-o", "profile=peptalk")
    assert code == 0 and "secret-missing" in out and "opsbook sandbox heal" in out
    assert [a["name"] for a in faultctl.active(State(state))] == ["secret-missing"]
    code, out = run("heal", "--state", str(state))
    assert code == 0 and "healed: secret-missing" in out
    assert faultctl.active(State(state)) == []
    code, out = run("heal", "--state", str(state))
    assert code == 0 and "no active faults" in out


def test_module_entry_stop_start_status(spare_state: Path) -> None:
    env = {**os.environ, "OPSBOOK_SANDBOX_DIR": str(spare_state)}

    def module(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "opsbook.sandbox", *args],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    assert module("status").returncode == 1
    started = module("start")
    assert started.returncode == 0 and "sandbox running at http://127.0.0.1:" in started.stdout
    status = module("status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["running"]
    stopped = module("stop")
    assert stopped.returncode == 0 and "sandbox stopped" in stopped.stdout
    assert json.loads(module("status", "--json").stdout) == {"running": False}
