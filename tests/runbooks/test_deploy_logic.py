"""deploy: when the watch stops early, and how a watch is judged (pure, no kernel)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from opsbook.clients.probes import ProbeResult
from opsbook.runbooks import deploy as dp
from opsbook.runbooks import rollback as rb

T = rb.Thresholds(error_rate=0.05, p95_ms=2000)


def probe(status: int | None, expected: int = 200, ms: float = 50) -> ProbeResult:
    ok = status == expected
    return ProbeResult("http://app/health", "GET", status, ok, ms, None, expected=(expected,))


def test_the_watch_stops_after_consecutive_failed_rounds_only() -> None:
    good, bad, gone = [probe(200)], [probe(500)], [probe(None)]
    assert dp.failed_rounds([bad, bad, good]) == 0
    assert dp.failed_rounds([good, bad, gone]) == 2
    assert dp.failed_rounds([bad, bad, bad]) == 3
    assert dp.failed_rounds([[probe(401, expected=401)], [probe(404, expected=401)]]) == 0


def watch(probes: list[ProbeResult], tail: pd.DataFrame, a: rb.VersionHealth | None) -> dp.Watch:
    return dp.Watch("v2", datetime(2026, 11, 23, 10, tzinfo=UTC), probes, tail, a, 1)


def tail(statuses: list[int], wall_ms: float) -> pd.DataFrame:
    return pd.DataFrame({"version": "v2", "status": statuses, "outcome": "ok", "wall_ms": wall_ms})


def test_a_healthy_watch_is_not_degraded() -> None:
    w = watch([probe(200)] * 4, tail([200] * 40, 80), rb.VersionHealth("v2", 40, 0, 70, 90))
    degraded, evidence = dp.judge(w, T)
    assert not degraded
    assert evidence[1] == "tail: 40 invocations of version v2, 0 failed (0.0%), wall p95 80 ms"


def test_slow_or_failing_invocations_in_the_tail_degrade_even_when_probes_pass() -> None:
    slow = watch([probe(200)] * 4, tail([200] * 40, 2500), None)
    degraded, evidence = dp.judge(slow, T)
    assert degraded and evidence[0] == "tail p95 2500 ms > 2000 ms"
    failing = watch([probe(200)] * 4, tail([200] * 36 + [500] * 4, 80), None)
    degraded, evidence = dp.judge(failing, T)
    assert degraded and evidence[0] == "tail error rate 10.0% >= 5%"
