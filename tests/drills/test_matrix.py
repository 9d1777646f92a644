"""The drill matrix: every fault with its runbook, every runbook on a healthy sandbox,
both profiles where they apply, two seeds. A verdict right for the wrong reason fails:
the evidence must name what the fault broke (drill.EXPECTED_EVIDENCE), and a fault case
must have its remedy applied and verified by the runbook, unless the runbook declares
that cause has no operator remedy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook import drill, sandbox

SEEDS = (7, 11)
CASES = drill.cases(seeds=SEEDS)
# The full matrix (141 cases, about 30 minutes on 2 cores) is part of the suite;
# OPSBOOK_DRILLS=0 leaves it out of a quick local run.
RUN_DRILLS = os.environ.get("OPSBOOK_DRILLS", "1") != "0"
# The traffic model draws each minute's requests from the wall clock, so a case sees the
# minutes it happens to run in. A failing case runs once more on a fresh sandbox; a defect
# fails both attempts, and the failure shows both.
ATTEMPTS = 2


@pytest.fixture(scope="module")
def boxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[drill.Sandboxes]:
    state = tmp_path_factory.mktemp("drill-sandbox")
    previous = os.environ.get("OPSBOOK_SANDBOX_DIR")
    os.environ["OPSBOOK_SANDBOX_DIR"] = str(state)
    boxes = drill.Sandboxes(state)
    try:
        yield boxes
    finally:
        sandbox.stop(state)
        boxes.close()
        if previous is None:
            os.environ.pop("OPSBOOK_SANDBOX_DIR", None)
        else:
            os.environ["OPSBOOK_SANDBOX_DIR"] = previous


def explain(outcome: drill.Outcome) -> str:
    return (
        f"{outcome.case.name}: verdict {outcome.verdict!r} (expected {outcome.case.expected!r}); "
        f"missing evidence {outcome.missing_evidence}; remedy {outcome.remedy} applied={outcome.remedy_applied} "
        f"verified={outcome.remedy_verified}; error={outcome.error}; runs={outcome.runs}"
    )


@pytest.mark.slow
@pytest.mark.skipif(not RUN_DRILLS, reason="OPSBOOK_DRILLS=0 leaves the drill matrix out")
@pytest.mark.parametrize(
    "case",
    sorted(CASES, key=lambda c: (c.seed, c.profile, c.fault is not None, c.fault or "", c.runbook)),
    ids=lambda c: c.name,
)
def test_drill(case: drill.Case, boxes: drill.Sandboxes, outputs: Path) -> None:
    failures: list[str] = []
    for attempt in range(1, ATTEMPTS + 1):
        outcome = drill.run_case(case, boxes)
        if outcome.passed:
            break
        failures.append(f"attempt {attempt}: {explain(outcome)}")
        boxes.forget()  # the next attempt restores the pristine copy
    else:
        pytest.fail("\n".join(failures))
    if failures:
        print(f"{case.name} passed on attempt {attempt}; before: {failures}")
    assert outcome.time_to_verdict_s is not None


def test_matrix_covers_every_fault_and_both_seeds() -> None:
    from opsbook.sandbox import faultctl

    faults = {f.name for f in faultctl.load_all()}
    assert {c.fault for c in CASES if c.fault} == faults
    assert {c.seed for c in CASES} == set(SEEDS)
    assert any(c.fault is None for c in CASES), "healthy runs of every runbook"
