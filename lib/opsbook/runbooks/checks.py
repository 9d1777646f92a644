"""Checklist items shared by capacity, costs and checklist-daily / -weekly / -monthly.

An item is one line of a checklist: pass / warn / fail with its evidence, or `manual`
(a check no API can answer, listed with what to do). `record(items)` turns them into
findings (info / warning / error) and `verdict(items)` into (cause, evidence): healthy
when nothing failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("pass", "warn", "fail", "manual")
SEVERITY = {"pass": "info", "warn": "warning", "fail": "error", "manual": "info"}


@dataclass
class Item:
    name: str
    status: str  # pass | warn | fail | manual
    summary: str  # one line: what was measured, against what
    evidence: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {"item": self.name, "status": self.status, "summary": self.summary}


def manual(name: str, instructions: str) -> Item:
    return Item(name, "manual", f"manual: {instructions}")


def guarded(name: str, fn: Callable[[], Item]) -> Item:
    """Run one check; an API that fails makes the item `warn` (not measured), never a crash."""
    try:
        return fn()
    except Exception as exc:  # one broken source must not hide the other items
        return Item(name, "warn", f"not measured: {type(exc).__name__}: {exc}"[:300])


def record(items: Sequence[Item]) -> None:
    from .. import steps

    for it in items:
        steps.finding(SEVERITY[it.status], f"{it.name}: {it.summary}", it.evidence or None)


def rows(items: Sequence[Item]) -> list[dict[str, Any]]:
    return [it.row() for it in items]


def counts(items: Sequence[Item]) -> dict[str, int]:
    return {s: sum(1 for it in items if it.status == s) for s in STATUSES}


def verdict(items: Sequence[Item], cause: str = "checks-failed") -> tuple[str, list[str]]:
    failed = [it for it in items if it.status == "fail"]
    c = counts(items)
    tally = f"{c['pass']} pass, {c['warn']} warn, {c['fail']} fail, {c['manual']} manual"
    if failed:
        return cause, [f"{it.name}: {it.summary}" for it in failed] + [tally]
    return "healthy", [tally] + [f"{it.name}: {it.summary}" for it in items if it.status == "warn"]
