"""The Cloudflare API v4 envelope, its errors and its two kinds of paging.

    {"success": bool, "errors": [{code, message}], "messages": [], "result": ..., "result_info"?}

Page-based lists answer `[]` for any page past the end: the SDKs page until they get an
empty result, and an emulator that ignored `page` would make them loop forever.
Cursor lists carry `result_info: {count, cursor}` and stop on an empty cursor.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse


class CFError(Exception):
    """Raise from a Cloudflare route: the server answers with the error envelope."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def ok(result: Any, result_info: dict[str, Any] | None = None, status: int = 200) -> JSONResponse:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return JSONResponse(body, status_code=status)


def error(status: int, code: int, message: str) -> JSONResponse:
    body = {
        "success": False,
        "errors": [{"code": code, "message": message}],
        "messages": [],
        "result": None,
    }
    return JSONResponse(body, status_code=status)


def not_found(what: str, code: int = 10007) -> CFError:
    return CFError(404, code, f"{what} not found")


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise CFError(400, 10001, f"{name} must be an integer, got {raw!r}") from None
    if value < low or value > high:
        raise CFError(400, 10001, f"{name} must be between {low} and {high}, got {value}")
    return value


def page_slice(
    request: Request, items: Sequence[Any], *, per_page: int = 20, max_per_page: int = 1000
) -> tuple[list[Any], dict[str, Any]]:
    """The page of `items` that ?page and ?per_page ask for, and its result_info."""
    page = _int_param(request, "page", 1, 1, 1_000_000)
    size = _int_param(request, "per_page", per_page, 1, max_per_page)
    start = (page - 1) * size
    chunk = list(items[start : start + size])
    total = len(items)
    info = {
        "page": page,
        "per_page": size,
        "count": len(chunk),
        "total_count": total,
        "total_pages": (total + size - 1) // size,
    }
    return chunk, info


def paged(
    request: Request, items: Sequence[Any], *, per_page: int = 20, max_per_page: int = 1000
) -> JSONResponse:
    """A page of `items` from ?page and ?per_page. Past the end: `result: []`."""
    chunk, info = page_slice(request, items, per_page=per_page, max_per_page=max_per_page)
    return ok(chunk, info)


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        offset = int(json.loads(base64.urlsafe_b64decode(padded))["o"])
    except (ValueError, KeyError, TypeError):
        raise CFError(400, 10001, "invalid cursor") from None
    return max(offset, 0)


def cursor_paged(
    request: Request, items: Sequence[Any], *, limit: int = 1000, max_limit: int = 1000
) -> JSONResponse:
    """A slice of `items` from ?cursor and ?limit; result_info {count, cursor}."""
    size = _int_param(request, "limit", limit, 1, max_limit)
    raw = request.query_params.get("cursor") or ""
    start = decode_cursor(raw) if raw else 0
    chunk = list(items[start : start + size])
    nxt = encode_cursor(start + size) if start + size < len(items) else ""
    return ok(chunk, {"count": len(chunk), "cursor": nxt})


async def json_body(request: Request) -> dict[str, Any]:
    """The JSON object body, whatever the content type (wrangler sends text/plain)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CFError(400, 10002, f"request body is not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise CFError(400, 10002, "request body must be a JSON object")
    return data


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str
    data: bytes


def multipart(content_type: str, body: bytes) -> list[Part]:
    """The parts of a multipart/form-data body (stdlib email parser; no extra dependency)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise CFError(400, 10021, "expected a multipart/form-data body")
    parts: list[Part] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts.append(Part(name, part.get_filename(), part.get_content_type(), payload))
    return parts
