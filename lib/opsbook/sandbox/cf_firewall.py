"""IP Access Rules (account level): the API, and what the edge does with the rules.

    POST   /accounts/{account_id}/firewall/access_rules/rules             create
    GET    /accounts/{account_id}/firewall/access_rules/rules             list (paged, filters)
    GET    /accounts/{account_id}/firewall/access_rules/rules/{rule_id}   one rule
    PATCH  /accounts/{account_id}/firewall/access_rules/rules/{rule_id}   mode and notes only
    DELETE /accounts/{account_id}/firewall/access_rules/rules/{rule_id}   -> {"id": ...}

A rule is `{mode, configuration: {target, value}, notes}`; targets `ip`, `ip6`,
`ip_range` (IPv4 /16 or /24, IPv6 /32, /48 or /64), `asn` ("AS13335") and `country`
(ISO 3166-1 alpha-2, or T1 for Tor). A second rule for the same configuration is error
10009 `firewallaccessrules.api.duplicate_of_existing`.

The edge applies the rules before the Worker runs (`decide`): the most specific matching
rule wins (ip, then the narrowest ip_range, then asn, then country), so a `whitelist` on
an IP lets it through a country block. `block` answers 403 with error 1006; the challenge
modes answer 403 with a challenge page that scripted clients cannot pass. The apps
(apps/firewall.py) and the traffic model (`screen`) both go through `decide`, from the
time each rule was created on until the time it was deleted (a deleted rule keeps its
row with `deleted_ms`, for the traffic history; the API never lists it).
"""

from __future__ import annotations

import contextlib
import ipaddress
import sqlite3
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import trace
from .cf_account import check_account
from .envelope import CFError, json_body, ok, paged
from .state import USER_EMAIL, State, from_request

SCHEMA = """
CREATE TABLE IF NOT EXISTS access_rules (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    target TEXT NOT NULL,
    value TEXT NOT NULL,
    notes TEXT NOT NULL DEFAULT '',
    created_on TEXT NOT NULL,
    modified_on TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    -- a deleted rule is kept (never listed) so that rebuilt traffic history still
    -- applies it for the time it lived
    deleted_ms INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS access_rules_live
    ON access_rules (account_id, target, value) WHERE deleted_ms IS NULL;
"""

MODES = ("block", "challenge", "whitelist", "js_challenge", "managed_challenge")
TARGETS = ("ip", "ip6", "ip_range", "asn", "country")
ORDERS = {"configuration.target": "target", "configuration.value": "value", "mode": "mode"}
RULES = "/accounts/{account_id}/firewall/access_rules/rules"
RULE = RULES + "/{rule_id}"
SPECIFICITY = {"ip": 0, "ip6": 0, "ip_range": 1, "asn": 2, "country": 3}


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _invalid(message: str) -> CFError:
    return CFError(400, 10001, f"firewallaccessrules.api.validation_error: {message}")


def normalise(target: Any, value: Any) -> tuple[str, str]:
    """The configuration as stored, or CFError 400 when the value does not fit the target."""
    if target not in TARGETS:
        raise _invalid(f"configuration.target must be one of {', '.join(TARGETS)}")
    text = str(value or "").strip()
    if not text:
        raise _invalid("configuration.value is required")
    try:
        if target in ("ip", "ip6"):
            addr = ipaddress.ip_address(text)
            if (target == "ip6") != (addr.version == 6):
                raise ValueError
            return target, str(addr)
        if target == "ip_range":
            net = ipaddress.ip_network(text, strict=True)
            if net.prefixlen not in ((16, 24) if net.version == 4 else (32, 48, 64)):
                raise _invalid(
                    "ip_range must be an IPv4 /16 or /24, or an IPv6 /32, /48 or /64 range"
                )
            return target, str(net)
    except ValueError:
        raise _invalid(f"{text!r} is not a valid {target} value") from None
    if target == "asn":
        digits = text.upper().removeprefix("AS")
        if not digits.isdigit():
            raise _invalid(f"{text!r} is not an ASN (AS followed by digits)")
        return target, f"AS{int(digits)}"
    code = text.upper()
    if len(code) != 2 or (not code.isalpha() and code != "T1"):
        raise _invalid(f"{text!r} is not a two-letter country code")
    return target, code


@dataclass(frozen=True)
class Rule:
    id: str
    mode: str
    target: str
    value: str
    notes: str
    created_on: str
    modified_on: str
    created_ms: int
    deleted_ms: int | None = None  # when the rule was deleted (history_rules only)

    def live_at(self, at_ms: int) -> bool:
        return self.created_ms <= at_ms and (self.deleted_ms is None or at_ms < self.deleted_ms)

    def json(self, account_id: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "allowed_modes": list(MODES),
            "mode": self.mode,
            "configuration": {"target": self.target, "value": self.value},
            "notes": self.notes,
            "created_on": self.created_on,
            "modified_on": self.modified_on,
            "scope": {"id": account_id, "email": USER_EMAIL, "type": "organization"},
        }

    def matches(self, ip: str, country: str, asn: int | None) -> bool:
        if self.target in ("ip", "ip6"):
            with contextlib.suppress(ValueError):
                return ipaddress.ip_address(ip) == ipaddress.ip_address(self.value)
            return False
        if self.target == "ip_range":
            with contextlib.suppress(ValueError):
                return ipaddress.ip_address(ip) in ipaddress.ip_network(self.value)
            return False
        if self.target == "asn":
            return asn is not None and f"AS{asn}" == self.value
        return country.upper() == self.value


def _rule(row: sqlite3.Row) -> Rule:
    deleted = row["deleted_ms"]
    return Rule(
        row["id"], row["mode"], row["target"], row["value"], row["notes"],
        row["created_on"], row["modified_on"], int(row["created_ms"]),
        None if deleted is None else int(deleted),
    )  # fmt: skip


def load_rules(state: State) -> list[Rule]:
    """Every rule of the account; none when the state predates the table."""
    try:
        with state.read() as db:
            rows = db.execute(
                "SELECT * FROM access_rules WHERE deleted_ms IS NULL ORDER BY created_ms, id"
            ).fetchall()
    except sqlite3.OperationalError:
        return []
    return [_rule(r) for r in rows]


def history_rules(state: State) -> list[Rule]:
    """Every rule that ever applied, the deleted ones with their span (the traffic model
    rebuilds past minutes as the edge saw them then)."""
    try:
        with state.read() as db:
            rows = db.execute("SELECT * FROM access_rules ORDER BY created_ms, id").fetchall()
    except sqlite3.OperationalError:
        return []
    return [_rule(r) for r in rows]


def decide(
    rules: Iterable[Rule], ip: str, country: str = "", asn: int | None = None, at_ms: int = 0
) -> Rule | None:
    """The rule the edge applies to a request at `at_ms`: the most specific match."""
    found = [
        r
        for r in rules
        if r.live_at(at_ms) and (ip or r.target in ("asn", "country"))
        and r.matches(ip, country, asn)
    ]  # fmt: skip
    if not found:
        return None

    def rank(r: Rule) -> tuple[int, int]:
        prefix = ipaddress.ip_network(r.value).prefixlen if r.target == "ip_range" else 0
        return SPECIFICITY[r.target], -prefix

    return min(found, key=rank)


def stopped(rule: Rule | None) -> bool:
    """True when the rule keeps the request from the Worker (anything but whitelist)."""
    return rule is not None and rule.mode != "whitelist"


BLOCK_PAGE_BYTES = 5_600


def screen(rules: list[Rule], invocations: list[trace.Invocation]) -> list[trace.Invocation]:
    """The traffic model's requests as the edge lets them through: a request a rule stops
    never runs the Worker's code; it is a 403 with no logs (error 1006 or a challenge)."""
    if not rules:
        return invocations
    out = []
    for inv in invocations:
        asn = inv.extra.get("asn")
        rule = (
            decide(rules, inv.client_ip or "", inv.country or "", asn, inv.ts_ms)
            if inv.event_type == "fetch"
            else None
        )
        if not stopped(rule):
            out.append(inv)
            continue
        assert rule is not None
        out.append(
            replace(
                inv, outcome="ok", status=403, wall_ms=0.0, cpu_ms=0.0, subrequests=0,
                logs=[], exceptions=[], tokens_used=None, user_id=None, cold_start=False,
                response_bytes=BLOCK_PAGE_BYTES,
                extra={**inv.extra, "firewall": {"action": rule.mode, "rule_id": rule.id}},
            )
        )  # fmt: skip
    return out


# ---- the API ---------------------------------------------------------------------------------
def _get(state: State, rule_id: str) -> Rule:
    with state.read() as db:
        row = db.execute(
            "SELECT * FROM access_rules WHERE id = ? AND deleted_ms IS NULL", (rule_id,)
        ).fetchone()
    if row is None:
        raise CFError(404, 10001, "firewallaccessrules.api.not_found")
    return _rule(row)


def _mode(value: Any) -> str:
    if value not in MODES:
        raise _invalid(f"mode must be one of {', '.join(MODES)}")
    return str(value)


def _notes(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _invalid("notes must be a string")
    return value


async def create_rule(request: Request) -> Response:
    account_id = check_account(request)
    state = from_request(request)
    body = await json_body(request)
    mode = _mode(body.get("mode"))
    config = body.get("configuration")
    if not isinstance(config, dict):
        raise _invalid("configuration is required: {target, value}")
    target, value = normalise(config.get("target"), config.get("value"))
    notes = _notes(body.get("notes"))
    now = datetime.now(UTC)
    rule_id = uuid.uuid4().hex
    try:
        with state.tx() as db:
            db.execute(
                "INSERT INTO access_rules (id, account_id, mode, target, value, notes, "
                "created_on, modified_on, created_ms) VALUES (?,?,?,?,?,?,?,?,?)",
                (rule_id, account_id, mode, target, value, notes, _iso(now), _iso(now),
                 int(now.timestamp() * 1000)),
            )  # fmt: skip
    except sqlite3.IntegrityError:
        raise CFError(400, 10009, "firewallaccessrules.api.duplicate_of_existing") from None
    return ok(_get(state, rule_id).json(account_id))


def _matches_filters(rule: Rule, request: Request) -> bool:
    q = request.query_params
    checks: list[bool] = []
    if q.get("mode"):
        checks.append(rule.mode == q["mode"])
    if q.get("notes"):
        checks.append(q["notes"].lower() in rule.notes.lower())
    if q.get("configuration.target"):
        checks.append(rule.target == q["configuration.target"])
    if q.get("configuration.value"):
        want = q["configuration.value"].strip()
        checks.append(rule.value.lower() == want.lower() or rule.value == _value_of(rule, want))
    if not checks:
        return True
    match = q.get("match", "all")
    if match not in ("all", "any"):
        raise _invalid("match must be all or any")
    return all(checks) if match == "all" else any(checks)


def _value_of(rule: Rule, text: str) -> str:
    try:
        return normalise(rule.target, text)[1]
    except CFError:
        return text


async def list_rules(request: Request) -> Response:
    account_id = check_account(request)
    state = from_request(request)
    q = request.query_params
    rules = [r for r in load_rules(state) if _matches_filters(r, request)]
    order = q.get("order")
    if order:
        if order not in ORDERS:
            raise _invalid(f"order must be one of {', '.join(ORDERS)}")
        rules.sort(key=lambda r: getattr(r, ORDERS[order]))
    if q.get("direction", "asc") not in ("asc", "desc"):
        raise _invalid("direction must be asc or desc")
    if q.get("direction") == "desc":
        rules.reverse()
    return paged(request, [r.json(account_id) for r in rules], per_page=20, max_per_page=1000)


async def get_rule(request: Request) -> Response:
    account_id = check_account(request)
    return ok(_get(from_request(request), request.path_params["rule_id"]).json(account_id))


async def edit_rule(request: Request) -> Response:
    account_id = check_account(request)
    state = from_request(request)
    rule = _get(state, request.path_params["rule_id"])
    body = await json_body(request)
    config = body.get("configuration")
    if config is not None and (
        not isinstance(config, dict)
        or normalise(config.get("target"), config.get("value")) != (rule.target, rule.value)
    ):
        raise _invalid("only mode and notes can be changed; create a new rule instead")
    mode = _mode(body["mode"]) if "mode" in body else rule.mode
    notes = _notes(body["notes"]) if "notes" in body else rule.notes
    with state.tx() as db:
        db.execute(
            "UPDATE access_rules SET mode = ?, notes = ?, modified_on = ? WHERE id = ?",
            (mode, notes, _iso(datetime.now(UTC)), rule.id),
        )
    return ok(_get(state, rule.id).json(account_id))


async def delete_rule(request: Request) -> Response:
    check_account(request)
    state = from_request(request)
    rule = _get(state, request.path_params["rule_id"])
    with state.tx() as db:
        db.execute(
            "UPDATE access_rules SET deleted_ms = ? WHERE id = ?",
            (int(time.time() * 1000), rule.id),
        )
    return ok({"id": rule.id})


routes = [
    Route(RULES, create_rule, methods=["POST"]),
    Route(RULES, list_rules, methods=["GET"]),
    Route(RULE, get_rule, methods=["GET"]),
    Route(RULE, edit_rule, methods=["PATCH"]),
    Route(RULE, delete_rule, methods=["DELETE"]),
]
