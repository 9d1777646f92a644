"""queue-backlog: the pure diagnosis from two queue readings and the consumer's logs."""

from __future__ import annotations

from typing import Any

from opsbook.clients import logs
from opsbook.runbooks import queue_backlog as qb

QUEUE = "manuscript-analysis-queue"
CONSUMER = {"consumer_id": "c1", "type": "worker", "script_name": "manuscript-upload-api",
            "dead_letter_queue": "manuscript-analysis-dlq", "settings": {"retry_delay": 30}}  # fmt: skip
UPSTREAMS = qb.upstream_hosts(
    {"anthropic": "https://api.anthropic.com", "stripe": "https://api.stripe.com"}
)


def reading(backlog: int, at: float, *, consumers: bool = True, dlq: int = 0,
            age_min: float = 30.0, paused: bool = False) -> qb.QueueReading:  # fmt: skip
    return qb.QueueReading(
        queue=QUEUE, queue_id="q1", consumers=[CONSUMER] if consumers else [], paused=paused,
        backlog=backlog, backlog_bytes=backlog * 40,
        oldest_ms=int((at - age_min * 60) * 1000) if backlog else 0,
        dlq="manuscript-analysis-dlq", dlq_backlog=dlq, at=at,
    )  # fmt: skip


def job(outcome: str = "ok", exc: str = "", log: list[Any] | None = None) -> dict[str, Any]:
    name, _, message = exc.partition(": ")
    return {
        "eventTimestamp": 1_790_000_000_000, "scriptName": "manuscript-upload-api",
        "scriptVersion": {"id": "v2"}, "outcome": outcome,
        "event": {"queue": QUEUE, "batchSize": 1},
        "exceptions": [{"name": name, "message": message}] if exc else [],
        "logs": [{"level": "warn", "message": log}] if log else [],
    }  # fmt: skip


def diagnose(first: qb.QueueReading, second: qb.QueueReading, events: list[dict[str, Any]]) -> tuple[str, list[str], str | None]:  # fmt: skip
    seen = qb.consumer_logs(logs.to_frame(events), QUEUE, UPSTREAMS)
    return qb.diagnose(first, second, seen, backlog_alert=100, age_alert_minutes=10)


def test_no_consumer_is_consumer_missing_with_queue_backlog_and_age() -> None:
    cause, evidence, remedy = diagnose(
        reading(400, 100.0, consumers=False, age_min=45),
        reading(400, 102.0, consumers=False, age_min=45),
        [],
    )
    text = " ".join(evidence)
    assert cause == "consumer-missing"
    assert (
        QUEUE in text and "consumers list is empty" in text and "400" in text and "45 min" in text
    )
    assert remedy and "consumer" in remedy


def test_failing_jobs_give_top_errors_with_counts() -> None:
    events = [job("exception", "SyntaxError: Unexpected token '<'")] * 8 + [
        job("exception", "Error: boom")
    ] * 2
    cause, evidence, _ = diagnose(reading(43, 100.0), reading(43, 102.0), events)
    assert cause == "jobs-failing"
    assert "10 of 10 jobs failed" in evidence[1]
    assert evidence[1].index("8 x SyntaxError") < evidence[1].index("2 x Error: boom")


def test_jobs_dead_lettered_lately_are_jobs_failing_even_with_a_small_backlog() -> None:
    first, second = reading(3, 100.0, dlq=37, age_min=1), reading(3, 102.0, dlq=37, age_min=1)
    second = qb.QueueReading(**{**second.__dict__, "dlq_oldest_ms": int((102.0 - 90) * 1000)})
    failed = [job("exception", "SyntaxError: Unexpected token '<'")]
    cause, evidence, _ = diagnose(first, second, failed)
    assert cause == "jobs-failing"
    assert "37 dead-lettered message(s), the oldest moved there 2 min ago" in evidence[2]
    # an old DLQ leftover with jobs succeeding now is not a failure now
    old = qb.QueueReading(**{**second.__dict__, "dlq_oldest_ms": int((102.0 - 86400) * 1000)})
    assert diagnose(first, old, [job()] * 5)[0] == "healthy"


def test_429s_name_the_upstream_host() -> None:
    line = ["Anthropic rate limited (429), retrying", {"retry_after_s": 30}]
    events = [job("ok", log=line)] * 6 + [job("ok")] * 2
    cause, evidence, _ = diagnose(reading(60, 100.0), reading(58, 102.0), events)
    assert cause == "rate-limited"
    assert "6 invocation(s) logged HTTP 429 from api.anthropic.com" in evidence[0]


def test_a_draining_surge_is_high_volume_with_an_eta() -> None:
    cause, evidence, remedy = diagnose(reading(6000, 100.0), reading(5900, 102.0), [job()] * 100)
    assert cause == "high-volume" and remedy is None
    assert "draining at about 50 msg/s" in evidence[0]
    assert "2.0 min" in evidence[1]


def test_a_consumer_finishing_jobs_drains_even_between_two_equal_readings() -> None:
    # readings inside one slow delivery tick do not move; the consumer's finished jobs do
    cause, evidence, _ = diagnose(reading(6000, 100.0), reading(6000, 102.0), [job()] * 40)
    assert cause == "high-volume" and "about 20 msg/s" in evidence[0]


def test_a_stuck_backlog_with_a_consumer_is_unknown_not_forced() -> None:
    cause, _, _ = diagnose(reading(500, 100.0), reading(500, 102.0), [])
    assert cause == "unknown"


def test_a_small_young_backlog_is_healthy() -> None:
    cause, _, _ = diagnose(reading(3, 100.0, age_min=0.1), reading(0, 102.0), [job()] * 3)
    assert cause == "healthy"


def test_paused_delivery_is_said_not_guessed() -> None:
    cause, evidence, _ = diagnose(
        reading(500, 100.0, paused=True), reading(500, 102.0, paused=True), []
    )
    assert cause == "unknown" and "paused" in evidence[0]


def test_the_redeploy_preview_has_the_api_call_the_dlq_and_wrangler() -> None:
    class P:
        worker = "manuscript-upload-api"

        class cf:
            account_id = "acct"

        @staticmethod
        def setting(name: str) -> str:
            return "manuscript-analysis-dlq"

    preview = qb.redeploy_preview(P(), reading(400, 100.0, consumers=False))  # type: ignore[arg-type]
    assert preview["call"] == "POST /accounts/acct/queues/q1/consumers"
    assert preview["body"]["dead_letter_queue"] == "manuscript-analysis-dlq"
    assert (
        "npx wrangler queues consumer add manuscript-analysis-queue manuscript-upload-api"
        in preview["wrangler"]
    )
