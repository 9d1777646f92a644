"""security-incident: brute force, a compromised account, a leaked secret (seed 004, P0).

Evidence is what the Worker logs per request (TraceItems: the client IP and country
Cloudflare adds as `cf-connecting-ip` / `request.cf`, the response status, and the app's
log lines "Login failed", "Login success", "Admin action", "API key auth"), read from the
recent history in Workers Logs (`recent`), or from a live tail when the account has no
Workers Logs; plus the accounts in D1. Pure functions here but `recent`; the actions that
contain and remediate are in `security_actions`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .live_tail import Event, log_messages, request_of

if TYPE_CHECKING:
    from ..platform import Platform

CAUSES = {
    "brute-force": "many failed logins from a few IPs",
    "compromised-account": "an account performs admin actions it should not, from a new IP/country",
    "leaked-secret": "an API credential is used from a source outside the team's",
}
PROFILES = ("manuscript", "peptalk")
SEVERITY = "P0"
NOTIFY_HOURS = 72  # GDPR Art. 33: notify within 72 hours of becoming aware
MIN_FAILS_PER_IP = 3  # failed logins from one IP within the tail that make it a suspect
MIN_BRUTE_TOTAL = 8  # failed logins from suspect IPs that make it brute force
STOP_BRUTE_TOTAL = 16  # ... and enough of them to name every attacking IP: stop the tail


@dataclass
class Seen:
    """One request the Worker served, as the tail showed it."""

    ts: datetime
    ip: str
    country: str
    asn: int | None
    method: str
    path: str
    status: int | None
    kind: str  # login-failed | login-success | admin-action | api-key | other
    detail: dict[str, Any] = field(default_factory=dict)
    user_agent: str = ""


def _path(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1].split("?", 1)[0] if "/" in rest else "/"


def parse(events: list[Event]) -> list[Seen]:
    out: list[Seen] = []
    for e in events:
        req = request_of(e)
        if not req:
            continue
        headers = req.get("headers") or {}
        cf = req.get("cf") or {}
        kind, detail = "other", {}
        for head, data in log_messages(e):
            info = data if isinstance(data, dict) else {}
            if head == "Login failed":
                kind, detail = "login-failed", info
            elif head == "Login success":
                kind, detail = "login-success", info
            elif head == "Admin action":
                kind, detail = "admin-action", info
            elif head == "API key auth":
                kind, detail = "api-key", info
        out.append(
            Seen(
                ts=datetime.fromtimestamp(int(e.get("eventTimestamp", 0)) / 1000, UTC),
                ip=str(headers.get("cf-connecting-ip") or detail.get("source_ip") or ""),
                country=str(cf.get("country") or headers.get("cf-ipcountry") or ""),
                asn=cf.get("asn"),
                method=str(req.get("method") or ""),
                path=_path(str(req.get("url") or "")),
                status=((e.get("event") or {}).get("response") or {}).get("status"),
                kind=kind,
                detail=detail,
                user_agent=str(headers.get("user-agent") or ""),
            )
        )
    return out


def recent(p: Platform, minutes: float) -> list[Seen] | None:
    """The requests of the last `minutes` from Workers Logs; None when there are none to
    read (no Workers Logs on the account: watch a live tail instead)."""
    from .signals import recent_events

    items = recent_events(p, minutes)
    return None if items is None else parse(items)


def t(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the three patterns ---------------------------------------------------------------------
@dataclass
class BruteForce:
    ips: dict[str, int]  # ip -> failed logins
    countries: dict[str, str]
    targets: dict[str, int]  # email -> attempts
    first: datetime
    last: datetime
    successes: list[Seen]  # logins that succeeded from those IPs

    def per_minute(self) -> float:
        minutes = max((self.last - self.first).total_seconds() / 60, 1 / 60)
        return sum(self.ips.values()) / minutes


def brute_force(seen: list[Seen], min_per_ip: int = MIN_FAILS_PER_IP) -> BruteForce | None:
    """Failed logins grouped by IP; None unless some IP failed at least `min_per_ip` times."""
    fails = [s for s in seen if s.kind == "login-failed"]
    counts = Counter(s.ip for s in fails if s.ip)
    suspects = {ip: n for ip, n in counts.most_common() if n >= min_per_ip}
    if not suspects:
        return None
    if sum(suspects.values()) >= MIN_BRUTE_TOTAL:  # an attack: its quieter IPs repeat too
        suspects = {ip: n for ip, n in counts.most_common() if n >= 2}
    mine = [s for s in fails if s.ip in suspects]
    targets = Counter(
        str(s.detail.get("email") or s.detail.get("email_domain") or "?") for s in mine
    )
    return BruteForce(
        ips=suspects,
        countries={s.ip: s.country for s in mine},
        targets=dict(targets.most_common()),
        first=min(s.ts for s in mine),
        last=max(s.ts for s in mine),
        successes=[s for s in seen if s.kind == "login-success" and s.ip in suspects],
    )


@dataclass
class AccountActivity:
    user_id: str
    actions: dict[str, int]
    ips: dict[str, str]  # ip -> country
    paths: list[str]
    first: datetime
    last: datetime
    user_agent: str


def admin_activity(seen: list[Seen]) -> list[AccountActivity]:
    """Admin actions per user account (API-key callers are `api-key` events, not here)."""
    by_user: dict[str, list[Seen]] = {}
    for s in seen:
        if s.kind == "admin-action" and s.detail.get("user_id"):
            by_user.setdefault(str(s.detail["user_id"]), []).append(s)
    return [
        AccountActivity(
            user_id=uid,
            actions=dict(Counter(str(s.detail.get("action", s.path)) for s in items)),
            ips={s.ip: s.country for s in items},
            paths=sorted({f"{s.method} {s.path}" for s in items})[:5],
            first=min(s.ts for s in items),
            last=max(s.ts for s in items),
            user_agent=items[-1].user_agent,
        )
        for uid, items in by_user.items()
    ]


@dataclass
class KeyUse:
    key: str
    ip: str
    country: str
    asn: int | None
    actions: dict[str, int]
    first: datetime
    last: datetime
    count: int


def key_uses(seen: list[Seen], trusted: set[str]) -> list[KeyUse]:
    """API-key authenticated requests from sources outside `trusted`, per (key, ip)."""
    groups: dict[tuple[str, str], list[Seen]] = {}
    for s in seen:
        if s.kind == "api-key" and s.ip not in trusted:
            groups.setdefault((str(s.detail.get("key", "?")), s.ip), []).append(s)
    return [
        KeyUse(
            key=key,
            ip=ip,
            country=items[0].country,
            asn=items[0].asn,
            actions=dict(Counter(str(s.detail.get("action", s.path)) for s in items)),
            first=min(s.ts for s in items),
            last=max(s.ts for s in items),
            count=len(items),
        )
        for (key, ip), items in groups.items()
    ]


def suspicious_accounts(
    activity: list[AccountActivity], users: dict[str, dict[str, Any]], trusted: set[str]
) -> list[AccountActivity]:
    """Admin actions by a non-admin, an unknown account, or (with trusted IPs set) from elsewhere."""
    out = []
    for a in activity:
        role = (users.get(a.user_id) or {}).get("role")
        elsewhere = bool(trusted) and any(ip not in trusted for ip in a.ips)
        if role != "admin" or elsewhere:
            out.append(a)
    return out


def conclusive(seen: list[Seen], trusted: set[str]) -> bool:
    """Enough evidence to stop the tail early."""
    if any(s.kind == "admin-action" for s in seen) or key_uses(seen, trusted):
        return True
    bf = brute_force(seen)
    return bf is not None and sum(bf.ips.values()) >= STOP_BRUTE_TOTAL


# ---- verdict ----------------------------------------------------------------------------------
@dataclass
class Diagnosis:
    cause: str
    evidence: list[str]
    remedy: str | None
    block: list[str] = field(default_factory=list)
    disable: list[str] = field(default_factory=list)  # user ids
    reset: list[str] = field(default_factory=list)  # user ids
    rotate: list[str] = field(default_factory=list)  # secret names
    per_min: float = 0.0  # the attacker's request rate seen before the fix

    def watch_seconds(self, at_least: float, expect: int = 3, cap: float = 180) -> float:
        """How long a tail must watch to expect `expect` attacker requests at `per_min`."""
        if self.per_min <= 0:
            return at_least
        return max(at_least, min(cap, expect * 60 / self.per_min))


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} ×{v}" for k, v in counts.items())


def _rate(count: int, first: datetime, last: datetime) -> float:
    """Per minute, over the span the requests themselves cover (at least a minute)."""
    return count * 60 / max((last - first).total_seconds(), 60)


def diagnose(
    seen: list[Seen],
    seconds: float,
    users: dict[str, dict[str, Any]],
    trusted: set[str],
    by_email: dict[str, dict[str, Any]] | None = None,
    source: str = "live tail",
) -> Diagnosis:
    """Worst first: a used credential, a taken-over account, then attempts to take one.
    `seconds`: how long `source` covers (a live tail, or a window of Workers Logs). In a
    tail the attacker's rate is per second watched; in a history it is per the span of
    the attacker's own requests (the attack may have begun inside the window)."""
    window = f"{len(seen)} requests in a {seconds:.0f} s {source}"
    tail = source == "live tail"
    uses = key_uses(seen, trusted)
    if uses:
        u = max(uses, key=lambda x: x.count)
        ips = sorted({x.ip for x in uses})
        evidence = [
            f"credential {u.key} used {u.count}× from {u.ip} (country {u.country}, ASN {u.asn}), "
            f"not a trusted source (security.trusted_ips: {sorted(trusted) or 'none set'})",
            f"actions: {_fmt(u.actions)}; first {t(u.first)}, last {t(u.last)} ({window})",
        ]
        return Diagnosis(
            "leaked-secret", evidence,
            f"Rotate {u.key} (rotate-secret), block {', '.join(ips)} (block-ips), then find "
            "where the key leaked (repos, CI logs, laptops).",
            block=ips, rotate=sorted({x.key for x in uses}),
            per_min=sum(x.count for x in uses) * 60 / max(seconds, 1) if tail else _rate(
                sum(x.count for x in uses), min(x.first for x in uses), max(x.last for x in uses)
            ),
        )  # fmt: skip
    bad = suspicious_accounts(admin_activity(seen), users, trusted)
    if bad:
        a = max(bad, key=lambda x: sum(x.actions.values()))
        user = users.get(a.user_id) or {}
        email = user.get("email", f"unknown user {a.user_id}")
        evidence = [
            f"account {email} (id {a.user_id}, role {user.get('role', '?')}) performed admin "
            f"actions: {_fmt(a.actions)}",
            "from "
            + ", ".join(f"{ip} ({c})" for ip, c in a.ips.items())
            + f"; user agent {a.user_agent!r}; first {t(a.first)}, last {t(a.last)} ({window})",
            f"admin endpoints used: {', '.join(a.paths)}",
        ]
        if user.get("role") != "admin":
            evidence.append(f"{email} is not an admin in D1: these endpoints are not theirs")
        return Diagnosis(
            "compromised-account", evidence,
            f"Disable {email} (disable-account), block {', '.join(a.ips)} (block-ips), force a "
            "password reset (force-password-reset); review what the exports exposed.",
            block=sorted(a.ips), disable=[a.user_id], reset=[a.user_id],
            per_min=sum(a.actions.values()) * 60 / max(seconds, 1)
            if tail else _rate(sum(a.actions.values()), a.first, a.last),
        )  # fmt: skip
    bf = brute_force(seen)
    if bf is not None and sum(bf.ips.values()) >= MIN_BRUTE_TOTAL:
        evidence = [
            "failed logins per IP: "
            + ", ".join(f"{ip} ({bf.countries.get(ip, '?')}) ×{n}" for ip, n in bf.ips.items()),
            f"targeted accounts: {_fmt(bf.targets)}",
            f"window {t(bf.first)} .. {t(bf.last)}, {bf.per_minute():.0f}/min ({window})",
        ]
        known = [e for e in bf.targets if (by_email or {}).get(e.lower())]
        if known:
            evidence.append(f"targeted accounts that exist in D1: {', '.join(known)}")
        reset = sorted(
            {str(s.detail.get("user_id")) for s in bf.successes if s.detail.get("user_id")}
        )
        if bf.successes:
            evidence.append(f"{len(bf.successes)} login(s) SUCCEEDED from these IPs: users {reset}")
        else:
            evidence.append(f"no login succeeded from these IPs in the {source}")
        return Diagnosis(
            "brute-force", evidence,
            "Block the IPs (block-ips)"
            + ("; force a password reset for the accounts they got into" if reset else ""),
            block=sorted(bf.ips), reset=reset, per_min=bf.per_minute(),
        )  # fmt: skip
    return Diagnosis(
        "healthy",
        [f"no brute force, admin action or foreign API-key use among {window}"],
        None,
    )


# ---- communicate -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Clock:
    started: datetime
    deadline: datetime
    hours_left: float

    def text(self) -> str:
        if self.hours_left <= 0:
            return f"GDPR 72-hour notification deadline PASSED at {t(self.deadline)} ({-self.hours_left:.1f} h ago)"
        return (
            f"GDPR: notify affected users (and the authority, if personal data was exposed) by "
            f"{t(self.deadline)}, {self.hours_left:.1f} h from now (clock started {t(self.started)})"
        )


def notification_clock(started: datetime, now: datetime, hours: int = NOTIFY_HOURS) -> Clock:
    deadline = started + timedelta(hours=hours)
    return Clock(started, deadline, round((deadline - now).total_seconds() / 3600, 1))
