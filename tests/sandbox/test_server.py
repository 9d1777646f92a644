"""The sandbox server process: loopback only, lifecycle, state on disk, auth shapes."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from opsbook import sandbox as sandbox_api
from opsbook.sandbox.state import State

CF_AUTH_ERROR = {
    "success": False,
    "errors": [{"code": 10000, "message": "Authentication error"}],
    "messages": [],
    "result": None,
}


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a LISTEN socket on `port`, from /proc/net/tcp{,6}."""
    found: set[str] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, hexport = fields[1].rsplit(":", 1)
            if int(hexport, 16) == port and fields[3] == "0A":
                found.add(addr)
    return found


def _non_loopback_ipv4() -> list[str]:
    """This machine's own IPv4 addresses other than 127.x (from the kernel's FIB)."""
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        return []
    found = {
        prev.split()[-1]
        for prev, line in itertools.pairwise(lines)
        if "/32 host LOCAL" in line and prev.strip().startswith("|--")
    }
    return sorted(a for a in found if not a.startswith("127."))


def test_server_json_says_loopback(sandbox: sandbox_api.SandboxInfo) -> None:
    data = json.loads((sandbox.state_dir / "server.json").read_text())
    assert data["host"] == "127.0.0.1"
    assert data["base_url"] == f"http://127.0.0.1:{data['port']}" == sandbox.base_url
    assert data["pid"] == sandbox.pid
    assert set(data) >= {"pid", "port", "base_url", "tail_port", "started_at"}


def test_listens_on_loopback_only(sandbox: sandbox_api.SandboxInfo) -> None:
    addresses = _listening_addresses(sandbox.port)
    assert addresses == {"0100007F"}, f"listening on {addresses}, want 127.0.0.1 only"
    others = _non_loopback_ipv4()
    if not others:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    for addr in others:
        with pytest.raises(OSError):
            socket.create_connection((addr, sandbox.port), timeout=1).close()


def test_tail_port_is_loopback_too(sandbox: sandbox_api.SandboxInfo) -> None:
    if not sandbox.tail_port:
        pytest.skip("the tail server (tail.start_tail_server) is not part of this tree")
    assert _listening_addresses(sandbox.tail_port) == {"0100007F"}


def test_credentials_have_real_shapes(sandbox: sandbox_api.SandboxInfo) -> None:
    token = sandbox.credentials["OPSBOOK_SANDBOX_TOKEN"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{40}", token)
    assert sandbox.credentials["OPSBOOK_SANDBOX_STRIPE_KEY"].startswith("sk_test_")
    assert sandbox.credentials["STRIPE_WEBHOOK_SECRET_MANUSCRIPT"].startswith("whsec_")
    assert sandbox.credentials["STRIPE_WEBHOOK_SECRET_PEPTALK"].startswith("whsec_")
    mode = (sandbox.state_dir / "credentials.json").stat().st_mode & 0o777
    assert mode == 0o600


def test_running_reports_the_server(sandbox: sandbox_api.SandboxInfo) -> None:
    found = sandbox_api.running(sandbox.state_dir)
    assert found is not None and found.pid == sandbox.pid
    assert found.urls()["cloudflare"] == sandbox.base_url + "/client/v4"


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic dXNlcjpwYXNz"])
def test_cloudflare_rejects_bad_auth_like_cloudflare(
    sandbox: sandbox_api.SandboxInfo, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    url = f"{sandbox.base_url}/client/v4/accounts/{sandbox.account_id}/workers/scripts"
    response = httpx.get(url, headers=headers)
    assert response.status_code == 403
    assert response.json() == CF_AUTH_ERROR


def test_cloudflare_unknown_route_is_an_envelope(sandbox: sandbox_api.SandboxInfo) -> None:
    token = sandbox.credentials["OPSBOOK_SANDBOX_TOKEN"]
    response = httpx.get(
        f"{sandbox.base_url}/client/v4/no/such/thing", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == 7003


def test_stripe_rejects_bad_keys_like_stripe(sandbox: sandbox_api.SandboxInfo) -> None:
    url = f"{sandbox.base_url}/v1/customers"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert "You did not provide an API key" in missing.json()["error"]["message"]

    wrong_key = "sk_test_51WRONGwrongWRONGwrong1234"
    wrong = httpx.get(url, headers={"Authorization": f"Bearer {wrong_key}"})
    assert wrong.status_code == 401
    message = wrong.json()["error"]["message"]
    assert message.startswith("Invalid API Key provided: sk_test_")
    assert message.endswith("1234") and wrong_key not in message

    key = sandbox.credentials["OPSBOOK_SANDBOX_STRIPE_KEY"]
    assert httpx.get(url, auth=(key, "")).status_code != 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}).status_code != 401


def test_status_page_needs_no_auth(sandbox: sandbox_api.SandboxInfo) -> None:
    response = httpx.get(f"{sandbox.base_url}/_sandbox/ping")
    assert response.status_code == 200 and response.json()["pid"] == sandbox.pid


def test_state_survives_stop_and_start(spare_state: Path) -> None:
    info = sandbox_api.start(spare_state)
    state = State(spare_state)
    from opsbook.sandbox import cf_kv

    cf_kv.kv_put(state, "manuscript-sessions", "survivor", b"still here")
    assert sandbox_api.stop(spare_state) is True
    assert not (spare_state / "server.json").exists()
    assert sandbox_api.running(spare_state) is None
    assert sandbox_api.stop(spare_state) is False

    again = sandbox_api.start(spare_state)
    assert again.pid != info.pid
    assert again.port == info.port  # the last port is preferred, so URLs stay valid
    token = again.credentials["OPSBOOK_SANDBOX_TOKEN"]
    ns = cf_kv.namespace_id(state, "manuscript-sessions")
    response = httpx.get(
        f"{again.urls()['cloudflare']}/accounts/{again.account_id}/storage/kv/namespaces/"
        f"{ns}/values/survivor",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.content == b"still here"


def test_sigterm_shuts_down_cleanly(spare_state: Path) -> None:
    info = sandbox_api.start(spare_state)
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while (spare_state / "server.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (spare_state / "server.json").exists()


def test_stale_server_json_of_a_dead_server_is_replaced(spare_state: Path) -> None:
    info = sandbox_api.start(spare_state)
    os.kill(info.pid, signal.SIGKILL)  # no clean shutdown: server.json stays behind
    deadline = time.monotonic() + 10
    while sandbox_api._alive(info.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (spare_state / "server.json").exists()
    assert sandbox_api.running(spare_state) is None
    again = sandbox_api.ensure_running(spare_state)
    assert again.pid != info.pid
    assert httpx.get(f"{again.base_url}/_sandbox/ping").json()["pid"] == again.pid


def test_stale_server_json_pointing_elsewhere_is_replaced(spare_state: Path) -> None:
    # a live pid that is not a sandbox (this test process) and a port nobody answers on
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead_port = probe.getsockname()[1]
    probe.close()
    (spare_state / "server.json").write_text(
        json.dumps({"pid": os.getpid(), "port": dead_port, "base_url": "x", "tail_port": None})
    )
    assert sandbox_api.running(spare_state) is None
    info = sandbox_api.ensure_running(spare_state)
    assert info.pid != os.getpid()  # and this process was not signalled
    assert sandbox_api.running(spare_state) is not None


def test_concurrent_ensure_running_starts_one_server(spare_state: Path) -> None:
    code = "import sys; from opsbook import sandbox; print(sandbox.ensure_running(sys.argv[1]).pid)"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(spare_state)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    pids = set()
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        pids.add(int(out.strip()))
    assert len(pids) == 1


def test_a_server_that_cannot_start_is_reported(
    spare_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (spare_state / "server.log").write_text("ImportError: the last words of the server\n")
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the launcher dies at once
    started = time.monotonic()
    with pytest.raises(Exception, match=r"did not start(.|\n)*the last words"):
        sandbox_api.start(spare_state)
    assert time.monotonic() - started < 5


def test_a_state_built_by_other_code_needs_a_reseed(spare_state: Path) -> None:
    state = State(spare_state)
    assert state.is_seeded()
    with state.tx() as db:
        db.execute("UPDATE meta SET value = 'older-code' WHERE key = 'schema'")
    assert not state.is_seeded()  # start() rebuilds it before serving
    (spare_state / "control.sqlite").unlink()
    assert not state.is_seeded()


BROKEN_IMPORT = """
import runpy, sys

class Broken:
    def find_spec(self, name, path=None, target=None):
        if name == "opsbook.sandbox.statuspage":
            raise RuntimeError("statuspage is broken for this test")
        return None

sys.meta_path.insert(0, Broken())
sys.argv = ["x", "serve", "--state", sys.argv[1]]
runpy.run_module("opsbook.sandbox", run_name="__main__")
"""


def test_a_module_that_fails_to_load_is_reported_not_fatal(spare_state: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", BROKEN_IMPORT, str(spare_state)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        info = None
        while info is None and time.monotonic() < deadline:
            info = sandbox_api.running(spare_state)
            time.sleep(0.1)
        assert info is not None and "statuspage" in info.load_errors
        token = info.credentials["OPSBOOK_SANDBOX_TOKEN"]
        verify = httpx.get(f"{info.urls()['cloudflare']}/user/tokens/verify",
                           headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert verify.status_code == 200  # the rest of the sandbox serves
        assert httpx.get(f"{info.urls()['statuspage']}/api/v2/status.json").status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=15)
