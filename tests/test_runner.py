"""The runner end to end: real kernels, real run folders, every exit path leaves a record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import opsbook
from opsbook.errors import RunAborted
from opsbook.index import Index

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"


def record_of(result: opsbook.RunResult) -> dict:
    return json.loads((result.run_dir / "record.json").read_text())


def test_ok_run_leaves_a_full_record(outputs: Path) -> None:
    result = opsbook.run(str(FIXTURES / "ok.ipynb"), parameters={"count": 5})
    assert (result.status, result.exit_code) == ("completed", 0)
    assert result.run_dir.parent.parent == outputs
    assert result.run_dir.name == f"{result.run_id}_ok"
    for name in ("notebook.ipynb", "report.html", "record.json"):
        assert (result.run_dir / name).is_file()
    record = record_of(result)
    assert record["schema_version"] == 1
    assert record["run"]["operator"] == "tester"
    assert record["parameters"]["count"] == 5
    assert [s["title"] for s in record["steps"]] == ["Count things"]
    assert record["steps"][0]["status"] == "passed"
    assert record["findings"][0]["message"] == "counted 10"
    assert record["verdict"]["cause"] == "healthy"
    [action] = record["actions"]
    assert action["mode"] == "dry-run"
    assert action["approve_with"] == "opsbook run ok -p count=5 --approve touch"
    with Index(outputs) as index:
        row = index.get(result.run_id)
    assert (row["status"], row["verdict"]) == ("completed", "healthy")
    assert (outputs / "index.html").is_file()


def test_approved_action_runs_and_is_recorded(outputs: Path) -> None:
    result = opsbook.run(str(FIXTURES / "ok.ipynb"), approve=["touch"], incident="INC-7")
    [action] = record_of(result)["actions"]
    assert action["mode"] == "applied"
    assert action["result"] == {"touched": "demo"}
    assert action["approved_by"] == "tester"
    # the same incident again: an action that already succeeded is not repeated
    again = opsbook.run(str(FIXTURES / "ok.ipynb"), approve=["touch"], incident="INC-7")
    [second] = record_of(again)["actions"]
    assert second["mode"] == "skipped"
    assert result.run_id in second["result"]


def test_problem_verdict_exits_3() -> None:
    result = opsbook.run(str(FIXTURES / "problem.ipynb"))
    assert (result.status, result.exit_code) == ("completed", 3)
    assert result.verdict["cause"] == "too-many-errors"
    assert result.verdict["evidence"] == {"rate": 0.2, "threshold": 0.05}


def test_failed_cell_still_leaves_its_record() -> None:
    result = opsbook.run(str(FIXTURES / "raises.ipynb"), parameters={"n": 4})
    assert (result.status, result.exit_code) == ("failed", 1)
    record = record_of(result)
    assert record["error"]["ename"] == "ValueError"
    assert record["error"]["evalue"] == "boom 4"
    assert record["steps"][0]["status"] == "failed"
    assert record["steps"][0]["error"] == "ValueError: boom 4"
    html = (result.run_dir / "report.html").read_text()
    assert "ValueError" in html[: html.find("boom 4") + 10]


def test_timeout_fails_the_run_with_a_record() -> None:
    result = opsbook.run(
        str(FIXTURES / "long_running.ipynb"), parameters={"seconds": 30}, timeout=2
    )
    assert (result.status, result.exit_code) == ("failed", 1)
    error = record_of(result)["error"]
    assert error["timeout"] is True
    assert "timeout" in error["evalue"]


@pytest.mark.usefixtures("ctrl_c")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_leaves_an_aborted_record(outputs: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "opsbook.cli", "run", str(FIXTURES / "long_running.ipynb")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    events: list[Path] = []
    while time.monotonic() < deadline and not events:
        events = [p for p in outputs.rglob("events.jsonl") if "long_running" in p.read_text()]
        time.sleep(0.2)
    assert events, "the run never started"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    record = json.loads((events[0].parent / "record.json").read_text())
    assert record["run"]["status"] == "aborted"
    assert record["run"]["exit_code"] == 130
    assert (events[0].parent / "report.html").is_file()
    assert "aborted" in out


@pytest.mark.usefixtures("ctrl_c")
def test_aborted_api_raises_with_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    timer = threading.Timer(4.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(RunAborted) as err:
            opsbook.run(str(FIXTURES / "long_running.ipynb"))
    finally:
        timer.cancel()
    assert err.value.result.status == "aborted"


def test_two_runs_at_once_never_collide(outputs: Path) -> None:
    cmd = [sys.executable, "-m", "opsbook.cli", "run", str(FIXTURES / "ok.ipynb")]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    folders = sorted(p.parent for p in outputs.rglob("record.json"))
    assert len(folders) == 3 and len({f.name for f in folders}) == 3
    with Index(outputs) as index:
        assert len(index.list(runbook="ok")) == 3


def test_plan_then_finish(outputs: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    planned = opsbook.plan(str(FIXTURES / "ok.ipynb"), parameters={"count": 2}, approve=["touch"])
    assert planned.status == "open"
    with Index(outputs) as index:
        assert index.get(planned.run_id)["status"] == "open"
    nb = nbformat.read(planned.notebook, as_version=4)
    assert "count = 2" in "".join(
        c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])
    )
    # the operator runs the cells in Jupyter (kernel cwd = the run folder), then saves
    NotebookClient(
        nb,
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(planned.run_dir)}},
    ).execute()
    nbformat.write(nb, planned.notebook)
    record = json.loads((planned.run_dir / "record.json").read_text())
    # the notebook's last cell (steps.done) finished the record from inside the kernel
    assert record["run"]["status"] == "completed"
    assert record["run"]["mode"] == "interactive"
    assert [a["mode"] for a in record["actions"]] == ["applied"]
    finished = opsbook.finish(planned.run_dir)
    assert finished.status == "completed" and finished.exit_code == 0
    with Index(outputs) as index:
        assert index.get(planned.run_id)["status"] == "completed"


def test_plots_survive_into_the_html() -> None:
    result = opsbook.run(str(FIXTURES / "plots.ipynb"))
    assert result.status == "completed"
    html = result.html.read_text()
    assert html.count("<svg") >= 2
    assert "deploy v42" in html and "Requests by endpoint" in html
    assert len(html.encode()) < 60_000
