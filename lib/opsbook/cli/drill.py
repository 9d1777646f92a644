"""`opsbook drill FAULT... | --all`: break the sandbox, run the runbook, check verdict and remedy."""

from __future__ import annotations

import sys

import click

from .output import console


@click.command(
    epilog="""
\b
Examples:
  opsbook drill bad-deploy                 one fault, on every profile it applies to
  opsbook drill --all                      every fault, and every runbook on a healthy sandbox
  opsbook drill --all --profile peptalk --seed 7 --seed 11
\b
Exit code 0 when every case passes, 1 otherwise. The matrix is written as HTML and JSON
under outputs/drills/<time>/.
"""
)
@click.argument("faults", nargs=-1, metavar="[FAULT]...")
@click.option(
    "--all", "all_", is_flag=True, help="Every fault, plus every runbook on a healthy sandbox."
)
@click.option(
    "--profile",
    "profiles",
    multiple=True,
    type=click.Choice(["manuscript", "peptalk"]),
    help="Only this app profile (repeatable). Default: both.",
)
@click.option(
    "--seed", "seeds", multiple=True, type=int, help="Sandbox data seed (repeatable). Default: 7."
)
@click.option(
    "--healthy/--no-healthy",
    default=True,
    show_default=True,
    help="With --all, also run every runbook on a healthy sandbox.",
)
def drill(
    faults: tuple[str, ...],
    all_: bool,
    profiles: tuple[str, ...],
    seeds: tuple[int, ...],
    healthy: bool,
) -> None:
    """Prove runbooks against the sandbox's faults.

    For each fault: reset the sandbox and break it, run its runbook without approval and
    check the verdict and its evidence, then run it again with the remedy approved and
    check that the runbook verified the symptom gone. Uses (and resets) the sandbox in
    OPSBOOK_SANDBOX_DIR, the default one otherwise.
    """
    from .. import drill as drills
    from ..errors import InputError
    from ..sandbox import faults as fault_registry

    if not faults and not all_:
        raise InputError("Name a fault (`opsbook sandbox faults` lists them) or pass --all.")
    try:
        selected = drills.cases(
            list(faults) or None,
            profiles=profiles or ("manuscript", "peptalk"),
            seeds=seeds or (7,),
            healthy=healthy and all_,
        )
    except fault_registry.UnknownFault as exc:
        raise InputError(str(exc)) from None
    if not selected:
        raise InputError("No drill case matches: the fault does not apply to the chosen profile.")
    c = console()
    c.print(f"Running {len(selected)} drill case(s) on the sandbox…")

    def show(outcome: drills.Outcome, i: int, n: int) -> None:
        mark = "[green]✔[/]" if outcome.passed else "[red]✘[/]"
        ttv = f"{outcome.time_to_verdict_s:.1f} s" if outcome.time_to_verdict_s is not None else "-"
        extra = f"  [red]{outcome.error}[/]" if outcome.error else ""
        if outcome.missing_evidence:
            extra += f"  [red]evidence lacks {', '.join(outcome.missing_evidence)}[/]"
        if not outcome.case.fault:
            remedy = ""
        elif outcome.no_remedy:
            remedy = f", no operator remedy ({outcome.no_remedy})"
        elif outcome.remedy_verified:
            remedy = f", remedy {', '.join(outcome.remedy)} verified"
        else:
            remedy = ", remedy NOT verified"
        c.print(
            f"{mark} [{i}/{n}] {outcome.case.name}: verdict {outcome.verdict or '-'} "
            f"(expected {outcome.case.expected}), {ttv}{remedy}{extra}",
            soft_wrap=True,
        )

    matrix = drills.run_matrix(selected, on_outcome=show)
    passed = sum(o.passed for o in matrix.outcomes)
    colour = "green" if matrix.passed else "red"
    c.print(f"[{colour}]{passed} of {len(matrix.outcomes)} cases passed[/]. Matrix: {matrix.path}")
    sys.exit(0 if matrix.passed else 1)
