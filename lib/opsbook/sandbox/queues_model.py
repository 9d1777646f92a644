"""Queues, consumers and messages: tables, seed, and the delivery model.

For the apps and faults:

    enqueue(state, "manuscript-analysis-queue", {"manuscript_id": 7}) -> message id
    enqueue_many(state, queue, bodies, enqueued_ms=[...])
    process(state, queue, handler, limit=None) -> Processed(acked, retried, dead)
    HANDLERS["manuscript-analysis-queue"] = handler   # what the server's drainer calls

Delivery (`process`): nothing happens while the queue has no consumer. Otherwise the
oldest visible pending messages are passed to `handler(state, body)`. A return acks
the message; an exception is a retry: the message becomes visible again after the
consumer's `retry_delay` seconds, and after `max_retries` retries it is dead-lettered
(status `dead`, and a copy enqueued on the consumer's `dead_letter_queue`, if any).

The server's drainer (server.py lifespan) calls `drain_all` every DRAIN_INTERVAL s:
each queue with a worker consumer gets `batch_size * max_concurrency` deliveries per
tick (at most DRAIN_CAP), with the handler in HANDLERS (acknowledge, by default).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .profiles import PROFILES

if TYPE_CHECKING:
    from .state import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    queue_id TEXT PRIMARY KEY, queue_name TEXT NOT NULL UNIQUE, created_on TEXT NOT NULL,
    modified_on TEXT NOT NULL, producers TEXT NOT NULL DEFAULT '[]',
    delivery_delay INTEGER NOT NULL DEFAULT 0, delivery_paused INTEGER NOT NULL DEFAULT 0,
    message_retention_period INTEGER NOT NULL DEFAULT 345600
);
CREATE TABLE IF NOT EXISTS consumers (
    consumer_id TEXT PRIMARY KEY, queue_id TEXT NOT NULL REFERENCES queues(queue_id),
    type TEXT NOT NULL DEFAULT 'worker', script_name TEXT, dead_letter_queue TEXT,
    created_on TEXT NOT NULL, settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, queue TEXT NOT NULL, body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, enqueued_ms INTEGER NOT NULL,
    visible_ms INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT, updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_messages_queue ON messages(queue, status, visible_ms);
"""

DRAIN_INTERVAL = 1.0
DRAIN_CAP = 50  # deliveries per queue per tick, whatever the consumer's settings
DEFAULT_SETTINGS = {
    "batch_size": 10,
    "max_retries": 3,
    "max_wait_time_ms": 5000,
    "retry_delay": 30,
    "max_concurrency": 10,
}

Handler = Callable[["State", Any], None]
HANDLERS: dict[str, Handler] = {}


@dataclass(frozen=True)
class Processed:
    acked: int = 0
    retried: int = 0
    dead: int = 0


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_ms(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def queue_row(state: State, name_or_id: str) -> dict[str, Any] | None:
    with state.read() as db:
        row = db.execute(
            "SELECT * FROM queues WHERE queue_id = ? OR queue_name = ?", (name_or_id, name_or_id)
        ).fetchone()
    return dict(row) if row else None


def consumers_of(state: State, queue_id: str) -> list[dict[str, Any]]:
    with state.read() as db:
        rows = db.execute(
            "SELECT * FROM consumers WHERE queue_id = ? ORDER BY created_on", (queue_id,)
        ).fetchall()
    out = []
    for r in rows:
        item = dict(r)
        item["settings"] = json.loads(item["settings"])
        out.append(item)
    return out


def add_consumer(
    state: State,
    queue: str,
    script_name: str | None,
    *,
    dead_letter_queue: str | None = None,
    settings: dict[str, Any] | None = None,
    type_: str = "worker",
    consumer_id: str | None = None,
) -> str:
    row = queue_row(state, queue)
    if row is None:
        raise KeyError(f"no queue {queue!r}")
    cid = consumer_id or uuid.uuid4().hex
    with state.tx() as db:
        db.execute(
            "INSERT INTO consumers VALUES (?,?,?,?,?,?,?)",
            (cid, row["queue_id"], type_, script_name, dead_letter_queue,
             iso_ms(now_ms()), json.dumps({**DEFAULT_SETTINGS, **(settings or {})})),
        )  # fmt: skip
    return cid


def enqueue(state: State, queue: str, body: Any, *, enqueued_ms: int | None = None) -> str:
    return enqueue_many(state, queue, [body], None if enqueued_ms is None else [enqueued_ms])[0]


def enqueue_many(
    state: State, queue: str, bodies: Iterable[Any], enqueued_ms: Sequence[int] | None = None
) -> list[str]:
    row = queue_row(state, queue)
    if row is None:
        raise KeyError(f"no queue {queue!r}")
    stamp = now_ms()
    rows = []
    for i, body in enumerate(bodies):
        at = enqueued_ms[i] if enqueued_ms is not None else stamp
        rows.append((uuid.uuid4().hex, row["queue_name"], json.dumps(body), at, at, stamp))
    with state.tx() as db:
        db.executemany(
            "INSERT INTO messages(id, queue, body, enqueued_ms, visible_ms, updated_ms)"
            " VALUES (?,?,?,?,?,?)",
            rows,
        )
    return [r[0] for r in rows]


def backlog(state: State, queue: str) -> dict[str, int]:
    with state.read() as db:
        row = db.execute(
            "SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(body)), 0) AS bytes,"
            " COALESCE(MIN(enqueued_ms), 0) AS oldest FROM messages"
            " WHERE queue = ? AND status = 'pending'",
            (queue,),
        ).fetchone()
    return {
        "backlog_count": row["n"],
        "backlog_bytes": row["bytes"],
        "oldest_message_timestamp_ms": row["oldest"],
    }


def _ack(state: State, _body: Any) -> None:
    return None


def process(
    state: State, queue: str, handler: Handler | None = None, limit: int | None = None
) -> Processed:
    """Deliver the oldest visible pending messages of `queue` to its worker consumer."""
    row = queue_row(state, queue)
    if row is None:
        raise KeyError(f"no queue {queue!r}")
    consumers = [c for c in consumers_of(state, row["queue_id"]) if c["type"] == "worker"]
    if not consumers or row["delivery_paused"]:
        return Processed()
    consumer = consumers[0]
    settings = consumer["settings"]
    handle = handler or HANDLERS.get(row["queue_name"], _ack)
    size = limit if limit is not None else int(settings.get("batch_size", 10))
    stamp = now_ms()
    with state.read() as db:
        batch = db.execute(
            "SELECT id, body, attempts FROM messages WHERE queue = ? AND status = 'pending'"
            " AND visible_ms <= ? ORDER BY enqueued_ms LIMIT ?",
            (row["queue_name"], stamp, size),
        ).fetchall()
    acked: list[tuple[int, str]] = []
    retried: list[tuple[int, int, str, int, str]] = []
    dead: list[tuple[int, int, str, int, str]] = []
    dlq_bodies: list[Any] = []
    for msg in batch:
        body = json.loads(msg["body"])
        try:
            handle(state, body)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            attempts = msg["attempts"] + 1
            if attempts > int(settings.get("max_retries", 3)):
                dead.append((attempts, stamp, error, stamp, msg["id"]))
                dlq_bodies.append(body)
            else:
                delay = int(settings.get("retry_delay", 30)) * 1000
                retried.append((attempts, stamp + delay, error, stamp, msg["id"]))
        else:
            acked.append((stamp, msg["id"]))
    with state.tx() as db:
        db.executemany("UPDATE messages SET status = 'acked', updated_ms = ? WHERE id = ?", acked)
        db.executemany(
            "UPDATE messages SET attempts = ?, visible_ms = ?, last_error = ?, updated_ms = ?"
            " WHERE id = ?",
            retried,
        )
        db.executemany(
            "UPDATE messages SET status = 'dead', attempts = ?, visible_ms = ?, last_error = ?,"
            " updated_ms = ? WHERE id = ?",
            dead,
        )
    dlq = consumer["dead_letter_queue"]
    if dlq_bodies and dlq and queue_row(state, dlq) is not None:
        enqueue_many(state, dlq, dlq_bodies)
    return Processed(acked=len(acked), retried=len(retried), dead=len(dead))


def drain_all(state: State) -> None:
    """One drainer tick: every queue with a worker consumer gets its share of deliveries."""
    with state.read() as db:
        rows = db.execute(
            "SELECT q.queue_name, c.settings FROM queues q JOIN consumers c"
            " ON c.queue_id = q.queue_id WHERE c.type = 'worker' AND q.delivery_paused = 0"
        ).fetchall()
    for r in rows:
        settings = json.loads(r["settings"])
        share = int(settings.get("batch_size", 10)) * int(settings.get("max_concurrency", 1))
        process(state, r["queue_name"], limit=max(1, min(share, DRAIN_CAP)))


def seed(state: State, rng: random.Random) -> None:
    created = now_ms() - 180 * 86400_000
    with state.tx() as db:
        for profile in PROFILES.values():
            for name, producers in (
                (profile.queue, [{"type": "worker", "script": profile.worker}]),
                (profile.dlq, []),
            ):
                db.execute(
                    "INSERT INTO queues(queue_id, queue_name, created_on, modified_on, producers)"
                    " VALUES (?,?,?,?,?)",
                    (rng.randbytes(16).hex(), name, iso_ms(created), iso_ms(created),
                     json.dumps(producers)),
                )  # fmt: skip
    for profile in PROFILES.values():
        add_consumer(
            state, profile.queue, profile.worker, dead_letter_queue=profile.dlq,
            consumer_id=rng.randbytes(16).hex(),
            settings={"max_concurrency": 5 if profile.name == "peptalk" else 10},
        )  # fmt: skip
        stamp = now_ms()
        enqueue_many(
            state, profile.queue,
            [{"job": "analyze" if profile.name == "manuscript" else "ingest", "id": i}
             for i in range(3)],
            [stamp - rng.randint(200, 4000) for _ in range(3)],
        )  # fmt: skip
