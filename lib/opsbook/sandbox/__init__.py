"""The embedded sandbox platform: a real server over real SQLite (docs/architecture.md).

    info = ensure_running()        # start (and seed with seed 7) when none is running
    info.base_url                  # http://127.0.0.1:PORT
    info.urls()["cloudflare"]      # http://127.0.0.1:PORT/client/v4
    reset(seed=7); stop()

One server per state folder (default `config.sandbox_dir()`, `OPSBOOK_SANDBOX_DIR`).
Starting, stopping and resetting hold an fcntl lock on `<state>/.lock`, so two
processes calling `ensure_running()` at once start one server. A `server.json` whose
process is dead or whose port does not answer is stale: it is removed and replaced.
A state folder that is empty, or was built with other tables (`SCHEMA`s), is reseeded
(seed 7) when the server starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import config
from ..errors import OpsbookError
from .state import ACCOUNT_ID, State

DEFAULT_SEED = 7
START_TIMEOUT = 20.0
STOP_TIMEOUT = 8.0


@dataclass
class SandboxInfo:
    base_url: str
    state_dir: Path
    pid: int
    account_id: str
    credentials: dict[str, str] = field(repr=False)
    port: int = 0
    tail_port: int | None = None
    load_errors: list[str] = field(default_factory=list)  # modules whose routes are off

    def urls(self) -> dict[str, str]:
        """Base URL of every API the sandbox serves."""
        base = self.base_url
        urls = {
            "cloudflare": f"{base}/client/v4",
            "stripe": base,
            "statuspage": f"{base}/status",
            "apps.manuscript": f"{base}/apps/manuscript",
            "apps.peptalk": f"{base}/apps/peptalk",
            "mail": f"{base}/mail",
        }
        if self.tail_port:
            urls["tail"] = f"ws://127.0.0.1:{self.tail_port}"
        return urls


def _state(state_dir: Path | str | None) -> State:
    return State(Path(state_dir).resolve() if state_dir else config.sandbox_dir())


@contextlib.contextmanager
def _locked(state: State) -> Iterator[None]:
    state.dir.mkdir(parents=True, exist_ok=True)
    with open(state.dir / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _ping(port: int, pid: int) -> dict[str, object] | None:
    """The server's /_sandbox/ping answer if the server on `port` is process `pid`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/_sandbox/ping")
        resp = conn.getresponse()
        data = json.loads(resp.read()) if resp.status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    return data if isinstance(data, dict) and data.get("pid") == pid else None


def _info(state: State, data: dict[str, object]) -> SandboxInfo:
    return SandboxInfo(
        base_url=str(data["base_url"]),
        state_dir=state.dir,
        pid=int(str(data["pid"])),
        account_id=ACCOUNT_ID,
        credentials=state.credentials,
        port=int(str(data["port"])),
        tail_port=int(str(data["tail_port"])) if data.get("tail_port") else None,
    )


def _running(state: State) -> SandboxInfo | None:
    data = state.server_info()
    if data is None:
        return None
    try:
        pid, port = int(data["pid"]), int(data["port"])
    except (KeyError, TypeError, ValueError):
        pid, port = 0, 0
    ping = _ping(port, pid) if pid and _alive(pid) else None
    if ping is None:
        return None
    info = _info(state, data)
    errors = ping.get("load_errors")
    info.load_errors = [str(e) for e in errors] if isinstance(errors, list) else []
    return info


def running(state_dir: Path | str | None = None) -> SandboxInfo | None:
    """The sandbox serving this state folder, or None (a stale server.json is ignored)."""
    return _running(_state(state_dir))


def _start(state: State, seed: int | None) -> SandboxInfo:
    if (info := _running(state)) is not None:
        if seed is None:
            return info
        _stop(state)
    _clear_stale(state)
    if seed is not None or not state.is_seeded():
        state.rebuild(DEFAULT_SEED if seed is None else seed)
    last = state.dir / ".last_port"
    port = last.read_text().strip() if last.is_file() else "0"
    with open(state.dir / "server.log", "ab") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "opsbook.sandbox", "serve", "--detach",
             "--state", str(state.dir), "--port", port or "0"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=state.dir, start_new_session=True,
        )  # fmt: skip
        code = launcher.wait(timeout=START_TIMEOUT + 5)
    data = state.server_info()
    if code == 0 and data is not None and _alive(int(data.get("pid", 0))):
        return _info(state, data)
    log_tail = (state.dir / "server.log").read_text(errors="replace")[-3000:]
    raise OpsbookError(
        f"The sandbox server did not start (state {state.dir}). "
        f"Last lines of {state.dir / 'server.log'}:\n{log_tail}"
    )


def _clear_stale(state: State) -> None:
    data = state.server_info()
    if data is None:
        return
    pid = int(data.get("pid", 0) or 0)
    if pid and _alive(pid) and _is_our_server(pid, state):
        _terminate(pid)  # alive but not answering: a hung server on this state; end it
    state.server_json.unlink(missing_ok=True)


def _is_our_server(pid: int, state: State) -> bool:
    """True only for a sandbox server process serving this state folder."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"opsbook.sandbox" in argv and str(state.dir).encode() in argv


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _stop(state: State) -> bool:
    data = state.server_info()
    if data is None:
        return False
    pid = int(data.get("pid", 0) or 0)
    was_alive = bool(pid) and _alive(pid) and _is_our_server(pid, state)
    if was_alive:
        _terminate(pid)
    state.server_json.unlink(missing_ok=True)
    return was_alive


def start(state_dir: Path | str | None = None, seed: int | None = None) -> SandboxInfo:
    """Start the server (seeding the state first if it is empty, or if `seed` is given)."""
    state = _state(state_dir)
    with _locked(state):
        return _start(state, seed)


def ensure_running(state_dir: Path | str | None = None) -> SandboxInfo:
    """The running sandbox, started (and seeded with seed 7 if empty) when needed."""
    state = _state(state_dir)
    if (info := _running(state)) is not None:
        return info
    with _locked(state):
        return _start(state, None)


def stop(state_dir: Path | str | None = None) -> bool:
    """Stop the server. True if one was running."""
    state = _state(state_dir)
    with _locked(state):
        return _stop(state)


def reset(state_dir: Path | str | None = None, seed: int = DEFAULT_SEED) -> SandboxInfo:
    """Recreate the whole state from `seed` and (re)start the server on it."""
    state = _state(state_dir)
    with _locked(state):
        _stop(state)
        state.rebuild(seed)
        return _start(state, None)


__all__ = ["SandboxInfo", "ensure_running", "reset", "running", "start", "stop"]
