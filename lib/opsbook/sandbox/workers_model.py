"""Workers scripts, versions, deployments and secrets: tables, seed, and a Python API.

`versions.behaviour` is hidden: no API response shows it. It is how a version "is" good
or bad: the apps (behaviour.py) read the behaviour of the version serving a request,
e.g. `{"errors": [{"route": "*", "status": 500, "rate": 1.0, "exception": "..."}]}`.
Healthy versions have `{}`.

For the apps and faults:

    current_version(state, script)        -> Version (the 100% / largest share version)
    version_weights(state, script)        -> [(Version, percentage)]
    secret_values(state, script)          -> {name: value}
    create_version(state, script, ...)    -> Version   (a new upload, not deployed)
    deploy(state, script, [(id, pct)], message, ...) -> deployment id
"""

from __future__ import annotations

import base64
import json
import random
import secrets as pysecrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .profiles import PROFILES, Profile

if TYPE_CHECKING:
    from .state import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS scripts (
    name TEXT PRIMARY KEY, profile TEXT NOT NULL, created_on TEXT NOT NULL,
    modified_on TEXT NOT NULL, compatibility_date TEXT NOT NULL,
    usage_model TEXT NOT NULL DEFAULT 'standard', handlers TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    id TEXT PRIMARY KEY, script TEXT NOT NULL, number INTEGER NOT NULL,
    created_on TEXT NOT NULL, author_email TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
    tag TEXT, source TEXT NOT NULL DEFAULT 'wrangler', etag TEXT NOT NULL,
    bindings TEXT NOT NULL DEFAULT '[]', behaviour TEXT NOT NULL DEFAULT '{}',
    UNIQUE (script, number)
);
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY, script TEXT NOT NULL, created_on TEXT NOT NULL,
    author_email TEXT NOT NULL, message TEXT, versions TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'wrangler', triggered_by TEXT NOT NULL DEFAULT 'deployment'
);
CREATE INDEX IF NOT EXISTS idx_deployments_script ON deployments(script, created_on);
CREATE TABLE IF NOT EXISTS secrets (
    script TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL DEFAULT 'secret_text',
    value TEXT NOT NULL, updated_on TEXT NOT NULL, PRIMARY KEY (script, name)
);
CREATE TABLE IF NOT EXISTS secret_events (
    script TEXT NOT NULL, name TEXT NOT NULL, at TEXT NOT NULL, action TEXT NOT NULL
);
"""


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Version:
    id: str
    script: str
    number: int
    created_on: str
    author_email: str
    message: str
    tag: str | None
    source: str
    etag: str
    bindings: list[dict[str, Any]]
    behaviour: dict[str, Any]

    @classmethod
    def from_row(cls, row: Any) -> Version:
        return cls(
            id=row["id"],
            script=row["script"],
            number=row["number"],
            created_on=row["created_on"],
            author_email=row["author_email"],
            message=row["message"],
            tag=row["tag"],
            source=row["source"],
            etag=row["etag"],
            bindings=json.loads(row["bindings"]),
            behaviour=json.loads(row["behaviour"]),
        )


# ---- reads ---------------------------------------------------------------------
def get_version(state: State, script: str, version_id: str) -> Version | None:
    with state.read() as db:
        row = db.execute(
            "SELECT * FROM versions WHERE script = ? AND id = ?", (script, version_id)
        ).fetchone()
    return Version.from_row(row) if row else None


def versions(state: State, script: str) -> list[Version]:
    """Newest first."""
    with state.read() as db:
        rows = db.execute(
            "SELECT * FROM versions WHERE script = ? ORDER BY number DESC", (script,)
        ).fetchall()
    return [Version.from_row(r) for r in rows]


def deployments(state: State, script: str) -> list[dict[str, Any]]:
    """Rows, newest first (the first one serves traffic now)."""
    with state.read() as db:
        rows = db.execute(
            "SELECT * FROM deployments WHERE script = ? ORDER BY created_on DESC, rowid DESC",
            (script,),
        ).fetchall()
    return [dict(r) for r in rows]


def version_weights(state: State, script: str) -> list[tuple[Version, float]]:
    """The versions of the current deployment with their percentages."""
    deps = deployments(state, script)
    if not deps:
        return []
    out: list[tuple[Version, float]] = []
    for entry in json.loads(deps[0]["versions"]):
        version = get_version(state, script, entry["version_id"])
        if version is not None:
            out.append((version, float(entry["percentage"])))
    return out


def current_version(state: State, script: str) -> Version | None:
    weights = version_weights(state, script)
    return max(weights, key=lambda vw: vw[1])[0] if weights else None


def secret_values(state: State, script: str) -> dict[str, str]:
    with state.read() as db:
        rows = db.execute("SELECT name, value FROM secrets WHERE script = ?", (script,)).fetchall()
    return {r["name"]: r["value"] for r in rows}


def script_row(state: State, script: str) -> dict[str, Any] | None:
    with state.read() as db:
        row = db.execute("SELECT * FROM scripts WHERE name = ?", (script,)).fetchone()
    return dict(row) if row else None


# ---- writes --------------------------------------------------------------------
def _uuid(rng: random.Random | None) -> str:
    if rng is None:
        return str(uuid.uuid4())
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def create_version(
    state: State,
    script: str,
    *,
    message: str = "",
    behaviour: dict[str, Any] | None = None,
    bindings: list[dict[str, Any]] | None = None,
    author_email: str | None = None,
    tag: str | None = None,
    created_on: datetime | None = None,
    rng: random.Random | None = None,
    etag: str | None = None,
) -> Version:
    """A new version of `script` (bindings default to the current version's). Uploads
    through the API are healthy code: `behaviour` defaults to {}."""
    base = current_version(state, script)
    profile_author = next((p.author for p in PROFILES.values() if p.worker == script), "")
    version_id = _uuid(rng)
    with state.tx() as db:
        number = db.execute(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM versions WHERE script = ?", (script,)
        ).fetchone()[0]
        db.execute(
            "INSERT INTO versions(id, script, number, created_on, author_email, message, tag,"
            " source, etag, bindings, behaviour) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                version_id,
                script,
                number,
                iso(created_on or now()),
                author_email or profile_author,
                message,
                tag,
                "wrangler",
                etag or (rng or random.Random(version_id)).randbytes(32).hex(),
                json.dumps(bindings if bindings is not None else (base.bindings if base else [])),
                json.dumps(behaviour or {}),
            ),
        )
    version = get_version(state, script, version_id)
    assert version is not None
    return version


def deploy(
    state: State,
    script: str,
    shares: list[tuple[str, float]],
    message: str | None = None,
    *,
    author_email: str | None = None,
    created_on: datetime | None = None,
    source: str = "api",
    triggered_by: str = "deployment",
    rng: random.Random | None = None,
) -> str:
    """Record a deployment (`shares`: [(version_id, percentage)]). Returns its id."""
    deployment_id = _uuid(rng)
    author = author_email or next((p.author for p in PROFILES.values() if p.worker == script), "")
    payload = [{"version_id": v, "percentage": int(p) if p == int(p) else p} for v, p in shares]
    with state.tx() as db:
        db.execute(
            "INSERT INTO deployments(id, script, created_on, author_email, message, versions,"
            " source, triggered_by) VALUES (?,?,?,?,?,?,?,?)",
            (deployment_id, script, iso(created_on or now()), author, message,
             json.dumps(payload), source, triggered_by),
        )  # fmt: skip
    return deployment_id


def put_secret(
    state: State, script: str, name: str, value: str, type_: str = "secret_text"
) -> None:
    stamp = iso(now())
    with state.tx() as db:
        db.execute(
            "INSERT INTO secrets(script, name, type, value, updated_on) VALUES (?,?,?,?,?) "
            "ON CONFLICT(script, name) DO UPDATE SET type = excluded.type, "
            "value = excluded.value, updated_on = excluded.updated_on",
            (script, name, type_, value, stamp),
        )
        db.execute("INSERT INTO secret_events VALUES (?,?,?,'put')", (script, name, stamp))


def delete_secret(state: State, script: str, name: str) -> bool:
    stamp = iso(now())
    with state.tx() as db:
        cur = db.execute("DELETE FROM secrets WHERE script = ? AND name = ?", (script, name))
        if cur.rowcount:
            db.execute("INSERT INTO secret_events VALUES (?,?,?,'delete')", (script, name, stamp))
    return bool(cur.rowcount)


def changed_secrets(state: State, script: str, since: str) -> list[str]:
    """Names of the secrets put or deleted after `since` (an ISO time)."""
    with state.read() as db:
        rows = db.execute(
            "SELECT DISTINCT name FROM secret_events WHERE script = ? AND at > ? ORDER BY name",
            (script, since),
        ).fetchall()
    return [r["name"] for r in rows]


def backdate_secret_change(state: State, script: str, name: str, when: datetime) -> None:
    """Make the latest change of a secret look as if it happened at `when` (faults)."""
    stamp = iso(when)
    with state.tx() as db:
        db.execute("UPDATE secret_events SET at = ? WHERE script = ? AND name = ? AND at > ?",
                   (stamp, script, name, stamp))  # fmt: skip
        db.execute("UPDATE secrets SET updated_on = ? WHERE script = ? AND name = ? AND updated_on > ?",
                   (stamp, script, name, stamp))  # fmt: skip


# ---- seed ----------------------------------------------------------------------
def _bindings(profile: Profile) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"type": "plain_text", "name": name, "text": text}
        for name, text in {
            **profile.email_vars,
            "ENVIRONMENT": "production",
            "FRONTEND_URL": profile.frontend_origin,
        }.items()
    ]
    out += [
        {"type": "d1", "name": "DB", "database_name": profile.database},
        {"type": "kv_namespace", "name": "SESSIONS", "namespace_title": profile.kv_sessions},
        # flag:maintenance, read per request (apps/maintenance.py)
        {"type": "kv_namespace", "name": "FLAGS", "namespace_title": "feature-flags"},
        {"type": "r2_bucket", "name": "BUCKET", "bucket_name": profile.r2_bucket},
        {"type": "queue", "name": "QUEUE", "queue_name": profile.queue},
    ]
    out += [{"type": "secret_text", "name": name} for name in profile.required_secrets]
    return out


LLM_KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")


def llm_key(name: str) -> str:
    """A fresh API key in the provider's shape (Anthropic or OpenAI)."""
    if name == "ANTHROPIC_API_KEY":
        return "sk-ant-api03-" + pysecrets.token_urlsafe(70)
    return "sk-proj-" + pysecrets.token_urlsafe(60)


def secret_value(name: str, credentials: dict[str, str], profile: Profile) -> str:
    """The seeded value of a required secret (sandbox credentials where they must match)."""
    sysrand = pysecrets.SystemRandom()
    if name == "STRIPE_SECRET_KEY":
        return credentials["OPSBOOK_SANDBOX_STRIPE_KEY"]
    if name == "STRIPE_WEBHOOK_SECRET":
        return credentials[f"STRIPE_WEBHOOK_SECRET_{profile.name.upper()}"]
    if name == "JWT_SECRET":
        return base64.b64encode(sysrand.randbytes(32)).decode()
    if name in LLM_KEYS:  # the key the provider issued: the <NAME>_<PROFILE> credential
        return credentials.get(f"{name}_{profile.name.upper()}") or llm_key(name)
    return pysecrets.token_urlsafe(32)


MESSAGES = (
    "Initial production release",
    "Add manuscript word-count validation",
    "Retry failed analysis jobs with backoff",
    "Tighten CORS to the production origin",
    "Upgrade Stripe API version",
    "Cache session lookups in KV",
)


def seed(state: State, rng: random.Random) -> None:
    for profile in PROFILES.values():
        _seed_profile(state, rng, profile)


def _seed_profile(state: State, rng: random.Random, profile: Profile) -> None:
    creds = state.credentials
    key = f"STRIPE_WEBHOOK_SECRET_{profile.name.upper()}"
    if key not in creds:
        state.set_credential(key, "whsec_" + pysecrets.token_hex(24))
        if profile.name == "manuscript":
            state.set_credential("STRIPE_WEBHOOK_SECRET", state.credentials[key])
        creds = state.credentials
    # the LLM keys the providers issued (an operator's copy, for putting the secret back)
    for name in LLM_KEYS:
        if name in profile.required_secrets and f"{name}_{profile.name.upper()}" not in creds:
            state.set_credential(f"{name}_{profile.name.upper()}", llm_key(name))
            creds = state.credentials
    t0 = now() - timedelta(days=14)
    with state.tx() as db:
        db.execute(
            "INSERT INTO scripts VALUES (?,?,?,?,?,?,?)",
            (profile.worker, profile.name, iso(t0 - timedelta(days=90)), iso(t0),
             "2025-01-01", "standard", json.dumps(["fetch", "queue", "scheduled"])),
        )  # fmt: skip
        for name in profile.required_secrets:
            db.execute(
                "INSERT INTO secrets VALUES (?,?,?,?,?)",
                (profile.worker, name, "secret_text", secret_value(name, creds, profile),
                 iso(t0 - timedelta(days=1))),
            )  # fmt: skip
    bindings = _bindings(profile)
    days = (0.0, 3.1, 6.2, 8.9, 11.8, 13.0)
    made: list[Version] = []
    for i, (day, message) in enumerate(zip(days, MESSAGES, strict=True)):
        at = t0 + timedelta(days=day, minutes=rng.randint(0, 300))
        behaviour: dict[str, Any] = {}
        if i == 3:  # a bad release in the history, rolled back 40 minutes later
            behaviour = {"errors": [{"route": "/manuscripts" if profile.name == "manuscript"
                         else "/api/peptides", "status": 500, "rate": 0.3,
                         "exception": "TypeError: Cannot read properties of null (reading 'id')"}]}  # fmt: skip
        version = create_version(
            state, profile.worker, message=message, behaviour=behaviour, bindings=bindings,
            author_email=profile.author, tag=f"v1.{i}.0", created_on=at, rng=rng,
        )  # fmt: skip
        made.append(version)
        deploy(state, profile.worker, [(version.id, 100)], message, created_on=at + timedelta(minutes=2),
               source="wrangler", rng=rng)  # fmt: skip
        if i == 3:
            deploy(state, profile.worker, [(made[2].id, 100)], "Rollback: errors on list endpoint",
                   created_on=at + timedelta(minutes=42), source="wrangler", rng=rng)  # fmt: skip
