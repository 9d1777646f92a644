"""Sandbox start and reset times, against their budgets (start <= 2 s, reset <= 10 s).

    .venv/bin/python bench/sandbox_start.py [--runs 3]

Works in a temporary state folder; the default sandbox is not touched. Prints the
reset time (with each module's seed time in the last reset; a phase a module leaves
running in the background is listed as "overlapped"), then cold start, ensure_running on
a running server, and stop, each the median of --runs runs, with the ratio to its budget.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from opsbook import sandbox
from opsbook.sandbox import state as state_mod

BUDGETS = {"reset": 10.0, "start": 2.0, "ensure_running (running)": 0.1, "stop": 2.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="opsbook-bench-") as tmp:
        state_dir = Path(tmp) / "state"
        state = state_mod.State(state_dir)
        resets = [state.rebuild(7) for _ in range(args.runs)]
        reset_s = statistics.median(resets)
        per_module = state.seed_seconds  # from the last reset
        results: dict[str, list[float]] = {"start": [], "ensure_running (running)": [], "stop": []}
        for _ in range(args.runs):
            t0 = time.perf_counter()
            sandbox.start(state_dir)
            results["start"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            sandbox.ensure_running(state_dir)
            results["ensure_running (running)"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            sandbox.stop(state_dir)
            results["stop"].append(time.perf_counter() - t0)
    w = 52
    print(
        f"{'measure (median of ' + str(args.runs) + ')':<{w}}{'seconds':>10}{'budget':>9}{'ratio':>8}"
    )
    print(
        f"{'reset (seed 7)':<{w}}{reset_s:>10.3f}{BUDGETS['reset']:>9.1f}{reset_s / BUDGETS['reset']:>8.2f}"
    )
    print(f"  {'all resets: ' + ', '.join(f'{r:.2f}' for r in resets):<{w - 2}}")
    for name, secs in sorted(per_module.items(), key=lambda kv: -kv[1]):
        print(f"  {'seed ' + name:<{w - 2}}{secs:>10.3f}")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:<{w}}{median:>10.3f}{BUDGETS[name]:>9.1f}{median / BUDGETS[name]:>8.2f}")


if __name__ == "__main__":
    main()
