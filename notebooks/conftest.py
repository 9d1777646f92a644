"""nbval runs the shipped notebooks outside any run folder. Whatever they leave in the
archive (db-backup's export goes to outputs/backups/ then) lands in a temporary
OPSBOOK_OUTPUTS for the session, removed when the session ends; tests/conftest.py gives
each test its own archive as before."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

SAVED = pytest.StashKey[tuple[str | None, str]]()


def pytest_configure(config: pytest.Config) -> None:
    folder = tempfile.mkdtemp(prefix="opsbook-nbval-outputs-")
    config.stash[SAVED] = (os.environ.get("OPSBOOK_OUTPUTS"), folder)
    os.environ["OPSBOOK_OUTPUTS"] = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    previous, folder = config.stash.get(SAVED, (None, ""))
    if not folder:
        return
    shutil.rmtree(folder, ignore_errors=True)
    if previous is None:
        os.environ.pop("OPSBOOK_OUTPUTS", None)
    else:
        os.environ["OPSBOOK_OUTPUTS"] = previous
