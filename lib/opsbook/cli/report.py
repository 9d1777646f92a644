"""`opsbook report INC-ID`: the post-incident report of one incident."""

from __future__ import annotations

from pathlib import Path

import click

from .output import console


@click.command()
@click.argument("incident", metavar="INC-ID")
@click.option("--env", "-e", "env", metavar="ENV", help="Only runs on this environment.")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write report.md and report.html here (default: outputs/incidents/INC-ID/).",
)
@click.option(
    "--traffic",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A tail export saved during the incident (wrangler tail --format json, or NDJSON): "
    "counts the distinct client IPs that got a 5xx. Without it affected users are not measured.",
)
def report(incident: str, env: str | None, out: Path | None, traffic: Path | None) -> None:
    """Build INC-ID's timeline from every run recorded with --incident INC-ID and fill
    the post-incident report template (seed 000) as report.md and report.html.

    Parts only a person can write are marked for the incident owner, never invented.
    """
    from ..postmortem import build_report

    result = build_report(incident, env=env, out=out, traffic=traffic)
    c = console()
    c.print(
        f"[bold]{incident}[/]: {len(result.runs)} runs, "
        f"{'recovered' if result.recovered else '[yellow]not recovered[/]'}, "
        f"duration {result.duration_text}"
    )
    c.print(f"  report: {result.markdown_path}")
    c.print(f"  html:   {result.html_path}")
