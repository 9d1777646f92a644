"""Tails: POST .../tails, the trace-v1 websocket (masked and UNMASKED client frames), DELETE."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import threading
import time
from typing import Any

import httpx

from opsbook import sandbox as sandbox_api
from opsbook.clients import logs

SCRIPT = "manuscript-upload-api"
TRACE_KEYS = {
    "outcome",
    "scriptName",
    "scriptVersion",
    "exceptions",
    "logs",
    "eventTimestamp",
    "event",
    "cpuTime",
    "wallTime",
}


def api(info: sandbox_api.SandboxInfo) -> tuple[str, dict[str, str]]:
    base = f"{info.base_url}/client/v4/accounts/{info.account_id}/workers/scripts/{SCRIPT}/tails"
    return base, {"Authorization": f"Bearer {info.credentials['OPSBOOK_SANDBOX_TOKEN']}"}


def create(
    info: sandbox_api.SandboxInfo, filters: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    base, headers = api(info)
    r = httpx.post(
        base,
        content=json.dumps({"filters": filters or []}),
        headers={**headers, "Content-Type": "text/plain;charset=UTF-8"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert set(result) == {"id", "url", "expires_at"} and result["url"].startswith(
        "ws://127.0.0.1:"
    )
    return dict(result)


def poke(info: sandbox_api.SandboxInfo, n: int = 3, delay: float = 0.5) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        with httpx.Client(timeout=10) as c:
            for _ in range(n):
                c.get(
                    f"{info.base_url}/apps/manuscript/health", headers={"User-Agent": "tail-test"}
                )
                c.post(
                    f"{info.base_url}/apps/manuscript/auth/login",
                    json={"email": "x@example.com", "password": "x"},
                )

    t = threading.Thread(target=run)
    t.start()
    return t


def open_raw(url: str, protocol: str | None = "trace-v1") -> tuple[socket.socket, bytes]:
    host, rest = url[len("ws://") :].split("/", 1)
    addr, port = host.split(":")
    sock = socket.create_connection((addr, int(port)), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET /{rest} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]  # fmt: skip
    if protocol:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return sock, head


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def recv_frame(sock: socket.socket) -> tuple[int, bytes]:
    b0, b1 = recv_exact(sock, 2)
    assert not b1 & 0x80, "server frames are never masked"
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", recv_exact(sock, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", recv_exact(sock, 8))
    return b0 & 0x0F, recv_exact(sock, n)


def test_unmasked_client_frame_is_accepted_and_events_stream(
    sandbox: sandbox_api.SandboxInfo,
) -> None:
    session = create(sandbox)
    sock, head = open_raw(session["url"])
    try:
        assert head.startswith(b"HTTP/1.1 101") and b"Sec-WebSocket-Protocol: trace-v1" in head
        payload = b'{"debug":false}'
        sock.sendall(bytes([0x81, len(payload)]) + payload)  # UNMASKED, as wrangler sends it
        poker = poke(sandbox)
        ours = None
        deadline = time.monotonic() + 20
        while ours is None and time.monotonic() < deadline:
            opcode, data = recv_frame(sock)
            assert opcode == 0x1
            item = json.loads(data)
            assert set(item) >= TRACE_KEYS and item["scriptName"] == SCRIPT
            request = item["event"].get("request") or {}
            if request.get("headers", {}).get("user-agent") == "tail-test":
                ours = item
        poker.join()
        assert ours is not None, "the tail did not stream our request"
        assert ours["outcome"] == "ok" and ours["event"]["response"]["status"] in (200, 401)
        assert set(ours["event"]["request"]["cf"]) >= {"colo", "country"}
        assert isinstance(ours["scriptVersion"]["id"], str) and ours["eventTimestamp"] > 1e12
        base, headers = api(sandbox)
        assert (
            httpx.delete(f"{base}/{session['id']}", headers=headers, timeout=10).status_code == 200
        )
        deadline = time.monotonic() + 10
        opcode = 0
        while opcode != 0x8 and time.monotonic() < deadline:
            opcode, data = recv_frame(sock)
        assert opcode == 0x8 and struct.unpack("!H", data[:2])[0] == 1000
    finally:
        sock.close()


def test_subprotocol_required_and_unknown_tail(sandbox: sandbox_api.SandboxInfo) -> None:
    session = create(sandbox)
    sock, head = open_raw(session["url"], protocol=None)
    sock.close()
    assert head.startswith(b"HTTP/1.1 400")
    sock, head = open_raw(session["url"].rsplit("/", 1)[0] + "/ffff")
    sock.close()
    assert head.startswith(b"HTTP/1.1 404")
    base, headers = api(sandbox)
    assert httpx.delete(f"{base}/{session['id']}", headers=headers, timeout=10).status_code == 200
    assert (
        httpx.delete(f"{base}/{session['id']}", headers=headers, timeout=10).status_code == 200
    )  # flagged twice is fine
    bad = httpx.post(base, content='{"filters":[{"colour":"red"}]}', headers=headers, timeout=10)
    assert bad.status_code == 400 and bad.json()["success"] is False


def test_client_tail_with_method_filter(sandbox: sandbox_api.SandboxInfo) -> None:
    _base, headers = api(sandbox)
    poker = poke(sandbox, n=4, delay=1.0)
    df = logs.tail(f"{sandbox.base_url}/client/v4", sandbox.account_id, headers["Authorization"][7:], SCRIPT, 6,
                   filters=[{"method": ["POST"]}])  # fmt: skip
    poker.join()
    assert len(df) >= 4
    assert set(df["method"]) == {"POST"}
    assert (df["route"] == "POST /auth/login").sum() >= 4
    assert list(df.columns) == list(logs.COLUMNS)
