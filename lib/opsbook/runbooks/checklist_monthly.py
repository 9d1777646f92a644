"""checklist-monthly: seed 000 "Monitoring Checklist" monthly checks: security audit,
dependency updates, performance review, cost analysis, backup verification.
Run by `opsbook batch monthly`."""

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


def security(p: Platform) -> list[Item]:
    return [
        guarded("security audit: secrets", lambda: data.secrets_audit(p)),
        manual("security audit: access", "Cloudflare -> Manage Account -> Members and API Tokens; "
               "Stripe -> Team: remove people and tokens no longer needed"),
        manual("dependency updates", "npm audit (pnpm audit) and npm outdated in the app repository"),
    ]  # fmt: skip


def performance(p: Platform) -> Item:
    return guarded("performance review", lambda: traffic.p95_trend(p, traffic.minutes(p, 24)))


def backups() -> Item:
    return guarded("backup verification", data.backup_verified)
