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


def _journal(seen: dict[str, Any]) -> list[dict[str, Any]]:
    """New events in the journal of the run being executed."""
    if seen.get("dir") is None:
        return []
    try:
        lines = (seen["dir"] / "events.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    new = []
    for line in lines[seen["n"] :]:
        with contextlib.suppress(json.JSONDecodeError):
            new.append(json.loads(line))
    seen["n"] = len(lines)
    return new


@contextlib.contextmanager
def progress_display(runbook: str) -> Iterator[Callable[[str, int, int, str], None]]:
    """Yields the runner's on_cell callback: a live bar on a terminal; on a pipe or in a log,
    one line per section of the procedure and one per finished step."""
    c = console()
    seen: dict[str, Any] = {}
    section = {"name": "", "printed": ""}
    if not c.is_terminal:

        def plain(event: str, index: int, total: int, label: str) -> None:
            if event == "folder":
                seen.update(dir=Path(label), n=0)
                return
            if label:
                section["name"] = label
                return
            if event == "start" and section["name"] != section["printed"]:
                c.print(f"[{index + 1}/{total}] {section['name']}", soft_wrap=True)
                section["printed"] = section["name"]
            if event == "complete":
                for ev in _journal(seen):
                    if ev.get("type") == "step":
                        mark = "✔" if ev.get("status") == "passed" else "✘"
                        c.print(
                            f"    {mark} {ev.get('title')} ({ev.get('duration_s', 0):.2f} s)",
                            soft_wrap=True,
                        )

        yield plain
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        SpinnerColumn(),
        TextColumn(f"[bold]{runbook}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=c,
        transient=True,
    )
    task = progress.add_task("starting kernel…", total=None)

    def on_cell(event: str, index: int, total: int, label: str) -> None:
        if event == "folder":
            seen.update(dir=Path(label), n=0)
            return
        if label:
            section["name"] = label
        for ev in _journal(seen) if event == "complete" else []:
            if ev.get("type") == "step":
                mark = "[green]✔[/]" if ev.get("status") == "passed" else "[red]✘[/]"
                progress.console.print(
                    f"  {mark} {ev.get('title')} [dim]{ev.get('duration_s', 0):.2f} s[/]"
                )
        progress.update(
            task,
            total=total,
            completed=index + (event == "complete"),
            description=section["name"][:60],
        )

    with progress:
        yield on_cell


def print_result(result: Any) -> None:
    c = console()
    record = result.record
    run = record["run"]
    colour = {"completed": "green", "failed": "red", "aborted": "yellow", "open": "cyan"}.get(
        run["status"], "white"
    )
    duration = f" in {run['duration_s']:.1f} s" if run.get("duration_s") is not None else ""
    c.print(
        f"[bold]{run['runbook']}[/] on [bold]{run['env']}[/]: [{colour}]{run['status']}[/]{duration}  (run {run['id']})"
    )
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
            c.print(
                f"  [yellow]proposed[/] {act['id']} ({act['risk']}): approve with [bold]{act.get('approve_with')}[/]"
            )
        elif act["risk"] != "read":
            c.print(f"  action {act['id']}: {act['mode']}")
    c.print(f"  record: {result.html}")


def _items(evidence: Any) -> list[str]:
    from ..display import evidence_items

    return evidence_items(evidence)
