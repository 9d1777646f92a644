"""clients/http.py: bounded retries, Retry-After, idempotency, unreachable hosts."""

from __future__ import annotations

import socket

import httpx
import pytest

from opsbook.clients.http import RetryTransport, build_client, retry_after_seconds
from opsbook.errors import ApiUnreachable


class Script:
    """A MockTransport handler answering a fixed list of statuses, recording requests."""

    def __init__(self, *answers: tuple[int, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        return httpx.Response(status, headers=headers, json={"n": len(self.seen)})


def client_for(script: Script, sleeps: list[float], retries: int = 3) -> httpx.Client:
    transport = RetryTransport(httpx.MockTransport(script), retries=retries, sleep=sleeps.append)
    return httpx.Client(base_url="https://api.example.test", transport=transport)


def test_retries_429_honouring_retry_after() -> None:
    script, sleeps = Script((429, {"Retry-After": "2"}), (429, {}), (200, {})), []
    with client_for(script, sleeps) as http:
        response = http.post("/x", json={"a": 1})
    assert response.status_code == 200 and len(script.seen) == 3
    assert sleeps == [2.0, 0.5]  # the header, then exponential backoff (attempt 1)


def test_retry_after_is_capped() -> None:
    script, sleeps = Script((503, {"Retry-After": "3600"}), (200, {})), []
    with client_for(script, sleeps) as http:
        assert http.get("/x").status_code == 200
    assert sleeps == [8.0]


def test_gives_up_after_the_bound() -> None:
    script, sleeps = Script(*[(502, {})] * 10), []
    with client_for(script, sleeps, retries=3) as http:
        response = http.get("/x")
    assert response.status_code == 502 and len(script.seen) == 4
    assert sleeps == [0.25, 0.5, 1.0]


def test_post_is_not_retried_on_5xx() -> None:
    script, sleeps = Script((500, {}), (200, {})), []
    with client_for(script, sleeps) as http:
        assert http.post("/deployments", json={}).status_code == 500
    assert len(script.seen) == 1 and sleeps == []


def test_4xx_is_not_retried() -> None:
    script, sleeps = Script((404, {}), (200, {})), []
    with client_for(script, sleeps) as http:
        assert http.get("/x").status_code == 404
    assert len(script.seen) == 1


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_connection_refused_is_api_unreachable_with_advice() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nobody listens there now
    with (
        build_client(timeout=2, retries=1) as http,
        pytest.raises(
            ApiUnreachable, match=rf"127\.0\.0\.1:{port}/v1/x.*opsbook sandbox start"
        ) as err,
    ):
        http.get(f"http://127.0.0.1:{port}/v1/x")
    assert err.value.url.endswith("/v1/x") and err.value.method == "GET"
