"""maintenance-window: seeds 000 and 004 "Maintenance Windows".

The window is Sundays 02:00–04:00 UTC. Outside it every changing action is refused,
unless `emergency` is set (seed 000 "Emergency Maintenance": critical vulnerability, data
corruption risk, complete failure). The notices are checked against the window: the
status page 48 h before, the email to users 24 h before (seed 000; seed 004 says 48 h for
both — the stricter status-page deadline is checked for both channels' first notice).

Backup: backups.export_sql, the same export as db-backup, into the run folder.

Maintenance mode (maintenance_mode.py): the KV flag the app reads on every request
(`app.maintenance_flag`), put through the KV API with the window's end as `until`; the
app then answers writes 503 with Retry-After and keeps serving reads. The smoke tests
check both: reads answer as usual and a write is refused while it is on; after it is
taken off, writes reach the app again. An environment without a flag gets nothing
switched and the verdict `no-maintenance-mode` (show the maintenance page by hand).

Tasks (`tasks`): `analyze` (`PRAGMA optimize` then `ANALYZE`: fresh planner statistics in
sqlite_stat1), `reindex` (`REINDEX`), `migrations` (report the migrations of
`migrations_dir` that the `d1_migrations` table does not list; applying them is
db-migrate's job, which does not exist yet: report only). D1 has no VACUUM.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import backups
from . import maintenance_mode as mm
from .common import incident_start

if TYPE_CHECKING:
    from ..platform import Platform

CAUSES = {
    "outside-window": "now is outside the Sunday 02:00–04:00 UTC maintenance window and this "
    "is not an emergency: nothing was changed",
    "notice-late": "the maintenance was not announced in time (status page 48 h, email 24 h "
    "before the window)",
    "awaiting-approval": "the window is open (or this is an emergency), but the maintenance actions were only previewed: "
    "nothing changed",
    "task-failed": "a maintenance task failed",
    "smoke-failed": "after the tasks the smoke checks failed (or writes were not refused "
    "during maintenance): maintenance mode stays on",
    "mode-failed": "maintenance mode could not be switched, or the app did not follow it",
    "migrations-pending": "the maintenance ran; migrations in migrations_dir are not applied yet",
    "no-maintenance-mode": "the maintenance ran, but the environment names no maintenance "
    "flag the app reads (app.maintenance_flag): writes were not stopped",
}
NO_REMEDY = {
    "outside-window": "wait for the window (or, for a real emergency, -p emergency=true)",
    "notice-late": "announce now and move the window to one the notices reach in time",
    "awaiting-approval": "approve the actions to run them",
    "task-failed": "read the failed task's error; restore from the backup in the run folder if the data changed",
    "smoke-failed": "compare with the backup in the run folder; restore it if the data is damaged",
    "mode-failed": "read the action's error; switch the KV flag by hand (npx wrangler kv key "
    "put/delete) and check a write's answer",
    "migrations-pending": "apply them: npx wrangler d1 migrations apply DB --remote (after review)",
    "no-maintenance-mode": "teach the app to read a KV flag per request (as the sandbox apps "
    "do) and name it in params app.maintenance_flag; meanwhile show the maintenance page by hand",
}
# the verdict is the first of these found (healthy when none)
PRIORITY = ("smoke-failed", "mode-failed", "task-failed", "notice-late", "awaiting-approval",
            "migrations-pending", "no-maintenance-mode")  # fmt: skip
PROFILES = ("manuscript", "peptalk")

WEEKDAY, START_HOUR, HOURS = 6, 2, 2  # Sunday, 02:00 UTC, two hours
STATUS_PAGE_BEFORE, EMAIL_BEFORE = timedelta(hours=48), timedelta(hours=24)
TASKS = ("analyze", "reindex", "migrations")


# ---- the window ---------------------------------------------------------------------------
def window_start(text: str, now: datetime) -> datetime:
    """The given ISO time, or the window in progress, or the next Sunday 02:00 UTC."""
    if text.strip():
        return incident_start(text, now)
    sunday = (now - timedelta(days=(now.weekday() - WEEKDAY) % 7)).replace(
        hour=START_HOUR, minute=0, second=0, microsecond=0
    )
    return sunday if now < sunday + timedelta(hours=HOURS) else sunday + timedelta(days=7)


@dataclass(frozen=True)
class Window:
    start: datetime
    now: datetime
    emergency: bool

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=HOURS)

    @property
    def scheduled_slot(self) -> bool:
        s = self.start.astimezone(UTC)
        return s.weekday() == WEEKDAY and (s.hour, s.minute, s.second) == (START_HOUR, 0, 0)

    @property
    def inside(self) -> bool:
        return self.scheduled_slot and self.start <= self.now < self.end

    @property
    def allowed(self) -> bool:
        return self.inside or self.emergency

    def evidence(self) -> list[str]:
        fmt = "%a %Y-%m-%d %H:%M UTC"
        return [
            f"window: {self.start.astimezone(UTC):{fmt}} to {self.end.astimezone(UTC):{fmt}}"
            + ("" if self.scheduled_slot else " — not the Sunday 02:00 UTC slot"),
            f"now: {self.now.astimezone(UTC):{fmt}} — "
            + ("inside the window" if self.inside else "outside the window")
            + (" (emergency maintenance)" if self.emergency else ""),
        ]


def notices(announced_at: str, w: Window) -> tuple[bool, list[str]]:
    """(on time, evidence): status page 48 h and email 24 h before the window."""
    if not announced_at.strip():
        return False, ["no notice recorded (announced_at is empty)"]
    sent = incident_start(announced_at, w.now)
    out, ok = [], True
    for channel, before in (("status page", STATUS_PAGE_BEFORE), ("email", EMAIL_BEFORE)):
        deadline = w.start - before
        hit = sent <= deadline
        ok = ok and hit
        out.append(
            f"{channel}: due by {deadline:%a %Y-%m-%d %H:%M} UTC ({before.total_seconds() / 3600:.0f} h "
            f"before); sent {sent.astimezone(UTC):%a %Y-%m-%d %H:%M} UTC: "
            + ("on time" if hit else "LATE")
        )
    return ok, out


# ---- backup and maintenance mode ----------------------------------------------------------
def backup(p: Platform, folder: Path) -> dict[str, Any]:
    """The whole database (schema and rows) to folder/backup-<db>.sql, with its .sha256."""
    return backups.export_sql(p.cf, p.database, folder)


def backup_preview(p: Platform) -> dict[str, Any]:
    return backups.export_preview(p.cf, p.database, [], f"backup-{p.database}.sql")


def mode_until(w: Window) -> datetime | None:
    """When maintenance is expected to end (the app's Retry-After): the window's end for a
    scheduled window in progress; unknown for emergency maintenance."""
    return w.end if w.inside else None


def mode_reason(w: Window) -> str:
    return (
        "emergency maintenance" if w.emergency and not w.inside else "scheduled maintenance window"
    )


def writes_refused(p: Platform, flag: mm.Flag) -> tuple[bool, str]:
    """(refused, evidence): the smoke check that maintenance mode holds writes back."""
    r = mm.write_probe(p, flag)
    return mm.refused(r), "while on: " + mm.probe_text(r)


# ---- the tasks ----------------------------------------------------------------------------
SQL = {"analyze": ["PRAGMA optimize", "ANALYZE"], "reindex": ["REINDEX"]}
RISK = {"analyze": "reversible", "reindex": "reversible"}


def task_preview(p: Platform, task: str) -> dict[str, Any]:
    statements = SQL[task]
    return {
        "call": f"POST /accounts/{p.cf.account_id}/d1/database/{p.database}/query",
        "sql": statements,
        "wrangler": " && ".join(
            f'npx wrangler d1 execute {p.database} --remote --command "{s}"' for s in statements
        ),
    }


def run_task(p: Platform, task: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for statement in SQL[task]:
        result = p.cf.d1_query(p.database, statement)[0]
        meta = result.get("meta") or {}
        out[statement] = {"ms": meta.get("duration"), "rows": len(result.get("results") or [])}
    if task == "analyze":
        stats = p.cf.d1_query(p.database, "SELECT COUNT(*) AS n FROM sqlite_stat1")[0]
        out["sqlite_stat1 rows"] = stats["results"][0]["n"]
    return out


def migrations(p: Platform, migrations_dir: str) -> tuple[list[str], list[str]]:
    """(applied names from d1_migrations, pending file names from migrations_dir)."""
    rows = p.cf.d1_query(p.database, "SELECT name FROM d1_migrations ORDER BY id")[0]["results"]
    applied = [str(r["name"]) for r in rows]
    if not migrations_dir:
        return applied, []
    folder = Path(migrations_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"migrations_dir {folder} is not a folder")
    files = sorted(f.name for f in folder.glob("*.sql"))
    return applied, [f for f in files if f not in set(applied)]


def unknown_tasks(tasks: list[str]) -> list[str]:
    return [t for t in tasks if t not in TASKS]


def conclude(
    problems: list[tuple[str, list[str]]], events: list[dict[str, Any]], done: list[str]
) -> tuple[str, list[str], str | None]:
    """(cause, evidence, remedy): the first problem by PRIORITY, every problem's lines as
    evidence; actions only previewed are `awaiting-approval`; none is healthy."""
    found = list(problems)
    previewed = [
        e["id"] for e in events if e.get("type") == "action" and e.get("mode") == "dry-run"
    ]
    if previewed:
        found.append(("awaiting-approval", [f"previewed, not approved: {', '.join(previewed)}"]))
    if not found:
        return "healthy", [f"{name}: applied" for name in done], None
    found.sort(key=lambda c: PRIORITY.index(c[0]))
    cause = found[0][0]
    return cause, [line for _, lines in found for line in lines], NO_REMEDY[cause]
