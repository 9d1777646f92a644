"""`python -m opsbook.sandbox serve --state DIR [--port N] [--detach]` runs the server.

Any other command goes to the `opsbook sandbox` click group (start, stop, status, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path


def _serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m opsbook.sandbox serve",
        description="Run the sandbox server on 127.0.0.1 for one state folder (blocks).",
    )
    parser.add_argument("--state", required=True, type=Path, help="the sandbox state folder")
    parser.add_argument("--port", type=int, default=0, help="preferred port (0: OS picks)")
    parser.add_argument(
        "--detach", action="store_true", help="fork, start a new session, return at once"
    )
    args = parser.parse_args(argv)
    if args.detach:
        child = os.fork()
        if child > 0:
            return _wait_ready(args.state.resolve() / "server.json", child)
        os.setsid()
    from .server import serve
    from .state import State

    serve(State(args.state.resolve()), port=args.port)
    return 0


def _wait_ready(server_json: Path, pid: int, timeout: float = 20.0) -> int:
    """In the launcher: 0 once the server wrote server.json, 1 if it died or hung."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(server_json.read_text(encoding="utf-8")).get("pid") == pid:
                return 0
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return 1
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return _serve(argv[1:])
    from ..cli.sandbox import sandbox

    sandbox.main(args=argv, prog_name="python -m opsbook.sandbox")
    return 0


if __name__ == "__main__":
    sys.exit(main())
