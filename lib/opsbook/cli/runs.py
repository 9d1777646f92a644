"""`opsbook runs list | show | open`: the archive."""

from __future__ import annotations

import json
import webbrowser
from datetime import UTC, datetime, timedelta

import click

from .output import console


def _since(text: str | None) -> datetime | None:
    """`2026-11-20`, an ISO time, or a relative `30m`, `6h`, `2d`."""
    if not text:
        return None
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if text[-1:] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date (2026-11-20), a time (2026-11-20T10:00) or an age (30m, 6h, 2d)."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@click.group()
def runs() -> None:
    """The archive of runs: list, show and open records."""


@runs.command("list")
@click.option("--runbook", help="Only runs of this runbook.")
@click.option(
    "--status",
    type=click.Choice(["completed", "failed", "aborted", "open"]),
    help="Only runs with this status.",
)
@click.option("--incident", help="Only runs of this incident id.")
@click.option(
    "--since", help="Only runs started since: a date, an ISO time, or an age like 6h, 2d."
)
@click.option(
    "--limit", default=50, show_default=True, help="At most this many runs, newest first."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_runs(
    runbook: str | None,
    status: str | None,
    incident: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List archived runs, newest first."""
    from .. import config
    from ..index import Index

    with Index(config.outputs_dir()) as index:
        rows = index.list(
            runbook=runbook, status=status, incident=incident, since=_since(since), limit=limit
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.table import Table

    table = Table(title=f"Runs in {config.outputs_dir()}")
    table.add_column("run", no_wrap=True)
    for col in ("runbook", "env", "incident", "status", "verdict"):
        table.add_column(col)
    table.add_column("started (UTC)", no_wrap=True)
    colours = {"completed": "green", "failed": "red", "aborted": "yellow", "open": "cyan"}
    for r in rows:
        st = r["status"]
        table.add_row(
            r["run_id"],
            r["runbook"],
            r.get("env") or "",
            r.get("incident") or "",
            f"[{colours.get(st, 'white')}]{st}[/]",
            r.get("verdict") or "",
            (r.get("started") or "")[:16].replace("T", " "),
        )
    console().print(table if rows else "No runs match.")


@runs.command("show")
@click.argument("run_ref", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print record.json.")
def show(run_ref: str, as_json: bool) -> None:
    """Show RUN's record: verdict, steps, findings, actions."""
    from .. import runner
    from .commands import _run_dir

    run_dir = _run_dir(run_ref)
    record_path = run_dir / "record.json"
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    from .output import print_result

    result = runner.RunResult(
        record["run"]["id"],
        record["run"]["runbook"],
        run_dir,
        record["run"]["status"],
        record["run"]["exit_code"],
        record,
    )
    print_result(result)
    c = console()
    for s in record.get("steps", []):
        mark = "[green]✔[/]" if s["status"] == "passed" else "[red]✘[/]"
        c.print(f"  {mark} {s['title']} ({s['duration_s']:.2f} s)")


@runs.command("open")
@click.argument("run_ref", metavar="RUN")
def open_run(run_ref: str) -> None:
    """Open RUN's report.html in the browser (prints the path too)."""
    from .commands import _run_dir

    path = _run_dir(run_ref) / "report.html"
    click.echo(str(path))
    webbrowser.open(path.as_uri())
