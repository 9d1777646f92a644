"""`opsbook run | plan | lab | finish | list`."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from . import EXIT_CODES
from .output import console, print_result

ENV_HELP = "Environment: params/<ENV>.yaml. Default: local (the embedded sandbox)."
PARAM_HELP = "Set a runbook parameter, NAME=VALUE (repeatable). `opsbook list RUNBOOK` shows them."


def _common(fn: Any) -> Any:
    fn = click.option(
        "--approve",
        "approve",
        multiple=True,
        metavar="ACTION",
        help="Approve a guarded action by its id (repeatable). Without it, actions are dry runs.",
    )(fn)
    fn = click.option(
        "--incident",
        metavar="ID",
        help="Incident id, e.g. INC-42: links the run into that incident's timeline.",
    )(fn)
    fn = click.option(
        "-p", "--param", "params_", multiple=True, metavar="NAME=VALUE", help=PARAM_HELP
    )(fn)
    fn = click.option("--env", "-e", "env", metavar="ENV", help=ENV_HELP)(fn)
    return fn


@click.command(
    epilog=EXIT_CODES
    + """
\b
Examples:
  opsbook run health-check
  opsbook run api-down --incident INC-42
  opsbook run api-down --incident INC-42 --approve rollback
  opsbook run db-query -p query=user_count --env manuscript-platform
"""
)
@click.argument("runbook")
@_common
@click.option(
    "--timeout", type=float, metavar="SECONDS", help="Fail a cell that runs longer than this."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print only one JSON line: run_id, status, exit_code, run_dir, verdict.",
)
def run(
    runbook: str,
    env: str | None,
    params_: tuple[str, ...],
    incident: str | None,
    approve: tuple[str, ...],
    timeout: float | None,
    as_json: bool = False,
) -> None:
    """Run RUNBOOK headless and archive its record.

    Parameters are checked before any kernel starts. The executed notebook, its HTML
    and record.json land in outputs/<date>/<run-id>_<runbook>/.
    """
    from .. import params, runner
    from ..errors import RunAborted
    from .output import progress_display

    overrides = params.parse_overrides(list(params_))
    show = _print_json if as_json else print_result
    display = contextlib.nullcontext(None) if as_json else progress_display(Path(runbook).stem)
    with display as on_cell:
        try:
            result = runner.run(
                runbook,
                env,
                overrides,
                incident=incident,
                approve=approve,
                timeout=timeout,
                progress=on_cell,
                text_overrides=True,
            )
        except RunAborted as exc:
            show(exc.result)  # type: ignore[attr-defined]
            sys.exit(130)
    show(result)
    sys.exit(result.exit_code or 0)


def _print_json(result: Any) -> None:
    import json

    verdict = result.verdict
    line = {
        "run_id": result.run_id,
        "status": result.status,
        "exit_code": result.exit_code,
        "run_dir": str(result.run_dir),
        "verdict": verdict.get("cause") if verdict else None,
    }
    click.echo(json.dumps(line))


@click.command(
    epilog="""
\b
Example:
  opsbook plan api-down --incident INC-42      prints the run folder
  opsbook lab <run-id>                          opens it in JupyterLab
  opsbook finish <run-id>                       renders and records it
"""
)
@click.argument("runbook")
@_common
def plan(
    runbook: str,
    env: str | None,
    params_: tuple[str, ...],
    incident: str | None,
    approve: tuple[str, ...],
) -> None:
    """Prepare RUNBOOK for a walkthrough: a parameterized copy in a new run folder.

    Nothing runs yet. Open it with `opsbook lab RUN`; as you run cells, steps, findings
    and actions are recorded in the run folder. The last cell (or `opsbook finish RUN`)
    writes the HTML and record.json. Until then the run is listed as `open`.
    """
    from .. import params, runner

    result = runner.plan(
        runbook,
        env,
        params.parse_overrides(list(params_)),
        incident=incident,
        approve=approve,
        text_overrides=True,
    )
    c = console()
    c.print(f"[bold]Prepared[/] {result.runbook} as run [cyan]{result.run_id}[/]")
    c.print(f"  folder:   {result.run_dir}")
    c.print(f"  notebook: {result.notebook}")
    c.print(f"Next: [bold]opsbook lab {result.run_id}[/]")


def _run_dir(ref: str) -> Path:
    from .. import config
    from ..index import Index

    path = Path(ref)
    if path.is_dir() and (path / "context.json").is_file():
        return path.resolve()
    outputs = config.outputs_dir()
    with Index(outputs) as index:
        row = index.get(ref)
    return (outputs / row["path"]).resolve()


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--no-browser", is_flag=True, help="Start JupyterLab without opening a browser.")
def lab(run_ref: str, no_browser: bool) -> None:
    """Open JupyterLab on the notebook of RUN (a run id, unique prefix or folder)."""
    run_dir = _run_dir(run_ref)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--notebook-dir={run_dir}",
        "--ServerApp.ip=127.0.0.1",
        str(run_dir / "notebook.ipynb"),
    ]
    if no_browser:
        cmd.append("--no-browser")
    console().print(f"Opening {run_dir / 'notebook.ipynb'} in JupyterLab (Ctrl-C to stop)")
    sys.exit(subprocess.call(cmd, cwd=run_dir))


@click.command()
@click.argument("run_ref", metavar="RUN")
def finish(run_ref: str) -> None:
    """Finish a walkthrough: render the HTML, write record.json and index RUN.

    Save the notebook in Jupyter first: the record is built from the saved copy.
    """
    from .. import runner

    result = runner.finish(_run_dir(run_ref))
    print_result(result)
    sys.exit(result.exit_code or 0)


@click.command("list")
@click.argument("runbook", required=False)
def list_runbooks(runbook: str | None) -> None:
    """List the runbooks, or describe RUNBOOK's parameters."""
    from .. import params, runner

    c = console()
    names = [runbook] if runbook else runner.available_runbooks()
    from rich.table import Table

    if runbook:
        path = runner.notebook_path(runbook)
        specs = params.inspect_notebook(path)
        table = Table(title=f"{path.stem}: parameters", show_lines=False)
        for col in ("name", "type", "default", "help"):
            table.add_column(col)
        for spec in specs.values():
            default = "[red]required[/]" if spec.required else repr(spec.default)
            table.add_row(spec.name, spec.type, default, spec.help)
        c.print(table)
        return
    table = Table(title="Runbooks (notebooks/)")
    table.add_column("runbook")
    table.add_column("what it does")
    table.add_column("parameters")
    for name in names:
        path = runner.notebook_path(name)
        try:
            specs = params.inspect_notebook(path)
            plist = ", ".join(
                s.name for s in specs.values() if s.name not in params.RUNNER_PARAMETERS
            )
        except Exception as exc:  # a broken notebook must not hide the others
            plist = f"[red]{exc}[/]"
        table.add_row(name, _summary(path), plist)
    c.print(table)


def _summary(path: Path) -> str:
    import json

    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            text = "".join(cell.get("source", ""))
            lines = [
                ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")
            ]
            return lines[0][:90] if lines else ""
    return ""
