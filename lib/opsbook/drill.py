"""Drills: prove each incident runbook against the fault it must find.

For each case:
1. restore the sandbox to a pristine seeded state and break it with the fault;
2. run the matching runbook without approval: the verdict must name the fault's cause,
   with the evidence that identifies it (the deployment, endpoint, table, peptide, user);
3. run it again approving every action it proposed: the remedy must apply and the
   runbook's own verification must find the symptom gone.
A healthy case runs a runbook on an unbroken sandbox: the verdict must be `healthy`.

This module is the proving side and may know the faults; runbooks never do. The
sandbox state is rebuilt once per seed and restored from a copy for every case.
"""

from __future__ import annotations

import importlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import config
from .runfolder import iso, utcnow, write_atomic, write_json

PROFILE_ENV = {"manuscript": "local", "peptalk": "local-peptalk"}
KEEP = {".lock", ".last_port", "server.log"}

# What a right-for-the-right-reason verdict must mention, per fault: a function of the
# fault's options giving strings that must appear in the verdict's evidence.
EXPECTED_EVIDENCE: dict[str, Callable[[dict[str, str]], list[str]]] = {
    "missing-index": lambda o: ["manuscripts", "author_id"],
    "one-endpoint-broken": lambda o: [
        o.get("endpoint")
        or ("/api/peptides/:slug" if o.get("profile") == "peptalk" else "/manuscripts/:id/analysis")
    ],
    "pubmed-timeout": lambda o: [o.get("peptide", "BPC-157")],
    "llm-error": lambda o: [o.get("peptide", "BPC-157")],
    "compliance-failed": lambda o: [o.get("peptide", "BPC-157")],
    "verification-tokens-missing": lambda o: ["verification_tokens"],
    "secret-missing": lambda o: [o.get("name", "")] if o.get("name") else [],
}


# Parameters a runbook needs that an operator would type, per runbook, from the fault's
# options: the user who cannot reach their PDFs is the one the fault affected.
PARAMETERS: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
    "subscription-access": lambda o: {"user_email": o.get("email", "prodtest1@example.com")},
}


@dataclass
class Case:
    fault: str | None
    runbook: str
    expected: str
    profile: str
    seed: int
    options: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.fault or 'healthy'}/{self.runbook}/{self.profile}/seed{self.seed}"

    @property
    def env(self) -> str:
        return PROFILE_ENV[self.profile]

    @property
    def parameters(self) -> dict[str, Any]:
        return PARAMETERS.get(self.runbook, lambda o: {})(self.options)


@dataclass
class Outcome:
    case: Case
    verdict: str | None = None
    verdict_ok: bool = False
    evidence_ok: bool = True
    missing_evidence: list[str] = field(default_factory=list)
    time_to_verdict_s: float | None = None
    remedy: list[str] = field(default_factory=list)
    remedy_applied: bool | None = None
    remedy_verified: bool | None = None
    no_remedy: str | None = None  # the runbook's declared reason there is no operator remedy
    runs: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        if self.error or not self.verdict_ok or not self.evidence_ok:
            return False
        if self.case.fault is None or self.no_remedy:
            return True
        return bool(self.remedy_applied and self.remedy_verified)


def _runbook_module(runbook: str) -> Any:
    try:
        return importlib.import_module(f"opsbook.runbooks.{runbook.replace('-', '_')}")
    except ModuleNotFoundError:
        return None


def _runbook_profiles(runbook: str, fallback: Iterable[str]) -> list[str]:
    """The profiles a runbook declares (`PROFILES`); without one, those of its faults."""
    module = _runbook_module(runbook)
    return list(getattr(module, "PROFILES", sorted(set(fallback))))


def no_remedy(runbook: str, cause: str) -> str | None:
    """Why `cause` has no operator remedy, if the runbook declares so in `NO_REMEDY`."""
    reasons = getattr(_runbook_module(runbook), "NO_REMEDY", {}) or {}
    return reasons.get(cause)


def fault_options(fault: Any, profile: str) -> dict[str, str]:
    """The options that break `fault` in `profile`'s app.

    A fault that applies to more than one profile must be told which: left to its
    default it would break the other app, and the runbook, which looks at this
    profile's resources, would rightly find nothing.
    """
    if "profile" in fault.options:
        return {"profile": profile}
    if len(fault.profiles) > 1:
        raise ValueError(
            f"fault {fault.name!r} applies to {', '.join(fault.profiles)} but takes no "
            "'profile' option: a drill cannot tell it which app to break"
        )
    return {}


def cases(
    faults: Iterable[str] | None = None,
    *,
    profiles: Iterable[str] = ("manuscript", "peptalk"),
    seeds: Iterable[int] = (7,),
    healthy: bool = True,
) -> list[Case]:
    """The drill cases: each fault on each profile that both it and its runbook declare
    (`Fault.profiles`, the runbook module's `PROFILES`), then, unless faults are named,
    each incident runbook on a healthy sandbox for every profile it declares."""
    from .sandbox import faultctl

    registry = faultctl.load_all()
    wanted = set(faults) if faults else None
    if wanted:
        known = {f.name for f in registry}
        for name in wanted - known:
            faultctl.get(name)  # raises UnknownFault with the known names
    profiles = list(profiles)
    runbooks: dict[str, set[str]] = {}
    for fault in registry:
        runbooks.setdefault(fault.runbook, set()).update(fault.profiles)
    declared = {rb: _runbook_profiles(rb, fp) for rb, fp in runbooks.items()}
    out: list[Case] = []
    for seed in seeds:
        for fault in registry:
            if wanted is not None and fault.name not in wanted:
                continue
            for profile in fault.profiles:
                if profile in profiles and profile in declared[fault.runbook]:
                    options = fault_options(fault, profile)
                    out.append(
                        Case(fault.name, fault.runbook, fault.verdict, profile, seed, options)
                    )
        if healthy and wanted is None:
            for runbook in sorted(declared):
                for profile in declared[runbook]:
                    if profile in profiles:
                        out.append(Case(None, runbook, "healthy", profile, seed))
    return out


# ---- the sandbox, restored per case ----------------------------------------------------
class Sandboxes:
    """One pristine copy per seed; `prepare(case)` restores it, starts it, breaks it."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = Path(state_dir or config.sandbox_dir())
        self._tmp = Path(tempfile.mkdtemp(prefix="opsbook-drill-"))
        self._pristine: dict[int, Path] = {}
        self._clean: tuple[int, str] | None = None  # (seed, profile) left healthy by the last case

    def pristine(self, seed: int) -> Path:
        if seed not in self._pristine:
            from .sandbox.state import State

            path = self._tmp / f"seed{seed}"
            State(path).rebuild(seed)
            self._pristine[seed] = path
        return self._pristine[seed]

    def prepare(self, case: Case) -> None:
        from . import sandbox
        from .sandbox import faultctl
        from .sandbox.state import State

        if case.fault is None and self._clean == (case.seed, case.profile):
            return  # a healthy case after a healthy case changes nothing: no restore needed
        sandbox.stop(self.state_dir)
        _restore(self.pristine(case.seed), self.state_dir)
        sandbox.start(self.state_dir)
        if case.fault is not None:
            faultctl.break_fault(State(self.state_dir), case.fault, case.options)
            self._clean = None
        else:
            self._clean = (case.seed, case.profile)

    def forget(self) -> None:
        """The next `prepare` restores the pristine copy, even for a healthy case."""
        self._clean = None

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


def _restore(pristine: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in target.iterdir():
        if entry.name in KEEP:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for entry in pristine.iterdir():
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name)
        else:
            shutil.copy2(entry, target / entry.name)


# ---- one case ----------------------------------------------------------------------------
def _evidence_text(record: dict[str, Any]) -> str:
    verdict = record.get("verdict") or {}
    return json.dumps([verdict.get("evidence"), verdict.get("remedy")], default=str)


def _time_to_verdict(record: dict[str, Any]) -> float | None:
    from datetime import datetime

    verdict = record.get("verdict")
    started = record["run"].get("started")
    if not verdict or not started or not verdict.get("at"):
        return None
    return round(
        (datetime.fromisoformat(verdict["at"]) - datetime.fromisoformat(started)).total_seconds(), 2
    )


def run_case(case: Case, boxes: Sandboxes, *, incident_prefix: str = "DRILL") -> Outcome:
    from . import runner

    outcome = Outcome(case)
    incident = f"{incident_prefix}-{utcnow():%Y%m%d%H%M%S}-{case.fault or 'healthy'}-{case.profile}"
    try:
        boxes.prepare(case)
        first = runner.run(case.runbook, case.env, case.parameters, incident=incident)
        outcome.runs.append(first.run_id)
        record = first.record
        if first.status != "completed":
            err = record.get("error") or {}
            outcome.error = f"diagnosis run {first.status}: {err.get('ename')}: {err.get('evalue')}"
            return outcome
        outcome.verdict = (record.get("verdict") or {}).get("cause")
        outcome.verdict_ok = outcome.verdict == case.expected
        outcome.time_to_verdict_s = _time_to_verdict(record)
        expected = EXPECTED_EVIDENCE.get(case.fault or "", lambda o: [])(
            {"profile": case.profile, **case.options}
        )
        text = _evidence_text(record)
        outcome.missing_evidence = [e for e in expected if e and e not in text]
        outcome.evidence_ok = not outcome.missing_evidence
        if case.fault is None:
            # no false alarm: nothing may be proposed on a healthy platform
            proposed = [a["id"] for a in record.get("actions", []) if a["mode"] == "dry-run"]
            if proposed:
                outcome.error = f"healthy sandbox, but the runbook proposed: {', '.join(proposed)}"
            return outcome
        outcome.remedy = sorted(
            {a["id"] for a in record.get("actions", []) if a["mode"] == "dry-run"}
        )
        if not outcome.remedy:
            # only a declared "no operator remedy" (wait, escalate, tell the user) passes
            outcome.no_remedy = no_remedy(case.runbook, case.expected)
            outcome.remedy_applied = None if outcome.no_remedy else False
            return outcome
        second = runner.run(
            case.runbook, case.env, case.parameters, incident=incident, approve=outcome.remedy
        )
        outcome.runs.append(second.run_id)
        rec2 = second.record
        modes = {a["id"]: a["mode"] for a in rec2.get("actions", []) if a["id"] in outcome.remedy}
        outcome.remedy_applied = bool(modes) and all(
            m in ("applied", "skipped") for m in modes.values()
        )
        verification = rec2.get("verification") or {}
        outcome.remedy_verified = bool(verification.get("passed"))
        if second.status != "completed":
            err = rec2.get("error") or {}
            outcome.error = f"remedy run {second.status}: {err.get('ename')}: {err.get('evalue')}"
    except Exception as exc:  # one broken case must not stop the matrix
        outcome.error = f"{type(exc).__name__}: {exc}"
    return outcome


# ---- the matrix ----------------------------------------------------------------------------
@dataclass
class Matrix:
    outcomes: list[Outcome]
    started: str
    ended: str
    path: Path | None = None

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "fault": o.case.fault or "(healthy)",
                "runbook": o.case.runbook,
                "profile": o.case.profile,
                "seed": o.case.seed,
                "expected": o.case.expected,
                "verdict": o.verdict or "-",
                "evidence": "ok" if o.evidence_ok else "missing " + ", ".join(o.missing_evidence),
                "time_to_verdict_s": o.time_to_verdict_s,
                "remedy": ", ".join(o.remedy) or (f"none: {o.no_remedy}" if o.no_remedy else "-"),
                "remedy_verified": "-"
                if (o.case.fault is None or o.no_remedy)
                else o.remedy_verified,
                "result": "pass" if o.passed else "FAIL",
                "error": o.error or "",
                "runs": o.runs,
            }
            for o in self.outcomes
        ]


def run_matrix(
    selected: list[Case],
    *,
    state_dir: Path | None = None,
    outputs: Path | None = None,
    on_outcome: Callable[[Outcome, int, int], None] | None = None,
) -> Matrix:
    boxes = Sandboxes(state_dir)
    started = iso()
    outcomes: list[Outcome] = []
    # healthy cases first per (seed, profile), so they share one restored sandbox
    ordered = sorted(
        selected, key=lambda c: (c.seed, c.profile, c.fault is not None, c.fault or "", c.runbook)
    )
    try:
        for i, case in enumerate(ordered):
            outcome = run_case(case, boxes)
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome, i + 1, len(ordered))
    finally:
        boxes.close()
    matrix = Matrix(outcomes, started, iso())
    matrix.path = write_matrix(matrix, outputs or config.outputs_dir())
    return matrix


def write_matrix(matrix: Matrix, outputs: Path) -> Path:
    from .drill_report import matrix_html

    folder = outputs / "drills" / f"{utcnow():%Y%m%dT%H%M%SZ}"
    folder.mkdir(parents=True, exist_ok=True)
    rows = matrix.rows()
    write_json(
        folder / "matrix.json",
        {
            "started": matrix.started,
            "ended": matrix.ended,
            "rows": rows,
            "cases": [asdict(o.case) for o in matrix.outcomes],
        },
    )
    write_atomic(folder / "matrix.html", matrix_html(rows, matrix.started, outputs, folder))
    return folder / "matrix.html"
