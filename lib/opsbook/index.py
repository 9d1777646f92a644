"""The archive index: `outputs/index.sqlite` (one row per run) and `outputs/index.html`.

The run folders are the truth; the index makes them searchable (`opsbook runs list`,
incident timelines, the HTML index page). Several processes may finish runs at the same
time, so the database is in WAL mode with a busy timeout, every write is one short
`BEGIN IMMEDIATE` transaction retried on "database is locked", and `index.html` is
written to a temporary file in the same folder and moved into place with `os.replace`.

`PRAGMA user_version` holds the schema version; `MIGRATIONS[n]` upgrades n-1 -> n.
"""

from __future__ import annotations

import contextlib
import html
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from .errors import UnknownRun

DB_NAME = "index.sqlite"
HTML_NAME = "index.html"
BUSY_TIMEOUT_MS = 15_000
RETRIES = 40
T = TypeVar("T")
Row = dict[str, Any]
Rows = list[Row]  # (the class below has a method named `list`)

COLUMNS = (
    "run_id",
    "runbook",
    "env",
    "incident",
    "operator",
    "mode",
    "status",
    "verdict",
    "exit_code",
    "started",
    "ended",
    "duration_s",
    "path",
)

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE IF NOT EXISTS runs (
        run_id     TEXT PRIMARY KEY,
        runbook    TEXT NOT NULL,
        env        TEXT,
        incident   TEXT,
        operator   TEXT,
        mode       TEXT,
        status     TEXT,
        verdict    TEXT,
        exit_code  INTEGER,
        started    TEXT,
        ended      TEXT,
        duration_s REAL,
        path       TEXT NOT NULL,
        started_ts REAL             -- epoch seconds of `started`, for order and `since`
    );
    CREATE INDEX IF NOT EXISTS runs_started ON runs (started_ts);
    CREATE INDEX IF NOT EXISTS runs_incident ON runs (incident, started_ts);
    CREATE INDEX IF NOT EXISTS runs_runbook ON runs (runbook, started_ts);
    CREATE INDEX IF NOT EXISTS runs_path ON runs (path);
    """,
}
SCHEMA_VERSION = max(MIGRATIONS)


def _epoch(value: Any) -> float | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Index:
    """The run index of one archive folder. Use as a context manager, or call close()."""

    def __init__(self, outputs_dir: Path) -> None:
        self.outputs_dir = Path(outputs_dir).resolve()
        self.outputs_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.outputs_dir / DB_NAME
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            self._db.row_factory = sqlite3.Row
            self._retry(lambda: self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"))
            self._retry(lambda: self._db.execute("PRAGMA journal_mode = WAL"))
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._retry(self._migrate)
        except BaseException:
            self._db.close()
            raise

    # ---- plumbing --------------------------------------------------------------
    def _retry(self, fn: Callable[[], T]) -> T:
        for attempt in range(RETRIES):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_locked(exc) or attempt == RETRIES - 1:
                    raise
                time.sleep(min(0.02 * (attempt + 1), 0.5))
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing ---------------------------------------------------------------
    def _relpath(self, run_dir: Path) -> str:
        run_dir = Path(run_dir).resolve()
        try:
            return run_dir.relative_to(self.outputs_dir).as_posix()
        except ValueError:
            return run_dir.as_posix()  # outside the archive: keep it absolute

    def upsert(self, record: dict[str, Any], run_dir: Path) -> None:
        """Insert or replace the row of `record`'s run (record.json contents)."""
        run = record.get("run") or {}
        verdict = record.get("verdict") or {}
        row = {
            "run_id": run["id"],
            "runbook": run.get("runbook") or "",
            "env": run.get("env"),
            "incident": run.get("incident"),
            "operator": run.get("operator"),
            "mode": run.get("mode"),
            "status": run.get("status"),
            "verdict": verdict.get("cause") if isinstance(verdict, dict) else None,
            "exit_code": run.get("exit_code"),
            "started": run.get("started"),
            "ended": run.get("ended"),
            "duration_s": run.get("duration_s"),
            "path": self._relpath(run_dir),
            "started_ts": _epoch(run.get("started")),
        }
        names = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)

        def write() -> None:
            with self._write() as db:
                db.execute(f"INSERT OR REPLACE INTO runs ({names}) VALUES ({marks})", row)

        self._retry(write)

    # ---- reading ---------------------------------------------------------------
    def _query(self, where: str = "", args: tuple[Any, ...] = (), tail: str = "") -> Rows:
        sql = f"SELECT {', '.join(COLUMNS)} FROM runs {where} {tail}"
        rows = self._retry(lambda: self._db.execute(sql, args).fetchall())
        return [dict(r) for r in rows]

    def list(
        self,
        *,
        runbook: str | None = None,
        status: str | None = None,
        incident: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
    ) -> Rows:
        """Runs, newest first. A naive `since` is taken as UTC. limit <= 0: no limit."""
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in (("runbook", runbook), ("status", status), ("incident", incident)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            clauses.append("started_ts >= ?")
            args.append((since if since.tzinfo else since.replace(tzinfo=UTC)).timestamp())
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        tail = "ORDER BY started_ts DESC, run_id DESC"
        if limit > 0:
            tail += f" LIMIT {int(limit)}"
        return self._query(where, tuple(args), tail)

    def incident_runs(self, incident: str) -> Rows:
        """Every run of one incident, oldest first."""
        return self._query("WHERE incident = ?", (incident,), "ORDER BY started_ts, run_id")

    def get(self, ref: str) -> Row:
        """One run by full id, unique id prefix, the random suffix of its id, or its folder."""
        ref = str(ref).strip()
        unknown = UnknownRun(
            f"No run '{ref}' in the archive at {self.outputs_dir}. "
            "`opsbook runs list` shows the runs.",
            ref=ref,
            candidates=[],
        )
        if not ref:
            raise unknown
        rows = self._query("WHERE run_id = ?", (ref,))
        if rows:
            return rows[0]
        if by_path := self._by_path(ref):
            return by_path
        pattern = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._query(
            "WHERE run_id LIKE ? ESCAPE '\\'", (pattern + "%",), "ORDER BY started_ts DESC"
        )
        if not rows:
            rows = self._query(
                "WHERE run_id LIKE ? ESCAPE '\\'", ("%-" + pattern,), "ORDER BY started_ts DESC"
            )
        if len(rows) == 1:
            return rows[0]
        if rows:
            shown = ", ".join(f"{r['run_id']} ({r['runbook']})" for r in rows[:10])
            more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
            raise UnknownRun(
                f"Run '{ref}' is ambiguous in the archive at {self.outputs_dir}: it matches "
                f"{shown}{more}. Give more of the run id.",
                ref=ref,
                candidates=[r["run_id"] for r in rows],
            )
        raise unknown

    def _by_path(self, ref: str) -> Row | None:
        if "/" not in ref and os.sep not in ref and not ref.startswith("."):
            # a bare folder name `<run-id>_<runbook>`
            run_id = ref.split("_", 1)[0]
            rows = self._query("WHERE run_id = ?", (run_id,)) if "_" in ref else []
            return rows[0] if rows else None
        path = Path(ref).expanduser()
        if path.is_file():
            path = path.parent  # report.html, record.json, notebook.ipynb
        rel = self._relpath(path)
        rows = self._query("WHERE path = ?", (rel,))
        if not rows:
            run_id = path.name.split("_", 1)[0]
            rows = self._query("WHERE run_id = ?", (run_id,))
        return rows[0] if rows else None

    # ---- the HTML index --------------------------------------------------------
    def write_html(self) -> Path:
        """Write `outputs/index.html` (every run, newest first) atomically; return its path."""
        page = index_page(self.list(limit=0), self.outputs_dir)
        target = self.outputs_dir / HTML_NAME
        fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".html.tmp", dir=self.outputs_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(page)
            os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the page is for reading
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return target


STATUS_KIND = {"completed": "pass", "failed": "fail", "aborted": "warn", "open": "info"}
VERDICT_KIND = {"healthy": "pass", "unknown": "warn"}

# Optional nicety: type to filter the rows. The page works without it.
FILTER_JS = """
const q=document.getElementById('q'),rows=[...document.querySelectorAll('tbody tr')];
q.hidden=false;q.addEventListener('input',()=>{const t=q.value.toLowerCase();
rows.forEach(r=>{r.hidden=t&&!r.textContent.toLowerCase().includes(t)})});
"""


def index_page(rows: Rows, outputs_dir: Path) -> str:
    """The archive's index page: every run, newest first, linking to its report."""
    from ._style import PAGE_CSS

    def esc(value: Any) -> str:
        return html.escape("" if value is None else str(value), quote=True)

    def badge(kind: str, text: Any) -> str:
        return f'<span class="ob-badge ob-{kind}">{esc(text)}</span>' if text else ""

    body = []
    for r in rows:
        started = str(r.get("started") or "")
        when = started[:19].replace("T", " ")
        href = f"{r['path']}/report.html" if not r["path"].startswith("/") else None
        link = f'<a href="{esc(href)}">report</a>' if href else esc(r["path"])
        duration = (
            f"{r['duration_s']:.1f} s" if isinstance(r.get("duration_s"), int | float) else ""
        )
        verdict = r.get("verdict")
        body.append(
            f'<tr><td title="{esc(started)}"><code>{esc(when)}</code></td>'
            f"<td><strong>{esc(r['runbook'])}</strong><br>"
            f"<span class='ob-dim'>{esc(r['run_id'])}</span></td>"
            f"<td>{esc(r.get('env'))}</td><td>{esc(r.get('incident') or '')}</td>"
            f"<td>{badge(STATUS_KIND.get(str(r.get('status')), 'info'), r.get('status'))}</td>"
            f"<td>{badge(VERDICT_KIND.get(str(verdict), 'fail'), verdict)}</td>"
            f"<td>{esc(duration)}</td><td>{esc(r.get('operator') or '')}</td><td>{link}</td></tr>"
        )
    table = (
        '<table class="ob-table"><thead><tr><th>started</th><th>runbook</th><th>env</th>'
        "<th>incident</th><th>status</th><th>verdict</th><th>duration</th><th>operator</th>"
        f"<th></th></tr></thead><tbody>{''.join(body)}</tbody></table>"
        if rows
        else "<p>No runs yet. <code>opsbook run RUNBOOK</code> records one here.</p>"
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>opsbook · runs</title><style>{PAGE_CSS}</style></head><body><main>"
        '<header class="ob-head"><div class="ob-kicker">opsbook archive</div>'
        f"<h1>Runs</h1><p class='ob-dim'>{len(rows)} runs in <code>{esc(outputs_dir)}</code>"
        f" · generated {generated}</p></header>"
        '<section class="ob-box"><input id="q" class="ob-filter" type="search" hidden '
        f'placeholder="filter: runbook, incident, status, verdict…">{table}</section>'
        f"</main><script>{FILTER_JS}</script></body></html>\n"
    )
