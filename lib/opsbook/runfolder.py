"""Run folders, run ids, the run context and the journal of events.

    outputs/<YYYY-MM-DD>/<run-id>_<runbook>/
        context.json     who/what/when: written before the kernel starts
        events.jsonl     steps, findings, verdict, actions, appended by the kernel
        notebook.ipynb   the executed (scrubbed) notebook       } written by
        report.html      its rendering                          } runner.finish()
        record.json      the structured record                  }

Run ids sort by time and are unique across processes: the folder is created with
`mkdir` (which fails if it exists) and a new random suffix is drawn on collision.
Every file is written atomically (temp file in the same folder, then rename).
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CONTEXT = "context.json"
EVENTS = "events.jsonl"
NOTEBOOK = "notebook.ipynb"
REPORT = "report.html"
RECORD = "record.json"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | None = None) -> str:
    return (ts or utcnow()).isoformat(timespec="milliseconds")


def operator() -> str:
    for var in ("OPSBOOK_OPERATOR", "USER", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def new_run_id(now: datetime | None = None) -> str:
    now = now or utcnow()
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


@dataclass(frozen=True)
class RunFolder:
    path: Path
    run_id: str
    runbook: str

    @classmethod
    def create(cls, outputs: Path, runbook: str, now: datetime | None = None) -> RunFolder:
        now = now or utcnow()
        day = outputs / f"{now:%Y-%m-%d}"
        day.mkdir(parents=True, exist_ok=True)
        for _ in range(50):
            run_id = new_run_id(now)
            path = day / f"{run_id}_{runbook}"
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return cls(path, run_id, runbook)
        raise RuntimeError(f"could not create a unique run folder in {day}")

    @classmethod
    def open(cls, path: Path) -> RunFolder:
        context = read_context(path)
        return cls(path, context["id"], context["runbook"])

    def file(self, name: str) -> Path:
        return self.path / name


def read_context(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / CONTEXT).read_text(encoding="utf-8"))


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    """Events in order. A torn last line (a kernel killed mid-write) is skipped."""
    path = run_dir / EVENTS
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def append_event(run_dir: Path, event: dict[str, Any]) -> None:
    """Append one JSON line. O_APPEND keeps concurrent appends whole."""
    line = (json.dumps(event, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    fd = os.open(run_dir / EVENTS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
