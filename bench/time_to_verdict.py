"""Benchmark: time to verdict per incident runbook on the sandbox, kernel start included.

For each runbook it runs one healthy case and each fault case of one profile (seed 7),
and prints the time from the run's start to its verdict, against the 5 s goal.

    python bench/time_to_verdict.py [--profile manuscript|peptalk] [--runbook NAME]...
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

GOAL_S = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--profile",
        action="append",
        choices=["manuscript", "peptalk"],
        help="profiles to measure (default: both)",
    )
    parser.add_argument("--runbook", action="append", help="only these runbooks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["OPSBOOK_SANDBOX_DIR"] = str(Path(tmp) / "sandbox")
        os.environ["OPSBOOK_OUTPUTS"] = str(Path(tmp) / "outputs")
        from opsbook import drill, sandbox

        cases = [
            c
            for c in drill.cases(profiles=args.profile or ("manuscript", "peptalk"))
            if not args.runbook or c.runbook in args.runbook
        ]
        boxes = drill.Sandboxes(Path(os.environ["OPSBOOK_SANDBOX_DIR"]))
        times: dict[str, list[float]] = defaultdict(list)
        try:
            for case in sorted(
                cases, key=lambda c: (c.profile, c.fault is not None, c.fault or "")
            ):
                outcome = drill.run_case(case, boxes)
                if outcome.time_to_verdict_s is None:
                    print(f"  {case.name}: no verdict ({outcome.error})", file=sys.stderr)
                    continue
                times[case.runbook].append(outcome.time_to_verdict_s)
                print(f"  {case.name}: {outcome.time_to_verdict_s:.2f} s", file=sys.stderr)
        finally:
            sandbox.stop(Path(os.environ["OPSBOOK_SANDBOX_DIR"]))
            boxes.close()
    print(f"{'runbook':<22} {'cases':>5} {'median':>8} {'max':>8} {'max/goal':>9}")
    for runbook in sorted(times):
        ts = times[runbook]
        print(
            f"{runbook:<22} {len(ts):>5} {statistics.median(ts):>7.2f}s {max(ts):>7.2f}s {max(ts) / GOAL_S:>8.2f}x"
        )
    worst = max((max(ts) for ts in times.values()), default=float("nan"))
    print(
        f"worst time to verdict {worst:.2f} s = {worst / GOAL_S:.2f}x the {GOAL_S:.0f} s goal (kernel start included)"
    )


if __name__ == "__main__":
    main()
