"""ONE model of how a request to an app turns out, used by the apps and the traffic model.

Given a `Snapshot` of the platform (the active version's behaviour JSON and bindings,
the worker's secrets, the sessions namespace, D1 facts, status page, conditions of the
outside world), `evaluate()` says what happens to one request of an `Endpoint` at time
t: status, outcome, wall/cpu ms, exceptions, console.log lines (mixed JSON types, as
real logs have), subrequests, tokens_used, body size. The live apps run their real
logic and ask the same model for the parts they cannot do for real (an upstream's
latency, a thrown bug of the deployed version), so history and live behaviour agree.

The version `behaviour` JSON (column `versions.behaviour`, hidden from the API):

    {"errors":  [{"route": "*" | "GET /manuscripts/:id/analysis" | "/health",
                  "status": 500, "rate": 1.0, "exception": "TypeError: ..."}],
     "latency": [{"route": "*", "add_ms": 2500}],
     "pagination": false,            # GET /manuscripts ignores ?limit and embeds analyses
     "consumer": {"error": "Error: ...", "rate": 1.0},   # queue consumer throws
     "cold_start_ms": 700}
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from . import conditions
from .trace import exception, log_line


@dataclass(frozen=True)
class Endpoint:
    route: str  # "GET /manuscripts/:id"
    weight: float  # share of the app's traffic
    wall_ms: float  # median wall time, healthy
    cpu_ms: float
    body_bytes: int
    d1: bool = True  # touches D1
    auth: bool = False  # needs a session
    heavy: bool = False  # a heavy D1 query (list/scan)
    upstream: str | None = None  # calls this upstream API
    client_error: tuple[int, float] = (0, 0.0)  # a typical 4xx and its share
    r2: bool = False
    mail: bool = False
    kv: bool = False  # writes the sessions namespace (login)

    @property
    def method(self) -> str:
        return self.route.split(" ", 1)[0]

    @property
    def pattern(self) -> str:
        return self.route.split(" ", 1)[1]


MANUSCRIPT = (
    Endpoint("GET /health", 0.05, 14, 1.2, 60),
    Endpoint("POST /auth/login", 0.08, 95, 38, 420, kv=True, client_error=(401, 0.09)),
    Endpoint("POST /auth/password-reset-request", 0.01, 160, 6, 80, mail=True),
    Endpoint(
        "GET /manuscripts", 0.33, 48, 6, 5200, auth=True, heavy=True, client_error=(401, 0.03)
    ),
    Endpoint("GET /manuscripts/:id", 0.25, 32, 3.5, 1400, auth=True, client_error=(404, 0.02)),
    Endpoint("GET /manuscripts/:id/analysis", 0.08, 260, 7, 3800, auth=True, upstream="anthropic"),
    Endpoint("POST /manuscripts", 0.06, 120, 9, 300, auth=True, r2=True, client_error=(400, 0.03)),
    Endpoint("OPTIONS /manuscripts", 0.14, 3, 0.4, 0, d1=False),
)
PEPTALK = (
    Endpoint("GET /api/health", 0.05, 12, 1.1, 70),
    Endpoint("POST /auth/login", 0.09, 90, 37, 400, kv=True, client_error=(401, 0.08)),
    Endpoint("GET /api/peptides", 0.30, 40, 5, 9000, heavy=True),
    Endpoint("GET /api/peptides/:slug", 0.33, 28, 3, 2600, client_error=(404, 0.02)),
    Endpoint(
        "GET /api/peptides/:slug/pdf",
        0.12,
        85,
        4,
        480000,
        auth=True,
        r2=True,
        client_error=(402, 0.12),
    ),
    Endpoint("POST /webhooks/stripe", 0.02, 45, 3, 20),
    Endpoint("OPTIONS /api/peptides", 0.09, 3, 0.4, 0, d1=False),
)
# Admin routes (apps/admin.py): no share of the modelled visitors' traffic; the security
# faults' callers (apps/security.py) and real requests use them.
ADMIN = (
    Endpoint("GET /admin/users/export", 0.0, 180, 22, 60000, auth=True),
    Endpoint("POST /admin/users/:id/role", 0.0, 60, 6, 120, auth=True),
    Endpoint("GET /admin/subscriptions", 0.0, 90, 9, 20000, auth=True),
)
ENDPOINTS: dict[str, tuple[Endpoint, ...]] = {
    "manuscript": MANUSCRIPT + ADMIN,
    "peptalk": PEPTALK + ADMIN,
}
CONSUMER = Endpoint("QUEUE manuscript-analysis-queue", 0.0, 2200, 12, 0, upstream="anthropic")
COLD_START_MS = 650.0
BASELINE_5XX = 0.0015
MISSING_SECRET_EXC = "Error: Missing required environment variable: {name}"


@dataclass
class Snapshot:
    """What a request depends on, read from real state (see apps.common.snapshot)."""

    script: str
    profile: str
    version_id: str | None
    behaviour: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)  # plain_text bindings
    bindings: list[dict[str, Any]] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    required_secrets: tuple[str, ...] = ()
    sessions_ok: bool = True  # the SESSIONS binding resolves to a namespace
    d1_ok: bool = True
    d1_error: str = ""
    d1_slow_ms: float = 0.0  # the list query's extra time (a missing index: real scan)
    tokens_table_ok: bool = True
    outage: bool = False  # the status page reports a Cloudflare outage
    conds: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Outcome:
    status: int
    outcome: str = "ok"
    wall_ms: float = 0.0
    cpu_ms: float = 0.0
    logs: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    subrequests: int = 0
    tokens_used: int | None = None
    response_bytes: int = 0
    error: str | None = None  # the error the response carries, if any
    retry: bool = False  # a queue message to retry later (rate limited)
    base_ms: float = 0.0  # the app's own time, without platform-added latency

    def throw(self, text: str, at: int, status: int = 500) -> Outcome:
        name, _, message = text.partition(": ")
        self.exceptions.append(exception(name if message else "Error", message or text, at))
        self.outcome, self.status, self.error = "exception", status, text
        return self

    def log(self, level: str, at: int, *parts: Any) -> None:
        self.logs.append(log_line(level, at, *parts))


def route_matches(rule: str, route: str) -> bool:
    if rule in ("*", route):
        return True
    return " " not in rule and route.split(" ", 1)[-1] == rule


def version_error(snap: Snapshot, route: str, rng: random.Random) -> dict[str, Any] | None:
    for rule in snap.behaviour.get("errors", []):
        if route_matches(str(rule.get("route", "*")), route) and rng.random() < float(
            rule.get("rate", 1.0)
        ):
            return dict(rule)
    return None


def added_latency(snap: Snapshot, route: str) -> float:
    return sum(
        float(r.get("add_ms", 0))
        for r in snap.behaviour.get("latency", [])
        if route_matches(str(r.get("route", "*")), route)
    )


def upstream_effect(
    snap: Snapshot, name: str, at: int, rng: random.Random, subject: str | None = None
) -> tuple[float, int | None]:
    """(latency ms, error status or None) of one call to an upstream API at `at`."""
    cond = conditions.active(snap.conds, f"upstream:{name}", at)
    latency = rng.lognormvariate(0, 0.35) * {"anthropic": 850, "pubmed": 420, "openai": 700}.get(
        name, 300
    )
    if not cond:
        return latency, None
    only = cond.get("peptides")
    if only and subject not in only:  # a failure scoped to some peptides
        return latency, None
    latency += float(cond.get("latency_ms", 0)) * rng.uniform(0.8, 1.3)
    if cond.get("timeout_ms"):
        return float(cond["timeout_ms"]), 504
    if cond.get("error_status") and rng.random() < float(cond.get("rate", 1.0)):
        return latency, int(cond["error_status"])
    return latency, None


def evaluate(
    snap: Snapshot,
    ep: Endpoint,
    at: int,
    rng: random.Random,
    *,
    cold: bool = False,
    client_error: bool | None = None,
    user_id: str | None = None,
    platform_only: bool = False,
) -> Outcome:
    """The outcome of one request.

    `client_error` forces (True) or forbids (False) the endpoint's typical 4xx.
    `platform_only` (the live apps): only what the platform and the outside world do to
    the request (outage, missing secret, the version's bugs, D1 overload, R2 errors,
    upstream calls, latency); the app's own logic then runs for real.
    """
    base = ep.wall_ms * rng.lognormvariate(0, 0.45)
    out = Outcome(status=200, wall_ms=base, cpu_ms=ep.cpu_ms * rng.lognormvariate(0, 0.3))
    out.base_ms = base
    out.response_bytes = int(ep.body_bytes * rng.uniform(0.7, 1.3))
    if cold:
        visitors = conditions.active(snap.conds, f"visitors:{snap.script}", at) or {}
        init = snap.behaviour.get("cold_start_ms") or visitors.get("cold_start_ms") or COLD_START_MS
        out.wall_ms += float(init) * rng.uniform(0.8, 1.6)
        out.cpu_ms += 25 * rng.uniform(0.8, 1.4)
    out.wall_ms += added_latency(snap, ep.route)
    if not _platform(snap, ep, at, rng, out):
        if platform_only:
            _outside(snap, ep, at, rng, out, slow_scan=False)
        else:
            _app(snap, ep, at, rng, out, client_error, user_id)
    if out.status >= 500 and out.outcome == "ok" and out.error:
        out.response_bytes = 40 + len(out.error)
    out.wall_ms = round(max(out.wall_ms, out.cpu_ms), 3)
    out.cpu_ms = round(out.cpu_ms, 3)
    return out


def _platform(snap: Snapshot, ep: Endpoint, at: int, rng: random.Random, out: Outcome) -> bool:
    """Outage, missing secrets, the deployed version's bugs. True when the request stops."""
    if snap.outage:
        out.status, out.outcome, out.error = 503, "unknown", "Service Unavailable"
        out.wall_ms += rng.uniform(2000, 8000)
        return True
    for name in snap.required_secrets:
        if name != "JWT_SECRET" and not snap.secrets.get(name):
            out.throw(MISSING_SECRET_EXC.format(name=name), at)
            return True
    if ep.method == "OPTIONS":
        out.status = 204
        return True
    bug = version_error(snap, ep.route, rng)
    if bug is not None:
        out.throw(
            str(bug.get("exception") or "Error: Internal Server Error"),
            at,
            int(bug.get("status", 500)),
        )
        return True
    return False


def _outside(
    snap: Snapshot, ep: Endpoint, at: int, rng: random.Random, out: Outcome, slow_scan: bool
) -> None:
    """D1 load, R2 errors and upstream APIs: what the outside world does to the request."""
    if ep.heavy:
        _heavy_query(snap, ep, at, rng, out, slow_scan)
        if out.outcome != "ok":
            return
    if ep.r2 and ep.method == "GET":
        cond = conditions.active(snap.conds, f"r2:{_bucket(snap)}", at)
        if cond and rng.random() < float(cond.get("error_rate", 0.35)):
            out.wall_ms += rng.uniform(200, 1500)
            out.throw("Error: get: We encountered an internal error. Please try again. (10001)", at)
            return
        out.subrequests += 1
    if ep.upstream:
        latency, err = upstream_effect(snap, ep.upstream, at, rng)
        out.wall_ms += latency
        out.subrequests += 1
        out.log(
            "log", at, "anthropic", {"model": "claude-3-5-sonnet", "latency_ms": round(latency)}
        )
        if err:
            out.status, out.error = 502, "Analysis service unavailable"
            out.log("error", at, f"Anthropic API error {err}", {"status": err})
            return
        out.tokens_used = int(rng.uniform(600, 2400))
        out.log("log", at, "tokens_used", out.tokens_used)


def _app(
    snap: Snapshot,
    ep: Endpoint,
    at: int,
    rng: random.Random,
    out: Outcome,
    client_error: bool | None,
    user_id: str | None,
) -> None:
    """The app's own logic, modelled (the synthetic history): D1, sessions, 4xx, effects."""
    if rng.random() < BASELINE_5XX and ep.d1:  # the odd transient failure of a healthy app
        out.throw("Error: D1_ERROR: Network connection lost.", at)
        return
    if ep.d1 and not snap.d1_ok:
        if ep.pattern.endswith("/health"):
            out.status, out.error = 503, "database unavailable"
            out.log("error", at, "Health check failed:", snap.d1_error)
        else:
            out.throw(snap.d1_error or "D1_ERROR: Network connection lost.", at)
        return
    if ep.auth or ep.kv:
        if not snap.sessions_ok:
            op = "put" if ep.kv else "get"
            out.throw(f"TypeError: Cannot read properties of undefined (reading '{op}')", at)
            return
        if not snap.secrets.get("JWT_SECRET"):
            if ep.kv:
                out.status, out.error = 500, "Internal server error"
                out.log("error", at, "Login error:", "JWT_SECRET is not configured")
            else:
                out.status, out.error = 401, "Unauthorized"
                out.log("warn", at, "Session validation failed", {"reason": "JWT_SECRET missing"})
            return
    code, share = ep.client_error
    if code and (client_error if client_error is not None else rng.random() < share):
        out.status = code
        out.error = {401: "Unauthorized", 402: "Subscription required", 404: "Not found"}.get(
            code, "Bad Request"
        )
        out.response_bytes = 60
        if ep.kv:
            out.log("warn", at, "Login failed", {"reason": "invalid_credentials", "attempt": 1})
        return
    _outside(snap, ep, at, rng, out, slow_scan=True)
    if out.outcome != "ok" or out.status >= 500:
        return
    if ep.route == "GET /manuscripts" and snap.behaviour.get("pagination", True) is False:
        out.response_bytes *= 60  # every manuscript of the author, analyses embedded
        out.wall_ms += 700 * rng.uniform(0.8, 1.5)
        out.cpu_ms += 90 * rng.uniform(0.8, 1.3)
    if ep.route == "POST /manuscripts":
        out.status = 201
        out.subrequests += 2
        out.log("log", at, "Queued analysis", {"queue": "manuscript-analysis-queue"}, 1)
    elif ep.kv:
        out.log("log", at, "Login success", {"user_id": user_id})
    elif ep.mail:
        _password_reset(snap, at, out)


def _heavy_query(
    snap: Snapshot, ep: Endpoint, at: int, rng: random.Random, out: Outcome, slow_scan: bool
) -> None:
    if slow_scan:
        out.wall_ms += snap.d1_slow_ms * rng.uniform(0.85, 1.2)
    cond = conditions.active(snap.conds, f"d1:{_database(snap)}", at)
    if cond and rng.random() < float(cond.get("load", 0.3)):
        out.wall_ms += 30000 * rng.uniform(0.99, 1.0)
        out.throw("Error: D1_ERROR: timeout", at)
        return
    if slow_scan:
        sql = (
            "SELECT * FROM manuscripts WHERE author_id=? ORDER BY created_at DESC"
            if snap.profile == "manuscript"
            else "SELECT * FROM peptides ORDER BY name"
        )
        out.log("log", at, "D1 query", {"sql": sql, "duration_ms": round(out.wall_ms * 0.6, 1)})


def _database(snap: Snapshot) -> str:
    return "manuscript-platform" if snap.profile == "manuscript" else "peptalk-production-db"


def _bucket(snap: Snapshot) -> str:
    return "manuscript-uploads" if snap.profile == "manuscript" else "peptalk-pdfs"


def _password_reset(snap: Snapshot, at: int, out: Outcome) -> None:
    if not snap.tokens_table_ok:
        out.status, out.error = 500, "Failed to process request"
        out.log(
            "error",
            at,
            "Password reset error:",
            "D1_ERROR: no such table: verification_tokens: SQLITE_ERROR",
        )
        return
    missing = [v for v in ("EMAIL_FROM",) if not snap.vars.get(v)]
    if missing:
        out.status, out.error = 500, "Failed to send email"
        out.log("error", at, "Email configuration missing:", missing)
        return
    out.subrequests = 1
    if conditions.active(snap.conds, "mail", at):
        out.status, out.error = 500, "Failed to send email"
        out.log("error", at, "MailChannels send failed", 503, {"errors": ["Service Unavailable"]})
        return
    out.log("log", at, "Password reset email sent", {"provider": "mailchannels", "status": 202})


def consume(snap: Snapshot, at: int, rng: random.Random, job: str, attempt: int = 1) -> Outcome:
    """One manuscript-analysis job in the queue consumer (an Anthropic call per job)."""
    out = Outcome(status=0, cpu_ms=CONSUMER.cpu_ms * rng.lognormvariate(0, 0.3))
    out.wall_ms = 40 * rng.lognormvariate(0, 0.3)
    out.log("log", at, "Processing analysis job", {"manuscript_id": job, "attempt": attempt})
    rule = snap.behaviour.get("consumer") or {}
    if rule.get("error") and rng.random() < float(rule.get("rate", 1.0)):
        out.log("error", at, "Analysis job failed", {"manuscript_id": job, "attempt": attempt})
        out.throw(str(rule["error"]), at)
        return out
    latency, err = upstream_effect(snap, "anthropic", at, rng)
    out.wall_ms += latency
    out.subrequests = 1
    if err == 429:
        out.log(
            "warn",
            at,
            "Anthropic rate limited (429), retrying",
            {"retry_after_s": 30, "attempt": attempt},
        )
        out.retry = True
        return out
    if err:
        out.throw(f"Error: Anthropic API error {err}", at)
        return out
    out.tokens_used = int(rng.uniform(2500, 9000))
    out.log("log", at, "tokens_used", out.tokens_used)
    out.log(
        "log",
        at,
        "Analysis complete",
        {"manuscript_id": job, "score": round(rng.uniform(55, 95), 1)},
    )
    return out
