"""What a runbook notebook calls: steps, findings, a verdict and guarded actions.

    from opsbook import steps
    steps.start("api-down", causes=CAUSES, approve=approve)
    with steps.step("Check the deployments"):
        ...
    steps.finding("error", "5xx since 10:02", evidence={"rate": 0.98})
    steps.verdict("bad-deploy", evidence=[...], remedy="Roll back to version 41")
    steps.action("rollback", "reversible", fn=do_rollback, preview={...})
    steps.done()

Everything is recorded into the run folder's journal (`events.jsonl`) when the kernel
runs inside one (headless runs, and walkthroughs prepared by `opsbook plan`), and in
memory otherwise. Actions other than `read` run only when their id is approved; any
other call is a dry run that shows the exact call and how to approve it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import display as ui
from .runfolder import CONTEXT, append_event, iso, read_context, read_events

RISKS = ("read", "reversible", "destructive", "irreversible")
SEVERITIES = ("info", "warning", "error", "critical")
ALWAYS_ALLOWED = ("healthy", "unknown")


def preview_key(action_id: str, preview: Any) -> str:
    blob = json.dumps([action_id, preview], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class ActionResult:
    id: str
    risk: str
    mode: str  # applied | dry-run | skipped | failed | refused
    preview: Any
    result: Any = None
    error: str | None = None

    @property
    def applied(self) -> bool:
        return self.mode in ("applied", "skipped")


@dataclass
class Session:
    """The run this kernel records into."""

    run_dir: Path | None = None
    context: dict[str, Any] = field(default_factory=dict)
    runbook: str = ""
    causes: dict[str, str] = field(default_factory=dict)
    approved: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    step_count: int = 0
    current_step: str | None = None

    def record(self, event: dict[str, Any]) -> None:
        # seq orders events recorded within the same millisecond (timestamps tie on fast runs)
        event = {"at": iso(), "seq": len(self.events), **event}
        if self.current_step and "step" not in event and event["type"] != "step":
            event["step"] = self.current_step
        self.events.append(event)
        if self.run_dir is not None:
            append_event(self.run_dir, event)

    @property
    def mode(self) -> str:
        return str(self.context.get("mode", "notebook"))


_SESSION: Session | None = None


def _discover() -> Session:
    run_dir: Path | None = None
    env_dir = os.environ.get("OPSBOOK_RUN_DIR")
    if env_dir and (Path(env_dir) / CONTEXT).is_file():
        run_dir = Path(env_dir)
    elif Path(CONTEXT).is_file():
        run_dir = Path.cwd()
    if run_dir is None:
        return Session()
    context = read_context(run_dir)
    return Session(
        run_dir=run_dir,
        context=context,
        runbook=context.get("runbook", ""),
        approved=list(context.get("approved", [])),
        events=read_events(run_dir),
    )


def session() -> Session:
    global _SESSION
    if _SESSION is None:
        _SESSION = _discover()
    return _SESSION


def reset() -> None:
    """Forget the current session (tests, or re-running a notebook top to bottom)."""
    global _SESSION
    _SESSION = None


PRIORITIES = ("P0", "P1", "P2", "P3")


def start(
    runbook: str,
    causes: Mapping[str, str] | None = None,
    approve: list[str] | tuple[str, ...] | None = None,
    severity: str | None = None,
) -> Session:
    """Declare the runbook, its verdict list (cause -> meaning), the approved actions and,
    for an incident runbook, the incident's priority (P0-P3) that goes into the record."""
    if severity is not None and severity not in PRIORITIES:
        raise ValueError(f"severity must be one of {', '.join(PRIORITIES)}; got {severity!r}")
    s = session()
    s.runbook = runbook
    s.causes = dict(causes or {})
    if approve is not None:
        s.approved = [str(a) for a in approve]
    event: dict[str, Any] = {
        "type": "start",
        "runbook": runbook,
        "causes": sorted(s.causes),
        "approved": s.approved,
    }
    if severity is not None:
        event["severity"] = severity
    s.record(event)
    return s


@contextmanager
def step(title: str) -> Iterator[None]:
    """A timed step; records passed, or failed with the error (which is re-raised)."""
    s = session()
    s.step_count += 1
    number = s.step_count
    started, t0 = iso(), time.perf_counter()
    s.current_step = title
    ui.show(
        f'<div class="ob-step"><span class="ob-step-n">Step {number}</span> {ui.esc(title)}</div>',
        f"── Step {number}: {title}",
    )
    status, error = "passed", None
    try:
        yield
    except BaseException as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        duration = round(time.perf_counter() - t0, 3)
        s.current_step = None
        s.record(
            {
                "type": "step",
                "title": title,
                "status": status,
                "started": started,
                "ended": iso(),
                "duration_s": duration,
                "error": error,
            }
        )
        text = f"{ui.icon(status)} {title} — {status} in {duration:.2f} s"
        ui.show(
            f'<div class="ob-step-end">{ui.badge(status)} {ui.esc(title)} '
            f'<span class="ob-dim">{duration:.2f} s</span>'
            + (f'<pre class="ob-error">{ui.esc(error)}</pre>' if error else "")
            + "</div>",
            text + (f"\n   {error}" if error else ""),
        )


def finding(severity: str, message: str, evidence: Any = None) -> None:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}; got {severity!r}")
    s = session()
    s.record({"type": "finding", "severity": severity, "message": message, "evidence": evidence})
    items = ui.evidence_items(evidence)
    ui.show(
        f'<div class="ob-finding">{ui.badge(severity)} {ui.esc(message)}{ui.html_list(items)}</div>',
        f"[{severity.upper()}] {message}" + "".join(f"\n   - {i}" for i in items),
    )


def verdict(cause: str, evidence: Any = None, remedy: str | None = None) -> None:
    """Name the cause, from the runbook's declared list, or `healthy`, or `unknown`."""
    s = session()
    allowed = [*s.causes, *ALWAYS_ALLOWED]
    if cause not in allowed:
        raise ValueError(
            f"'{cause}' is not a declared cause of runbook '{s.runbook or '?'}'. "
            f"Declared: {', '.join(allowed)}. Evidence that fits none is verdict 'unknown'."
        )
    meaning = s.causes.get(
        cause,
        {"healthy": "no problem found", "unknown": "no declared cause fits the evidence"}.get(
            cause, ""
        ),
    )
    s.record(
        {
            "type": "verdict",
            "cause": cause,
            "meaning": meaning,
            "evidence": evidence,
            "remedy": remedy,
        }
    )
    items = ui.evidence_items(evidence)
    status = "healthy" if cause == "healthy" else ("warning" if cause == "unknown" else "failed")
    ui.show(
        f'<div class="ob-verdict ob-verdict-{ui.BADGES.get(status, "info")}">'
        f'<div class="ob-verdict-title">Verdict: {ui.badge(cause)} {ui.esc(meaning)}</div>'
        f"{ui.html_list(items)}"
        + (
            f'<div class="ob-remedy"><strong>Remedy:</strong> {ui.esc(remedy)}</div>'
            if remedy
            else ""
        )
        + "</div>",
        f"VERDICT: {cause} — {meaning}"
        + "".join(f"\n   - {i}" for i in items)
        + (f"\n   Remedy: {remedy}" if remedy else ""),
    )


def _already_applied(s: Session, action_id: str, key: str) -> str | None:
    for event in s.events:
        if (
            event.get("type") == "action"
            and event.get("id") == action_id
            and event.get("key") == key
            and event.get("mode") == "applied"
        ):
            return str(s.context.get("id", "this run"))
    for prior in s.context.get("prior_actions", []):
        if prior.get("id") == action_id and prior.get("key") == key:
            return str(prior.get("run_id"))
    return None


def _approval_hint(s: Session, action_id: str) -> str:
    """The exact command that re-runs this run with the action approved."""
    if s.mode == "interactive":
        return f"add '{action_id}' to `approve` in the parameters cell and run this cell again"
    import shlex

    ctx = s.context
    parts = ["opsbook", "run", s.runbook or ctx.get("runbook", "RUNBOOK")]
    if ctx.get("env") and ctx.get("env") != "local":
        parts += ["--env", str(ctx["env"])]
    for name, value in (ctx.get("overrides") or {}).items():
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        parts += ["-p", f"{name}={text}"]
    if ctx.get("incident"):
        parts += ["--incident", str(ctx["incident"])]
    for approved in [*s.approved, action_id]:
        parts += ["--approve", approved]
    return shlex.join(parts)


def action(
    action_id: str,
    risk: str,
    fn: Callable[[], Any],
    preview: Any,
) -> ActionResult:
    """Run `fn` if the action is `read` or approved; otherwise show the dry run."""
    if risk not in RISKS:
        raise ValueError(f"risk must be one of {', '.join(RISKS)}; got {risk!r}")
    s = session()
    key = preview_key(action_id, preview)
    preview_lines = ui.evidence_items(preview)
    base = {"type": "action", "id": action_id, "risk": risk, "preview": preview, "key": key}
    if risk != "read" and action_id not in s.approved:
        hint = _approval_hint(s, action_id)
        s.record({**base, "mode": "dry-run", "approve_with": hint})
        ui.show(
            f'<div class="ob-action">{ui.badge("dry-run")} <strong>{ui.esc(action_id)}</strong> '
            f'<span class="ob-dim">risk: {ui.esc(risk)}</span>{ui.html_list(preview_lines)}'
            f'<div class="ob-hint">Not approved, nothing was changed. To apply: <code>{ui.esc(hint)}</code></div></div>',
            f"DRY RUN {action_id} (risk: {risk}) — not approved, nothing changed"
            + "".join(f"\n   {line}" for line in preview_lines)
            + f"\n   To apply: {hint}",
        )
        return ActionResult(action_id, risk, "dry-run", preview)
    if risk != "read" and (done_in := _already_applied(s, action_id, key)):
        s.record({**base, "mode": "skipped", "result": f"already applied in run {done_in}"})
        ui.show(
            f'<div class="ob-action">{ui.badge("skipped")} <strong>{ui.esc(action_id)}</strong> already applied in run {ui.esc(done_in)}; not repeated.</div>',
            f"SKIPPED {action_id}: already applied in run {done_in}; not repeated",
        )
        return ActionResult(
            action_id, risk, "skipped", preview, result=f"already applied in run {done_in}"
        )
    approved_by = s.context.get("operator") if risk != "read" else None
    try:
        result = fn()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        s.record(
            {
                **base,
                "mode": "failed",
                "error": error,
                "approved_by": approved_by,
                "traceback": traceback.format_exc(limit=5),
            }
        )
        ui.show(
            f'<div class="ob-action">{ui.badge("failed")} <strong>{ui.esc(action_id)}</strong> <pre class="ob-error">{ui.esc(error)}</pre></div>',
            f"FAILED {action_id}: {error}",
        )
        raise
    s.record({**base, "mode": "applied", "result": result, "approved_by": approved_by})
    ui.show(
        f'<div class="ob-action">{ui.badge("applied")} <strong>{ui.esc(action_id)}</strong> '
        f'<span class="ob-dim">risk: {ui.esc(risk)}</span>{ui.html_list(ui.evidence_items(result))}</div>',
        f"APPLIED {action_id} (risk: {risk})"
        + "".join(f"\n   {i}" for i in ui.evidence_items(result)),
    )
    return ActionResult(action_id, risk, "applied", preview, result=result)


def verify(passed: bool, evidence: Any = None, *, what: str = "the symptom is gone") -> bool:
    """After a remedy: record whether the symptom is gone, with the evidence of the re-check."""
    s = session()
    s.record({"type": "verification", "passed": bool(passed), "what": what, "evidence": evidence})
    items = ui.evidence_items(evidence)
    status = "passed" if passed else "failed"
    ui.show(
        f'<div class="ob-finding">{ui.badge(status)} Verification: {ui.esc(what)}{ui.html_list(items)}</div>',
        f"VERIFY {'OK' if passed else 'FAILED'}: {what}" + "".join(f"\n   - {i}" for i in items),
    )
    return bool(passed)


def latest_verdict() -> dict[str, Any] | None:
    for event in reversed(session().events):
        if event.get("type") == "verdict":
            return event
    return None


def done() -> None:
    """The last cell. Summarises; in a walkthrough, also finishes the record."""
    s = session()
    v = latest_verdict()
    actions = [e for e in s.events if e.get("type") == "action"]
    summary = (f"Verdict: {v['cause']}" if v else "No verdict was given.") + "".join(
        f"\n - {a['id']}: {a['mode']}" for a in actions
    )
    if s.run_dir is not None and s.mode == "interactive":
        from .runner import finish

        result = finish(s.run_dir, from_kernel=True)
        summary += f"\nRecord written: {result.html}"
    ui.show(f'<div class="ob-done"><pre>{ui.esc(summary)}</pre></div>', summary)
