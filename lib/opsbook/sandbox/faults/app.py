"""App faults: versions deployed with a bug or a wrong config, and the mail provider down.

Each deploys a real version (visible through the versions/deployments API, its
bindings, and the app's answers) or changes the outside world (conditions). With an
onset in the past (`minutes_ago`), the traffic history is regenerated from it, so tails,
exports and analytics agree with the state. `heal` rolls back to the version that
served before (if nobody did yet) or clears the condition.

Version `behaviour` semantics: see sandbox/behaviour.py.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import conditions, queues_model, traffic
from .. import workers_model as wm
from ..profiles import PROFILES, Profile
from ..state import State
from . import Fault, register

BOTH = ("manuscript", "peptalk")
PROFILE_OPTION = {"profile": "manuscript (default) or peptalk"}
WRONG_ORIGIN = {
    "manuscript": "https://staging.scarter4workmanuscripthub.com",
    "peptalk": "https://www.peptalk.com",
}
BROKEN_ENDPOINT = {
    "manuscript": "GET /manuscripts/:id/analysis",
    "peptalk": "GET /api/peptides/:slug",
}
ENDPOINT_EXCEPTION = "TypeError: Cannot read properties of undefined (reading 'score')"
DEPLOY_EXCEPTION = "RangeError: Invalid time value"
JOB_EXCEPTION = "SyntaxError: Unexpected token '<' in JSON at position 0"


# ---- helpers shared with faults/traffic.py -------------------------------------------
def profile_of(options: dict[str, Any], default: str = "manuscript") -> Profile:
    name = str(options.get("profile") or default)
    if name not in PROFILES:
        raise ValueError(f"option profile must be manuscript or peptalk, got {name!r}")
    return PROFILES[name]


def number(options: dict[str, Any], name: str, default: float) -> float:
    raw = options.get(name, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"option {name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"option {name} must not be negative, got {value}")
    return value


def onset_of(options: dict[str, Any], default_minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=number(options, "minutes_ago", default_minutes))


def remember(state: State, name: str, data: dict[str, Any]) -> None:
    with state.tx() as db:
        db.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
            (f"fault:{name}", json.dumps(data)),
        )


def recall(state: State, name: str) -> dict[str, Any] | None:
    with state.tx() as db:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (f"fault:{name}",)).fetchone()
        db.execute("DELETE FROM meta WHERE key = ?", (f"fault:{name}",))
    return json.loads(row["value"]) if row else None


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def deploy_variant(
    state: State,
    fault: str,
    profile: Profile,
    onset: datetime,
    message: str,
    *,
    behaviour: dict[str, Any] | None = None,
    bindings: list[dict[str, Any]] | None = None,
) -> None:
    """Deploy a new version at `onset` (remembered for heal) and regenerate the history.

    The onset is moved after the latest deployment, if it is older: a deployment cannot
    be slipped under one that already serves traffic.
    """
    before = wm.current_version(state, profile.worker)
    deps = wm.deployments(state, profile.worker)
    if deps:
        latest = wm.parse_iso(deps[0]["created_on"]) + timedelta(seconds=30)
        onset = min(max(onset, latest), datetime.now(UTC))
    version = wm.create_version(
        state, profile.worker, message=message, behaviour=behaviour, bindings=bindings,
        created_on=onset - timedelta(minutes=2),
    )  # fmt: skip
    wm.deploy(
        state, profile.worker, [(version.id, 100)], message, created_on=onset, source="wrangler"
    )
    remember(
        state,
        fault,
        {"script": profile.worker, "bad": version.id, "good": before.id if before else None},
    )
    traffic.regenerate(state, profile.worker, ms(onset))


def roll_back(state: State, fault: str) -> None:
    memo = recall(state, fault)
    if not memo or not memo.get("good"):
        return
    current = wm.current_version(state, memo["script"])
    if current is not None and current.id == memo["bad"]:
        wm.deploy(
            state, memo["script"], [(memo["good"], 100)], "Rollback (sandbox heal)", source="api"
        )


def set_condition(
    state: State, fault: str, name: str, data: dict[str, Any], onset: datetime, script: str | None
) -> None:
    conditions.set_condition(state, name, data, ms(onset))
    remember(state, fault, {"condition": name})
    if script:
        traffic.regenerate(state, script, ms(onset))


def clear_condition(state: State, fault: str) -> None:
    memo = recall(state, fault)
    if memo and memo.get("condition"):
        conditions.clear(state, memo["condition"])


def _current_bindings(state: State, profile: Profile) -> list[dict[str, Any]]:
    version = wm.current_version(state, profile.worker)
    return [dict(b) for b in (version.bindings if version else [])]


# ---- the faults ------------------------------------------------------------------------
def apply_cors(state: State, options: dict[str, Any]) -> None:
    profile = profile_of(options)
    bindings = [b for b in _current_bindings(state, profile) if b.get("name") != "CORS_ORIGIN"]
    bindings.append(
        {"type": "plain_text", "name": "CORS_ORIGIN", "text": WRONG_ORIGIN[profile.name]}
    )
    deploy_variant(state, "cors-misconfigured", profile, onset_of(options, 20),
                   "Restrict CORS to the allowed origin", bindings=bindings)  # fmt: skip


def apply_email_config(state: State, options: dict[str, Any]) -> None:
    profile = profile_of(options)
    bindings = [
        b
        for b in _current_bindings(state, profile)
        if not str(b.get("name", "")).startswith("EMAIL_")
    ]
    deploy_variant(state, "email-config-missing", profile, onset_of(options, 45),
                   "Move configuration to wrangler environments", bindings=bindings)  # fmt: skip


def apply_mail_down(state: State, options: dict[str, Any]) -> None:
    profile = profile_of(options)
    set_condition(
        state, "mail-provider-down", "mail", {"down": True}, onset_of(options, 30), profile.worker
    )


def apply_one_endpoint(state: State, options: dict[str, Any]) -> None:
    profile = profile_of(options)
    route = str(options.get("endpoint") or BROKEN_ENDPOINT[profile.name])
    from ..behaviour import ENDPOINTS

    if route not in {ep.route for ep in ENDPOINTS[profile.name]}:
        known = ", ".join(ep.route for ep in ENDPOINTS[profile.name])
        raise ValueError(f"option endpoint must be one of {known}; got {route!r}")
    rule = {"route": route, "status": 500, "rate": 1.0, "exception": ENDPOINT_EXCEPTION}
    deploy_variant(state, "one-endpoint-broken", profile, onset_of(options, 180),
                   "Add readability score to analysis", behaviour={"errors": [rule]})  # fmt: skip


# A 7 % error rate needs traffic to show: at the night-time trough (3-4 visitors a
# minute) a window can hold too few errors to tell from noise, and too few requests after
# a rollback to prove it. The drill keeps at least this many visitors a minute from the
# deploy on, whatever the hour.
DEPLOY_MIN_VISITORS = 8.0


def keep_visitors(state: State, profile: Profile, per_minute: float, onset: datetime) -> None:
    """At least `per_minute` visitors a minute from `onset` on, above the daily curve."""
    floor = {"min_per_minute": per_minute}
    conditions.set_condition(state, f"visitors:{profile.worker}", floor, ms(onset))


def clear_visitor_floors(state: State) -> None:
    """Back to the daily curve (a sparse-traffic condition such as cold-start stays)."""
    active = conditions.load(state)
    for profile in PROFILES.values():
        name = f"visitors:{profile.worker}"
        if "min_per_minute" in active.get(name, (0, {}))[1]:
            conditions.clear(state, name)


def apply_error_after_deploy(state: State, options: dict[str, Any]) -> None:
    profile = profile_of(options)
    rate = number(options, "rate", 0.07)
    rule = {"route": "*", "status": 500, "rate": rate, "exception": DEPLOY_EXCEPTION}
    onset = onset_of(options, 25)
    keep_visitors(state, profile, number(options, "min_per_minute", DEPLOY_MIN_VISITORS), onset)
    deploy_variant(state, "error-after-deploy", profile, onset,
                   "Normalize timestamps in responses", behaviour={"errors": [rule]})  # fmt: skip


def heal_error_after_deploy(state: State) -> None:
    roll_back(state, "error-after-deploy")
    clear_visitor_floors(state)


def apply_large_payload(state: State, options: dict[str, Any]) -> None:
    deploy_variant(state, "large-payload", PROFILES["manuscript"], onset_of(options, 40),
                   "Include analysis in manuscript list", behaviour={"pagination": False})  # fmt: skip


def apply_jobs_failing(state: State, options: dict[str, Any]) -> None:
    profile = PROFILES["manuscript"]
    onset = onset_of(options, 30)
    consumer = {"error": JOB_EXCEPTION, "rate": 1.0}
    deploy_variant(state, "jobs-failing", profile, onset, "Parse analysis response as JSON",
                   behaviour={"consumer": consumer})  # fmt: skip
    count = int(number(options, "messages", 40))
    span = max(1, int(time.time() * 1000) - ms(onset))
    stamps = [ms(onset) + span * i // max(1, count) for i in range(count)]
    bodies = [{"manuscript_id": f"job-{i:04d}", "attempt": 1} for i in range(count)]
    queues_model.enqueue_many(state, profile.queue, bodies, stamps)
    # Jobs enqueued long enough ago have already used their retries: their next delivery
    # (the drainer's, within a second) dead-letters them to the DLQ the normal way.
    queue = queues_model.queue_row(state, profile.queue)
    consumers = queues_model.consumers_of(state, queue["queue_id"]) if queue else []
    if consumers:
        settings = consumers[0]["settings"]
        retries = int(settings.get("max_retries", 3))
        window = (retries + 1) * int(settings.get("retry_delay", 30)) * 1000
        with state.tx() as db:
            db.execute(
                "UPDATE messages SET attempts = ?, last_error = ? WHERE queue = ? AND status = 'pending'"
                " AND enqueued_ms < ? AND body LIKE '%job-%'",
                (
                    retries,
                    f"Error: {JOB_EXCEPTION}",
                    profile.queue,
                    int(time.time() * 1000) - window,
                ),
            )


def _register(name: str, summary: str, symptom: str, runbook: str, apply: Any, heal: Any,
              profiles: tuple[str, ...] = BOTH, options: dict[str, str] | None = None) -> None:  # fmt: skip
    opts = {
        **(PROFILE_OPTION if len(profiles) > 1 else {}),
        "minutes_ago": "onset (minutes ago)",
        **(options or {}),
    }
    register(Fault(name=name, summary=summary, symptom=symptom, runbook=runbook, verdict=name,
                   profiles=profiles, apply=apply, heal=heal, options=opts))  # fmt: skip


_register("cors-misconfigured", "A version is deployed whose CORS_ORIGIN is not the frontend's origin.",
          "Browsers cannot log in: the preflight from the frontend origin gets no "
          "Access-Control-Allow-Origin; curl works.", "auth-broken",
          apply_cors, lambda s: roll_back(s, "cors-misconfigured"))  # fmt: skip
_register("email-config-missing", "A version is deployed without the EMAIL_FROM binding.",
          "POST /auth/password-reset-request answers 500; logs say 'Email configuration missing'.",
          "password-reset", apply_email_config, lambda s: roll_back(s, "email-config-missing"),
          profiles=("manuscript",))  # fmt: skip
_register("mail-provider-down", "The MailChannels-like provider answers 503.",
          "POST /auth/password-reset-request answers 500; logs show 'MailChannels send failed 503'.",
          "password-reset", apply_mail_down, lambda s: clear_condition(s, "mail-provider-down"),
          profiles=("manuscript",))  # fmt: skip
_register("one-endpoint-broken", "A version whose one endpoint throws (default the analysis endpoint).",
          "About 8% of requests fail, all on one route, with a TypeError.", "high-error-rate",
          apply_one_endpoint, lambda s: roll_back(s, "one-endpoint-broken"),
          options={"endpoint": "the route, e.g. 'GET /manuscripts/:id/analysis'"})  # fmt: skip
_register("error-after-deploy", "A deployment after which 5-10% of requests throw on every route.",
          "The error rate rises to ~7% across endpoints right after a deployment.", "high-error-rate",
          apply_error_after_deploy, heal_error_after_deploy,
          options={"rate": "share of requests that throw (default 0.07)",
                   "min_per_minute": "visitors a minute at least, from the deploy on (default 8)"})  # fmt: skip
_register("large-payload", "A version whose GET /manuscripts ignores pagination and embeds analyses.",
          "GET /manuscripts is slow and its responses are ~60x larger (responseBodySize).",
          "slow-responses", apply_large_payload, lambda s: roll_back(s, "large-payload"),
          profiles=("manuscript",))  # fmt: skip
_register("jobs-failing", "A version whose queue consumer throws on every analysis job.",
          "The analysis queue backs up; messages retry and land in the DLQ; consumer logs show a SyntaxError.",
          "queue-backlog", apply_jobs_failing, lambda s: roll_back(s, "jobs-failing"),
          profiles=("manuscript",), options={"messages": "jobs to enqueue (default 40)"})  # fmt: skip
