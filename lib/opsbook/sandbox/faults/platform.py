"""Platform faults: deployments, secrets, the sessions namespace, queue consumers.

Each changes real state through the same code the APIs use (a version deployed, a
secret deleted, a namespace dropped, a consumer removed, messages enqueued). Where the
fault has an onset in the past (`minutes_ago`), the traffic history is regenerated
from it so logs and analytics agree with the state. What `heal` needs to undo the
change is remembered in control.sqlite (`meta`, key `fault:<name>`).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import cf_kv, queues_model, workers_model
from ..profiles import PROFILES, Profile
from ..state import State, load_module
from . import Fault, register

BOTH = ("manuscript", "peptalk")
PROFILE_OPTION = {"profile": "manuscript (default) or peptalk"}
BAD_DEPLOY_EXCEPTION = "TypeError: Cannot read properties of undefined (reading 'env')"
DEFAULT_MISSING_SECRET = "STRIPE_SECRET_KEY"


# ---- helpers -------------------------------------------------------------------
def _profile(options: dict[str, Any]) -> Profile:
    return PROFILES[str(options.get("profile") or "manuscript")]


def _int(options: dict[str, Any], name: str, default: int) -> int:
    raw = options.get(name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"option {name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"option {name} must not be negative, got {value}")
    return value


def _remember(state: State, name: str, data: dict[str, Any]) -> None:
    with state.tx() as db:
        db.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
            (f"fault:{name}", json.dumps(data)),
        )


def _recall(state: State, name: str) -> dict[str, Any] | None:
    with state.tx() as db:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (f"fault:{name}",)).fetchone()
        db.execute("DELETE FROM meta WHERE key = ?", (f"fault:{name}",))
    return json.loads(row["value"]) if row else None


def _regenerate(state: State, script: str, onset: datetime) -> None:
    """Rewrite the traffic history from the onset, if the traffic model is there."""
    traffic = load_module("traffic")
    if traffic is not None and hasattr(traffic, "regenerate"):
        traffic.regenerate(state, script, int(onset.timestamp() * 1000))


def _onset(options: dict[str, Any], default_minutes: int) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=_int(options, "minutes_ago", default_minutes))


# ---- bad-deploy ------------------------------------------------------------------
def apply_bad_deploy(state: State, options: dict[str, Any]) -> None:
    profile = _profile(options)
    onset = _onset(options, 12)
    before = workers_model.current_version(state, profile.worker)
    message = "Refactor request context handling"
    version = workers_model.create_version(
        state, profile.worker, message=message, created_on=onset - timedelta(minutes=3),
        behaviour={"errors": [{"route": "*", "status": 500, "rate": 1.0,
                               "exception": BAD_DEPLOY_EXCEPTION}]},
    )  # fmt: skip
    workers_model.deploy(state, profile.worker, [(version.id, 100)], message,
                         created_on=onset, source="wrangler")  # fmt: skip
    _remember(state, "bad-deploy", {"script": profile.worker, "bad": version.id,
                                    "good": before.id if before else None})  # fmt: skip
    _regenerate(state, profile.worker, onset)


def heal_bad_deploy(state: State) -> None:
    memo = _recall(state, "bad-deploy")
    if not memo or not memo.get("good"):
        return
    current = workers_model.current_version(state, memo["script"])
    if current is not None and current.id == memo["bad"]:  # not rolled back yet
        workers_model.deploy(state, memo["script"], [(memo["good"], 100)],
                             "Rollback (sandbox heal)", source="api")  # fmt: skip


# ---- secrets ----------------------------------------------------------------------
def apply_secret_missing(state: State, options: dict[str, Any]) -> None:
    profile = _profile(options)
    name = str(options.get("name") or DEFAULT_MISSING_SECRET)
    if name not in profile.required_secrets:
        raise ValueError(
            f"{name} is not a required secret of {profile.worker}: "
            f"choose one of {', '.join(profile.required_secrets)}"
        )
    onset = _onset(options, 10)
    value = workers_model.secret_values(state, profile.worker).get(name)
    workers_model.delete_secret(state, profile.worker, name)
    workers_model.backdate_secret_change(state, profile.worker, name, onset)
    _remember(state, "secret-missing", {"script": profile.worker, "name": name, "value": value})
    _regenerate(state, profile.worker, onset)


def heal_secret_missing(state: State) -> None:
    memo = _recall(state, "secret-missing")
    if memo and memo.get("value") is not None:
        current = workers_model.secret_values(state, memo["script"])
        if memo["name"] not in current:
            workers_model.put_secret(state, memo["script"], memo["name"], memo["value"])


def apply_jwt_secret(state: State, options: dict[str, Any]) -> None:
    profile = _profile(options)
    mode = str(options.get("mode") or "missing")
    if mode not in ("missing", "changed"):
        raise ValueError(f"option mode must be missing or changed, got {mode!r}")
    onset = _onset(options, 15)
    value = workers_model.secret_values(state, profile.worker).get("JWT_SECRET")
    if mode == "missing":
        workers_model.delete_secret(state, profile.worker, "JWT_SECRET")
    else:
        rotated = base64.b64encode(secrets.token_bytes(32)).decode()
        workers_model.put_secret(state, profile.worker, "JWT_SECRET", rotated)
    workers_model.backdate_secret_change(state, profile.worker, "JWT_SECRET", onset)
    _remember(state, "jwt-secret-missing", {"script": profile.worker, "value": value})
    _regenerate(state, profile.worker, onset)


def heal_jwt_secret(state: State) -> None:
    memo = _recall(state, "jwt-secret-missing")
    if memo and memo.get("value") is not None:
        workers_model.put_secret(state, memo["script"], "JWT_SECRET", memo["value"])


# ---- sessions namespace ---------------------------------------------------------------
def apply_sessions_kv_missing(state: State, options: dict[str, Any]) -> None:
    profile = _profile(options)
    onset = _onset(options, 20)
    with state.read() as db:
        ns = db.execute(
            "SELECT * FROM kv_namespaces WHERE title = ?", (profile.kv_sessions,)
        ).fetchone()
        if ns is None:
            raise ValueError(f"KV namespace {profile.kv_sessions} does not exist (already broken?)")
        keys = db.execute(
            "SELECT key, value, metadata, expiration FROM kv_values WHERE namespace_id = ?",
            (ns["id"],),
        ).fetchall()
    memo = {
        "id": ns["id"], "title": ns["title"], "script": profile.worker,
        "keys": [[k["key"], base64.b64encode(bytes(k["value"])).decode(), k["metadata"],
                  k["expiration"]] for k in keys],
    }  # fmt: skip
    with state.tx() as db:
        db.execute("DELETE FROM kv_namespaces WHERE id = ?", (ns["id"],))
    _remember(state, "sessions-kv-missing", memo)
    _regenerate(state, profile.worker, onset)


def heal_sessions_kv_missing(state: State) -> None:
    memo = _recall(state, "sessions-kv-missing")
    if not memo or cf_kv.namespace_id(state, memo["title"]) is not None:
        return
    cf_kv.create_namespace(state, memo["title"], memo["id"])
    with state.tx() as db:
        db.executemany(
            "INSERT OR REPLACE INTO kv_values(namespace_id, key, value, metadata, expiration)"
            " VALUES (?,?,?,?,?)",
            [(memo["id"], k, base64.b64decode(v), m, e) for k, v, m, e in memo["keys"]],
        )


# ---- queues ----------------------------------------------------------------------
def _spread(count: int, onset: datetime) -> list[int]:
    """`count` enqueue times from the onset to now, evenly spread."""
    start, end = int(onset.timestamp() * 1000), int(time.time() * 1000)
    step = (end - start) / max(count, 1)
    return [int(start + i * step) for i in range(count)]


def _jobs(profile: Profile, count: int) -> list[dict[str, Any]]:
    kind = "analyze" if profile.name == "manuscript" else "ingest"
    return [{"job": kind, "manuscript_id" if kind == "analyze" else "id": 100_000 + i}
            for i in range(count)]  # fmt: skip


def apply_consumer_missing(state: State, options: dict[str, Any]) -> None:
    profile = _profile(options)
    onset = _onset(options, 45)
    queue = queues_model.queue_row(state, profile.queue)
    if queue is None:
        raise ValueError(f"queue {profile.queue} does not exist in this sandbox")
    consumers = queues_model.consumers_of(state, queue["queue_id"])
    with state.tx() as db:
        db.execute("DELETE FROM consumers WHERE queue_id = ?", (queue["queue_id"],))
    count = _int(options, "messages", 400)
    queues_model.enqueue_many(state, profile.queue, _jobs(profile, count), _spread(count, onset))
    _remember(state, "consumer-missing", {"queue": profile.queue, "consumers": consumers})
    _regenerate(state, profile.worker, onset)


def heal_consumer_missing(state: State) -> None:
    memo = _recall(state, "consumer-missing")
    if not memo:
        return
    queue = queues_model.queue_row(state, memo["queue"])
    if queue is None or queues_model.consumers_of(state, queue["queue_id"]):
        return
    for c in memo["consumers"]:
        queues_model.add_consumer(
            state, memo["queue"], c["script_name"], dead_letter_queue=c["dead_letter_queue"],
            settings=c["settings"], type_=c["type"], consumer_id=c["consumer_id"],
        )  # fmt: skip


def apply_high_volume(state: State, options: dict[str, Any]) -> None:
    profile = _profile(options)
    onset = _onset(options, 20)
    count = _int(options, "messages", 6000)
    queues_model.enqueue_many(state, profile.queue, _jobs(profile, count), _spread(count, onset))
    conditions = load_module("conditions")
    if conditions is not None:
        conditions.set_condition(state, f"visitors:{profile.worker}", {"volume": 4.0},
                                 int(onset.timestamp() * 1000))  # fmt: skip
    _remember(state, "high-volume", {"queue": profile.queue, "script": profile.worker})
    _regenerate(state, profile.worker, onset)


def heal_high_volume(state: State) -> None:
    memo = _recall(state, "high-volume")
    if not memo:
        return
    stamp = queues_model.now_ms()
    with state.tx() as db:
        db.execute("UPDATE messages SET status = 'acked', updated_ms = ? WHERE queue = ?"
                   " AND status = 'pending'", (stamp, memo["queue"]))  # fmt: skip
    conditions = load_module("conditions")
    if conditions is not None:
        conditions.clear(state, f"visitors:{memo['script']}")


register(Fault(
    name="bad-deploy",
    summary="A new version is deployed whose code throws on every request.",
    symptom="Every route of the app answers 500 (TypeError: Cannot read properties of "
            "undefined (reading 'env')) since a deployment (12 minutes ago by default).",
    runbook="api-down", verdict="bad-deploy", profiles=BOTH,
    apply=apply_bad_deploy, heal=heal_bad_deploy,
    options={**PROFILE_OPTION, "minutes_ago": "when the bad version was deployed (default 12)"},
))  # fmt: skip
register(Fault(
    name="secret-missing",
    summary=f"A required Worker secret is deleted (default {DEFAULT_MISSING_SECRET}).",
    symptom="Every request answers 500 with 'Missing required environment variable'; "
            "`wrangler secret list` lacks the secret.",
    runbook="api-down", verdict="secret-missing", profiles=BOTH,
    apply=apply_secret_missing, heal=heal_secret_missing,
    options={**PROFILE_OPTION, "name": f"the secret to delete (default {DEFAULT_MISSING_SECRET})",
             "minutes_ago": "when it was deleted (default 10)"},
))  # fmt: skip
register(Fault(
    name="jwt-secret-missing",
    summary="JWT_SECRET is deleted (mode=missing) or replaced by a new value (mode=changed).",
    symptom="Logins fail with 500 (missing) or every existing session is rejected with "
            "401 (changed); the rest of the API works.",
    runbook="auth-broken", verdict="jwt-secret-missing", profiles=BOTH,
    apply=apply_jwt_secret, heal=heal_jwt_secret,
    options={**PROFILE_OPTION, "mode": "missing (default) or changed",
             "minutes_ago": "when it happened (default 15)"},
))  # fmt: skip
register(Fault(
    name="sessions-kv-missing",
    summary="The sessions KV namespace is deleted; the SESSIONS binding points at nothing.",
    symptom="Logins and authenticated routes fail; `wrangler kv namespace list` lacks "
            "the sessions namespace.",
    runbook="auth-broken", verdict="sessions-kv-missing", profiles=BOTH,
    apply=apply_sessions_kv_missing, heal=heal_sessions_kv_missing,
    options={**PROFILE_OPTION, "minutes_ago": "when it was deleted (default 20)"},
))  # fmt: skip
register(Fault(
    name="consumer-missing",
    summary="The queue's consumer is removed; messages pile up with nobody reading them.",
    symptom="The queue backlog grows (hundreds of messages, the oldest about 45 minutes "
            "old) and `wrangler queues consumer list` shows no consumer.",
    runbook="queue-backlog", verdict="consumer-missing", profiles=BOTH,
    apply=apply_consumer_missing, heal=heal_consumer_missing,
    options={**PROFILE_OPTION, "messages": "messages enqueued since the onset (default 400)",
             "minutes_ago": "when the consumer went away (default 45)"},
))  # fmt: skip
register(Fault(
    name="high-volume",
    summary="A surge of traffic leaves a large backlog that the healthy consumer drains.",
    symptom="The backlog is large (thousands) but shrinking; the consumer is present, "
            "jobs succeed, the DLQ stays empty, and request volume is about 4x normal.",
    runbook="queue-backlog", verdict="high-volume", profiles=BOTH,
    apply=apply_high_volume, heal=heal_high_volume,
    options={**PROFILE_OPTION, "messages": "messages in the surge (default 6000)",
             "minutes_ago": "when the surge started (default 20)"},
))  # fmt: skip
