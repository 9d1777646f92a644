"""The one httpx client factory: timeouts, bounded retries with backoff, Retry-After.

    with build_client("https://api.cloudflare.com/client/v4", headers={...}) as http:
        http.get("/user/tokens/verify")

Retries (at most `retries`, default 3) happen in a transport wrapper, so every caller
gets them the same way:
- 429: always (the request was not processed), after `Retry-After` when given;
- 5xx (500, 502, 503, 504): only for idempotent methods (GET, HEAD, PUT, DELETE,
  OPTIONS), so a POST that created something is never sent twice;
- connection failures and timeouts: retried like a 5xx, then raised as
  `errors.ApiUnreachable` naming the URL and what to check.
Sleeps grow 0.25 s, 0.5 s, 1 s... and are capped at `max_sleep`.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

import httpx

from ..errors import ApiUnreachable

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: a number of seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _unreachable_message(request: httpx.Request, exc: Exception) -> str:
    url = str(request.url)
    hint = "Check the base URL in the environment file (params/<env>.yaml) and the network."
    if request.url.host in ("127.0.0.1", "localhost"):
        hint = (
            "It looks like the embedded sandbox: check it is running with "
            "`opsbook sandbox status` and start it with `opsbook sandbox start`."
        )
    reason = str(exc) or type(exc).__name__
    return f"Cannot reach {request.method} {url}: {reason}. {hint}"


class RetryTransport(httpx.BaseTransport):
    """Wraps a transport with bounded retries. `sleep` is injectable for tests."""

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        retries: int = 3,
        backoff: float = 0.25,
        max_sleep: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner or httpx.HTTPTransport()
        self.retries = retries
        self.backoff = backoff
        self.max_sleep = max_sleep
        self.sleep = sleep

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        delay = self.backoff * (2**attempt)
        if response is not None:
            hinted = retry_after_seconds(response.headers.get("retry-after"))
            if hinted is not None:
                delay = hinted
        return min(delay, self.max_sleep)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        idempotent = request.method.upper() in IDEMPOTENT
        attempt = 0
        while True:
            try:
                response = self.inner.handle_request(request)
            except (httpx.ConnectError, httpx.TimeoutException, httpx.RemoteProtocolError) as exc:
                if not idempotent and not isinstance(exc, httpx.ConnectError):
                    raise ApiUnreachable(
                        _unreachable_message(request, exc), url=str(request.url),
                        method=request.method,
                    ) from exc  # fmt: skip
                if attempt >= self.retries:
                    raise ApiUnreachable(
                        _unreachable_message(request, exc), url=str(request.url),
                        method=request.method,
                    ) from exc  # fmt: skip
                self.sleep(self._delay(attempt, None))
                attempt += 1
                continue
            retryable = response.status_code == 429 or (
                idempotent and response.status_code in RETRY_STATUSES
            )
            if not retryable or attempt >= self.retries:
                return response
            delay = self._delay(attempt, response)
            response.read()
            response.close()
            self.sleep(delay)
            attempt += 1

    def close(self) -> None:
        self.inner.close()


def build_client(
    base_url: str = "",
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    *,
    retries: int = 3,
    transport: httpx.BaseTransport | None = None,
    **kwargs: Any,
) -> httpx.Client:
    """An httpx.Client with opsbook's timeouts and retries. Close it (or use `with`)."""
    return httpx.Client(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        transport=RetryTransport(transport, retries=retries),
        **kwargs,
    )
