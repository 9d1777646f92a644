"""Checklist items from traffic (seed 004 "Key Metrics", seed 000 daily checks): uptime
probes, the status page, and the per-minute Workers analytics judged with the seed's
thresholds AND durations from params (`thresholds:`), sustained over consecutive minutes.

Workers analytics have wall-time quantiles P50/P90/P99, not P95: p95 > 2000 ms is
judged as a fail when P90 stays over it (then P95 does too) and a warning when only P99
does. 4xx are not in Workers analytics (`errors` counts exceptions), so the 4xx review is
manual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from .. import analysis
from . import health_check, signals
from .checks import Item, manual

if TYPE_CHECKING:
    from ..platform import Platform


def uptime(p: Platform) -> Item:
    results = health_check.probe_all(health_check.targets(p.env, []), 10.0, 2000.0)
    bad = [r for r in results if r.status is None or r.status not in r.expected]
    rows = [f"{r.method} {r.url} -> {r.status or r.error} ({r.elapsed_ms:.0f} ms)" for r in results]
    if bad:
        return Item("uptime", "fail", f"{len(bad)} of {len(results)} smoke probes failed",
                    {"probes": rows})  # fmt: skip
    return Item("uptime", "pass", f"{len(results)} smoke probes answered as expected",
                {"probes": rows})  # fmt: skip


def status_page(p: Platform) -> Item:
    st = p.status.status()
    open_incidents = [f"{i.name} ({i.impact}, {i.status})" for i in p.status.unresolved_incidents()]
    evidence = {"indicator": st.indicator, "description": st.description,
                "unresolved": open_incidents}  # fmt: skip
    if st.indicator in ("none", "") and not open_incidents:
        return Item("Cloudflare status", "pass", st.description or "operational", evidence)
    return Item("Cloudflare status", "warn",
                f"{st.description}; {len(open_incidents)} unresolved incident(s)", evidence)  # fmt: skip


def minutes(p: Platform, hours: int = 24) -> pd.DataFrame:
    """Per-minute analytics of the last `hours` (signals.invocations, reused)."""
    return signals.invocations(p, hours * 60)


def _threshold(p: Platform, name: str, value: float, span: float) -> tuple[float, float]:
    t = p.setting(f"thresholds.{name}") or {}
    return float(t.get("value", value)), float(t.get("for_minutes", span))


def error_rate(p: Platform, frame: pd.DataFrame) -> list[Item]:
    series = signals.error_series(frame)
    limit, span = _threshold(p, "error_rate", 0.05, 5)
    daily = float(p.setting("thresholds.daily_error_rate") or 0.01)
    req, err = int(series["requests"].sum()), int(series["errors"].sum())
    rate = err / req if req else 0.0
    run = analysis.sustained(series, limit, span)
    items = []
    if run is None:
        items.append(Item("error rate (key metric)", "pass",
                          f"never over {limit:.0%} for {span:.0f} consecutive minutes in "
                          f"{len(series)} minutes", {"minutes": len(series)}))  # fmt: skip
    else:
        items.append(Item("error rate (key metric)", "fail",
                          f"over {limit:.0%} for {run.minutes:.0f} min from {run.start:%H:%M} "
                          f"(peak {run.peak:.0%})",
                          {"start": str(run.start), "end": str(run.end), "peak": run.peak}))  # fmt: skip
    status = "pass" if rate < daily else "warn"
    items.append(Item("daily error rate", status,
                      f"{err}/{req} = {rate:.2%} over 24 h (target < {daily:.0%})",
                      {"requests": req, "errors": err}))  # fmt: skip
    return items


def latency(p: Platform, frame: pd.DataFrame) -> Item:
    limit, span = _threshold(p, "p95_ms", 2000, 10)
    per = frame.groupby("ts")[["wall_p90_ms", "wall_p99_ms"]].max().sort_index()
    if per.empty:
        return Item("p95 latency (key metric)", "warn", "not measured: no analytics rows")
    full = pd.date_range(per.index[0], per.index[-1], freq="1min")
    per = per.reindex(full, fill_value=0.0)
    lower = analysis.sustained(per["wall_p90_ms"], limit, span)
    upper = analysis.sustained(per["wall_p99_ms"], limit, span)
    evidence: dict[str, Any] = {"minutes": len(per), "max_p90_ms": round(per["wall_p90_ms"].max()),
                                "max_p99_ms": round(per["wall_p99_ms"].max())}  # fmt: skip
    if lower is not None:
        return Item("p95 latency (key metric)", "fail",
                    f"P90 over {limit:.0f} ms for {lower.minutes:.0f} min from "
                    f"{lower.start:%H:%M}, so P95 was too", evidence)  # fmt: skip
    if upper is not None:
        return Item("p95 latency (key metric)", "warn",
                    f"P99 over {limit:.0f} ms for {upper.minutes:.0f} min from {upper.start:%H:%M}"
                    f" (P90 was not); P95 is between", evidence)  # fmt: skip
    return Item("p95 latency (key metric)", "pass",
                f"P99 never over {limit:.0f} ms for {span:.0f} consecutive minutes", evidence)  # fmt: skip


def spikes(p: Platform, frame: pd.DataFrame) -> list[Item]:
    series = signals.error_series(frame)
    factor = float(p.setting("thresholds.spike_factor") or 3)
    daily = float(p.setting("thresholds.daily_error_rate") or 0.01)
    if series.empty:
        return [Item("5xx spike", "warn", "not measured: no analytics rows")]
    last = series[series.index > series.index[-1] - pd.Timedelta(hours=1)]
    before = series[series.index <= series.index[-1] - pd.Timedelta(hours=1)]

    def rate(part: pd.DataFrame) -> float:
        n = int(part["requests"].sum())
        return float(part["errors"].sum()) / n if n else 0.0

    now, base = rate(last), rate(before)
    spike = now > daily and now > factor * base
    evidence = {"last_hour": round(now, 4), "before": round(base, 4), "factor": factor}
    return [
        Item("5xx spike", "warn" if spike else "pass",
             f"last hour {now:.2%} vs {base:.2%} before"
             + (f" (over {factor:g}x and {daily:.0%})" if spike else ""), evidence),
        manual("4xx spike", "Workers analytics count exceptions, not 4xx: Cloudflare Dashboard "
               "-> Workers -> Logs, filter status 4xx, compare with yesterday"),
    ]  # fmt: skip


def p95_trend(p: Platform, frame: pd.DataFrame) -> Item:
    """Monthly performance review over what analytics keep: hourly P90/P99, first vs last 6 h."""
    limit, _ = _threshold(p, "p95_ms", 2000, 10)
    hourly = frame.set_index("ts")[["wall_p90_ms", "wall_p99_ms"]].resample("1h").median()
    hourly = hourly.dropna()
    if len(hourly) < 2:
        return Item("performance review", "warn", "not measured: under 2 hours of analytics")
    first, last = hourly.iloc[:6].median(), hourly.iloc[-6:].median()
    evidence = {"hours": len(hourly), "p90_first_ms": round(first["wall_p90_ms"]),
                "p90_last_ms": round(last["wall_p90_ms"]), "p99_last_ms": round(last["wall_p99_ms"])}  # fmt: skip
    status = "warn" if last["wall_p99_ms"] > limit else "pass"
    return Item("performance review", status,
                f"hourly P90 {first['wall_p90_ms']:.0f} -> {last['wall_p90_ms']:.0f} ms over "
                f"{len(hourly)} h (analytics retention); P99 now {last['wall_p99_ms']:.0f} ms",
                evidence)  # fmt: skip
