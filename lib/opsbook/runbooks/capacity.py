"""capacity (seed 004 "Scaling Operations"): counts and sizes against the tier limits in
params (`limits:`), with a growth projection: days until each limit.

Counts come from D1 (rows per table, `created_at` per day for the growth rate, the
database's `file_size` from the D1 API), Workers requests per day from GraphQL analytics
and the app's R2 bucket size from `r2StorageAdaptiveGroups`. Growth is the recent rate:
rows created over the last `days` days, divided by `days`; storage grows with the rows
at the database's measured bytes per row. What no API gives is said, not guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .checks import Item
from .signals import iso

if TYPE_CHECKING:
    from ..platform import Platform

CAUSES = {
    "over-limit": "a count or size is already over its tier limit",
    "limit-soon": "at the recent growth rate a limit is reached within the warning horizon",
}
PROFILES = ("manuscript", "peptalk")
NO_REMEDY = {
    "over-limit": "upgrade the plan or archive data; the tier limit is a billing decision",
    "limit-soon": "plan the upgrade or archiving before the projected date",
}
SKIP_TABLES = ("d1_migrations", "sqlite_sequence")
R2_QUERY = """query($acct:String!,$b:String!){viewer{accounts(filter:{accountTag:$acct}){
 r2StorageAdaptiveGroups(limit:1,filter:{bucketName:$b}){max{objectCount payloadSize}}}}}"""
DAY_QUERY = """query($acct:String!,$s:Time!,$e:Time!,$w:String!){viewer{accounts(filter:{accountTag:$acct}){
 workersInvocationsAdaptive(limit:1,filter:{scriptName:$w,datetime_geq:$s,datetime_leq:$e}){
  sum{requests errors cpuTimeUs}}}}}"""


@dataclass
class Usage:
    name: str
    used: float
    limit: float | None
    unit: str
    per_day: float | None  # growth per day, None when not measured
    basis: str  # where the numbers come from

    @property
    def share(self) -> float | None:
        return self.used / self.limit if self.limit else None

    @property
    def days_left(self) -> float | None:
        if self.limit is None or self.used >= self.limit:
            return 0.0 if self.limit is not None else None
        if not self.per_day or self.per_day <= 0:
            return None
        return (self.limit - self.used) / self.per_day

    def status(self, horizon_days: float) -> str:
        if self.limit is None:
            return "warn"
        if self.used > self.limit:
            return "fail"
        left = self.days_left
        return "warn" if left is not None and left < horizon_days else "pass"

    def item(self, horizon_days: float) -> Item:
        left = self.days_left
        if self.limit is None:
            text = f"{fmt(self.used)} {self.unit}; no limit in params"
        elif self.used > self.limit:
            text = f"{fmt(self.used)} {self.unit} is over the limit {fmt(self.limit)}"
        else:
            growth = (
                "growth not measured"
                if self.per_day is None
                else f"+{fmt(self.per_day)}/day"
                + (f", limit in {left:.0f} days" if left is not None else ", not growing")
            )
            text = f"{fmt(self.used)} of {fmt(self.limit)} {self.unit} ({self.share:.0%}); {growth}"
        evidence = {"used": self.used, "limit": self.limit, "unit": self.unit,
                    "per_day": self.per_day, "days_left": None if left is None else round(left, 1),
                    "basis": self.basis}  # fmt: skip
        return Item(self.name, self.status(horizon_days), text, evidence)


def fmt(value: float) -> str:
    if value >= 1e9:
        return f"{value / 1e9:.2f}G"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if abs(value - round(value)) < 1e-9:
        return f"{round(value):,}"
    return f"{value:,.2f}"


def _rows(p: Platform, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    return list(p.cf.d1_query(p.database, sql, params)[0]["results"])


def table_counts(p: Platform, days: int = 30, now: datetime | None = None) -> list[dict[str, Any]]:
    """Per table: rows, and rows created in the last `days` days (None: no created_at)."""
    since = iso((now or datetime.now(UTC)) - timedelta(days=days))
    tables = [
        t
        for t in _rows(p, "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name")
        if t["name"] not in SKIP_TABLES and not str(t["name"]).startswith("_cf_")
    ]
    parts, params = [], []
    for t in tables:
        dated = "created_at" in str(t["sql"] or "")
        recent = "SUM(created_at >= ?)" if dated else "NULL"
        parts.append(
            f"SELECT '{t['name']}' AS name, COUNT(*) AS n, {recent} AS recent FROM \"{t['name']}\""
        )
        params += [since] if dated else []
    if not parts:
        return []
    return _rows(p, " UNION ALL ".join(parts), params)


def d1_usage(
    p: Platform, limits: dict[str, Any], days: int = 30
) -> tuple[list[Usage], list[dict[str, Any]]]:
    counts = table_counts(p, days)
    total = sum(int(c["n"]) for c in counts)
    dated = [c for c in counts if c["recent"] is not None]
    per_day = sum(int(c["recent"] or 0) for c in dated) / days if dated else None
    size = float(p.cf.d1_database(p.database).get("file_size") or 0)
    bytes_per_row = size / total if total else None
    usages = [
        Usage("D1 rows", total, _num(limits.get("d1_rows")), "rows", per_day,
              f"COUNT(*) of {len(counts)} tables; growth from created_at over {days} days"),
        Usage("D1 storage", size, _num(limits.get("d1_storage_bytes")), "bytes",
              per_day * bytes_per_row if per_day is not None and bytes_per_row else None,
              "file_size from the D1 API; growth = row growth x measured bytes per row"),
    ]  # fmt: skip
    return usages, counts


def workers_usage(p: Platform, limits: dict[str, Any], now: datetime | None = None) -> Usage:
    end = now or datetime.now(UTC)
    data = p.cf.graphql(
        DAY_QUERY,
        {"acct": p.cf.account_id, "s": iso(end - timedelta(days=1)), "e": iso(end), "w": p.worker},
    )
    groups = ((data.get("viewer") or {}).get("accounts") or [{}])[0].get(
        "workersInvocationsAdaptive"
    ) or [{}]
    requests = float(((groups[0] or {}).get("sum") or {}).get("requests") or 0)
    return Usage("Workers requests/day", requests, _num(limits.get("workers_requests_day")),
                 "requests", None, "GraphQL workersInvocationsAdaptive, last 24 h; "
                 "growth not measured (one day of analytics)")  # fmt: skip


def r2_usage(p: Platform, limits: dict[str, Any]) -> Usage:
    bucket = str(p.setting("app.r2_bucket"))
    data = p.cf.graphql(R2_QUERY, {"acct": p.cf.account_id, "b": bucket})
    groups = ((data.get("viewer") or {}).get("accounts") or [{}])[0].get("r2StorageAdaptiveGroups")
    size = float(((groups or [{}])[0].get("max") or {}).get("payloadSize") or 0)
    price = float(limits.get("r2_usd_per_gb_month") or 0)
    cost = size / 1e9 * price
    return Usage(f"R2 {bucket} storage cost", round(cost, 2), _num(limits.get("r2_budget_usd_month")),
                 "USD/month", None, f"{size / 1e9:.2f} GB (r2StorageAdaptiveGroups) x "
                 f"${price}/GB-month; growth not measured")  # fmt: skip


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def measure(p: Platform, days: int = 30) -> tuple[list[Usage], list[dict[str, Any]]]:
    limits = dict(p.setting("limits") or {})
    usages, counts = d1_usage(p, limits, days)
    return [*usages, workers_usage(p, limits), r2_usage(p, limits)], counts


def diagnose(items: list[Item]) -> tuple[str, list[str], str | None]:
    over = [i for i in items if i.status == "fail"]
    soon = [i for i in items if i.status == "warn" and i.evidence.get("days_left") is not None]
    if over:
        return "over-limit", [f"{i.name}: {i.summary}" for i in over], NO_REMEDY["over-limit"]
    if soon:
        return "limit-soon", [f"{i.name}: {i.summary}" for i in soon], NO_REMEDY["limit-soon"]
    return "healthy", [f"{i.name}: {i.summary}" for i in items], None


def shares(usages: list[Usage]) -> dict[str, float]:
    """Percent of each limit used, for the bar chart."""
    return {
        u.name: round(100 * u.share, 1)
        for u in usages
        if u.share is not None and not math.isnan(u.share)
    }
