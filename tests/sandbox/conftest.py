"""Sandbox fixtures: one real server per test session, on a tmp state folder.

- `sandbox` (session): the state is seeded once (seed 7) into a pristine copy, copied
  into the session's state folder, and served. OPSBOOK_SANDBOX_DIR points at it for the
  whole session and is restored afterwards.
- `fresh_sandbox` (function): stops the server, puts the pristine state back, starts it
  again. Use it for tests that change state (faults, deploys, secrets).
- `cf` / `fresh_cf` (function): an opsbook Cloudflare client on `sandbox` / `fresh_sandbox`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook import sandbox as sandbox_api
from opsbook.clients.cloudflare import Cloudflare
from opsbook.sandbox import faultctl
from opsbook.sandbox.state import State

KEEP = {".lock", ".last_port", "server.log"}


def _restore(pristine: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in target.iterdir():
        if entry.name in KEEP:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for entry in pristine.iterdir():
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name)
        else:
            shutil.copy2(entry, target / entry.name)


@pytest.fixture(scope="session")
def sandbox_pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pristine = tmp_path_factory.mktemp("sandbox-pristine")
    State(pristine).rebuild(7)
    return pristine


@pytest.fixture(scope="session")
def sandbox(
    tmp_path_factory: pytest.TempPathFactory, sandbox_pristine: Path
) -> Iterator[sandbox_api.SandboxInfo]:
    state_dir = tmp_path_factory.mktemp("sandbox-state")
    _restore(sandbox_pristine, state_dir)
    previous = os.environ.get("OPSBOOK_SANDBOX_DIR")
    os.environ["OPSBOOK_SANDBOX_DIR"] = str(state_dir)
    try:
        yield sandbox_api.start(state_dir)
    finally:
        sandbox_api.stop(state_dir)
        if previous is None:
            os.environ.pop("OPSBOOK_SANDBOX_DIR", None)
        else:
            os.environ["OPSBOOK_SANDBOX_DIR"] = previous


@pytest.fixture
def fresh_sandbox(
    sandbox: sandbox_api.SandboxInfo, sandbox_pristine: Path
) -> Iterator[sandbox_api.SandboxInfo]:
    """The session sandbox, restarted on a pristine copy of its state. The session's
    SandboxInfo is updated in place (pid, ports), so later tests see the new server.
    Faults the test left marked active are healed afterwards, so tests that share the
    session sandbox never inherit one (a rollback fixes the symptom, not the mark)."""
    sandbox_api.stop(sandbox.state_dir)
    _restore(sandbox_pristine, sandbox.state_dir)
    restarted = sandbox_api.start(sandbox.state_dir)
    for f in dataclasses.fields(restarted):
        setattr(sandbox, f.name, getattr(restarted, f.name))
    yield sandbox
    faultctl.heal(State(sandbox.state_dir))


def cloudflare_client(info: sandbox_api.SandboxInfo) -> Cloudflare:
    """An opsbook Cloudflare client on a sandbox (close it: `with cloudflare_client(...)`)."""
    return Cloudflare(
        info.urls()["cloudflare"], info.account_id, info.credentials["OPSBOOK_SANDBOX_TOKEN"]
    )


@pytest.fixture
def cf(sandbox: sandbox_api.SandboxInfo) -> Iterator[Cloudflare]:
    with cloudflare_client(sandbox) as client:
        yield client


@pytest.fixture
def fresh_cf(fresh_sandbox: sandbox_api.SandboxInfo) -> Iterator[Cloudflare]:
    with cloudflare_client(fresh_sandbox) as client:
        yield client


@pytest.fixture
def spare_state(tmp_path: Path, sandbox_pristine: Path) -> Iterator[Path]:
    """A second state folder (a copy of the pristine one) with no server; stopped after."""
    state_dir = tmp_path / "spare-state"
    _restore(sandbox_pristine, state_dir)
    try:
        yield state_dir
    finally:
        sandbox_api.stop(state_dir)
