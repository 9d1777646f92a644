"""Batch runs: many runbooks over many environments, in parallel, with one summary.

    result = run_batch("daily", parallel=2, envs=None)
    result.exit_code   # 0 all ok, 3 a run found a problem, 1 a run failed, 130 interrupted
    result.summary_html, result.summary_json

The file is checked whole before anything runs (`batchfile.load`, InputError on any
problem). Each job is its own `python -m opsbook.cli run ... --json` process, in its
own session: kernels and signals stay isolated, and a terminal's Ctrl-C reaches only
the batch, which then sends one SIGINT to each running job (so each writes its aborted
record), marks the jobs not started as `not-run`, writes the summary and raises
`RunAborted` with the result. The summary is written to
`outputs/batches/<YYYYmmddTHHMMSSZ>_<name>/summary.{json,html}` on every exit path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import config
from .batchfile import BatchFile, Job, load
from .errors import RunAborted
from .runfolder import RECORD, REPORT, iso, utcnow, write_atomic, write_json

SCHEMA_VERSION = 1
OUTCOMES = ("ok", "problem", "failed", "aborted", "error", "not-run")
OUTCOME_OF_EXIT = {0: "ok", 3: "problem", 1: "failed", 130: "aborted"}
STOP_GRACE_S = 120.0
POLL_S = 0.1


@dataclass
class JobState:
    job: Job
    state: str = "pending"  # pending | running | done
    outcome: str | None = None  # one of OUTCOMES once done
    exit_code: int | None = None
    run_id: str | None = None
    run_dir: Path | None = None
    status: str | None = None  # the record's status
    verdict: str | None = None
    duration_s: float | None = None
    error: str | None = None
    started_at: float | None = field(default=None, repr=False)

    @property
    def elapsed(self) -> float | None:
        if self.duration_s is not None:
            return self.duration_s
        return None if self.started_at is None else time.monotonic() - self.started_at


@dataclass
class BatchResult:
    name: str
    path: Path  # the batch file
    folder: Path  # outputs/batches/<ts>_<name>
    jobs: list[JobState]
    exit_code: int
    interrupted: bool
    started: str
    ended: str

    @property
    def summary_html(self) -> Path:
        return self.folder / "summary.html"

    @property
    def summary_json(self) -> Path:
        return self.folder / "summary.json"

    @property
    def counts(self) -> dict[str, int]:
        return {o: sum(1 for j in self.jobs if j.outcome == o) for o in OUTCOMES}


OnEvent = Callable[[JobState], None]


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so the batch stops like on Ctrl-C."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _folder(outputs: Path, name: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "batch"
    base = outputs / "batches"
    base.mkdir(parents=True, exist_ok=True)
    stamp = f"{utcnow():%Y%m%dT%H%M%SZ}"
    for n in range(1000):
        path = base / (f"{stamp}_{slug}" if n == 0 else f"{stamp}-{n}_{slug}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"could not create a batch folder in {base}")


class _Proc:
    def __init__(self, state: JobState, outputs: Path, logs: Path) -> None:
        self.state = state
        self.out: IO[bytes] = open(logs / f"{state.job.n}.out", "w+b")  # noqa: SIM115
        self.err: IO[bytes] = open(logs / f"{state.job.n}.err", "w+b")  # noqa: SIM115
        env = dict(os.environ, OPSBOOK_OUTPUTS=str(outputs))
        env.setdefault("OPSBOOK_HOME", str(config.project_root()))
        cmd = [sys.executable, "-m", "opsbook.cli", "run", *state.job.argv(), "--json"]
        try:
            self.popen = subprocess.Popen(
                cmd, stdout=self.out, stderr=self.err, env=env, start_new_session=True
            )
        except BaseException:
            self.close()
            raise
        state.state, state.started_at = "running", time.monotonic()

    def close(self) -> None:
        self.out.close()
        self.err.close()

    def collect(self, returncode: int) -> None:
        """Fill the job's state from its JSON line and its record."""
        s = self.state
        self.out.seek(0)
        self.err.seek(0)
        lines = self.out.read().decode("utf-8", "replace").strip().splitlines()
        stderr = self.err.read().decode("utf-8", "replace")
        self.close()
        s.state, s.exit_code = "done", returncode
        s.duration_s = round(time.monotonic() - (s.started_at or time.monotonic()), 3)
        try:
            line = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            line = None
        if isinstance(line, dict) and line.get("run_dir"):
            s.run_id, s.status, s.verdict = line.get("run_id"), line.get("status"), line["verdict"]
            s.run_dir = Path(line["run_dir"])
            with contextlib.suppress(OSError, ValueError, KeyError):
                record = json.loads((s.run_dir / RECORD).read_text(encoding="utf-8"))
                s.duration_s = record["run"].get("duration_s") or s.duration_s
                s.error = _error_text(record.get("error"))
            s.outcome = OUTCOME_OF_EXIT.get(returncode, "error")
        else:
            s.outcome = "error"
            s.error = _tail(stderr) or f"`opsbook run` exited {returncode} without a record"


def _error_text(error: Any) -> str | None:
    if not isinstance(error, dict):
        return None
    text = " ".join(f"{error.get('ename')}: {error.get('evalue')}".split()).strip(": ")
    if error.get("cell_index") is not None:
        text += f" (cell {error['cell_index']})"
    return text


def _tail(stderr: str, lines: int = 4) -> str:
    from .scrub import Scrubber

    kept = [ln for ln in stderr.strip().splitlines() if ln.strip()][-lines:]
    return Scrubber.from_environment().text("\n".join(kept))


def run_batch(
    path_or_name: str | Path,
    *,
    parallel: int | None = None,
    envs: list[str] | tuple[str, ...] | None = None,
    outputs: Path | None = None,
    on_event: OnEvent | None = None,
) -> BatchResult:
    """Run a batch file. Raises InputError (nothing ran) or RunAborted (with .result)."""
    batch = load(path_or_name, parallel=parallel, envs=list(envs) if envs else None)
    outputs = Path(outputs or config.outputs_dir()).resolve()
    folder = _folder(outputs, batch.name)
    states = [JobState(job) for job in batch.jobs]
    started = iso()
    notify = on_event or (lambda state: None)
    interrupted = False
    for state in states:
        notify(state)  # every job, pending
    with tempfile.TemporaryDirectory(prefix="opsbook-batch-") as logs:
        running: list[_Proc] = []
        pending = deque(states)
        try:
            with _sigterm_raises():
                while pending or running:
                    while pending and len(running) < batch.parallel:
                        running.append(_Proc(pending.popleft(), outputs, Path(logs)))
                        notify(running[-1].state)
                    running = _reap(running, notify)
                    if running:
                        time.sleep(POLL_S)
        except (KeyboardInterrupt, _Terminated):
            interrupted = True
            for state in pending:
                state.state, state.outcome = "done", "not-run"
                notify(state)
            _stop(running, notify)
    result = BatchResult(
        batch.name,
        batch.path,
        folder,
        states,
        _exit_code(states, interrupted),
        interrupted,
        started,
        iso(),
    )
    write_summary(result, batch)
    if interrupted:
        raise RunAborted(
            f"Batch {batch.name} was interrupted; its summary is at {result.summary_html}.",
            result=result,
        )
    return result


def _reap(running: list[_Proc], notify: OnEvent) -> list[_Proc]:
    still = []
    for proc in running:
        code = proc.popen.poll()
        if code is None:
            still.append(proc)
            continue
        proc.collect(code)
        notify(proc.state)
    return still


def _stop(running: list[_Proc], notify: OnEvent) -> None:
    """Ask each running job to stop (one SIGINT: it writes its aborted record), then wait."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this
    try:
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        while running and time.monotonic() < deadline:
            running = _reap(running, notify)
            time.sleep(POLL_S)
        for proc in running:  # never wrote its record in the grace period
            proc.popen.kill()
            proc.collect(proc.popen.wait())
            notify(proc.state)
    finally:
        signal.signal(signal.SIGINT, previous)


def _exit_code(states: list[JobState], interrupted: bool) -> int:
    if interrupted:
        return 130
    outcomes = {s.outcome for s in states}
    if outcomes & {"failed", "aborted", "error"}:
        return 1
    if "problem" in outcomes:
        return 3
    return 0


# ---- the summary ------------------------------------------------------------------------
def _link(folder: Path, state: JobState) -> str | None:
    if state.run_dir is None or not (state.run_dir / REPORT).is_file():
        return None
    return Path(os.path.relpath(state.run_dir / REPORT, folder)).as_posix()


def summary(result: BatchResult, batch: BatchFile) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "name": result.name,
        "file": str(result.path),
        "started": result.started,
        "ended": result.ended,
        "parallel": batch.parallel,
        "parallel_asked": batch.parallel_asked,
        "interrupted": result.interrupted,
        "exit_code": result.exit_code,
        "counts": result.counts,
        "jobs": [
            {
                "n": s.job.n,
                "runbook": s.job.runbook,
                "env": s.job.env,
                "parameters": s.job.parameters,
                "incident": s.job.incident,
                "outcome": s.outcome,
                "status": s.status,
                "verdict": s.verdict,
                "exit_code": s.exit_code,
                "duration_s": s.duration_s,
                "run_id": s.run_id,
                "report": _link(result.folder, s),
                "error": s.error,
            }
            for s in result.jobs
        ],
    }


def write_summary(result: BatchResult, batch: BatchFile) -> None:
    from .batch_html import summary_page
    from .scrub import Scrubber

    data = Scrubber.from_environment().obj(summary(result, batch))
    write_json(result.summary_json, data)
    write_atomic(result.summary_html, summary_page(data))
