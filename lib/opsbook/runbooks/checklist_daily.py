"""checklist-daily: seed 000 "Monitoring Checklist" daily checks and seed 004 "Morning
Checklist" with the "Key Metrics" thresholds. Run by `opsbook batch daily`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import checklist_data as data
from . import checklist_traffic as traffic
from .checks import Item, guarded, manual

if TYPE_CHECKING:
    from ..platform import Platform

CAUSES = {"checks-failed": "one or more checklist items failed (named in the evidence)"}
PROFILES = ("manuscript", "peptalk")
NO_REMEDY = {"checks-failed": "run the runbook each failed item names"}


def availability(p: Platform) -> list[Item]:
    return [guarded("uptime", lambda: traffic.uptime(p)),
            guarded("Cloudflare status", lambda: traffic.status_page(p))]  # fmt: skip


def key_metrics(p: Platform) -> list[Item]:
    try:
        frame = traffic.minutes(p, 24)
    except Exception as exc:
        return [Item("Workers analytics", "warn", f"not measured: {type(exc).__name__}: {exc}")]
    return [*traffic.error_rate(p, frame), traffic.latency(p, frame), *traffic.spikes(p, frame)]


def operations(p: Platform) -> list[Item]:
    items: list[Item] = []
    if data.has_table(p, "pipeline_runs"):
        items += data.pipeline(p)
    items.append(guarded("subscription status", lambda: data.subscriptions(p)))
    return items


def manual_items() -> list[Item]:
    return [
        manual("UptimeRobot", "open the UptimeRobot dashboard: every monitor green since yesterday?"),
        manual("Sentry", "Sentry -> Issues, last 24 h, level fatal/error, is:unresolved firstSeen:-24h"),
        manual("email alerts", "read the alert mailbox (Cloudflare, Stripe, UptimeRobot) since yesterday"),
    ]  # fmt: skip
