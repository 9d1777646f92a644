"""`opsbook sandbox start | stop | status | env | reset | faults | break | heal`.

A thin shell over `opsbook.sandbox` and `opsbook.sandbox.faultctl`. Also runs alone as
`python -m opsbook.sandbox COMMAND`.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from typing import Any

import click

from ..errors import InputError, OpsbookError

STATE_HELP = "Sandbox state folder (default: OPSBOOK_SANDBOX_DIR or .opsbook/sandbox)."


class SandboxGroup(click.Group):
    """Turns OpsbookError into `error: <message>` and its exit code (2 for bad input)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OpsbookError as exc:
            click.secho(f"error: {exc.message}", fg="red", err=True)
            sys.exit(exc.exit_code)


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


state_option = click.option("--state", "state", default=None, metavar="DIR", help=STATE_HELP)


@click.group(
    cls=SandboxGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""\b
Examples:
  opsbook sandbox start                 start it (seeded with seed 7 the first time)
  opsbook sandbox status                where each API is
  eval "$(opsbook sandbox env)"         point wrangler and SDKs at it
  opsbook sandbox break bad-deploy      make the manuscript API answer 500
  opsbook sandbox heal                  undo every fault
""",
)
def sandbox() -> None:
    """The embedded sandbox: Cloudflare API v4, Stripe, a status page and the two apps,
    served from one local server on 127.0.0.1 over real SQLite.

    Runbooks against the `local` and `local-peptalk` environments use it; `opsbook run`
    starts it when it is not running.
    """


@sandbox.command(epilog="Example:\n\n  opsbook sandbox start --seed 11")
@state_option
@click.option("--seed", type=int, default=None, help="Recreate the state from this seed first.")
def start(state: str | None, seed: int | None) -> None:
    """Start the sandbox server (seeding the state the first time)."""
    from .. import sandbox as sb

    started = time.perf_counter()
    info = sb.start(state, seed=seed) if seed is not None else sb.ensure_running(state)
    _console().print(
        f"[green]sandbox running[/] at {info.base_url} (pid {info.pid}, "
        f"state {info.state_dir}, {time.perf_counter() - started:.1f} s)"
    )


@sandbox.command(epilog="Example:\n\n  opsbook sandbox stop && opsbook sandbox start")
@state_option
def stop(state: str | None) -> None:
    """Stop the sandbox server. Its state stays on disk for the next start."""
    from .. import sandbox as sb

    stopped = sb.stop(state)
    _console().print("sandbox stopped" if stopped else "sandbox was not running")


@sandbox.command(
    epilog="Exit code 0 when it runs, 1 when it does not.\n\nExample:\n\n  opsbook sandbox status --json"
)
@state_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(state: str | None, as_json: bool) -> None:
    """Whether the sandbox runs, the base URL of each API, and the active faults."""
    from .. import sandbox as sb
    from ..sandbox import faultctl
    from ..sandbox.state import State

    info = sb.running(state)
    if info is None:
        if as_json:
            click.echo(json.dumps({"running": False}))
        else:
            _console().print(
                "sandbox is [red]not running[/]: start it with `opsbook sandbox start`"
            )
        sys.exit(1)
    active = faultctl.active(State(info.state_dir))
    data = {
        "running": True,
        "pid": info.pid,
        "base_url": info.base_url,
        "state_dir": str(info.state_dir),
        "account_id": info.account_id,
        "urls": info.urls(),
        "active_faults": active,
        "load_errors": info.load_errors,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"sandbox (pid {info.pid}, state {info.state_dir})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, url in info.urls().items():
        table.add_row(name, url)
    table.add_row("account id", info.account_id)
    faults = ", ".join(f["name"] for f in active) or "none"
    table.add_row("active faults", faults)
    if info.load_errors:
        table.add_row(
            "[red]not loaded[/]",
            f"{', '.join(info.load_errors)} (see {info.state_dir / 'server.log'})",
        )
    _console().print(table)


@sandbox.command(
    epilog='Example:\n\n  eval "$(opsbook sandbox env)" && npx wrangler deployments list'
)
@state_option
def env(state: str | None) -> None:
    """Print shell exports that point wrangler, the SDKs and opsbook at the sandbox.

    Starts the sandbox if it is not running.
    """
    from .. import sandbox as sb

    info = sb.ensure_running(state)
    exports = {
        "CLOUDFLARE_API_BASE_URL": info.urls()["cloudflare"],
        "CLOUDFLARE_API_TOKEN": info.credentials["OPSBOOK_SANDBOX_TOKEN"],
        "CLOUDFLARE_ACCOUNT_ID": info.account_id,
        "STRIPE_API_KEY": info.credentials["OPSBOOK_SANDBOX_STRIPE_KEY"],
        "STRIPE_API_BASE": info.urls()["stripe"],
        "WRANGLER_SEND_METRICS": "false",
    }
    for name, value in exports.items():
        click.echo(f"export {name}={shlex.quote(value)}")


@sandbox.command(epilog="Example:\n\n  opsbook sandbox reset --seed 7")
@state_option
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the data set.")
def reset(state: str | None, seed: int) -> None:
    """Recreate the whole state (D1 data, deployments, Stripe, traffic) from a seed, heal
    every fault, and restart the server. New credentials are generated."""
    from .. import sandbox as sb

    console = _console()
    started = time.perf_counter()
    with console.status(f"resetting the sandbox (seed {seed})..."):
        info = sb.reset(state, seed=seed)
    console.print(
        f"sandbox reset with seed {seed} in {time.perf_counter() - started:.1f} s; "
        f"running at {info.base_url}"
    )


@sandbox.command(epilog="Example:\n\n  opsbook sandbox faults --json")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def faults(as_json: bool) -> None:
    """Every fault the sandbox can inject: what breaks, the runbook that should find it,
    and the verdict it should give."""
    from ..sandbox import faultctl

    known = faultctl.load_all()
    if as_json:
        rows = [
            {"name": f.name, "runbook": f.runbook, "verdict": f.verdict, "profiles": list(f.profiles),
             "summary": f.summary, "symptom": f.symptom, "options": f.options}
            for f in known
        ]  # fmt: skip
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title="sandbox faults (opsbook sandbox break NAME)")
    for column in ("fault", "runbook", "verdict", "symptom"):
        table.add_column(column, overflow="fold")
    for f in known:
        table.add_row(f.name, f.runbook, f.verdict, f.symptom)
    _console().print(table)


def _parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(
                f"--option takes KEY=VALUE, got {pair!r} (e.g. --option profile=peptalk)."
            )
        options[key] = value
    return options


@sandbox.command(
    "break",
    epilog="""\b
Examples:
  opsbook sandbox break bad-deploy
  opsbook sandbox break secret-missing --option profile=peptalk --option name=OPENAI_API_KEY
  opsbook sandbox break consumer-missing --option messages=1000
""",
)
@state_option
@click.argument("fault")
@click.option(
    "--option",
    "-o",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A fault option (repeatable); `opsbook sandbox faults --json` lists them.",
)
def break_(state: str | None, fault: str, pairs: tuple[str, ...]) -> None:
    """Inject FAULT: change the sandbox's real state so a runbook has something to find."""
    from .. import sandbox as sb
    from ..sandbox import faultctl, faults
    from ..sandbox.state import State

    options = _parse_options(pairs)
    try:
        found = faultctl.get(fault)
    except faults.UnknownFault as exc:
        raise InputError(str(exc)) from None
    info = sb.ensure_running(state)
    try:
        faultctl.break_fault(State(info.state_dir), found.name, options)
    except ValueError as exc:
        raise InputError(f"Fault '{found.name}': {exc}") from None
    console = _console()
    console.print(f"[red]broke[/] {found.name}: {found.summary}")
    console.print(f"symptom: {found.symptom}")
    console.print(
        f"find it with: opsbook run {found.runbook}    undo: opsbook sandbox heal {found.name}"
    )


@sandbox.command(epilog="Examples:\n\n  opsbook sandbox heal\n\n  opsbook sandbox heal bad-deploy")
@state_option
@click.argument("fault", required=False)
def heal(state: str | None, fault: str | None) -> None:
    """Undo FAULT, or every active fault when none is named."""
    from .. import sandbox as sb
    from ..sandbox import faultctl, faults
    from ..sandbox.state import State

    info = sb.ensure_running(state)
    try:
        healed = faultctl.heal(State(info.state_dir), fault)
    except faults.UnknownFault as exc:
        raise InputError(str(exc)) from None
    _console().print(f"healed: {', '.join(healed)}" if healed else "no active faults")
