"""The release changelog: one line per applied deploy or rollback, in the archive.

`<outputs>/changelog.md` (OPSBOOK_OUTPUTS, next to index.sqlite), a markdown table
appended to under an exclusive lock, newest last:

    | time (UTC) | env | worker | action | version | by | run | message |

The run id points at the incident record with the full evidence (the pre-checks, the
watch, the verification). The same entry is returned for the action's result, so the
run's own record holds it too.
"""

from __future__ import annotations

import fcntl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import config, runfolder

HEADER = (
    "# Changelog\n\nDeploys and rollbacks applied through opsbook, oldest first.\n\n"
    "| time (UTC) | env | worker | action | version | by | run | message |\n"
    "|---|---|---|---|---|---|---|---|\n"
)


def path() -> Path:
    return config.outputs_dir() / "changelog.md"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ").strip() or "-"


def append(
    env: str, worker: str, action: str, version: str, message: str, run_id: str = ""
) -> dict[str, Any]:
    """Append one entry; returns it (with the file's path)."""
    entry = {
        "time": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "env": env,
        "worker": worker,
        "action": action,
        "version": version,
        "by": runfolder.operator(),
        "run": run_id,
        "message": message,
    }
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        if not fh.read(1):
            fh.write(HEADER)
        fh.write("| " + " | ".join(_cell(v) for v in entry.values()) + " |\n")
    return {**entry, "file": str(target)}


def entries() -> list[dict[str, str]]:
    """The entries, oldest first (for tests and reports)."""
    if not path().is_file():
        return []
    keys = ["time", "env", "worker", "action", "version", "by", "run", "message"]
    out = []
    for line in path().read_text(encoding="utf-8").splitlines():
        if line.startswith("| ") and not line.startswith(("| time", "|---")):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            out.append(dict(zip(keys, cells, strict=False)))
    return out
