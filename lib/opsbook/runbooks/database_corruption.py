"""database-corruption: the app's D1 database fails SQLite's integrity checks.

Seed 004, "Database Corruption" (P1), in its order: stop all writes, assess the damage
(`PRAGMA integrity_check`), restore from the newest good backup (D1 Time Travel: the
bookmark before the corruption), verify the key tables, re-enable writes. Everything
goes through the D1 query and time-travel APIs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import ApiError

if TYPE_CHECKING:
    from ..platform import Platform

CAUSES = {
    "corrupt": "the D1 database file is damaged: SQLite's integrity check fails and reads of a table fail",
}
PROFILES = ("peptalk", "manuscript")
SEVERITY = "P1"
STEP_BACK = timedelta(days=1)  # try an older bookmark when a restored one is still damaged
MAX_TRIES = 7
PLAUSIBLE_SHARE = 0.5  # a table keeps at least half its rows across a restore


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- checks ---------------------------------------------------------------------------
def pragma(p: Platform, name: str) -> tuple[bool, list[str]]:
    """(ok, lines) of `PRAGMA quick_check` / `integrity_check`; an API error is a failure."""
    try:
        rows = p.cf.d1_query(p.database, f"PRAGMA {name}")[0]["results"]
    except ApiError as exc:
        return False, [str(exc).split(": ", 1)[-1]]
    lines = [
        line for r in rows for line in str(next(iter(r.values()))).splitlines() if line.strip()
    ]
    return lines == ["ok"], lines


@dataclass
class TableScan:
    table: str
    rows: int | None  # count(*) (may still work on a damaged table)
    readable: bool  # every row and column read without error
    error: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "rows": self.rows if self.rows is not None else "-",
            "readable": self.readable,
            "error": self.error or "",
        }


def columns(p: Platform) -> dict[str, list[str]]:
    """table -> its columns, for every table of the app (one query)."""
    rows = p.cf.d1_query(
        p.database,
        "SELECT m.name AS t, c.name AS c FROM sqlite_master m, pragma_table_info(m.name) c "
        "WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_cf_%' "
        "ORDER BY m.name, c.cid",
    )[0]["results"]
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(str(r["t"]), []).append(str(r["c"]))
    return out


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def scan_sql(table: str, cols: list[str]) -> str:
    """Read every cell of `table`: the sum of their byte lengths, and the row count."""
    cells = " + ".join(f"coalesce(length(CAST({_q(c)} AS BLOB)), 0)" for c in cols) or "0"
    return f"SELECT count(*) AS n, sum({cells}) AS bytes FROM {_q(table)}"


def scan(p: Platform, table: str, cols: list[str]) -> TableScan:
    """One table read in full; when that fails, count(*) alone (intact pages may answer)."""
    try:
        got = p.cf.d1_query(p.database, scan_sql(table, cols))
        return TableScan(table, int(got[0]["results"][0]["n"]), True)
    except ApiError as exc:
        error = str(exc).split(": ", 1)[-1]
    try:
        n = p.cf.d1_query(p.database, f"SELECT count(*) AS n FROM {_q(table)}")[0]["results"][0][
            "n"
        ]
        return TableScan(table, int(n), False, error)
    except ApiError:
        return TableScan(table, None, False, error)


def scan_all(p: Platform) -> list[TableScan]:
    """Every table read in full: one request when all are readable, else one per table."""
    cols = columns(p)
    try:
        got = p.cf.d1_query(p.database, "; ".join(scan_sql(t, c) for t, c in cols.items()))
        return [
            TableScan(t, int(r["results"][0]["n"]), True) for t, r in zip(cols, got, strict=True)
        ]
    except ApiError:
        return [scan(p, t, c) for t, c in cols.items()]


# ---- diagnosis (pure) -------------------------------------------------------------------
def diagnose(
    database: str, quick: tuple[bool, list[str]], integrity: tuple[bool, list[str]] | None,
    scans: list[TableScan],
) -> tuple[str, list[str], str | None]:  # fmt: skip
    """(cause, evidence, remedy)."""
    damaged = [s for s in scans if not s.readable]
    readable = [s for s in scans if s.readable]
    checked = integrity if integrity is not None else quick
    name = "integrity_check" if integrity is not None else "quick_check"
    if checked[0] and quick[0] and not damaged:
        return (
            "healthy",
            [
                f"{database}: PRAGMA {name}: ok",
                f"{len(readable)} table(s) read in full: "
                + ", ".join(f"{s.table} ({s.rows})" for s in readable),
            ],
            None,
        )
    lines = checked[1]
    more = f" (+{len(lines) - 4} more lines)" if len(lines) > 4 else ""
    evidence = [f"{database}: PRAGMA {name}: " + "; ".join(lines[:4]) + more]
    evidence += [
        f"table {s.table}: unreadable ({s.error})"
        + (f", count(*) still says {s.rows}" if s.rows is not None else "")
        for s in damaged
    ]
    if readable:
        evidence.append("readable: " + ", ".join(f"{s.table} ({s.rows})" for s in readable))
    return (
        "corrupt",
        evidence,
        (
            "Stop writes, restore the newest good bookmark (D1 Time Travel) from before the "
            "corruption, verify the key tables, re-enable writes."
        ),
    )


# ---- remedies ---------------------------------------------------------------------------
# stop-writes / resume-writes: the app's maintenance (read-only) mode, maintenance_mode.py
STOP_REASON = "database corruption: writes stopped until the restore is verified"


def restore_point(started: datetime, now: datetime, window_minutes: int, given: bool) -> datetime:
    """Before the corruption: the incident start when given, else the start of the window."""
    point = started if given else now - timedelta(minutes=window_minutes)
    return point - timedelta(minutes=1)


def restore_preview(p: Platform, point: datetime, bookmark: str) -> dict[str, Any]:
    return {
        "call": f"POST /accounts/{{account}}/d1/database/{p.database}/time_travel/restore?bookmark={bookmark}",
        "bookmark": f"{bookmark} (GET …/time_travel/bookmark?timestamp={stamp(point)})",
        "wrangler": f"npx wrangler d1 time-travel restore {p.database} --bookmark={bookmark}",
        "loses": f"every write to {p.database} after {stamp(point)}",
        "then": f"PRAGMA integrity_check; if still damaged, the bookmark {STEP_BACK.days} day earlier (up to {MAX_TRIES})",
        "fallback": f"npx wrangler d1 execute {p.database} --remote --file backup-latest.sql",
    }


def restore(p: Platform, point: datetime) -> dict[str, Any]:
    """Restore the bookmark at `point`; step back a day while integrity_check still fails."""
    tries: list[dict[str, Any]] = []
    undo: str | None = None
    for i in range(MAX_TRIES):
        at = point - i * STEP_BACK
        bookmark = p.cf.d1_bookmark(p.database, stamp(at))
        result = p.cf.d1_restore(p.database, bookmark=bookmark)
        undo = undo or result.get("previous_bookmark")
        ok, lines = pragma(p, "integrity_check")
        tries.append(
            {"timestamp": stamp(at), "bookmark": bookmark, "integrity_check": "; ".join(lines[:3])}
        )
        if ok:
            return {
                "restored": bookmark,
                "timestamp": stamp(at),
                "tries": tries,
                "undo bookmark": undo,
            }
    raise ApiError(f"no bookmark in {MAX_TRIES} tries passed integrity_check: {tries}")


def plausible(before: list[TableScan], after: list[TableScan]) -> list[str]:
    """Problems with the restored tables: unreadable, gone, or far fewer rows than before."""
    prior = {s.table: s.rows for s in before}
    problems = []
    now = {s.table: s for s in after}
    for table in prior:
        s = now.get(table)
        if s is None:
            problems.append(f"{table}: missing after the restore")
        elif not s.readable:
            problems.append(f"{table}: still unreadable ({s.error})")
        elif prior[table] and (s.rows or 0) < PLAUSIBLE_SHARE * int(prior[table] or 0):
            problems.append(f"{table}: {s.rows} rows after, {prior[table]} before")
    return problems
