"""Terminal output: a live progress line while a run executes, and the run's summary."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_CONSOLE: Any = None


def console() -> Any:
    global _CONSOLE
    if _CONSOLE is None:
        from rich.console import Console

        _CONSOLE = Console(highlight=False)
    return _CONSOLE


def _latest_step(run_dir: Path | None) -> str:
    if run_dir is None:
        return ""
    path = run_dir / "events.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        with contextlib.suppress(json.JSONDecodeError):
            event = json.loads(line)
            if event.get("type") == "step":
                return f"{'✔' if event.get('status') == 'passed' else '✘'} {event.get('title')}"
    return ""


@contextlib.contextmanager
def progress_display(runbook: str) -> Iterator[Callable[[str, int, int, str], None]]:
    """Yields the runner's on_cell callback. A live bar on a terminal, plain lines otherwise."""
    c = console()
    if not c.is_terminal:
        def plain(event: str, index: int, total: int, label: str) -> None:
            if event == "start":
                c.print(f"[{index + 1}/{total}] {label}", soft_wrap=True)

        yield plain
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn(f"[bold]{runbook}[/]"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
                        console=c, transient=True)
    task = progress.add_task("starting kernel…", total=None)
    state: dict[str, Any] = {}

    def on_cell(event: str, index: int, total: int, label: str) -> None:
        if "dir" not in state:
            import os

            state["dir"] = Path(os.getcwd()) if Path("context.json").exists() else None
        step = _latest_step(state.get("dir"))
        progress.update(task, total=total, completed=index + (event == "complete"),
                        description=(label or step)[:60])

    with progress:
        yield on_cell


def print_result(result: Any) -> None:
    c = console()
    record = result.record
    run = record["run"]
    colour = {"completed": "green", "failed": "red", "aborted": "yellow", "open": "cyan"}.get(run["status"], "white")
    duration = f" in {run['duration_s']:.1f} s" if run.get("duration_s") is not None else ""
    c.print(f"[bold]{run['runbook']}[/] on [bold]{run['env']}[/]: [{colour}]{run['status']}[/]{duration}  (run {run['id']})")
    err = record.get("error")
    if err:
        where = f" in cell {err['cell_index']}" if err.get("cell_index") is not None else ""
        c.print(f"  [red]error{where}:[/] {err.get('ename')}: {err.get('evalue')}")
    verdict = record.get("verdict")
    if verdict:
        vcol = "green" if verdict["cause"] == "healthy" else "red"
        c.print(f"  verdict: [{vcol}]{verdict['cause']}[/] — {verdict.get('meaning') or ''}")
        for item in _items(verdict.get("evidence")):
            c.print(f"    - {item}", soft_wrap=True)
        if verdict.get("remedy"):
            c.print(f"  remedy: {verdict['remedy']}")
    for finding in record.get("findings", []):
        if finding["severity"] in ("error", "critical", "warning") and not verdict:
            c.print(f"  [{finding['severity']}] {finding['message']}")
    for act in record.get("actions", []):
        if act["mode"] == "dry-run":
            c.print(f"  [yellow]proposed[/] {act['id']} ({act['risk']}): approve with [bold]{act.get('approve_with')}[/]")
        elif act["risk"] != "read":
            c.print(f"  action {act['id']}: {act['mode']}")
    c.print(f"  record: {result.html}")


def _items(evidence: Any) -> list[str]:
    from ..display import evidence_items

    return evidence_items(evidence)
