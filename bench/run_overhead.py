"""Benchmark: `opsbook run` end to end against the bare `papermill` CLI, on the same notebook.

opsbook does more (parameter checking, HTML rendering, record.json, index), so the
question is whether it costs more. Both commands run as subprocesses, interleaved, and
the median wall time of each is printed with their ratio. Goal: <= 0.8x papermill.

    python bench/run_overhead.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def small_notebook(path: Path) -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = new_code_cell("n: int = 10  # how many squares")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        new_markdown_cell("# A small notebook"),
        params,
        new_code_cell("squares = [i * i for i in range(n)]\nprint(sum(squares))"),
        new_code_cell("total = sum(squares)\ntotal"),
    ]
    nbformat.write(nb, path)


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7, help="runs of each command (default 7)")
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    opsbook_cli = shutil.which("opsbook", path=str(bindir)) or "opsbook"
    papermill_cli = shutil.which("papermill", path=str(bindir)) or "papermill"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        nb = work / "small.ipynb"
        small_notebook(nb)
        env = {**os.environ, "OPSBOOK_OUTPUTS": str(work / "outputs")}
        ops_cmd = [opsbook_cli, "run", str(nb), "-p", "n=20"]
        pm_cmd = [
            papermill_cli,
            str(nb),
            str(work / "out.ipynb"),
            "-p",
            "n",
            "20",
            "--no-progress-bar",
        ]
        timed(ops_cmd, env), timed(pm_cmd, env)  # warm the file cache and .pyc files
        ops, pm = [], []
        for i in range(args.repeat):
            ops.append(timed(ops_cmd, env))
            pm.append(timed(pm_cmd, env))
            print(
                f"  run {i + 1}/{args.repeat}: opsbook {ops[-1]:.2f} s, papermill {pm[-1]:.2f} s",
                file=sys.stderr,
            )
        runs = list((work / "outputs").rglob("record.json"))
        assert len(runs) == args.repeat + 1, "every opsbook run must leave a record"
    o, p = statistics.median(ops), statistics.median(pm)
    print(
        f"opsbook run (execute + HTML + record + index): median {o:.2f} s over {args.repeat} runs"
    )
    print(
        f"papermill CLI (execute only):                  median {p:.2f} s over {args.repeat} runs"
    )
    print(f"ratio opsbook/papermill: {o / p:.2f}x (goal <= 0.80x)")


if __name__ == "__main__":
    main()
