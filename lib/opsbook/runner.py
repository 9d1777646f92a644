"""Run a runbook: check its parameters, execute it through papermill, archive the record.

    result = opsbook.run("api-down", env="local", parameters={"window_minutes": 30},
                         incident="INC-42", approve=["rollback"])
    result.exit_code   # 0 ok, 1 failed, 2 bad input (raised as InputError), 3 problem found, 130 aborted

Every exit path (success, a cell that raised, a timeout, Ctrl-C, SIGTERM) ends in
`_archive()`, so the run folder always holds notebook.ipynb, report.html and
record.json. Bad input raises `InputError` before any folder or kernel exists.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config, environments, params
from .errors import InputError, RunAborted, UnknownRunbook
from .runfolder import (
    CONTEXT,
    NOTEBOOK,
    RECORD,
    REPORT,
    RunFolder,
    iso,
    operator,
    read_context,
    utcnow,
    write_json,
)

# (event, cell index, cell count, label); events: "folder" (label = the run folder), "start", "complete"
Progress = Callable[[str, int, int, str], None]


@dataclass
class RunResult:
    run_id: str
    runbook: str
    run_dir: Path
    status: str
    exit_code: int | None
    record: dict[str, Any] = field(repr=False)

    @property
    def html(self) -> Path:
        return self.run_dir / REPORT

    @property
    def notebook(self) -> Path:
        return self.run_dir / NOTEBOOK

    @property
    def verdict(self) -> dict[str, Any] | None:
        return self.record.get("verdict")

    @property
    def actions(self) -> list[dict[str, Any]]:
        return list(self.record.get("actions", []))


# ---- finding the notebook ---------------------------------------------------------------
def available_runbooks() -> list[str]:
    folder = config.notebooks_dir()
    return sorted(p.stem for p in folder.glob("*.ipynb")) if folder.is_dir() else []


def notebook_path(name: str) -> Path:
    """A runbook name (`api-down`) or a path to an .ipynb file."""
    if name.endswith(".ipynb"):
        path = Path(name)
        if path.is_file():
            return path.resolve()
        raise UnknownRunbook(f"Notebook {name} does not exist.", name=name)
    path = config.notebooks_dir() / f"{name}.ipynb"
    if path.is_file():
        return path
    known = available_runbooks()
    hint = difflib.get_close_matches(name, known, n=1)
    did = f" Did you mean '{hint[0]}'?" if hint else ""
    raise UnknownRunbook(
        f"No runbook named '{name}' (looked for {path}).{did} "
        f"Known runbooks: {', '.join(known) or 'none'}. `opsbook list` describes them.",
        name=name,
        known=known,
    )


# ---- preparing: everything that can fail on bad input, before any side effect ------------
@dataclass
class Prepared:
    runbook: str
    path: Path
    env: environments.Environment
    specs: dict[str, params.ParamSpec]
    inject: dict[str, Any]
    effective: dict[str, Any]
    approve: list[str]
    incident: str | None


def prepare(
    name: str,
    env: str | None = None,
    parameters: dict[str, Any] | None = None,
    *,
    incident: str | None = None,
    approve: list[str] | tuple[str, ...] = (),
    text_overrides: bool = False,
) -> Prepared:
    path = notebook_path(name)
    runbook = path.stem
    environment = environments.load(env)
    specs = params.inspect_notebook(path)
    overrides = dict(parameters or {})
    for reserved in params.RUNNER_PARAMETERS:
        if reserved in overrides:
            flag = "--env" if reserved == "env" else "--approve"
            raise InputError(
                f"'{reserved}' is set by the runner: use {flag} instead of -p {reserved}=..."
            )
    inject = params.resolve(
        specs, runbook, environment.parameters, overrides, text_overrides=text_overrides
    )
    approve = [str(a) for a in approve]
    if "env" in specs:
        inject["env"] = environment.name
    if approve and "approve" not in specs:
        raise InputError(
            f"Runbook '{runbook}' has no guarded actions (no 'approve' parameter), so "
            f"--approve {approve[0]} approves nothing. Run it without --approve."
        )
    if "approve" in specs:
        inject["approve"] = approve
    effective = {n: s.default for n, s in specs.items()}
    effective.update(inject)
    return Prepared(runbook, path, environment, specs, inject, effective, approve, incident)


def _prior_actions(outputs: Path, incident: str | None) -> list[dict[str, Any]]:
    """Actions applied in earlier runs of the same incident (not repeated by steps.action)."""
    if not incident:
        return []
    import json

    from .index import Index

    done: list[dict[str, Any]] = []
    with Index(outputs) as index:
        rows = index.incident_runs(incident)
    for row in rows:
        record_path = outputs / row["path"] / RECORD
        if not record_path.is_file():
            continue
        record = json.loads(record_path.read_text(encoding="utf-8"))
        for act in record.get("actions", []):
            if act.get("mode") == "applied":
                done.append({"id": act["id"], "key": act.get("key"), "run_id": row["run_id"]})
    return done


def _start_folder(prep: Prepared, mode: str, outputs: Path) -> RunFolder:
    folder = RunFolder.create(outputs, prep.runbook)
    context = {
        "id": folder.run_id,
        "runbook": prep.runbook,
        "env": prep.env.name,
        "profile": prep.env.profile,
        "incident": prep.incident,
        "operator": operator(),
        "mode": mode,
        "started": iso(),
        "approved": prep.approve,
        "parameters": prep.effective,
        # what the operator set, to rebuild the command that approves a proposed action
        "overrides": {k: v for k, v in prep.inject.items() if k not in params.RUNNER_PARAMETERS},
        "notebook": str(prep.path),
        "prior_actions": _prior_actions(outputs, prep.incident),
    }
    write_json(folder.file(CONTEXT), context)
    return folder


def _scrubber(env: environments.Environment, values: dict[str, Any]) -> Any:
    from .scrub import Scrubber

    referenced = set(env.secret_names())
    for value in values.values():
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, str) and (m := environments.SECRET_REF.match(item)):
                referenced.add(m.group(1))
    return Scrubber.from_environment(
        referenced=sorted(referenced), extra_values=env.secret_values()
    )


# ---- papermill, imported lean ---------------------------------------------------------------
@contextlib.contextmanager
def _without(*modules: str) -> Iterator[None]:
    """Make optional imports fail while papermill loads: `rfc3987_syntax` (2 s of grammar
    building for a URI format check nbformat never uses) and `pyarrow.fs` (HDFS paths)."""
    added = [m for m in modules if m not in sys.modules]
    for m in added:
        sys.modules[m] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for m in added:
            if sys.modules.get(m) is None:
                del sys.modules[m]


_ENGINE_READY = False


def _papermill() -> Any:
    global _ENGINE_READY
    with _without("rfc3987_syntax", "pyarrow.fs"):
        import papermill
        from papermill.engines import NBClientEngine, papermill_engines
    if not _ENGINE_READY:

        class OpsbookEngine(NBClientEngine):
            """papermill's nbclient engine, reporting cell progress and keeping the notebook."""

            @classmethod
            def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
                on_cell: Progress | None = kwargs.pop("on_cell", None)
                holder: dict[str, Any] | None = kwargs.pop("holder", None)
                if holder is not None:
                    holder["nb"] = nb_man.nb
                if on_cell is not None:
                    total = len(nb_man.nb.cells)
                    start, complete = nb_man.cell_start, nb_man.cell_complete

                    def cell_start(cell: Any, cell_index: int | None = None, **kw: Any) -> None:
                        if holder is not None:
                            holder["cell"] = cell_index
                        on_cell("start", cell_index or 0, total, _label(cell))
                        start(cell, cell_index, **kw)

                    def cell_complete(cell: Any, cell_index: int | None = None, **kw: Any) -> None:
                        complete(cell, cell_index, **kw)
                        on_cell("complete", cell_index or 0, total, _label(cell))

                    nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete
                return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

        papermill_engines.register("opsbook", OpsbookEngine)
        _ENGINE_READY = True
    return papermill


def _label(cell: Any) -> str:
    """A markdown cell's first heading or line; "" for code (the display shows the section)."""
    if not isinstance(cell, dict) or cell.get("cell_type") != "markdown":
        return ""
    source = cell.get("source", "")
    first = next((line.strip("# ").strip() for line in source.splitlines() if line.strip()), "")
    return first[:70]


def _kernel_manager_class() -> Any:
    """Kernels over IPC sockets: local-only, and no "running over TCP without encryption"
    warning from ipykernel on every run."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    class IpcKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

    return IpcKernelManager


class _Terminated(BaseException):
    """SIGTERM, turned into an exception in the main thread."""


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


def _prewarm_renderer() -> threading.Thread:
    """Import nbconvert and build the exporter while the kernel works (2 cores, I/O wait)."""

    def warm() -> None:
        with contextlib.suppress(Exception):
            from . import render

            render.exporter()

    thread = threading.Thread(target=warm, name="opsbook-prewarm", daemon=True)
    thread.start()
    return thread


# ---- the public API -----------------------------------------------------------------------
def run(
    name: str,
    env: str | None = None,
    parameters: dict[str, Any] | None = None,
    *,
    incident: str | None = None,
    approve: list[str] | tuple[str, ...] = (),
    timeout: float | None = None,
    outputs: Path | None = None,
    progress: Progress | None = None,
    text_overrides: bool = False,
) -> RunResult:
    """Execute a runbook headless and archive its record. Raises InputError on bad input."""
    prep = prepare(
        name, env, parameters, incident=incident, approve=approve, text_overrides=text_overrides
    )
    outputs = outputs or config.outputs_dir()
    folder = _start_folder(prep, "headless", outputs)
    if progress is not None:
        progress("folder", 0, 0, str(folder.path))
    os.environ.setdefault("OPSBOOK_HOME", str(config.project_root()))
    pm = _papermill()
    warm = _prewarm_renderer()
    holder: dict[str, Any] = {}
    status, error = "completed", None
    try:
        with _sigterm_raises():
            pm.execute_notebook(
                str(prep.path),
                None,
                parameters=prep.inject,
                engine_name="opsbook",
                request_save_on_cell_execute=False,
                kernel_name="python3",
                progress_bar=False,
                log_output=False,
                cwd=str(folder.path),
                execution_timeout=timeout,
                on_cell=progress,
                holder=holder,
                kernel_manager_class=_kernel_manager_class(),
            )
    except pm.PapermillExecutionError:
        status = "failed"
    except (KeyboardInterrupt, _Terminated) as exc:
        status = "aborted"
        error = {
            "ename": "KeyboardInterrupt" if isinstance(exc, KeyboardInterrupt) else "SIGTERM",
            "evalue": "the run was interrupted; cells after the current one did not run",
            "cell_index": holder.get("cell"),
            "cell_id": None,
            "timeout": False,
        }
    except Exception as exc:  # timeouts, a dead kernel, a kernel that never started
        status = "failed"
        timed_out = type(exc).__name__ == "CellTimeoutError"
        error = {
            "ename": type(exc).__name__,
            "evalue": (
                f"cell {holder.get('cell')} ran longer than the {timeout} s timeout"
                if timed_out
                else str(exc).strip().splitlines()[-1]
                if str(exc).strip()
                else ""
            ),
            "cell_index": holder.get("cell"),
            "cell_id": None,
            "timeout": timed_out,
        }
    warm.join(timeout=10)
    # Built after the run: a sandbox started by the kernel has written its credentials by now.
    scrubber = _scrubber(prep.env, prep.effective)
    result = _archive(folder.path, status, holder.get("nb"), error, scrubber, outputs)
    if status == "aborted":
        raise RunAborted(
            f"Run {result.run_id} was interrupted; its record is at {result.html}.", result=result
        )
    return result


def _archive(
    run_dir: Path,
    status: str,
    nb: Any,
    error: dict[str, Any] | None,
    scrubber: Any,
    outputs: Path,
) -> RunResult:
    from . import records

    record = records.build(run_dir, status=status, nb=nb, error=error, ended=utcnow())
    record = records.archive(run_dir, record, nb, scrubber, outputs)
    return RunResult(
        record["run"]["id"],
        record["run"]["runbook"],
        run_dir,
        record["run"]["status"],
        record["run"]["exit_code"],
        record,
    )


def plan(
    name: str,
    env: str | None = None,
    parameters: dict[str, Any] | None = None,
    *,
    incident: str | None = None,
    approve: list[str] | tuple[str, ...] = (),
    outputs: Path | None = None,
    text_overrides: bool = False,
) -> RunResult:
    """Prepare a parameterized copy in a new run folder for a walkthrough in Jupyter."""
    import nbformat

    prep = prepare(
        name, env, parameters, incident=incident, approve=approve, text_overrides=text_overrides
    )
    outputs = outputs or config.outputs_dir()
    folder = _start_folder(prep, "interactive", outputs)
    pm = _papermill()
    nb = pm.execute_notebook(
        str(prep.path),
        None,
        parameters=prep.inject,
        prepare_only=True,
        kernel_name="python3",
        progress_bar=False,
    )
    from .runfolder import write_atomic

    write_atomic(folder.file(NOTEBOOK), nbformat.writes(nb))
    from . import records
    from .index import Index

    record = records.build(folder.path, status="open")
    write_json(folder.file(RECORD), record)
    with Index(outputs) as index:
        index.upsert(record, folder.path)
        index.write_html()
    return RunResult(folder.run_id, prep.runbook, folder.path, "open", None, record)


def finish(
    run_dir: Path | str, *, from_kernel: bool = False, outputs: Path | None = None
) -> RunResult:
    """Render, record and index a walkthrough's run folder (the notebook as last saved)."""
    import nbformat

    run_dir = Path(run_dir)
    context = read_context(run_dir)
    env = environments.load(context.get("env"))
    outputs = outputs or _outputs_of(run_dir)
    nb = nbformat.read(run_dir / NOTEBOOK, as_version=4)
    scrubber = _scrubber(env, context.get("parameters", {}))
    return _archive(run_dir, "completed", nb, None, scrubber, outputs)


def _outputs_of(run_dir: Path) -> Path:
    """outputs/<date>/<run> -> outputs."""
    return run_dir.resolve().parent.parent
