"""Faults of the outside world: D1 load, R2 errors, slow or failing upstream APIs, few
visitors (cold starts), the nightly pipeline's failures, and hostile callers.

Each sets a condition (sandbox/conditions.py) from an onset; the apps and the traffic
model read it, so live requests, the regenerated history, logs and analytics all show
it. The pipeline faults run the real pipeline as of last night's 02:00 UTC run (D1
pipeline_runs rows, logs "Pipeline failed for BPC-157: ..."); their heal clears the
condition and re-runs the pipeline, as the runbook's retry would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from .. import conditions, d1data
from ..profiles import PROFILES
from ..state import State
from . import Fault, register
from .app import (
    clear_condition,
    clear_visitor_floors,
    keep_visitors,
    ms,
    number,
    onset_of,
    profile_of,
    recall,
    remember,
    set_condition,
)

BOTH = ("manuscript", "peptalk")
PEPTIDE_OPTION = {"peptide": "the peptide that fails (default BPC-157), or 'all'"}
LLM_OPTION = {"status": "529 (default): the API is overloaded; 401: the Worker's API key was "
              "revoked (a new one is issued: every peptide fails until it is put)"}  # fmt: skip


def _peptides(options: dict[str, Any]) -> list[str] | None:
    name = str(options.get("peptide") or "BPC-157")
    return None if name == "all" else [name]


def _last_nightly() -> datetime:
    now = datetime.now(UTC)
    run = now.replace(hour=2, minute=0, second=0, microsecond=0)
    return run if run <= now - timedelta(minutes=5) else run - timedelta(days=1)


TRANSIENT = ("pubmed-timeout", "llm-error")  # upstream outages that end; compliance does not
TRANSIENT_OPTIONS = {
    "recovers_in_minutes": "how long the upstream stays down after the fault (default 0: "
    "recovered by the time anyone retries)",
}


def _rotate_llm_key(state: State) -> dict[str, Any]:
    """A new Anthropic key issued (the operator's copy in the credentials); the old one fails."""
    from ..apps.pipeline import LLM_SECRET, key_digest
    from ..workers_model import llm_key

    key = llm_key(LLM_SECRET)
    state.set_credential(f"{LLM_SECRET}_PEPTALK", key)
    return {"valid_key_sha256": key_digest(key)}


def _pipeline_fault(fault: str, name: str, data: dict[str, Any]) -> Any:
    def apply(state: State, options: dict[str, Any]) -> None:
        from ..apps.pipeline import run_pipeline

        run = _last_nightly()
        with d1data.d1_connect(state, PROFILES["peptalk"].database) as db:
            last = db.execute("SELECT max(started_at) FROM pipeline_runs").fetchone()[0]
        if last:  # a later (manual) run exists: the failing run is the newest one
            after = datetime.fromisoformat(last.replace("Z", "+00:00")) + timedelta(minutes=1)
            run = min(max(run, after), datetime.now(UTC))
        payload = {**data, "peptides": _peptides(options)}
        revoked = fault == "llm-error" and number(options, "status", 529) in (401, 403)
        if revoked:  # the provider revoked the Worker's key and issued a new one
            payload = _rotate_llm_key(state)
        conditions.set_condition(state, name, payload, ms(run) - 60_000)
        remember(state, fault, {"condition": name})
        with state.tx() as db:  # last night's synthetic run is replaced by the real one
            db.execute(
                "DELETE FROM traffic WHERE script = ? AND event_type = 'scheduled' AND synthetic = 1 AND ts_ms >= ?",
                ("peptalk-api", ms(run) - 60_000),
            )
        run_pipeline(state, at_ms=ms(run))
        if fault in TRANSIENT and not revoked:  # the upstream recovers after the night's run
            until = ms(datetime.now(UTC)) + int(number(options, "recovers_in_minutes", 0) * 60_000)
            conditions.set_condition(state, name, {**payload, "until_ms": until}, ms(run) - 60_000)

    def heal(state: State) -> None:
        from ..apps.pipeline import run_pipeline

        memo = recall(state, fault)
        if memo and memo.get("condition"):
            conditions.clear(state, memo["condition"])
            run_pipeline(state)

    return apply, heal


# An overload comes with load: from the onset the app has at least this many visitors a
# minute (a busy daytime rate), whatever the hour. At the night-time trough a 15-minute
# overload would otherwise hold a handful of timeouts, too few to tell from noise.
OVERLOAD_MIN_VISITORS = 10.0


def apply_d1_overload(state: State, options: dict[str, Any]) -> None:
    p = profile_of(options)
    load = number(options, "load", 0.25)
    onset = onset_of(options, 15)
    keep_visitors(state, p, number(options, "min_per_minute", OVERLOAD_MIN_VISITORS), onset)
    set_condition(state, "d1-overload", f"d1:{p.database}", {"load": load}, onset, p.worker)


def heal_d1_overload(state: State) -> None:
    clear_condition(state, "d1-overload")
    clear_visitor_floors(state)


def apply_r2_errors(state: State, options: dict[str, Any]) -> None:
    p = PROFILES["peptalk"]
    rate = number(options, "rate", 0.6)
    set_condition(
        state,
        "r2-errors",
        f"r2:{p.r2_bucket}",
        {"error_rate": rate},
        onset_of(options, 20),
        p.worker,
    )


def apply_slow_upstream(state: State, options: dict[str, Any]) -> None:
    p = profile_of(options)
    name = str(options.get("upstream") or "anthropic")
    latency = number(options, "latency_ms", 6000)
    set_condition(
        state,
        "slow-upstream",
        f"upstream:{name}",
        {"latency_ms": latency},
        onset_of(options, 30),
        p.worker,
    )


def apply_cold_start(state: State, options: dict[str, Any]) -> None:
    p = profile_of(options)
    data = {
        # a flat, sparse rate whatever the hour (the daily curve never falls below
        # a few visitors a minute): about 40 % of requests follow a 3-minute idle
        # gap, and every cold start (x0.8-1.6 in the model) lands over the 2 s budget
        "per_minute": number(options, "per_minute", 0.3),
        "cold_start_ms": number(options, "cold_start_ms", 2600),
    }
    set_condition(
        state, "cold-start", f"visitors:{p.worker}", data, onset_of(options, 90), p.worker
    )


def apply_rate_limited(state: State, options: dict[str, Any]) -> None:
    from .. import queues_model

    p = PROFILES["manuscript"]
    onset = onset_of(options, 30)
    data = {"error_status": 429, "rate": number(options, "rate", 0.8)}
    set_condition(state, "rate-limited", "upstream:anthropic", data, onset, p.worker)
    count = int(number(options, "messages", 60))
    span = max(1, ms(datetime.now(UTC)) - ms(onset))
    stamps = [ms(onset) + span * i // max(1, count) for i in range(count)]
    queues_model.enqueue_many(
        state, p.queue, [{"manuscript_id": f"job-{i:04d}"} for i in range(count)], stamps
    )


def _attack(kind: str, default: dict[str, Any]) -> Any:
    def apply(state: State, options: dict[str, Any]) -> None:
        p = profile_of(options, "peptalk")
        data = dict(default)
        data["per_min"] = number(options, "per_min", float(default["per_min"]))
        if kind == "compromised-account":
            with state.read() as db:
                row = db.execute(
                    "SELECT users FROM traffic_meta WHERE script = ?", (p.worker,)
                ).fetchone()
            import json

            users = json.loads(row["users"]) if row else []
            if not users:
                raise ValueError(f"no users in {p.worker}'s traffic to compromise")
            data["user_id"] = str(options.get("user_id") or users[7 % len(users)])
        from ..apps.security import arm

        onset = onset_of(options, 30)
        data.update(arm(state, p, kind, data, onset))  # the stolen session or leaked key
        set_condition(state, kind, f"attack:{p.worker}:{kind}", data, onset, p.worker)

    return apply


BRUTE_IPS = ["185.220.101.34", "185.220.101.35", "45.155.205.12", "193.32.162.70"]
TARGETS = ["admin@peptalk.com", "prodtest1@example.com", "eng@peptalk.com", "billing@peptalk.com"]

for _name, _summary, _symptom, _runbook, _apply, _heal, _profiles, _options in (
    ("d1-overload", "The app's D1 database is overloaded: heavy list queries time out.",
     "5-10% of requests fail with 'D1_ERROR: timeout' on the list endpoints.", "high-error-rate",
     apply_d1_overload, heal_d1_overload, BOTH,
     {"load": "share of heavy queries that time out (default 0.25)",
      "min_per_minute": "visitors a minute at least, from the onset (default 10)"}),
    ("r2-errors", "R2 returns internal errors for the PDF bucket.",
     "GET /api/peptides/:slug/pdf throws 'We encountered an internal error' (R2 10001).",
     "high-error-rate", apply_r2_errors, lambda s: clear_condition(s, "r2-errors"), ("peptalk",),
     {"rate": "share of R2 reads that fail (default 0.6)"}),
    ("slow-upstream", "The Anthropic API (or another upstream) answers in seconds.",
     "The analysis endpoint and queue jobs are slow; logs show the upstream's latency_ms.",
     "slow-responses", apply_slow_upstream, lambda s: clear_condition(s, "slow-upstream"), ("manuscript",),
     {"upstream": "anthropic (default): the API the analysis endpoint calls",
      "latency_ms": "added latency (default 6000)"}),
    ("cold-start", "Few visitors: most requests land on a cold isolate (slow cold starts only).",
     "Traffic is sparse; the slow requests are exactly the first ones after idle gaps.",
     "slow-responses", apply_cold_start, lambda s: clear_condition(s, "cold-start"), BOTH,
     {"per_minute": "visitors per minute, flat (default 0.3)", "cold_start_ms": "cold start time (default 2600)"}),
    ("rate-limited", "The Anthropic API answers 429 to most analysis jobs.",
     "The analysis queue backs up; consumer logs show 'rate limited (429), retrying'.",
     "queue-backlog", apply_rate_limited, lambda s: clear_condition(s, "rate-limited"), ("manuscript",),
     {"rate": "share of calls limited (default 0.8)", "messages": "jobs to enqueue (default 60)"}),
    ("brute-force", "A few IPs hammer POST /auth/login.",
     "Hundreds of 401s on /auth/login per minute from a handful of foreign IPs.", "security-incident",
     _attack("brute-force", {"ips": BRUTE_IPS, "country": "RU", "per_min": 60, "targets": TARGETS}),
     lambda s: clear_condition(s, "brute-force"), BOTH, {"per_min": "attempts per minute (default 60)"}),
    ("compromised-account", "A known user's account performs admin actions from a new IP and country.",
     "Admin actions (export users, grant admin, deletes) by one user from an IP/country never seen for them.",
     "security-incident",
     _attack("compromised-account", {"ip": "102.89.34.11", "country": "NG", "per_min": 2,
                                     "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/115.0"}),
     lambda s: clear_condition(s, "compromised-account"), BOTH,
     {"per_min": "actions per minute (default 2)", "user_id": "the user (default: one with history)"}),
    ("leaked-secret", "The admin API key is used from an unknown source IP.",
     "Requests authenticated with the admin API key from an IP outside the team's.",
     "security-incident",
     _attack("leaked-secret", {"ip": "194.26.29.113", "country": "NL", "per_min": 3, "key_hint": "ADMIN_API_KEY"}),
     lambda s: clear_condition(s, "leaked-secret"), BOTH, {"per_min": "requests per minute (default 3)"}),
):  # fmt: skip
    opts = {
        **({"profile": "manuscript or peptalk"} if len(_profiles) > 1 else {}),
        "minutes_ago": "onset (minutes ago)",
        **_options,
    }
    register(Fault(name=_name, summary=_summary, symptom=_symptom, runbook=_runbook, verdict=_name,
                   profiles=_profiles, apply=_apply, heal=_heal, options=opts))  # fmt: skip

for _name, _cond, _data, _what in (
    (
        "pubmed-timeout",
        "upstream:pubmed",
        {"timeout_ms": 30000},
        "PubMed API timeout after 30000ms",
    ),
    (
        "llm-error",
        "upstream:anthropic",
        {"error_status": 529, "rate": 1.0},
        "LLM API error: 529 overloaded_error",
    ),
    (
        "compliance-failed",
        "upstream:compliance",
        {"fail": True},
        "Compliance check failed: prohibited claim",
    ),
):
    _a, _h = _pipeline_fault(_name, _cond, _data)
    register(Fault(
        name=_name, summary=f"Last night's pipeline run failed for a peptide: {_what}.",
        symptom=f"Logs: 'Pipeline failed for BPC-157: {_what}'; pipeline_runs has a failed row; the PDF is stale.",
        runbook="pipeline-failed", verdict=_name, profiles=("peptalk",), apply=_a, heal=_h,
        options={**PEPTIDE_OPTION, **(TRANSIENT_OPTIONS if _name in TRANSIENT else {}),
                 **(LLM_OPTION if _name == "llm-error" else {})},
    ))  # fmt: skip
