"""The `opsbook` command. A thin shell over the library: it parses, calls, and turns
library errors into messages and exit codes. Heavy imports happen inside commands.

Exit codes: 0 ran and found nothing wrong; 1 the run failed (a cell raised, a timeout);
2 bad input (nothing ran, nothing archived); 3 ran and found a problem (verdict not
`healthy`); 130 interrupted (Ctrl-C / SIGTERM; the record is still written).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import __version__
from ..errors import OpsbookError

EXIT_CODES = """\b
Exit codes:
  0    ran, nothing wrong found
  1    the run failed (a cell raised, or a timeout)
  2    bad input: nothing ran, nothing was archived
  3    ran and found a problem (the verdict is not `healthy`)
  130  interrupted by Ctrl-C or SIGTERM (the record is still written)
"""


class OpsbookGroup(click.Group):
    """Turns OpsbookError into `error: <message>` and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OpsbookError as exc:
            click.secho(f"error: {exc.message}", fg="red", err=True)
            sys.exit(exc.exit_code)


@click.group(
    cls=OpsbookGroup, epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="opsbook")
def main() -> None:
    """opsbook: executable runbook notebooks, with an archived incident record for every run.

    \b
    Start here:
      opsbook list                      the runbooks and their parameters
      opsbook run health-check          run one headless against the default sandbox
      opsbook runs list                 what ran, with verdicts
      opsbook plan api-down && opsbook lab RUN   walk through one in JupyterLab
    """


def _register() -> None:
    from . import commands, drill, runs

    main.add_command(drill.drill)
    main.add_command(commands.run)
    main.add_command(commands.plan)
    main.add_command(commands.lab)
    main.add_command(commands.finish)
    main.add_command(commands.list_runbooks)
    main.add_command(runs.runs)
    from . import batch, report

    main.add_command(batch.batch)
    main.add_command(report.report)
    try:
        from .sandbox import sandbox
    except ImportError:  # the sandbox CLI module is optional while it is being built
        return
    main.add_command(sandbox)


_register()
