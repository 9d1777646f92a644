"""Shared fixtures. Every test archives into its own tmp folder and never touches the
real sandbox state: OPSBOOK_OUTPUTS and OPSBOOK_SANDBOX_DIR point into tmp paths."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    # A default sandbox folder for the session; the `sandbox` fixture points it elsewhere.
    if "OPSBOOK_SANDBOX_DIR" not in os.environ:
        import tempfile

        os.environ["OPSBOOK_SANDBOX_DIR"] = tempfile.mkdtemp(prefix="opsbook-sandbox-")
    os.environ["OPSBOOK_HOME"] = str(ROOT)
    os.environ.setdefault("OPSBOOK_OPERATOR", "tester")


@pytest.fixture(autouse=True)
def outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "outputs"
    monkeypatch.setenv("OPSBOOK_OUTPUTS", str(folder))
    return folder


@pytest.fixture
def fixture_nb(tmp_path: Path):
    """Copy a fixture notebook into tmp_path (tests never change checked-in files)."""

    def copy(name: str) -> Path:
        target = tmp_path / "nb" / f"{name}.ipynb"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(FIXTURES / f"{name}.ipynb", target)
        return target

    return copy


# Fixture notebooks are run by the tests, not collected by nbval.
collect_ignore_glob = ["fixtures/*"]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop a sandbox that a notebook started in the session's default state folder."""
    state = os.environ.get("OPSBOOK_SANDBOX_DIR")
    if not state or not Path(state).joinpath("server.json").exists():
        return
    try:
        from opsbook import sandbox
    except ImportError:
        return
    sandbox.stop(Path(state))


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """SIGINT as in a terminal: KeyboardInterrupt here, the default in child processes.
    A shell that starts the suite in the background (`cmd &` without job control) makes
    every process ignore SIGINT, and Ctrl-C would then reach nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
