"""queue-backlog: the analysis queue is backing up (seed 000, Issue 6).

Measures the backlog twice (with a live tail of the consumer in between), reads the
consumer's recent invocations from Workers Logs (what failed jobs and 429s left there
before we looked), the queue's consumers and its dead-letter queue, and tells apart a
missing consumer, jobs that fail into the DLQ, an upstream that rate-limits the
consumer, and a surge that the healthy consumer is already draining.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pandas as pd

if TYPE_CHECKING:
    from ..platform import Platform
    from .deploys import RollbackPlan

CAUSES = {
    "consumer-missing": "the queue has no consumer: nothing reads the messages",
    "jobs-failing": "the consumer runs, but its jobs throw and retry into the dead-letter queue",
    "rate-limited": "the consumer's upstream API answers 429; jobs retry with backoff",
    "high-volume": "a surge of messages that the healthy consumer is draining",
}
PROFILES = ("manuscript", "peptalk")
# Seed 000 rates Issue 6 "Low — analysis delayed but not broken": the app keeps serving,
# only the asynchronous analysis waits. The escalation matrix still applies by elapsed time.
SEVERITY = "P3"
NO_REMEDY = {
    "high-volume": "normal: the consumer is draining the surge; watch the ETA, no action",
    "rate-limited": "messages retry automatically with backoff; add backoff/concurrency "
    "limits in the consumer code if it persists",
    "jobs-failing": "fix the consumer code (see the top errors); roll back only when the "
    "failures began with a deployment",
}
# wrangler's defaults for a queue consumer (wrangler.toml [[queues.consumers]])
CONSUMER_SETTINGS = {"batch_size": 10, "max_retries": 3, "max_wait_time_ms": 5000}
_STATUS_429 = re.compile(r"\b429\b|rate.?limit", re.IGNORECASE)


@dataclass(frozen=True)
class QueueReading:
    queue: str
    queue_id: str
    consumers: list[dict[str, Any]]
    paused: bool
    backlog: int
    backlog_bytes: int
    oldest_ms: int
    dlq: str | None
    dlq_backlog: int
    at: float  # unix seconds
    dlq_oldest_ms: int = 0  # when the oldest dead-lettered message was moved there

    @property
    def worker_consumers(self) -> list[dict[str, Any]]:
        return [c for c in self.consumers if c.get("type", "worker") == "worker"]

    def dlq_age_min(self) -> float | None:
        """Minutes since the oldest message still in the DLQ was dead-lettered."""
        if not self.dlq_backlog or not self.dlq_oldest_ms:
            return None
        return max(0.0, (self.at * 1000 - self.dlq_oldest_ms) / 60_000)

    def oldest_age_min(self) -> float | None:
        if not self.backlog or not self.oldest_ms:
            return None
        return max(0.0, (self.at * 1000 - self.oldest_ms) / 60_000)


def read_queue(p: Platform, queue: str, dlq: str | None) -> QueueReading:
    """One reading: the queue (with its consumers), its backlog, the DLQ's backlog."""
    q = p.cf.queue(queue)
    consumers = p.cf.queue_consumers(q["queue_id"])
    metrics = p.cf.queue_metrics(q["queue_id"])
    dlq_name = next((c.get("dead_letter_queue") for c in consumers if c.get("dead_letter_queue")), None) or dlq  # fmt: skip
    dlq_metrics: dict[str, Any] = {}
    if dlq_name:
        dlq_metrics = p.cf.queue_metrics(dlq_name)
    return QueueReading(
        queue=q["queue_name"],
        queue_id=q["queue_id"],
        consumers=consumers,
        paused=bool((q.get("settings") or {}).get("delivery_paused")),
        backlog=int(metrics.get("backlog_count", 0)),
        backlog_bytes=int(metrics.get("backlog_bytes", 0)),
        oldest_ms=int(metrics.get("oldest_message_timestamp_ms") or 0),
        dlq=dlq_name,
        dlq_backlog=int(dlq_metrics.get("backlog_count", 0)),
        at=time.time(),
        dlq_oldest_ms=int(dlq_metrics.get("oldest_message_timestamp_ms") or 0),
    )


def _read_later(p: Platform, queue: str, dlq: str | None, delay: float) -> QueueReading:
    time.sleep(delay)
    return read_queue(p, queue, dlq)


def watch(
    p: Platform,
    queue: str,
    dlq: str | None,
    first: QueueReading,
    *,
    seconds: float,
    max_seconds: float,
    backlog_alert: int,
    age_alert_minutes: float,
    recent_minutes: float = 60,
    history: pd.DataFrame | None = None,
) -> tuple[QueueReading, pd.DataFrame, float]:
    """Tail the worker for `seconds`, then read the queue again: (reading, events, watched s).

    A backlog that neither moves nor shows a single consumer invocation may be waiting
    out the consumer's `retry_delay` (failed jobs are invisible until then): keep
    watching until the retries are due, at most `max_seconds` in all. With `history`
    (the recent Workers Logs, `recent_history`), its invocations count too, and come
    first in the events: the retries a tail would wait for are usually in it already.
    """
    from .signals import while_tailing

    def read_after(delay: float) -> Callable[[], QueueReading]:
        return lambda: _read_later(p, queue, dlq, delay)

    second, events = while_tailing(p, seconds, read_after(seconds * 0.9))
    if history is not None and len(history):
        events = pd.concat([history, events], ignore_index=True) if len(events) else history
    watched = seconds
    consumers = second.worker_consumers
    jobs = (
        int(((events["method"] == "QUEUE") & (events["path"] == queue)).sum()) if len(events) else 0
    )
    age = second.oldest_age_min()
    backlogged = second.backlog >= backlog_alert or (age or 0) >= age_alert_minutes
    stuck = backlogged and second.backlog >= first.backlog
    dead_lately = second.dlq_backlog > 0 and (second.dlq_age_min() or 1e9) <= recent_minutes
    if (
        consumers
        and (stuck or (dead_lately and second.backlog))
        and jobs < 3
        and watched < max_seconds
    ):
        retry = float((consumers[0].get("settings") or {}).get("retry_delay", 30))
        extra = min(retry + 2.0, max_seconds - watched)
        if extra > 0:
            second, more = while_tailing(p, extra, read_after(extra * 0.95))
            events = pd.concat([events, more], ignore_index=True) if len(more) else events
            watched += extra
    return second, events, watched


def recent_history(p: Platform, minutes: float) -> tuple[pd.DataFrame | None, pd.Timestamp]:
    """The worker's invocations of the last `minutes` from Workers Logs (None without
    Workers Logs on the account), and when they end: later events are live."""
    from datetime import UTC, datetime

    from ..clients import logs
    from .signals import recent_events

    now = datetime.now(UTC)
    items = recent_events(p, minutes, now=now)
    return (None if items is None else logs.to_frame(items)), pd.Timestamp(now)


def reading_row(r: QueueReading) -> dict[str, Any]:
    age = r.oldest_age_min()
    return {
        "at": time.strftime("%H:%M:%S", time.gmtime(r.at)),
        "queue": r.queue,
        "consumers": ", ".join(c.get("script_name") or c.get("type", "?") for c in r.consumers) or "none",
        "backlog": r.backlog,
        "oldest message": f"{age:.1f} min" if age is not None else "-",
        f"DLQ {r.dlq or '-'}": r.dlq_backlog,
    }  # fmt: skip


# ---- the consumer's logs ---------------------------------------------------------------
@dataclass
class ConsumerLogs:
    events: int = 0
    ok: int = 0
    failed: int = 0
    rate_limited: int = 0  # invocations (consumer or fetch) that logged a 429
    top_errors: list[tuple[str, int]] = field(default_factory=list)
    hosts: dict[str, int] = field(default_factory=dict)  # upstream host -> 429 lines
    versions: dict[str, int] = field(default_factory=dict)  # version -> failed jobs
    live_ok: int | None = None  # jobs finished while we watched (None: all events are live)
    source: str = "the tail"  # where the events come from, for the evidence


def upstream_hosts(upstreams: dict[str, str] | None) -> dict[str, str]:
    """params app.upstreams {name: url} -> {name: host}."""
    return {k.lower(): urlparse(v).hostname or v for k, v in (upstreams or {}).items()}


def consumer_logs(
    events: pd.DataFrame,
    queue: str,
    upstreams: dict[str, str],
    *,
    live_since: pd.Timestamp | None = None,
    source: str = "the tail",
) -> ConsumerLogs:
    """What the consumer did: outcomes, top errors, 429s by upstream host. With
    `live_since` (events before it are history), `live_ok` counts the jobs finished
    while we watched, the drain speed."""
    out = ConsumerLogs(source=source)
    if events.empty:
        if live_since is not None:
            out.live_ok = 0
        return out
    jobs = events[(events["method"] == "QUEUE") & (events["path"] == queue)]
    out.events = len(jobs)
    out.ok = int((jobs["outcome"] == "ok").sum())
    if live_since is not None:
        out.live_ok = int(((jobs["outcome"] == "ok") & (jobs["ts"] >= live_since)).sum())
    failed = jobs[jobs["outcome"] != "ok"]
    out.failed = len(failed)
    errors = Counter(e for e in failed["exceptions"].fillna("") if e)
    out.top_errors = errors.most_common(5)
    out.versions = dict(Counter(str(v) for v in failed["version"].fillna("?")))
    hosts: Counter[str] = Counter()
    limited = 0
    for text in events["logs"].fillna("").astype(str):
        lines = [line for line in text.splitlines() if _STATUS_429.search(line)]
        if not lines:
            continue
        limited += 1
        for line in lines:
            low = line.lower()
            named = [h for name, h in upstreams.items() if name in low or h in low]
            hosts.update(named or ["(unnamed upstream)"])
    out.rate_limited = limited
    out.hosts = dict(hosts)
    return out


# ---- the verdict -----------------------------------------------------------------------
def drain_rate(first: QueueReading, second: QueueReading) -> float:
    """Messages per second the backlog shrank between two readings (negative: growing)."""
    dt = max(second.at - first.at, 1e-6)
    return (first.backlog - second.backlog) / dt


def diagnose(
    first: QueueReading,
    second: QueueReading,
    logs: ConsumerLogs,
    *,
    backlog_alert: int,
    age_alert_minutes: float,
    watched_s: float | None = None,
    recent_minutes: float = 60,
) -> tuple[str, list[str], str | None]:
    """(cause, evidence, remedy) from two readings and the consumer's logs (watched for
    `watched_s`, default the time between the readings)."""
    q = second.queue
    age = second.oldest_age_min()
    age_text = f"{age:.0f} min old" if age is not None else "none waiting"
    rate = drain_rate(first, second)
    seen = f"{logs.events} consumer invocation(s) in {logs.source}"
    if not second.worker_consumers:
        return (
            "consumer-missing",
            [
                f"queue {q}: consumers list is empty (consumers_total_count 0)",
                f"backlog {second.backlog} message(s), oldest message {age_text}",
                f"backlog {first.backlog} -> {second.backlog} in {second.at - first.at:.1f} s: "
                "nothing is reading it",
            ],
            f"Re-create the worker consumer of {q} (redeploy the worker, whose wrangler.toml "
            "declares it), with its dead-letter queue.",
        )
    if second.paused:
        return (
            "unknown",
            [f"queue {q}: delivery is paused (settings.delivery_paused = true)",
             f"backlog {second.backlog}"],
            "Resume delivery if the pause was not intended: npx wrangler queues resume-delivery "
            f"{q}",
        )  # fmt: skip
    dlq_growth = second.dlq_backlog - first.dlq_backlog
    dlq_age = second.dlq_age_min()
    dead_lately = second.dlq_backlog > 0 and dlq_age is not None and dlq_age <= recent_minutes
    if (logs.events and logs.failed >= max(3, 0.3 * logs.events)) or (
        dead_lately and (logs.failed or dlq_growth > 0 or not logs.ok)
    ):
        top = "; ".join(f"{n} x {text}" for text, n in logs.top_errors) or "none seen live"
        return (
            "jobs-failing",
            [
                f"consumer {second.worker_consumers[0].get('script_name')} is attached to {q}",
                f"{logs.failed} of {logs.events} jobs failed in {logs.source}; top errors: {top}",
                f"DLQ {second.dlq}: {second.dlq_backlog} dead-lettered message(s), the oldest moved "
                f"there {dlq_age:.0f} min ago ({dlq_growth:+d} while watching)"
                if dlq_age is not None
                else f"DLQ {second.dlq}: empty so far ({dlq_growth:+d} while watching)",
                f"backlog {second.backlog}, oldest message {age_text}",
            ],
            None,
        )
    if logs.rate_limited >= 3 and (not logs.events or logs.rate_limited >= 0.3 * logs.events):
        hosts = ", ".join(f"{h} ({n} x 429)" for h, n in sorted(logs.hosts.items(), key=lambda x: -x[1]))  # fmt: skip
        return (
            "rate-limited",
            [
                f"{logs.rate_limited} invocation(s) logged HTTP 429 from {hosts}",
                f"consumer present; {seen}, {logs.failed} threw",
                f"backlog {second.backlog}, oldest message {age_text}; "
                f"DLQ {second.dlq}: {second.dlq_backlog}",
            ],
            None,
        )
    backlogged = second.backlog >= backlog_alert or (age is not None and age >= age_alert_minutes)
    watched = watched_s or max(second.at - first.at, 1e-6)
    done = logs.ok if logs.live_ok is None else logs.live_ok
    throughput = done / watched  # jobs the consumer finished per second while we watched
    speed = max(rate, throughput)
    if backlogged and speed > 0 and (rate > 0 or logs.ok >= 3):
        eta_min = second.backlog / speed / 60
        return (
            "high-volume",
            [
                f"backlog {first.backlog} -> {second.backlog} in {second.at - first.at:.1f} s; "
                f"the consumer finished {done} job(s) in {watched:.1f} s: draining at about "
                f"{speed:.0f} msg/s",
                f"ETA to empty: about {eta_min:.1f} min (will catch up)",
                f"consumer present; {seen}, {logs.failed} failed; DLQ {second.dlq}: "
                f"{second.dlq_backlog} ({dlq_growth:+d})",
            ],
            None,
        )
    if backlogged:
        return (
            "unknown",
            [f"backlog {second.backlog} (oldest message {age_text}) is not draining "
             f"({rate:+.1f} msg/s) although a consumer is attached", seen],
            "Check the consumer's deployment and logs (npx wrangler tail); the evidence fits "
            "no declared cause.",
        )  # fmt: skip
    return (
        "healthy",
        [
            f"queue {q}: consumer {second.worker_consumers[0].get('script_name')} attached",
            f"backlog {second.backlog} (< {backlog_alert}), oldest message {age_text}",
            f"DLQ {second.dlq}: {second.dlq_backlog} message(s); {seen}, {logs.failed} failed",
        ],
        None,
    )


# ---- the remedy: re-create the consumer ---------------------------------------------------
def consumer_body(worker: str, dlq: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "worker", "script_name": worker, "settings": CONSUMER_SETTINGS}
    if dlq:
        body["dead_letter_queue"] = dlq
    return body


def redeploy_preview(p: Platform, r: QueueReading) -> dict[str, Any]:
    dlq = r.dlq or p.setting("app.dlq")
    s = CONSUMER_SETTINGS
    add = (
        f"npx wrangler queues consumer add {r.queue} {p.worker}"
        f" --batch-size {s['batch_size']} --message-retries {s['max_retries']}"
        f" --batch-timeout {s['max_wait_time_ms'] // 1000}"
        + (f" --dead-letter-queue {dlq}" if dlq else "")
    )
    return {
        "call": f"POST /accounts/{p.cf.account_id}/queues/{r.queue_id}/consumers",
        "body": consumer_body(p.worker, dlq),
        "wrangler": f"npx wrangler deploy  (re-attaches the consumer declared in wrangler.toml); or {add}",
    }


def redeploy(p: Platform, r: QueueReading) -> dict[str, Any]:
    made = p.cf.create_queue_consumer(
        r.queue_id, consumer_body(p.worker, r.dlq or p.setting("app.dlq"))
    )
    return {"consumer_id": made.get("consumer_id"), "script": made.get("script_name"),
            "dead_letter_queue": made.get("dead_letter_queue")}  # fmt: skip


def verify_draining(
    p: Platform, queue: str, dlq: str | None, max_wait_s: float = 15.0
) -> tuple[bool, list[str]]:
    """Fresh readings after the fix: a consumer is attached and the backlog goes down
    (read every second until it drops, at most `max_wait_s`)."""
    a = read_queue(p, queue, dlq)
    b = a
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline:
        time.sleep(1.0)
        b = read_queue(p, queue, dlq)
        if b.backlog == 0 or b.backlog < a.backlog:
            break
    present = bool(b.worker_consumers)
    shrinking = b.backlog == 0 or b.backlog < a.backlog
    consumers = ", ".join(c.get("script_name") or "?" for c in b.worker_consumers) or "none"
    return present and shrinking, [
        f"consumers now: {consumers}",
        f"backlog {a.backlog} -> {b.backlog} in {b.at - a.at:.1f} s after the fix "
        f"({drain_rate(a, b):.0f} msg/s)",
    ]


def rollback_for(p: Platform, logs: ConsumerLogs) -> tuple[RollbackPlan | None, str]:
    """jobs-failing: did the failures begin with the deployment serving now?"""
    from .deploys import rollback_plan, version_errors
    from .signals import by_version

    plan = rollback_plan(
        p.cf.deployments(p.worker),
        version_errors(by_version(p)),
        min_rate=0.01,
        failing_versions=list(logs.versions),
    )
    if plan is not None:
        return plan, plan.evidence()
    return None, (
        f"the failing jobs ran version(s) {', '.join(logs.versions) or '?'}; the failures did "
        "not begin with the deployment serving now, so a rollback would not help"
    )


def verify_jobs(
    p: Platform, queue: str, dlq: str | None, before: QueueReading, max_seconds: float
) -> tuple[bool, list[str]]:
    """After a rollback: watch until the retried jobs are delivered again; they must succeed."""
    from .signals import while_tailing

    retry = float(
        ((before.worker_consumers or [{}])[0].get("settings") or {}).get("retry_delay", 30)
    )
    seconds = min(retry + 3.0, max_seconds)
    after, events = while_tailing(p, seconds, lambda: _read_later(p, queue, dlq, seconds * 0.95))
    seen = consumer_logs(events, queue, {})
    passed = seen.events > 0 and seen.failed <= 0.1 * seen.events and after.backlog < before.backlog
    return passed, [
        f"{seen.events} job(s) delivered in {seconds:.0f} s after the fix: {seen.ok} ok, "
        f"{seen.failed} failed",
        f"backlog {before.backlog} at diagnosis -> {after.backlog}; DLQ {after.dlq}: "
        f"{after.dlq_backlog}",
    ]
