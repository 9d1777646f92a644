"""password-reset: reset emails do not arrive; /auth/password-reset-request answers 500.
Seed 000 Issue 3 (Password Reset Not Working).

SEVERITY P1: the seed rates the impact "High — users locked out if they forget their
password": no one who forgot a password can get back in, and the only workaround is a
manual reset per user; logged-in users are unaffected, so it is not a P0.

Checks: a real reset request for the test user while a tail records the app's own log
lines, the email settings of the active version, the verification_tokens table, and
what the app logged about the mail provider. Remedies: `recreate-tokens-table`
(migration 0003's DDL) and `rollback` to the newest version that had the email settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..clients.probes import ProbeResult, probe
from ..errors import ApiError
from ..sqlguard import check
from . import incident_signals as sig
from .api_down_remedy import RollbackPlan

if TYPE_CHECKING:
    from ..platform import Platform

CAUSES = {
    "email-config-missing": "the active version lacks an email setting (app.email_vars)",
    "verification-tokens-missing": "the verification_tokens table is missing or broken",
    "mail-provider-down": "the mail provider fails the app's sends",
}
NO_REMEDY = {
    "mail-provider-down": "the provider is outside our control: wait for MailChannels, and "
    "reset passwords by hand for users who ask (the documented manual step)",
}
PROFILES = ("manuscript",)
SEVERITY = "P1"
PATH = "/auth/password-reset-request"
TOKENS_SQL = "SELECT COUNT(*) AS n FROM verification_tokens WHERE token_type='password_reset'"
# The app's migration 0003_add_verification_tokens.sql (the manuscript platform's repo).
TOKENS_DDL = (
    "CREATE TABLE IF NOT EXISTS verification_tokens ("
    " token TEXT PRIMARY KEY,"
    " user_id TEXT NOT NULL REFERENCES users(id),"
    " token_type TEXT NOT NULL CHECK (token_type IN ('password_reset', 'email_verification')),"
    " expires_at TEXT NOT NULL,"
    " used INTEGER NOT NULL DEFAULT 0,"
    " created_at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS idx_verification_tokens_user ON verification_tokens(user_id)",
)
MAIL_FAILURE = re.compile(r"(mailchannels|mail provider|smtp|send failed)", re.IGNORECASE)


# ---- evidence ------------------------------------------------------------------------
def request_reset(p: Platform, timeout_s: float = 5.0) -> ProbeResult:
    return probe(p.app_url(PATH), "POST", (200, 202), timeout=timeout_s,
                 json={"email": p.setting("app.test_user")})  # fmt: skip


def reset_with_logs(p: Platform) -> sig.Captured:
    """The reset request for the test user, with the log lines the app wrote for it."""
    return sig.with_tail(p, lambda: request_reset(p), PATH)


def reset_evidence(p: Platform, cap: sig.Captured) -> list[str]:
    r: ProbeResult = cap.result
    body = (r.body or r.error or "").strip()[:120]
    out = [f"POST {PATH} for {p.setting('app.test_user')}: HTTP {r.status} {body}"]
    logs = cap.log_text()
    if logs:
        out.append("app log: " + logs.replace("\n", " | ")[:300])
    return out


@dataclass(frozen=True)
class EmailConfig:
    version_id: str
    number: Any
    present: list[str]
    missing: list[str]

    def evidence(self) -> str:
        if self.missing:
            return (f"version {self.number} ({self.version_id}), serving now, lacks "
                    f"{', '.join(self.missing)} (has {', '.join(self.present) or 'no vars'})")  # fmt: skip
        return f"version {self.number} has {', '.join(self.present)}"


def _vars(version: dict[str, Any]) -> list[str]:
    bindings = (version.get("resources") or {}).get("bindings") or []
    return [b["name"] for b in bindings if b.get("type") == "plain_text"]


def check_email_config(p: Platform) -> EmailConfig:
    wanted = list(p.setting("app.email_vars") or [])
    vid = p.cf.deployments(p.worker)[0]["versions"][0]["version_id"]
    version = p.cf.version(p.worker, vid)
    have = _vars(version)
    return EmailConfig(vid, version.get("number"), [v for v in wanted if v in have],
                       [v for v in wanted if v not in have])  # fmt: skip


@dataclass(frozen=True)
class Tokens:
    ok: bool
    detail: str


def check_tokens(p: Platform) -> Tokens:
    try:
        rows = p.cf.d1_query(p.database, TOKENS_SQL)[0]["results"]
        return Tokens(True, f"verification_tokens: {rows[0]['n']} password_reset rows")
    except ApiError as exc:
        errors = "; ".join(f"{e.get('message')} (code {e.get('code')})" for e in exc.errors)
        detail = f"{TOKENS_SQL} on {p.database}: {errors or exc}"
        try:  # the migration that created it, if D1 recorded it
            applied = p.cf.d1_query(
                p.database, "SELECT name, applied_at FROM d1_migrations WHERE name LIKE ?",
                ["%verification_tokens%"],
            )[0]["results"]  # fmt: skip
            detail += "".join(f"; migration {m['name']} recorded as applied {m['applied_at']}"
                              for m in applied)  # fmt: skip
        except ApiError:
            pass
        return Tokens(False, detail)


# ---- the verdict ----------------------------------------------------------------------
def diagnose(
    p: Platform, cap: sig.Captured, email: EmailConfig, tokens: Tokens
) -> tuple[str, list[str], str | None]:
    seen = reset_evidence(p, cap)
    status = cap.result.status
    if status in (404, 405):
        return ("unknown", [*seen, f"{p.setting('app.name')} has no {PATH} route: this " "runbook is for the manuscript platform"], None)  # fmt: skip
    if not tokens.ok:
        return ("verification-tokens-missing", [tokens.detail, *seen],
                "Recreate the table from migration 0003: approve recreate-tokens-table.")  # fmt: skip
    if email.missing:
        return ("email-config-missing", [email.evidence(), *seen],
                f"Add {', '.join(email.missing)} to wrangler.toml [vars] and deploy; or approve "
                "rollback to the newest version that had them.")  # fmt: skip
    if status is not None and 200 <= status < 300:
        return "healthy", [*seen, tokens.detail, email.evidence()], None
    if (status is None or status >= 500) and MAIL_FAILURE.search(cap.log_text()):
        return ("mail-provider-down", seen, NO_REMEDY["mail-provider-down"])  # fmt: skip
    return "unknown", [*seen, tokens.detail, email.evidence()], "Tail the route and escalate."


# ---- remedies -------------------------------------------------------------------------
def tokens_preview(p: Platform) -> dict[str, Any]:
    return {
        "call": f"POST /accounts/{p.cf.account_id}/d1/database/{p.cf.d1_id(p.database)}/query",
        "sql": list(TOKENS_DDL),
        "wrangler": [
            f'npx wrangler d1 execute {p.database} --remote --command "{s}"' for s in TOKENS_DDL
        ],
        "note": "the table comes back empty: reset links sent before are invalid",
    }


def recreate_tokens_table(p: Platform) -> dict[str, Any]:
    done = []
    for sql in TOKENS_DDL:
        guarded = check(sql, allow_ddl=True)
        if guarded.refused:
            raise ValueError(f"refused: {guarded.refused}")
        p.cf.d1_query(p.database, guarded.sql)
        done.append(guarded.sql)
    return {"executed": done, "at": sig.fix_time()}


def email_rollback_plan(p: Platform, email: EmailConfig) -> RollbackPlan | None:
    """The newest earlier version whose bindings have every app.email_vars."""
    wanted = set(email.present) | set(email.missing)
    for v in p.cf.versions(p.worker):
        if v["id"] == email.version_id:
            continue
        if wanted <= set(_vars(p.cf.version(p.worker, v["id"]))):
            message = f"password-reset: roll back to version {v.get('number')} (has {', '.join(sorted(wanted))})"
            return RollbackPlan(v["id"], v.get("number"), email.version_id, email.number, message)
    return None


def verify(p: Platform, since: datetime) -> tuple[bool, list[str]]:
    """A fresh reset request answers 2xx and a new token row exists for the test user."""
    r = request_reset(p)
    rows = p.cf.d1_query(
        p.database,
        "SELECT COUNT(*) AS n FROM verification_tokens WHERE token_type='password_reset' AND "
        "created_at >= ? AND user_id = (SELECT id FROM users WHERE lower(email) = ?)",
        [(since - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S"),
         str(p.setting("app.test_user")).lower()],
    )[0]["results"]  # fmt: skip
    fresh = int(rows[0]["n"])
    passed = r.status is not None and 200 <= r.status < 300 and fresh > 0
    return passed, [
        f"POST {PATH}: HTTP {r.status}",
        f"{fresh} new password_reset token(s) for {p.setting('app.test_user')} since "
        f"{sig.gql_time(since)}",
    ]
