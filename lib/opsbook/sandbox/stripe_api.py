"""Stripe /v1 routes: customers, subscriptions, webhook endpoints, events (with retry that
really delivers), balance transactions. Params are form-encoded with nested keys
(`types[0]=`, `created[gt]=`), as the SDK sends them. Auth is the server's middleware.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import stripe_webhooks
from .state import State, from_request
from .stripe_data import SCHEMA, seed

__all__ = ["SCHEMA", "routes", "seed"]


class StripeError(Exception):
    def __init__(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def response(self) -> JSONResponse:
        err: dict[str, Any] = {"type": "invalid_request_error", "message": self.message}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            err["param"] = self.param
        return JSONResponse({"error": err}, status_code=self.status)


def missing(kind: str, oid: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{oid}'", code="resource_missing", param=param)


def nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`a[b]=1&t[0]=x&t[]=y` -> {"a": {"b": "1"}, "t": ["x", "y"]}."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+|\[\]", key)
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt = parts[i + 1] if not last else None
            container: Any = [] if nxt == "[]" or (nxt is not None and nxt.isdigit()) else {}
            if isinstance(node, list):
                if last:
                    node.append(value)
                    break
                if part == "[]" or not node or (part.isdigit() and int(part) >= len(node)):
                    node.append(container)
                node = node[-1] if part == "[]" or not part.isdigit() else node[int(part)]
                continue
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, container)
    return out


async def params(request: Request) -> dict[str, Any]:
    pairs = parse_qsl(request.url.query, keep_blank_values=True)
    if request.method in ("POST", "DELETE"):
        pairs += parse_qsl((await request.body()).decode(), keep_blank_values=True)
    return nest(pairs)


def _limit(p: dict[str, Any]) -> int:
    try:
        limit = int(p.get("limit", 10))
    except (TypeError, ValueError):
        raise StripeError(400, "Invalid integer: limit", param="limit") from None
    if not 1 <= limit <= 100:
        raise StripeError(
            400,
            f"This value must be between 1 and 100 (it is currently {limit}).",
            param="limit",
        )
    return limit


def _created(p: dict[str, Any], column: str = "created") -> tuple[str, list[Any]]:
    value = p.get("created")
    if value is None:
        return "", []
    if isinstance(value, str):
        return f" AND {column} = ?", [int(value)]
    ops = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
    sql, args = "", []
    for key, op in ops.items():
        if key in value:
            sql += f" AND {column} {op} ?"
            args.append(int(value[key]))
    return sql, args


def page(
    state: State,
    table: str,
    where: str,
    args: list[Any],
    p: dict[str, Any],
    url: str,
    key: str = "rowid",
) -> dict[str, Any]:
    """A Stripe list, newest first, with starting_after / ending_before cursors."""
    limit = _limit(p)
    order = f"created DESC, {key} DESC"
    with state.read() as db:
        if p.get("starting_after") or p.get("ending_before"):
            cursor = p.get("starting_after") or p.get("ending_before")
            row = db.execute(
                f"SELECT created, {key} FROM {table} WHERE id = ?", (cursor,)
            ).fetchone()
            if row is None:
                raise missing(
                    "object",
                    str(cursor),
                    "starting_after" if p.get("starting_after") else "ending_before",
                )
            if p.get("starting_after"):
                where += f" AND (created < ? OR (created = ? AND {key} < ?))"
            else:
                where += f" AND (created > ? OR (created = ? AND {key} > ?))"
                order = f"created ASC, {key} ASC"
            args = [*args, row[0], row[0], row[1]]
        rows = db.execute(
            f"SELECT id FROM {table} WHERE 1=1{where} ORDER BY {order} LIMIT ?", [*args, limit + 1]
        ).fetchall()
    ids = [r[0] for r in rows]
    has_more = len(ids) > limit
    ids = ids[:limit]
    if p.get("ending_before") and not p.get("starting_after"):
        ids.reverse()
    return {"object": "list", "data": ids, "has_more": has_more, "url": url}


def load(state: State, table: str, ids: list[str]) -> list[dict[str, Any]]:
    if not ids:
        return []
    with state.read() as db:
        rows = db.execute(
            f"SELECT id, json FROM {table} WHERE id IN ({','.join('?' * len(ids))})", ids
        ).fetchall()
    by_id = {r[0]: json.loads(r[1]) for r in rows}
    return [by_id[i] for i in ids if i in by_id]


def _one(state: State, table: str, oid: str, kind: str) -> dict[str, Any]:
    got = load(state, table, [oid])
    if not got:
        raise missing(kind, oid)
    return got[0]


def endpoint_json(
    state: State, request: Request, row: sqlite3.Row | dict[str, Any]
) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(row["json"])
    obj["url"] = str(row["url"]).replace("{sandbox}", str(request.base_url).rstrip("/"))
    obj["status"] = row["status"]
    return obj


def _events(state: State, ids: list[str]) -> list[dict[str, Any]]:
    return [e for i in ids if (e := stripe_webhooks.event_json(state, i)) is not None]


def handler(fn: Any) -> Any:
    async def wrapped(request: Request) -> Response:
        try:
            result = await fn(request, from_request(request), await params(request))
        except StripeError as exc:
            return exc.response()
        return JSONResponse(result)

    return wrapped


@handler
async def customers_list(request: Request, state: State, p: dict[str, Any]) -> Any:
    where, args = _created(p)
    if "email" in p:
        where += " AND email = ?"
        args.append(p["email"])
    out = page(state, "stripe_customers", where, args, p, "/v1/customers")
    out["data"] = load(state, "stripe_customers", out["data"])
    return out


@handler
async def customers_search(request: Request, state: State, p: dict[str, Any]) -> Any:
    query = str(p.get("query") or "")
    m = re.fullmatch(r"\s*email\s*:\s*(['\"])(.*)\1\s*", query)
    if not m:
        raise StripeError(
            400,
            f"Invalid search query: {query!r}. This sandbox supports email:'value'.",
            param="query",
        )
    with state.read() as db:
        ids = [
            r[0]
            for r in db.execute(
                "SELECT id FROM stripe_customers WHERE email = ? ORDER BY created DESC LIMIT ?",
                (m.group(2), _limit(p)),
            )
        ]
    return {
        "object": "search_result",
        "data": load(state, "stripe_customers", ids),
        "has_more": False,
        "next_page": None,
        "url": "/v1/customers/search",
    }


@handler
async def customer_get(request: Request, state: State, p: dict[str, Any]) -> Any:
    return _one(state, "stripe_customers", request.path_params["id"], "customer")


@handler
async def subscriptions_list(request: Request, state: State, p: dict[str, Any]) -> Any:
    where, args = _created(p)
    if "customer" in p:
        where += " AND customer = ?"
        args.append(p["customer"])
    status = p.get("status")
    if status is None:
        where += " AND status != 'canceled'"
    elif status == "ended":
        where += " AND status IN ('canceled', 'incomplete_expired')"
    elif status != "all":
        where += " AND status = ?"
        args.append(status)
    out = page(state, "stripe_subscriptions", where, args, p, "/v1/subscriptions")
    out["data"] = load(state, "stripe_subscriptions", out["data"])
    return out


@handler
async def subscription_get(request: Request, state: State, p: dict[str, Any]) -> Any:
    return _one(state, "stripe_subscriptions", request.path_params["id"], "subscription")


@handler
async def endpoints_list(request: Request, state: State, p: dict[str, Any]) -> Any:
    out = page(state, "stripe_webhook_endpoints", "", [], p, "/v1/webhook_endpoints")
    with state.read() as db:
        rows = {r["id"]: r for r in db.execute("SELECT * FROM stripe_webhook_endpoints")}
    out["data"] = [endpoint_json(state, request, rows[i]) for i in out["data"]]
    return out


def _endpoint_row(state: State, eid: str) -> sqlite3.Row:
    with state.read() as db:
        row = db.execute("SELECT * FROM stripe_webhook_endpoints WHERE id = ?", (eid,)).fetchone()
    if row is None:
        raise missing("webhook endpoint", eid)
    return row


@handler
async def endpoint_get(request: Request, state: State, p: dict[str, Any]) -> Any:
    return endpoint_json(state, request, _endpoint_row(state, request.path_params["id"]))


@handler
async def endpoint_update(request: Request, state: State, p: dict[str, Any]) -> Any:
    row = _endpoint_row(state, request.path_params["id"])
    obj = json.loads(row["json"])
    status, url = row["status"], row["url"]
    if "disabled" in p:
        status = "disabled" if str(p["disabled"]).lower() == "true" else "enabled"
    if "url" in p:
        url = str(p["url"]).replace(str(request.base_url).rstrip("/"), "{sandbox}")
    for key in ("description", "enabled_events", "metadata"):
        if key in p:
            obj[key] = p[key]
    obj["status"], obj["url"] = status, url
    with state.tx() as db:
        db.execute(
            "UPDATE stripe_webhook_endpoints SET status = ?, url = ?, json = ? WHERE id = ?",
            (status, url, json.dumps(obj), row["id"]),
        )
    return endpoint_json(state, request, _endpoint_row(state, row["id"]))


@handler
async def events_list(request: Request, state: State, p: dict[str, Any]) -> Any:
    where, args = _created(p)
    if "type" in p:
        where += " AND type LIKE ?" if "*" in p["type"] else " AND type = ?"
        args.append(str(p["type"]).replace("*", "%"))
    if isinstance(p.get("types"), list):
        where += f" AND type IN ({','.join('?' * len(p['types']))})"
        args += p["types"]
    if "delivery_success" in p:
        neg = "" if str(p["delivery_success"]).lower() == "false" else "NOT "
        where += f" AND {neg}EXISTS (SELECT 1 FROM stripe_event_pending ep WHERE ep.event_id = stripe_events.id)"
    out = page(state, "stripe_events", where, args, p, "/v1/events", key="seq")
    out["data"] = _events(state, out["data"])
    return out


@handler
async def event_get(request: Request, state: State, p: dict[str, Any]) -> Any:
    event = stripe_webhooks.event_json(state, request.path_params["id"])
    if event is None:
        raise missing("event", request.path_params["id"])
    return event


@handler
async def event_retry(request: Request, state: State, p: dict[str, Any]) -> Any:
    """POST /v1/events/{id}/retry (what `stripe events resend` calls): deliver now."""
    eid = request.path_params["id"]
    if stripe_webhooks.event_json(state, eid) is None:
        raise missing("event", eid)
    if p.get("webhook_endpoint"):
        targets = [_endpoint_row(state, str(p["webhook_endpoint"]))]
    else:
        with state.read() as db:
            targets = db.execute(
                "SELECT w.* FROM stripe_webhook_endpoints w JOIN stripe_event_pending ep "
                "ON ep.endpoint_id = w.id WHERE ep.event_id = ?",
                (eid,),
            ).fetchall()
    for row in targets:
        if row["status"] != "enabled":
            raise StripeError(
                400, f"The webhook endpoint {row['id']} is disabled.", param="webhook_endpoint"
            )
        await stripe_webhooks.deliver(state, str(request.base_url), eid, row["id"])
    return stripe_webhooks.event_json(state, eid)


@handler
async def balance_transactions(request: Request, state: State, p: dict[str, Any]) -> Any:
    where, args = _created(p)
    out = page(state, "stripe_balance_transactions", where, args, p, "/v1/balance_transactions")
    out["data"] = load(state, "stripe_balance_transactions", out["data"])
    return out


async def unrecognized(request: Request) -> Response:
    path = request.url.path
    return StripeError(
        404,
        f"Unrecognized request URL ({request.method}: {path}). Please see https://stripe.com/docs "
        "or we can help at https://support.stripe.com/.",
    ).response()


routes = [
    Route("/customers", customers_list, methods=["GET"]),
    Route("/customers/search", customers_search, methods=["GET"]),
    Route("/customers/{id}", customer_get, methods=["GET"]),
    Route("/subscriptions", subscriptions_list, methods=["GET"]),
    Route("/subscriptions/{id}", subscription_get, methods=["GET"]),
    Route("/webhook_endpoints", endpoints_list, methods=["GET"]),
    Route("/webhook_endpoints/{id}", endpoint_get, methods=["GET"]),
    Route("/webhook_endpoints/{id}", endpoint_update, methods=["POST"]),
    Route("/events", events_list, methods=["GET"]),
    Route("/events/{id}", event_get, methods=["GET"]),
    Route("/events/{id}/retry", event_retry, methods=["POST"]),
    Route("/balance_transactions", balance_transactions, methods=["GET"]),
    Route("/{path:path}", unrecognized, methods=["GET", "POST", "DELETE"]),
]
