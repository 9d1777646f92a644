"""Where things live: the project root, notebooks/, params/, outputs/ and the sandbox state.

The project root is, in order:
1. `OPSBOOK_HOME` if set;
2. the nearest folder at or above the current directory that holds both
   `notebooks/` and `params/`;
3. the checkout this package was installed from (`lib/opsbook/../..`).

`OPSBOOK_OUTPUTS` moves the archive and `OPSBOOK_SANDBOX_DIR` the sandbox state;
tests use both to stay inside `tmp_path`.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _looks_like_root(path: Path) -> bool:
    return (path / "notebooks").is_dir() and (path / "params").is_dir()


@cache
def _root_from(cwd: str, home: str | None) -> Path:
    if home:
        return Path(home).resolve()
    here = Path(cwd).resolve()
    for candidate in (here, *here.parents):
        if _looks_like_root(candidate):
            return candidate
    return PACKAGE_DIR.parent.parent


def project_root() -> Path:
    return _root_from(os.getcwd(), os.environ.get("OPSBOOK_HOME"))


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def params_dir() -> Path:
    return project_root() / "params"


def outputs_dir() -> Path:
    override = os.environ.get("OPSBOOK_OUTPUTS")
    return Path(override).resolve() if override else project_root() / "outputs"


def sandbox_dir() -> Path:
    override = os.environ.get("OPSBOOK_SANDBOX_DIR")
    return Path(override).resolve() if override else project_root() / ".opsbook" / "sandbox"
