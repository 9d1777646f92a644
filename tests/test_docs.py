"""Docs stay honest: every CLI command is in the README, and the CI script runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import click

from opsbook.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def commands(group: click.Group, prefix: str = "opsbook") -> list[str]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        out.append(f"{prefix} {name}")
        if isinstance(cmd, click.Group):
            out.extend(commands(cmd, f"{prefix} {name}"))
    return out


def test_every_command_is_documented() -> None:
    missing = []
    for command in commands(main):
        *parents, leaf = command.split()
        # `opsbook sandbox start / stop / status` style rows document sub-commands together
        row = next(
            (line for line in README.splitlines() if " ".join(parents) in line and leaf in line),
            None,
        )
        if row is None:
            missing.append(command)
    assert not missing, f"not in README.md: {missing}"


def test_quick_start_is_two_commands_and_ci_runs_the_test_command() -> None:
    block = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line for line in block.strip().splitlines() if line.strip()]
    assert len(lines) == 2, lines
    test_command = lines[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"^{re.escape(test_command)}$", ci, re.M), f"{test_command!r} not in .ci/run"
