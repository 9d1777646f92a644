"""costs (seed 004 "Cost Monitoring", seed 000 weekly "Cost tracking"): this month's spend
per category against the monthly budgets in params (`budgets:`), at the prices in params
(`prices:`).

- LLM: the `tokens_used` numbers the app logs (`console.log("tokens_used", N)`), summed
  from a log export (`wrangler tail --format json > tail.json`, read by the logs client)
  and priced per model (the model the request logged, else `prices.llm_default_model`).
  The export's time span is scaled to 30 days. Without an export the item is manual:
  a live tail only sees the next few seconds, which prices nothing.
- Cloudflare: Workers requests and CPU time of the last 24 h (GraphQL analytics) x 30
  against the paid plan's included amounts, plus R2 storage (capacity.r2_usage).
- Stripe fees: balance transactions of the last `days` days (`Stripe.balance_fees`),
  scaled to 30 days.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import capacity
from .checks import Item, manual
from .signals import iso

if TYPE_CHECKING:
    from ..platform import Platform

CAUSES = {
    "over-budget": "a category's monthly spend is over its budget",
    "near-budget": "a category's monthly spend is over the warning share of its budget",
}
PROFILES = ("manuscript", "peptalk")
NO_REMEDY = {
    "over-budget": "review the category's usage (LLM calls, requests, storage) and the budget",
    "near-budget": "watch the category; set the provider's billing alert",
}
MODEL = re.compile(r'"model"\s*:\s*"([^"]+)"')
MONTH_DAYS = 30


@dataclass
class Spend:
    category: str
    usd_month: float | None  # None: not measured
    basis: str
    detail: dict[str, Any]


def llm_spend(p: Platform, logs_file: str) -> Spend:
    prices = dict(p.setting("prices") or {})
    table = {str(k): float(v) for k, v in (prices.get("llm_usd_per_million_tokens") or {}).items()}
    default = str(prices.get("llm_default_model") or "")
    if not logs_file:
        return Spend("llm", None, "no log export given", {})
    from ..clients import logs

    frame = logs.read_events(Path(logs_file), ["ts", "logs", "tokens_used"])
    used = frame[frame["tokens_used"].notna()]
    per_model: dict[str, int] = {}
    for text, tokens in zip(used["logs"], used["tokens_used"], strict=True):
        m = MODEL.search(str(text or ""))
        name = m.group(1) if m else default
        per_model[name] = per_model.get(name, 0) + int(tokens)
    span_days = (
        (frame["ts"].max() - frame["ts"].min()).total_seconds() / 86400 if len(frame) > 1 else 0.0
    )
    unpriced = sorted(m for m in per_model if m not in table)
    usd = sum(n / 1e6 * table.get(m, 0.0) for m, n in per_model.items())
    scale = MONTH_DAYS / span_days if span_days > 0 else 0.0
    detail = {"tokens": sum(per_model.values()), "per_model": per_model,
              "requests_with_tokens": len(used), "events": len(frame),
              "span_days": round(span_days, 3), "usd_in_export": round(usd, 2),
              "unpriced_models": unpriced}  # fmt: skip
    if span_days <= 0:
        return Spend("llm", None, f"{logs_file}: no time span to scale", detail)
    basis = (f"{detail['tokens']:,} tokens in {logs_file} over {span_days:.2f} days, "
             f"x {scale:.1f} to 30 days")  # fmt: skip
    return Spend("llm", round(usd * scale, 2), basis, detail)


def cloudflare_spend(p: Platform, now: datetime | None = None) -> Spend:
    end = now or datetime.now(UTC)
    data = p.cf.graphql(
        capacity.DAY_QUERY,
        {"acct": p.cf.account_id, "s": iso(end - timedelta(days=1)), "e": iso(end), "w": p.worker},
    )
    groups = ((data.get("viewer") or {}).get("accounts") or [{}])[0].get(
        "workersInvocationsAdaptive"
    ) or [{}]
    s = (groups[0] or {}).get("sum") or {}
    requests = float(s.get("requests") or 0) * MONTH_DAYS
    cpu_ms = float(s.get("cpuTimeUs") or 0) / 1000 * MONTH_DAYS
    plan = dict((p.setting("prices") or {}).get("workers_paid") or {})
    over_req = max(0.0, requests - float(plan.get("included_requests", 0)))
    over_cpu = max(0.0, cpu_ms - float(plan.get("included_cpu_ms", 0)))
    workers = (float(plan.get("base_usd_month", 0))
               + over_req / 1e6 * float(plan.get("usd_per_million_requests", 0))
               + over_cpu / 1e6 * float(plan.get("usd_per_million_cpu_ms", 0)))  # fmt: skip
    r2 = capacity.r2_usage(p, dict(p.setting("limits") or {}))
    detail = {"requests_month": round(requests), "included_requests": plan.get("included_requests"),
              "cpu_ms_month": round(cpu_ms), "included_cpu_ms": plan.get("included_cpu_ms"),
              "workers_usd": round(workers, 2), "r2_usd": r2.used, "r2_basis": r2.basis}  # fmt: skip
    basis = (f"last 24 h x 30: {requests:,.0f} requests, {cpu_ms:,.0f} CPU ms vs the paid "
             f"plan's included amounts; R2 {r2.basis}")  # fmt: skip
    return Spend("cloudflare", round(workers + r2.used, 2), basis, detail)


def stripe_spend(p: Platform, days: int) -> Spend:
    fees = p.stripe.balance_fees(time.time() - days * 86400)
    usd = fees["fee"] / 100 * MONTH_DAYS / days
    basis = (f"{fees['count']} balance transactions in {days} days: fees "
             f"${fees['fee'] / 100:,.2f} on ${fees['gross'] / 100:,.2f} gross")  # fmt: skip
    return Spend("stripe_fees", round(usd, 2), basis, fees)


def judge(spend: Spend, budgets: dict[str, Any]) -> Item:
    name = f"{spend.category} spend"
    if spend.usd_month is None:
        return manual(
            name,
            f"{spend.basis}. Export the logs (npx wrangler tail --format json > tail.json "
            "over a day or more), then run costs -p logs_file=tail.json",
        )
    budget = budgets.get(spend.category)
    evidence = {"usd_month": spend.usd_month, "budget": budget, "basis": spend.basis,
                **{k: v for k, v in spend.detail.items() if not isinstance(v, dict)}}  # fmt: skip
    if budget is None:
        return Item(name, "warn", f"${spend.usd_month:,.2f}/month; no budget in params", evidence)
    share = spend.usd_month / float(budget)
    evidence["share"] = round(share, 3)
    warn = float(budgets.get("warn_share", 0.8))
    status = "fail" if share > 1 else "warn" if share > warn else "pass"
    level = {"fail": "over", "warn": "warn", "pass": "ok"}[status]
    text = f"${spend.usd_month:,.2f}/month of ${float(budget):,.2f} ({share:.0%}, {level})"
    return Item(name, status, text, evidence)


def measure(p: Platform, logs_file: str = "", days: int = 30) -> list[Spend]:
    return [llm_spend(p, logs_file), cloudflare_spend(p), stripe_spend(p, days)]


def items(p: Platform, spends: list[Spend]) -> list[Item]:
    budgets = dict(p.setting("budgets") or {})
    return [judge(s, budgets) for s in spends]


def diagnose(judged: list[Item]) -> tuple[str, list[str], str | None]:
    over = [i for i in judged if i.status == "fail"]
    near = [i for i in judged if i.status == "warn"]
    if over:
        return "over-budget", [f"{i.name}: {i.summary}" for i in over], NO_REMEDY["over-budget"]
    if near:
        return "near-budget", [f"{i.name}: {i.summary}" for i in near], NO_REMEDY["near-budget"]
    return "healthy", [f"{i.name}: {i.summary}" for i in judged], None
