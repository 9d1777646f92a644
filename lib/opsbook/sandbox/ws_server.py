"""The tail websocket server: RFC 6455 server side, written here, on 127.0.0.1:0.

Why our own: wrangler's first client frame (`{"debug":false}`) is sent UNMASKED. RFC 6455
says a server must close on that; Cloudflare does not, and neither do we. Everything
else follows the RFC: the HTTP/1.1 upgrade with Sec-WebSocket-Accept, the `trace-v1`
subprotocol (required), text/binary/continuation frames (masked or not), ping -> pong,
close -> close echo. Server frames are never masked.

The server runs its own asyncio loop in a daemon thread, so it is independent of the
uvicorn loop; each connection polls the traffic table for new rows of its script.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import struct
import threading
import time
from typing import Any

from . import trace
from .state import State

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBPROTOCOL = "trace-v1"
POLL_S = 0.25
MAX_FRAME = 1 << 20
OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def encode_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final frame. Server frames pass mask=None; tests use a mask to act as clients."""
    head = bytearray([0x80 | opcode])
    mbit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head.append(mbit | n)
    elif n < 1 << 16:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if mask:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(head) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[bool, int, bytes]:
    """(fin, opcode, payload), unmasking when the client masked, accepting it when not."""
    b0, b1 = await reader.readexactly(2)
    fin, opcode = bool(b0 & 0x80), b0 & 0x0F
    masked, n = bool(b1 & 0x80), b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    if n > MAX_FRAME:
        raise ValueError("frame too large")
    mask = await reader.readexactly(4) if masked else b""
    data = await reader.readexactly(n)
    if masked:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return fin, opcode, data


def _http_error(status: str, message: str) -> bytes:
    body = message.encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


class TailServer:
    def __init__(self, state: State) -> None:
        self.state = state
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: asyncio.Server | None = None
        self.thread: threading.Thread | None = None
        self.port = 0
        self.connections: set[asyncio.Task[Any]] = set()

    # ---- lifecycle ------------------------------------------------------------
    def start(self) -> int:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            asyncio.set_event_loop(loop)

            async def boot() -> None:
                self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
                self.port = self.server.sockets[0].getsockname()[1]
                ready.set()

            loop.run_until_complete(boot())
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self.thread = threading.Thread(target=run, name="opsbook-tail", daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("the tail websocket server did not start")
        return self.port

    def stop(self) -> None:
        loop = self.loop
        if loop is None or self.thread is None:
            return

        async def shutdown() -> None:
            if self.server is not None:
                self.server.close()
            for task in list(self.connections):
                task.cancel()
            await asyncio.gather(*self.connections, return_exceptions=True)
            if self.server is not None:
                await self.server.wait_closed()
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        self.thread.join(10)

    # ---- one connection -----------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            tail = await self._handshake(reader, writer)
            if tail is not None:
                await self._stream(tail, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.CancelledError):
            pass
        finally:
            self.connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> dict[str, Any] | None:
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if len(parts) < 3 or parts[0] != "GET" or not parts[1].startswith("/tail/"):
            writer.write(_http_error("404 Not Found", "no such tail"))
            return None
        key = headers.get("sec-websocket-key", "")
        if "websocket" not in headers.get("upgrade", "").lower() or not key:
            writer.write(_http_error("400 Bad Request", "expected a websocket upgrade"))
            return None
        protocols = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
        if SUBPROTOCOL not in protocols:
            writer.write(_http_error("400 Bad Request", "subprotocol trace-v1 is required"))
            return None
        tail = self._tail(parts[1][len("/tail/") :].split("?")[0])
        if tail is None:
            writer.write(_http_error("404 Not Found", "tail not found or expired"))
            return None
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept_key(key)}\r\n"
                f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        return tail

    def _tail(self, tail_id: str) -> dict[str, Any] | None:
        with self.state.read() as db:
            row = db.execute(
                "SELECT * FROM tails WHERE id = ? AND deleted = 0 AND expires_ms > ?",
                (tail_id, int(time.time() * 1000)),
            ).fetchone()
        return dict(row) if row else None

    async def _stream(
        self, tail: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        from .tail import make_filter

        closing = asyncio.Event()
        reader_task = asyncio.create_task(self._read_loop(reader, writer, closing))
        keep = make_filter(json.loads(tail["filters"]), tail["id"])
        with self.state.read() as db:
            last_id = db.execute("SELECT coalesce(max(id), 0) FROM traffic").fetchone()[0]
        since = int(tail["created_ms"]) - 2000
        try:
            while not closing.is_set():
                if self._tail(tail["id"]) is None:  # DELETE .../tails/{id} or expired
                    writer.write(encode_frame(OP_CLOSE, struct.pack("!H", 1000) + b"tail deleted"))
                    await writer.drain()
                    break
                with self.state.read() as db:
                    rows = db.execute(
                        "SELECT * FROM traffic WHERE id > ? AND script = ? ORDER BY id LIMIT 1000",
                        (last_id, tail["script"]),
                    ).fetchall()
                for row in rows:
                    last_id = max(last_id, row["id"])
                    if row["ts_ms"] < since:
                        continue  # a backdated regeneration: not live
                    item = trace.trace_item(row)
                    if keep(item):
                        payload = json.dumps(item, separators=(",", ":")).encode()
                        writer.write(encode_frame(OP_TEXT, payload))
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closing.wait(), POLL_S)
        finally:
            reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader_task

    async def _read_loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, closing: asyncio.Event
    ) -> None:
        try:
            while True:
                _fin, opcode, data = await read_frame(reader)
                if opcode == OP_PING:
                    writer.write(encode_frame(OP_PONG, data))
                elif opcode == OP_CLOSE:
                    code = data[:2] if len(data) >= 2 else struct.pack("!H", 1000)
                    writer.write(encode_frame(OP_CLOSE, code))
                    await writer.drain()
                    break
                # text frames ({"debug":false}) and pongs need no answer
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            closing.set()
