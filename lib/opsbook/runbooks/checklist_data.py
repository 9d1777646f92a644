"""Checklist items from D1, Stripe, Queues, secrets and the run archive (seed 004 "Daily
Operations", "Weekly Tasks"; seed 000 weekly and monthly checks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import capacity, pipeline_failed, queue_backlog
from .checks import Item

if TYPE_CHECKING:
    from ..platform import Platform


def _rows(p: Platform, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    return list(p.cf.d1_query(p.database, sql, params)[0]["results"])


def has_table(p: Platform, name: str) -> bool:
    sql = "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?"
    return bool(_rows(p, sql, [name])[0]["n"])


def pipeline(p: Platform) -> list[Item]:
    """Key metric pipeline success < 90 % for 24 h, overnight runs, the nightly cron."""
    runs = pipeline_failed.recent_runs(p, 48)
    threshold, hours = pipeline_failed.threshold_of(p)
    rate = pipeline_failed.success_rate(runs, threshold, hours)
    items = [Item("pipeline success (key metric)",
                  "warn" if rate.value is None else "fail" if rate.breached else "pass",
                  rate.text(), {"ok": rate.ok, "total": rate.total})]  # fmt: skip
    since = pipeline_failed.iso(datetime.now(UTC) - timedelta(hours=24))
    night = _rows(p, "SELECT r.status, r.error, p.name FROM pipeline_runs r LEFT JOIN peptides p "
                     "ON p.id = r.peptide_id WHERE r.started_at >= ?", [since])  # fmt: skip
    failed = sorted({str(r["name"]) for r in night if r["status"] != "success"})
    items.append(Item("overnight pipeline runs",
                      "fail" if not night else "warn" if failed else "pass",
                      f"{len(night)} runs in 24 h, {len(failed)} peptide(s) failed"
                      + (f": {', '.join(failed[:8])} (run pipeline-failed)" if failed else ""),
                      {"runs": len(night), "failed": failed[:20]}))  # fmt: skip
    newest = _rows(p, "SELECT max(started_at) AS at FROM pipeline_runs")[0]["at"]
    max_age = float(p.setting("thresholds.cron_max_age_hours") or 26)
    if not newest:
        items.append(Item("nightly cron ran", "fail", "no pipeline run recorded"))
    else:
        age = (datetime.now(UTC) - pipeline_failed.parse_time(newest)).total_seconds() / 3600
        items.append(Item("nightly cron ran", "fail" if age > max_age else "pass",
                          f"last nightly run {newest}, {age:.1f} h ago (limit {max_age:g} h)",
                          {"last_run": newest, "age_hours": round(age, 1)}))  # fmt: skip
    return items


def subscriptions(p: Platform) -> Item:
    counts: dict[str, int] = {}
    for status in ("past_due", "canceled", "unpaid"):
        params: dict[str, Any] = {"status": status, "limit": 100}
        n = 0
        while True:
            page = p.stripe._list(p.stripe.client.v1.subscriptions.list, params, "subscriptions")
            n += len(page.data)
            if not page.has_more or not page.data:
                break
            params["starting_after"] = page.data[-1].id
        counts[status] = n
    text = ", ".join(f"{n} {s}" for s, n in counts.items())
    status = "warn" if counts["past_due"] or counts["unpaid"] else "pass"
    return Item("subscription status", status, f"Stripe: {text} (follow up past_due)", counts)


def queue_depth(p: Platform) -> Item:
    r = queue_backlog.read_queue(p, str(p.setting("app.queue")), p.setting("app.dlq"))
    age = r.oldest_age_min()
    limit = float(p.setting("thresholds.queue_oldest_minutes") or 30)
    evidence = {"backlog": r.backlog, "oldest_min": None if age is None else round(age, 1),
                "dlq_backlog": r.dlq_backlog, "consumers": len(r.worker_consumers),
                "paused": r.paused}  # fmt: skip
    text = (f"{r.queue}: {r.backlog} waiting, oldest "
            f"{'-' if age is None else f'{age:.0f} min'}, DLQ {r.dlq_backlog}")  # fmt: skip
    if r.backlog and (not r.worker_consumers or r.paused):
        return Item(
            "queue depth", "fail", text + "; no active consumer (run queue-backlog)", evidence
        )
    if (age is not None and age > limit) or r.dlq_backlog:
        return Item(
            "queue depth", "warn", text + f" (limit {limit:g} min; run queue-backlog)", evidence
        )
    return Item("queue depth", "pass", text, evidence)


def database_growth(p: Platform, horizon: float) -> list[Item]:
    limits = dict(p.setting("limits") or {})
    usages, counts = capacity.d1_usage(p, limits)
    items = [u.item(horizon) for u in usages]
    for it in items:
        it.evidence["tables"] = {c["name"]: c["n"] for c in counts}
    return items


def r2_budget(p: Platform, horizon: float) -> Item:
    return capacity.r2_usage(p, dict(p.setting("limits") or {})).item(horizon)


def user_growth(p: Platform, weeks: int = 4) -> Item:
    now = datetime.now(UTC)
    sql = " UNION ALL ".join(
        f"SELECT {w} AS week, COUNT(*) AS n FROM users WHERE created_at >= ? AND created_at < ?"
        for w in range(weeks)
    )
    params: list[Any] = []
    for w in range(weeks):
        params += [pipeline_failed.iso(now - timedelta(days=7 * (w + 1))),
                   pipeline_failed.iso(now - timedelta(days=7 * w))]  # fmt: skip
    per = {int(r["week"]): int(r["n"]) for r in _rows(p, sql, params)}
    last, prior = per.get(0, 0), [per.get(w, 0) for w in range(1, weeks)]
    avg = sum(prior) / len(prior) if prior else 0.0
    text = (f"{last} registrations in the last 7 days; {avg:.1f}/week over the "
            f"{len(prior)} weeks before")  # fmt: skip
    status = "pass" if last >= avg else "warn"
    return Item(
        "user growth",
        status,
        text,
        {"per_week_newest_first": [per.get(w, 0) for w in range(weeks)]},
    )


def secrets_audit(p: Platform) -> Item:
    names = sorted(str(s.get("name")) for s in p.cf.secrets(p.worker))
    required = [str(s) for s in p.setting("app.required_secrets") or []]
    missing = [s for s in required if s not in names]
    evidence = {"secrets": names, "missing": missing}
    note = "; secret ages are not in the API (names and types only): rotate by your calendar"
    if missing:
        return Item(
            "security audit: secrets", "fail", f"missing {', '.join(missing)}" + note, evidence
        )
    return Item("security audit: secrets", "pass",
                f"all {len(required)} required secrets present" + note, evidence)  # fmt: skip


def backup_verified(days: int = 30) -> Item:
    from ..config import outputs_dir
    from ..index import DB_NAME, Index

    since = datetime.now(UTC) - timedelta(days=days)
    runs: list[dict[str, Any]] = []
    if (outputs_dir() / DB_NAME).is_file():  # a read-only check: no archive, no run
        with Index(outputs_dir()) as index:
            runs = index.list(runbook="db-restore-check", since=since, limit=5)
    good = [r for r in runs if r.get("status") == "completed" and r.get("verdict") == "healthy"]
    if good:
        return Item("backup verification", "pass",
                    f"db-restore-check passed {good[0]['started']} ({good[0]['run_id']})")  # fmt: skip
    return Item("backup verification", "warn",
                f"not run this month: no passing db-restore-check in the archive since "
                f"{since:%Y-%m-%d}; run db-restore-check (test restore)",
                {"runs_found": len(runs)})  # fmt: skip
