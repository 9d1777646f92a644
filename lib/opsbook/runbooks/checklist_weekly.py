"""checklist-weekly: seed 000 "Monitoring Checklist" weekly checks and seed 004 "Weekly
Tasks". Run by `opsbook batch weekly`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import checklist_data as data
from . import costs
from .checks import Item, guarded, manual

if TYPE_CHECKING:
    from ..platform import Platform

CAUSES = {"checks-failed": "one or more checklist items failed (named in the evidence)"}
PROFILES = ("manuscript", "peptalk")
NO_REMEDY = {"checks-failed": "run the runbook each failed item names"}


def storage(p: Platform) -> list[Item]:
    horizon = float((p.setting("limits") or {}).get("warn_days", 30))
    return [*data.database_growth(p, horizon),
            guarded("R2 storage", lambda: data.r2_budget(p, horizon)),
            guarded("queue depth", lambda: data.queue_depth(p))]  # fmt: skip


def cost_tracking(p: Platform, logs_file: str = "") -> list[Item]:
    return costs.items(p, costs.measure(p, logs_file))


def growth(p: Platform) -> list[Item]:
    return [guarded("user growth", lambda: data.user_growth(p))]


def manual_items() -> list[Item]:
    return [
        manual("security updates", "pnpm audit (or npm audit) in the app repository"),
        manual("user feedback", "GitHub issues and the support mailbox since last week"),
        manual("database backup", "npx wrangler d1 export <database> --output backup-$(date +%Y-%m-%d).sql"),
    ]  # fmt: skip
