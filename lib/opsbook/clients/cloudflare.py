"""A thin Cloudflare API v4 client: the envelope, paging and typed errors, nothing more.

    with Cloudflare(api_base, account_id, token) as cf:
        cf.deployments("manuscript-upload-api")[0]          # the deployment serving now
        cf.d1_query("manuscript-platform", "SELECT 1")

Every method returns the API's own JSON objects (dicts), so what a notebook shows is
what the API said. Errors raise from `opsbook.errors`: AuthenticationError (403, code
10000), NotFound (404), ConflictError (10220), RateLimited (429), ApiError otherwise.
Lists are iterated to the end: page lists stop on an empty page or at total_count,
cursor lists on an empty cursor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import ApiError, AuthenticationError, ConflictError, NotFound, RateLimited
from .cloudflare_storage import StorageAPI
from .http import build_client


def _error_for(response: httpx.Response, account_id: str) -> ApiError:
    request = response.request
    errors: list[dict[str, Any]] = []
    try:
        body = response.json()
        if isinstance(body, dict):
            errors = list(body.get("errors") or [])
    except ValueError:
        body = None
    code = errors[0].get("code") if errors else None
    text = "; ".join(f"{e.get('message')} (code {e.get('code')})" for e in errors) or (
        response.text[:200] or response.reason_phrase
    )
    where = f"{request.method} {request.url.path}"
    fields: dict[str, Any] = {
        "status": response.status_code, "code": code, "errors": errors,
        "url": str(request.url), "method": request.method,
    }  # fmt: skip
    status = response.status_code
    if code == 10000 or (status == 401 and code is None):
        return AuthenticationError(
            f"Cloudflare rejected the API token (code 10000) on {where}: check "
            "CLOUDFLARE_API_TOKEN (or the environment's cloudflare.api_token) is set, "
            "not expired, and allowed to do this.",
            **fields,
        )
    if status == 403:
        return AuthenticationError(
            f"Cloudflare refused {where}: {text}. Check that cloudflare.account_id "
            f"({account_id}) is right and that the token has access to it.",
            **fields,
        )
    if status == 404:
        return NotFound(f"Cloudflare has no such object ({where}): {text}", **fields)
    if code == 10220:
        return ConflictError(
            f"Cloudflare refused the deployment ({where}): {text}. A secret changed since "
            "the target version was created; deploy with force to use the current secrets.",
            **fields,
        )
    if status == 429:
        return RateLimited(
            f"Cloudflare rate-limited {where} after retries: {text}. Wait and try again.",
            **fields,
        )
    return ApiError(f"Cloudflare API error on {where}: HTTP {status}: {text}", **fields)


class Cloudflare(StorageAPI):
    """Cloudflare API v4 for one account. Pass `http` to share a client (not closed here)."""

    def __init__(
        self,
        api_base: str,
        account_id: str,
        token: str,
        http: httpx.Client | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.account_id = account_id
        self._auth = {"Authorization": f"Bearer {token}"}
        self._own_http = http is None
        self.http = http or build_client(timeout=timeout)
        self._d1_ids: dict[str, str] = {}

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def __enter__(self) -> Cloudflare:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing -------------------------------------------------------------
    @property
    def acct(self) -> str:
        return f"/accounts/{self.account_id}"

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request (`path` under api_base); raise the typed error on failure."""
        headers = {**self._auth, **kwargs.pop("headers", {})}
        response = self.http.request(method, self.api_base + path, headers=headers, **kwargs)
        if response.status_code >= 400:
            response.read()
            raise _error_for(response, self.account_id)
        return response

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The `result` of the envelope."""
        return self._envelope(self.request(method, path, **kwargs))["result"]

    def _envelope(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise ApiError(
                f"Cloudflare answered {response.request.url.path} with something that is "
                f"not JSON: {response.text[:120]!r}",
                status=response.status_code, url=str(response.request.url),
            ) from None  # fmt: skip
        if not isinstance(body, dict) or not body.get("success", False):
            raise _error_for(response, self.account_id)
        return body

    def pages(
        self, path: str, params: dict[str, Any] | None = None, *, per_page: int = 50,
        key: str | None = None,
    ) -> Iterator[Any]:  # fmt: skip
        """Every item of a page-based list (`key`: the list inside result, e.g. 'items')."""
        page = 1
        while True:
            q = {**(params or {}), "page": page, "per_page": per_page}
            body = self._envelope(self.request("GET", path, params=q))
            result = body["result"]
            items = result.get(key, []) if key and isinstance(result, dict) else result
            if not items:
                return
            yield from items
            info = body.get("result_info") or {}
            total = info.get("total_count")
            size = info.get("per_page") or per_page
            if total is not None and page * size >= total:
                return
            page += 1

    def cursor_pages(
        self, path: str, params: dict[str, Any] | None = None, *, limit: int = 1000,
        key: str | None = None, limit_param: str = "limit",
    ) -> Iterator[Any]:  # fmt: skip
        """Every item of a cursor-based list."""
        cursor = ""
        while True:
            q = {**(params or {}), limit_param: limit}
            if cursor:
                q["cursor"] = cursor
            body = self._envelope(self.request("GET", path, params=q))
            result = body["result"]
            yield from (result.get(key, []) if key and isinstance(result, dict) else result)
            cursor = (body.get("result_info") or {}).get("cursor") or ""
            if not cursor:
                return

    # ---- account ----------------------------------------------------------------
    def verify_token(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", "/user/tokens/verify")
        return result

    def accounts(self) -> list[dict[str, Any]]:
        return list(self.pages("/accounts"))

    # ---- workers ----------------------------------------------------------------
    def _script(self, script: str) -> str:
        return f"{self.acct}/workers/scripts/{quote(script, safe='')}"

    def deployments(self, script: str) -> list[dict[str, Any]]:
        """Newest first: the first one serves traffic now."""
        return list(self.call("GET", self._script(script) + "/deployments")["deployments"])

    def deployment(self, script: str, deployment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "GET", f"{self._script(script)}/deployments/{deployment_id}"
        )
        return result

    def create_deployment(
        self,
        script: str,
        version_id: str | list[tuple[str, float]],
        message: str | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        """Deploy a version at 100% (or [(version_id, percentage)]). With force=True, a
        10220 refusal (a secret changed since that version) is retried with ?force=true,
        as wrangler does; without it, the ConflictError is raised."""
        shares = [(version_id, 100.0)] if isinstance(version_id, str) else version_id
        body: dict[str, Any] = {
            "strategy": "percentage",
            "versions": [{"version_id": v, "percentage": p} for v, p in shares],
        }
        if message:
            body["annotations"] = {"workers/message": message}
        path = self._script(script) + "/deployments"
        try:
            result: dict[str, Any] = self.call("POST", path, json=body)
        except ConflictError:
            if not force:
                raise
            result = self.call("POST", path, json=body, params={"force": "true"})
        return result

    def rollback(
        self, script: str, version_id: str, message: str, force: bool = False
    ) -> dict[str, Any]:
        """Rollback = deploy an earlier version at 100% (what `wrangler rollback` does)."""
        return self.create_deployment(script, version_id, message, force=force)

    def versions(self, script: str) -> list[dict[str, Any]]:
        path = self._script(script) + "/versions"
        return list(self.pages(path, {"deployable": "true"}, per_page=100, key="items"))

    def upload_version(
        self, script: str, module_name: str, code: str, *, message: str | None = None,
        tag: str | None = None, bindings: list[dict[str, Any]] | None = None,
        compatibility_date: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Upload a version without deploying it (`wrangler versions upload`). Without
        `bindings` the current version's are kept; secrets are always kept."""
        metadata: dict[str, Any] = {
            "main_module": module_name,
            "keep_bindings": ["secret_text", "secret_key"],
        }
        if bindings is not None:
            metadata["bindings"] = bindings
        if compatibility_date:
            metadata["compatibility_date"] = compatibility_date
        annotations = {k: v for k, v in (("workers/message", message), ("workers/tag", tag)) if v}
        if annotations:
            metadata["annotations"] = annotations
        files = [
            ("metadata", (None, json.dumps(metadata), "application/json")),
            (module_name, (module_name, code, "application/javascript+module")),
        ]
        result: dict[str, Any] = self.call("POST", self._script(script) + "/versions", files=files)
        return result

    def version(self, script: str, version_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"{self._script(script)}/versions/{version_id}")
        return result

    def service(self, script: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "GET", f"{self.acct}/workers/services/{quote(script, safe='')}"
        )
        return result

    def secrets(self, script: str) -> list[dict[str, Any]]:
        return list(self.call("GET", self._script(script) + "/secrets"))

    def put_secret(self, script: str, name: str, value: str) -> dict[str, Any]:
        body = {"name": name, "text": value, "type": "secret_text"}
        result: dict[str, Any] = self.call("PUT", self._script(script) + "/secrets", json=body)
        return result

    def delete_secret(self, script: str, name: str) -> None:
        self.call("DELETE", f"{self._script(script)}/secrets/{quote(name, safe='')}")

    def create_tail(
        self, script: str, filters: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """{id, url, expires_at}; the body goes as text/plain, as wrangler sends it."""
        result: dict[str, Any] = self.call(
            "POST", self._script(script) + "/tails",
            content=json.dumps({"filters": filters or []}),
            headers={"Content-Type": "text/plain;charset=UTF-8"},
        )  # fmt: skip
        return result

    def delete_tail(self, script: str, tail_id: str) -> None:
        self.call("DELETE", f"{self._script(script)}/tails/{tail_id}")

    # ---- analytics ----------------------------------------------------------------
    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of a GraphQL answer; its `errors` raise ApiError."""
        response = self.request(
            "POST", "/graphql", json={"query": query, "variables": variables or {}}
        )
        body = response.json()
        if body.get("errors"):
            messages = "; ".join(str(e.get("message", e)) for e in body["errors"])
            raise ApiError(
                f"Cloudflare GraphQL query failed: {messages}",
                status=response.status_code, errors=body["errors"],
                url=str(response.request.url), method="POST",
            )  # fmt: skip
        data: dict[str, Any] = body.get("data") or {}
        return data

    # ---- Workers Logs ---------------------------------------------------------------
    def telemetry_query(self, body: dict[str, Any]) -> dict[str, Any]:
        """One Workers Logs query (`POST …/workers/observability/telemetry/query`): the
        result {run, statistics, events|invocations|calculations}."""
        result: dict[str, Any] = self.call(
            "POST", f"{self.acct}/workers/observability/telemetry/query", json=body
        )
        return result

    def telemetry_events(
        self,
        since_ms: int,
        until_ms: int,
        filters: list[dict[str, Any]] | None = None,
        *,
        needle: str | None = None,
        page_size: int = 5000,
        max_events: int = 50_000,
    ) -> list[dict[str, Any]]:
        """Every Workers Logs event of a timeframe matching `filters` (leaves {key,
        operation, type, value}), newest first, paged with `offset` (the last event's
        $metadata.id) until the query's `count` is reached or a page comes back empty."""
        params: dict[str, Any] = {"datasets": ["cloudflare-workers"], "filters": filters or []}
        if needle:
            params["needle"] = {"value": needle, "isRegex": False, "matchCase": False}
        body: dict[str, Any] = {
            "queryId": "opsbook-events",
            "timeframe": {"from": int(since_ms), "to": int(until_ms)},
            "view": "events",
            "limit": page_size,
            "parameters": params,
        }
        out: list[dict[str, Any]] = []
        while len(out) < max_events:
            found = self.telemetry_query(body).get("events") or {}
            page = list(found.get("events") or [])
            out += page
            total = found.get("count")
            if not page or (total is not None and len(out) >= int(total)):
                break
            body["offset"] = page[-1]["$metadata"]["id"]
        return out[:max_events]

    def telemetry_keys(
        self, since_ms: int | None = None, until_ms: int | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """The keys Workers Logs has seen: [{key, type, lastSeenAt}]."""
        body: dict[str, Any] = {"limit": limit}
        if since_ms is not None:
            body["from"] = int(since_ms)
        if until_ms is not None:
            body["to"] = int(until_ms)
        return list(
            self.call("POST", f"{self.acct}/workers/observability/telemetry/keys", json=body)
        )
