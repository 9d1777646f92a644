"""Queues API routes: queues, consumers (with the dead-letter queue), backlog metrics.

The tables and the delivery model are in queues_model.py.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import queues_model as qm
from .cf_account import check_account
from .envelope import CFError, json_body, ok, paged
from .state import State, from_request

QUEUES = "/accounts/{account_id}/queues"
QUEUE = QUEUES + "/{queue_id}"


def consumer_json(c: dict[str, Any], queue_name: str) -> dict[str, Any]:
    out = {
        "consumer_id": c["consumer_id"],
        "type": c["type"],
        "queue_name": queue_name,
        "created_on": c["created_on"],
        "dead_letter_queue": c["dead_letter_queue"] or "",
        "settings": c["settings"],
    }
    if c["type"] == "worker":
        out["script_name"] = c["script_name"]
        out["script"] = c["script_name"]
    return out


def queue_json(state: State, row: dict[str, Any]) -> dict[str, Any]:
    producers = json.loads(row["producers"])
    consumers = [
        consumer_json(c, row["queue_name"]) for c in qm.consumers_of(state, row["queue_id"])
    ]
    return {
        "queue_id": row["queue_id"],
        "queue_name": row["queue_name"],
        "created_on": row["created_on"],
        "modified_on": row["modified_on"],
        "producers": producers,
        "producers_total_count": len(producers),
        "consumers": consumers,
        "consumers_total_count": len(consumers),
        "settings": {
            "delivery_delay": row["delivery_delay"],
            "delivery_paused": bool(row["delivery_paused"]),
            "message_retention_period": row["message_retention_period"],
        },
    }


def _queue(request: Request) -> tuple[State, dict[str, Any]]:
    check_account(request)
    state = from_request(request)
    with state.read() as db:
        row = db.execute(
            "SELECT * FROM queues WHERE queue_id = ?", (request.path_params["queue_id"],)
        ).fetchone()
    if row is None:
        raise CFError(404, 11000, "Queue does not exist")
    return state, dict(row)


async def list_queues(request: Request) -> Response:
    check_account(request)
    state = from_request(request)
    name = request.query_params.get("name")
    with state.read() as db:
        if name:
            rows = db.execute("SELECT * FROM queues WHERE queue_name = ?", (name,)).fetchall()
        else:
            rows = db.execute("SELECT * FROM queues ORDER BY created_on, queue_name").fetchall()
    return paged(request, [queue_json(state, dict(r)) for r in rows], per_page=100)


async def get_queue(request: Request) -> Response:
    state, row = _queue(request)
    return ok(queue_json(state, row))


async def list_consumers(request: Request) -> Response:
    state, row = _queue(request)
    return ok(
        [consumer_json(c, row["queue_name"]) for c in qm.consumers_of(state, row["queue_id"])]
    )


def _consumer_fields(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    dlq = body.get("dead_letter_queue")
    if dlq is not None and not isinstance(dlq, str):
        raise CFError(400, 11003, "dead_letter_queue must be a queue name")
    settings = body.get("settings") or {}
    if not isinstance(settings, dict):
        raise CFError(400, 11003, "settings must be an object")
    return dlq or None, settings


async def create_consumer(request: Request) -> Response:
    state, row = _queue(request)
    body = await json_body(request)
    dlq, settings = _consumer_fields(body)
    type_ = body.get("type", "worker")
    script = body.get("script_name") or body.get("script")
    if type_ == "worker" and not script:
        raise CFError(400, 11003, "a worker consumer needs script_name")
    if any(c["type"] == "worker" for c in qm.consumers_of(state, row["queue_id"])):
        raise CFError(400, 11004, "Queue already has a worker consumer")
    cid = qm.add_consumer(state, row["queue_id"], script, dead_letter_queue=dlq,
                          settings=settings, type_=type_)  # fmt: skip
    made = next(c for c in qm.consumers_of(state, row["queue_id"]) if c["consumer_id"] == cid)
    return ok(consumer_json(made, row["queue_name"]))


async def update_consumer(request: Request) -> Response:
    state, row = _queue(request)
    cid = request.path_params["consumer_id"]
    current = next(
        (c for c in qm.consumers_of(state, row["queue_id"]) if c["consumer_id"] == cid), None
    )
    if current is None:
        raise CFError(404, 11001, "Consumer does not exist")
    body = await json_body(request)
    dlq, settings = _consumer_fields(body)
    merged = {**current["settings"], **settings}
    script = body.get("script_name") or body.get("script") or current["script_name"]
    with state.tx() as db:
        db.execute(
            "UPDATE consumers SET dead_letter_queue = ?, settings = ?, script_name = ?"
            " WHERE consumer_id = ?",
            (dlq, json.dumps(merged), script, cid),
        )
    updated = next(c for c in qm.consumers_of(state, row["queue_id"]) if c["consumer_id"] == cid)
    return ok(consumer_json(updated, row["queue_name"]))


async def delete_consumer(request: Request) -> Response:
    state, row = _queue(request)
    with state.tx() as db:
        cur = db.execute(
            "DELETE FROM consumers WHERE consumer_id = ? AND queue_id = ?",
            (request.path_params["consumer_id"], row["queue_id"]),
        )
    if not cur.rowcount:
        raise CFError(404, 11001, "Consumer does not exist")
    return ok({})


async def metrics(request: Request) -> Response:
    state, row = _queue(request)
    return ok(qm.backlog(state, row["queue_name"]))


routes = [
    Route(QUEUES, list_queues, methods=["GET"]),
    Route(QUEUE, get_queue, methods=["GET"]),
    Route(QUEUE + "/consumers", list_consumers, methods=["GET"]),
    Route(QUEUE + "/consumers", create_consumer, methods=["POST"]),
    Route(QUEUE + "/consumers/{consumer_id}", update_consumer, methods=["PUT"]),
    Route(QUEUE + "/consumers/{consumer_id}", delete_consumer, methods=["DELETE"]),
    Route(QUEUE + "/metrics", metrics, methods=["GET"]),
]
