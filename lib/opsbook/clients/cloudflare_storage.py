"""The storage half of the Cloudflare client: D1, KV, R2 and Queues (mixed into Cloudflare).

D1 databases, KV namespaces and queues can be named by name/title or by id; names
are resolved through the list endpoints (as wrangler does) and cached.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import ApiError, NotFound

HEX32_CHARS = frozenset("0123456789abcdef")


def _is_hex32(text: str) -> bool:
    return len(text) == 32 and set(text) <= HEX32_CHARS


def _is_uuid(text: str) -> bool:
    parts = text.split("-")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and set(text.replace("-", "")) <= HEX32_CHARS


class StorageAPI:
    """D1, KV, R2, Queues. Needs `acct`, `call`, `request`, `pages`, `cursor_pages`, `http`."""

    account_id: str
    http: httpx.Client
    _d1_ids: dict[str, str]

    # provided by Cloudflare
    @property
    def acct(self) -> str:
        raise NotImplementedError

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        raise NotImplementedError

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        raise NotImplementedError

    def pages(self, path: str, params: dict[str, Any] | None = None, *, per_page: int = 50,
              key: str | None = None) -> Iterator[Any]:  # fmt: skip
        raise NotImplementedError

    def cursor_pages(self, path: str, params: dict[str, Any] | None = None, *, limit: int = 1000,
                     key: str | None = None, limit_param: str = "limit") -> Iterator[Any]:  # fmt: skip
        raise NotImplementedError

    # ---- D1 -------------------------------------------------------------------
    def d1_databases(self) -> list[dict[str, Any]]:
        return list(self.pages(f"{self.acct}/d1/database", per_page=100))

    def d1_id(self, name_or_id: str) -> str:
        if _is_uuid(name_or_id):
            return name_or_id
        if name_or_id not in self._d1_ids:
            found = [
                db
                for db in self.pages(f"{self.acct}/d1/database", {"name": name_or_id})
                if db.get("name") == name_or_id
            ]
            if not found:
                raise NotFound(
                    f"No D1 database named '{name_or_id}' in account {self.account_id}. "
                    "List them with d1_databases() (or `wrangler d1 list`).",
                    status=404,
                )
            self._d1_ids[name_or_id] = found[0]["uuid"]
        return self._d1_ids[name_or_id]

    def d1_database(self, name_or_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "GET", f"{self.acct}/d1/database/{self.d1_id(name_or_id)}"
        )
        return result

    def _d1(self, db: str) -> str:
        return f"{self.acct}/d1/database/{self.d1_id(db)}"

    def d1_query(self, db: str, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """One result object per statement: {results: [rows], success, meta}."""
        body: dict[str, Any] = {"sql": sql}
        if params:
            body["params"] = params
        return list(self.call("POST", self._d1(db) + "/query", json=body))

    def d1_raw(self, db: str, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Like d1_query, with results as {columns, rows}."""
        body: dict[str, Any] = {"sql": sql}
        if params:
            body["params"] = params
        return list(self.call("POST", self._d1(db) + "/raw", json=body))

    def d1_export(
        self, db: str, tables: list[str] | None = None, no_data: bool = False,
        no_schema: bool = False, *, timeout: float = 120.0, poll: float = 0.25,
    ) -> str:  # fmt: skip
        """The SQL dump of a database: start the export, poll, download the signed URL."""
        body: dict[str, Any] = {
            "output_format": "polling",
            "dump_options": {"no_data": no_data, "no_schema": no_schema, "tables": tables or []},
        }
        deadline = time.monotonic() + timeout
        while True:
            result = self.call("POST", self._d1(db) + "/export", json=body)
            status = result.get("status")
            if status == "complete":
                break
            if status == "error" or result.get("success") is False:
                raise ApiError(f"D1 export of '{db}' failed: {result.get('error') or result}")
            if time.monotonic() > deadline:
                raise ApiError(f"D1 export of '{db}' did not finish within {timeout:.0f} s")
            body["current_bookmark"] = result.get("at_bookmark")
            time.sleep(poll)
        url = result["result"]["signed_url"]
        response = self.http.get(url)  # a presigned URL: no Authorization header
        if response.status_code >= 400:
            raise ApiError(
                f"Downloading the D1 export failed: HTTP {response.status_code}",
                status=response.status_code, url=url, method="GET",
            )  # fmt: skip
        return response.text

    def d1_import(
        self, db: str, sql_text: str, *, timeout: float = 120.0, poll: float = 0.25
    ) -> dict[str, Any]:
        """Run a SQL file the way `wrangler d1 execute --file` does: init, upload, ingest,
        poll. Returns the final result ({final_bookmark, num_queries, meta, ...})."""
        data = sql_text.encode()
        etag = hashlib.md5(data).hexdigest()
        path = self._d1(db) + "/import"
        init = self.call("POST", path, json={"action": "init", "etag": etag})
        if init.get("upload_url"):
            put = self.http.put(init["upload_url"], content=data)
            if put.status_code >= 400:
                raise ApiError(f"Uploading the D1 import failed: HTTP {put.status_code}",
                               status=put.status_code, url=init["upload_url"], method="PUT")  # fmt: skip
            got = put.headers.get("etag", "").strip('"')
            if got != etag:
                raise ApiError(f"D1 import upload was corrupted: etag {got!r} != md5 {etag!r}")
        result = self.call(
            "POST", path, json={"action": "ingest", "filename": init["filename"], "etag": etag}
        )
        deadline = time.monotonic() + timeout
        while result.get("status") not in ("complete", "error"):
            if time.monotonic() > deadline:
                raise ApiError(f"D1 import into '{db}' did not finish within {timeout:.0f} s")
            time.sleep(poll)
            result = self.call("POST", path,
                               json={"action": "poll", "current_bookmark": result.get("at_bookmark")})  # fmt: skip
        if result.get("status") == "error" or result.get("success") is False:
            raise ApiError(f"D1 import into '{db}' failed: {result.get('error') or result}")
        final: dict[str, Any] = result.get("result") or result
        return final

    def d1_bookmark(self, db: str, timestamp: str | None = None) -> str:
        params = {"timestamp": timestamp} if timestamp else None
        return str(
            self.call("GET", self._d1(db) + "/time_travel/bookmark", params=params)["bookmark"]
        )

    def d1_restore(
        self, db: str, bookmark: str | None = None, timestamp: str | None = None
    ) -> dict[str, Any]:
        if not bookmark and not timestamp:
            raise ValueError("d1_restore needs a bookmark or a timestamp")
        params = {"bookmark": bookmark} if bookmark else {"timestamp": timestamp}
        result: dict[str, Any] = self.call(
            "POST", self._d1(db) + "/time_travel/restore", params=params
        )
        return result

    # ---- KV -------------------------------------------------------------------
    def kv_namespaces(self) -> list[dict[str, Any]]:
        return list(self.pages(f"{self.acct}/storage/kv/namespaces", per_page=100))

    def kv_namespace_id(self, title_or_id: str) -> str:
        if _is_hex32(title_or_id):
            return title_or_id
        for ns in self.kv_namespaces():
            if ns.get("title") == title_or_id:
                return str(ns["id"])
        raise NotFound(
            f"No KV namespace titled '{title_or_id}' in account {self.account_id}.", status=404
        )

    def _kv(self, ns: str) -> str:
        return f"{self.acct}/storage/kv/namespaces/{self.kv_namespace_id(ns)}"

    def kv_keys(
        self, ns: str, prefix: str | None = None, limit: int = 1000
    ) -> Iterator[dict[str, Any]]:
        params = {"prefix": prefix} if prefix else None
        return self.cursor_pages(self._kv(ns) + "/keys", params, limit=limit)

    def kv_get(self, ns: str, key: str) -> bytes:
        """The raw value (no envelope). A missing key raises NotFound."""
        return self.request("GET", f"{self._kv(ns)}/values/{quote(key, safe='')}").content

    def kv_put(
        self, ns: str, key: str, value: bytes | str, *, ttl: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        path = f"{self._kv(ns)}/values/{quote(key, safe='')}"
        params = {"expiration_ttl": ttl} if ttl else None
        if metadata is None:
            self.call("PUT", path, content=value, params=params,
                      headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        else:
            files = {"value": (None, value), "metadata": (None, json.dumps(metadata))}
            self.call("PUT", path, files=files, params=params)

    def kv_delete(self, ns: str, key: str) -> None:
        self.call("DELETE", f"{self._kv(ns)}/values/{quote(key, safe='')}")

    # ---- R2 -------------------------------------------------------------------
    def r2_buckets(self) -> list[dict[str, Any]]:
        return list(self.cursor_pages(f"{self.acct}/r2/buckets", limit=100, key="buckets",
                                      limit_param="per_page"))  # fmt: skip

    def r2_bucket(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"{self.acct}/r2/buckets/{quote(name, safe='')}")
        return result

    def r2_object_info(self, bucket: str, key: str) -> dict[str, Any] | None:
        """An object's size, ETag and Last-Modified (`wrangler r2 object get`), or None."""
        path = f"{self.acct}/r2/buckets/{quote(bucket, safe='')}/objects/{quote(key, safe='/')}"
        try:
            response = self.request("GET", path)
        except NotFound:
            return None
        return {
            "key": key,
            "size": len(response.content),
            "etag": response.headers.get("etag", "").strip('"'),
            "last_modified": response.headers.get("last-modified"),
        }

    def r2_metrics(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"{self.acct}/r2/metrics")
        return result

    # ---- Queues -----------------------------------------------------------------
    def queues(self) -> list[dict[str, Any]]:
        return list(self.pages(f"{self.acct}/queues", per_page=100))

    def queue(self, name_or_id: str) -> dict[str, Any]:
        if _is_hex32(name_or_id):
            result: dict[str, Any] = self.call("GET", f"{self.acct}/queues/{name_or_id}")
            return result
        for q in self.pages(f"{self.acct}/queues", {"name": name_or_id}):
            if q.get("queue_name") == name_or_id:
                return dict(q)
        raise NotFound(f"No queue named '{name_or_id}' in account {self.account_id}.", status=404)

    def _queue(self, q: str) -> str:
        return f"{self.acct}/queues/{q if _is_hex32(q) else self.queue(q)['queue_id']}"

    def queue_consumers(self, q: str) -> list[dict[str, Any]]:
        return list(self.call("GET", self._queue(q) + "/consumers"))

    def queue_metrics(self, q: str) -> dict[str, Any]:
        """{backlog_count, backlog_bytes, oldest_message_timestamp_ms}."""
        result: dict[str, Any] = self.call("GET", self._queue(q) + "/metrics")
        return result

    def update_queue_consumer(
        self, q: str, consumer_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "PUT", f"{self._queue(q)}/consumers/{consumer_id}", json=body
        )
        return result

    def create_queue_consumer(self, q: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", self._queue(q) + "/consumers", json=body)
        return result
