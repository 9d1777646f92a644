"""Breaking and healing the sandbox: the registry's faults applied to a state folder.

    break_fault(state, "bad-deploy", {"minutes_ago": "20"})  -> Fault
    heal(state)                 # every active fault, newest first
    heal(state, "bad-deploy")   # one
    active(state)               # [{name, options, applied_at}]

Which faults are active is kept in control.sqlite (`active_faults`), so the CLI, tests
and drills in other processes see the same thing. Runbooks never call this module.
"""

from __future__ import annotations

import importlib
import json
import time
from typing import Any

from ..errors import InputError
from . import faults
from .state import State

AREAS = ("platform", "data", "stripe", "app", "traffic")


def load_all() -> list[faults.Fault]:
    """Import every area's fault module (those that exist) and list the registry."""
    for area in AREAS:
        try:
            importlib.import_module(f"{faults.__name__}.{area}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{faults.__name__}.{area}":
                raise
    return faults.all_faults()


def get(name: str) -> faults.Fault:
    """The fault named `name`; an unknown name raises UnknownFault listing the known ones."""
    load_all()
    return faults.get(name)


def _check_options(fault: faults.Fault, options: dict[str, str]) -> None:
    unknown = sorted(set(options) - set(fault.options))
    if unknown:
        known = ", ".join(f"{k} ({v})" for k, v in fault.options.items()) or "none"
        raise InputError(
            f"Fault '{fault.name}' has no option {', '.join(map(repr, unknown))}. "
            f"Its options: {known}."
        )
    profile = options.get("profile")
    if profile is not None and profile not in fault.profiles:
        raise InputError(
            f"Fault '{fault.name}' applies to profiles {', '.join(fault.profiles)}, "
            f"not {profile!r}."
        )


def break_fault(state: State, name: str, options: dict[str, str] | None = None) -> faults.Fault:
    """Apply a fault. Breaking one that is already active heals it first."""
    fault = get(name)
    opts = dict(options or {})
    _check_options(fault, opts)
    if any(a["name"] == name for a in active(state)):
        heal(state, name)
    fault.apply(state, opts)
    with state.tx() as db:
        db.execute(
            "INSERT OR REPLACE INTO active_faults(name, options, applied_at) VALUES (?,?,?)",
            (name, json.dumps(opts), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
        )
    return fault


def active(state: State) -> list[dict[str, Any]]:
    with state.read() as db:
        rows = db.execute(
            "SELECT name, options, applied_at FROM active_faults ORDER BY applied_at, rowid"
        ).fetchall()
    return [
        {"name": r["name"], "options": json.loads(r["options"]), "applied_at": r["applied_at"]}
        for r in rows
    ]


def heal(state: State, name: str | None = None) -> list[str]:
    """Heal one fault (whether or not it is marked active) or every active one."""
    if name is not None:
        targets = [get(name)]
    else:
        load_all()
        targets = [faults.get(a["name"]) for a in reversed(active(state))]
    for fault in targets:
        fault.heal(state)
        with state.tx() as db:
            db.execute("DELETE FROM active_faults WHERE name = ?", (fault.name,))
    return [f.name for f in targets]
