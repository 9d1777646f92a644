"""The fault registry: named, documented scenarios that change the sandbox's real behaviour.

A fault is looked up by name. `apply` changes state (a version deployed, an index
dropped, a file corrupted, a secret rotated, traffic shaped since the onset) and `heal`
undoes it. No runbook reads this table: runbooks find faults from the public APIs,
logs and data, the way an on-call engineer would.

Each area registers its faults from its own module (`faults/<area>.py`), imported at
the bottom of this file.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..state import State

Apply = Callable[["State", dict[str, Any]], None]
Heal = Callable[["State"], None]


@dataclass(frozen=True)
class Fault:
    name: str
    summary: str  # one line: what breaks
    symptom: str  # what an operator observes
    runbook: str  # the runbook that should find it
    verdict: str  # the cause that runbook should name
    profiles: tuple[str, ...]  # ("manuscript", "peptalk")
    apply: Apply
    heal: Heal
    options: dict[str, str] = field(default_factory=dict)  # option -> help


REGISTRY: dict[str, Fault] = {}


class UnknownFault(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this one reads as a sentence
        return str(self.args[0])


def register(fault: Fault) -> Fault:
    if fault.name in REGISTRY:
        raise ValueError(f"fault {fault.name!r} is registered twice")
    REGISTRY[fault.name] = fault
    return fault


def get(name: str) -> Fault:
    try:
        return REGISTRY[name]
    except KeyError:
        known = sorted(REGISTRY)
        hint = difflib.get_close_matches(name, known, n=1)
        did = f" Did you mean '{hint[0]}'?" if hint else ""
        raise UnknownFault(
            f"No fault named '{name}'.{did} Known faults: {', '.join(known)}. "
            "`opsbook sandbox faults` describes each."
        ) from None


def all_faults() -> list[Fault]:
    return [REGISTRY[k] for k in sorted(REGISTRY)]
