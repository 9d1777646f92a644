"""`opsbook batch NAME_OR_FILE`: run a batch file's jobs in parallel, with one summary."""

from __future__ import annotations

import sys
from typing import Any

import click

from .output import console

STATE_STYLE = {
    "pending": "dim",
    "running": "cyan",
    "ok": "green",
    "problem": "yellow",
    "failed": "red",
    "aborted": "yellow",
    "error": "red",
    "not-run": "dim",
}


def _label(state: Any) -> str:
    return state.outcome or state.state


def _line(state: Any, live: bool = False) -> str:
    job = state.job
    elapsed = state.elapsed
    shown = elapsed is not None and (live or state.state == "done")
    secs = f" {elapsed:.1f} s" if shown else ""
    verdict = f" ({state.verdict})" if state.verdict else ""
    return f"[{job.n}] {job.runbook} on {job.env}: {_label(state)}{verdict}{secs}"


@click.command(
    epilog="""
\b
Exit codes:
  0    every run ok (healthy, or nothing wrong found)
  1    a run failed (a cell raised, a timeout, a run that could not start)
  2    bad batch file: nothing ran, nothing was archived
  3    a run found a problem (its verdict is not `healthy`)
  130  interrupted: running jobs wrote their records, the summary is written
\b
Examples:
  opsbook batch daily                      params/batches/daily.yaml
  opsbook batch weekly --env local          every job on `local` only
  opsbook batch my-batch.yaml --parallel 1
"""
)
@click.argument("batch", metavar="NAME_OR_FILE")
@click.option(
    "--parallel", type=int, metavar="N", help="Jobs at once (default: the file's, else 2)."
)
@click.option(
    "--env",
    "-e",
    "envs",
    multiple=True,
    metavar="ENV",
    help="Run every item on these environments instead of the file's (repeatable).",
)
def batch(batch: str, parallel: int | None, envs: tuple[str, ...]) -> None:
    """Run a batch of runbooks over environments, in parallel, and write one summary.

    NAME is params/batches/NAME.yaml; a path to a YAML file works too. The whole file
    and every job's parameters are checked before anything runs. The summary lands in
    outputs/batches/<time>_<name>/summary.html and summary.json.
    """
    from ..batch import run_batch
    from ..errors import RunAborted

    c = console()
    try:
        if c.is_terminal:
            result = _live(batch, parallel, envs)
        else:

            def plain(state: Any) -> None:
                if state.state != "pending":
                    c.print(_line(state), soft_wrap=True, highlight=False)

            result = run_batch(batch, parallel=parallel, envs=envs, on_event=plain)
    except RunAborted as exc:
        result = exc.result  # type: ignore[attr-defined]
    _print_summary(result)
    sys.exit(result.exit_code)


def _live(batch: str, parallel: int | None, envs: tuple[str, ...]) -> Any:
    from rich.live import Live
    from rich.table import Table

    from ..batch import run_batch

    seen: dict[int, Any] = {}

    def table() -> Table:
        t = Table.grid(padding=(0, 1))
        for state in sorted(seen.values(), key=lambda s: s.job.n):
            label = _label(state)
            spin = "⠿" if state.state == "running" else " "
            t.add_row(spin, f"[{STATE_STYLE.get(label, 'white')}]{_line(state, live=True)}[/]")
        return t

    with Live(get_renderable=table, console=console(), refresh_per_second=4, transient=False):
        return run_batch(
            batch,
            parallel=parallel,
            envs=envs,
            on_event=lambda s: seen.__setitem__(s.job.n, s),
        )


def _print_summary(result: Any) -> None:
    c = console()
    counts = ", ".join(f"{n} {o}" for o, n in result.counts.items() if n)
    c.print(f"[bold]{result.name}[/]: {len(result.jobs)} runs, {counts}")
    for state in result.jobs:
        if state.error:
            c.print(f"  [{state.job.n}] {state.job.runbook} on {state.job.env}: {state.error}")
    c.print(f"  summary: {result.summary_html}")
