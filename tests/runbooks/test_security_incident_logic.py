"""security-incident: IP grouping, the three patterns, the verdict and the 72-hour clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from opsbook.runbooks import security_incident as si

T0 = 1_795_000_000_000


def item(ip: str, log: list[Any] | None, *, path: str = "/auth/login", method: str = "POST",
         status: int = 401, country: str = "RU", at: int = 0) -> dict[str, Any]:  # fmt: skip
    return {
        "eventTimestamp": T0 + at * 1000, "outcome": "ok", "scriptName": "peptalk-api",
        "logs": [{"level": "log", "message": log, "timestamp": T0}] if log else [],
        "event": {
            "request": {
                "url": f"https://api.peptalk.com{path}", "method": method,
                "headers": {"cf-connecting-ip": ip, "user-agent": "python-requests/2.31.0"},
                "cf": {"country": country, "asn": 9009},
            },
            "response": {"status": status},
        },
    }  # fmt: skip


def failed(ip: str, email: str, at: int = 0) -> dict[str, Any]:
    return item(ip, ["Login failed", {"reason": "invalid_credentials", "email": email}], at=at)


def normal(n: int) -> list[dict[str, Any]]:
    return [item(f"73.1.2.{i}", None, path="/api/peptides", method="GET", status=200, country="US", at=i) for i in range(n)]  # fmt: skip


def test_parse_reads_ip_country_status_and_the_log_kind() -> None:
    [s] = si.parse([failed("185.220.101.34", "admin@peptalk.com")])
    assert (s.ip, s.country, s.asn, s.status, s.kind) == (
        "185.220.101.34",
        "RU",
        9009,
        401,
        "login-failed",
    )
    assert (s.method, s.path, s.detail["email"]) == ("POST", "/auth/login", "admin@peptalk.com")


def test_brute_force_groups_failed_logins_by_ip_with_counts_and_targets() -> None:
    events = [failed("185.220.101.34", "admin@peptalk.com", i) for i in range(6)]
    events += [failed("45.155.205.12", "eng@peptalk.com", i) for i in range(4)]
    events += [
        failed("45.155.205.99", "eng@peptalk.com", 3) for _ in range(2)
    ]  # quieter, same attack
    events += [failed("98.7.6.5", "someone@example.com")]  # one typo: not an attacker
    bf = si.brute_force(si.parse(events + normal(5)))
    assert bf is not None
    assert bf.ips == {"185.220.101.34": 6, "45.155.205.12": 4, "45.155.205.99": 2}
    assert bf.targets == {"admin@peptalk.com": 6, "eng@peptalk.com": 6}
    assert bf.successes == []
    d = si.diagnose(si.parse(events), 10, {}, set())
    assert d.cause == "brute-force"
    assert d.block == ["185.220.101.34", "45.155.205.12", "45.155.205.99"]
    assert "185.220.101.34 (RU) ×6" in d.evidence[0]


def test_a_few_scattered_failed_logins_are_healthy() -> None:
    events = [failed(f"81.2.3.{i}", "x@example.com", i) for i in range(10)] + normal(30)
    seen = si.parse(events)
    assert si.brute_force(seen) is None
    assert not si.conclusive(seen, set())
    d = si.diagnose(seen, 90, {}, set())
    assert (d.cause, d.remedy, d.block) == ("healthy", None, [])


def admin(uid: str, action: str, ip: str = "102.89.34.11", at: int = 0) -> dict[str, Any]:
    return item(ip, ["Admin action", {"user_id": uid, "action": action, "ip": ip}],
                path="/admin/users/export", method="GET", status=200, country="NG", at=at)  # fmt: skip


def test_admin_actions_by_a_non_admin_account_are_a_compromise() -> None:
    users = {"u7": {"id": "u7", "email": "jamie@example.com", "role": "user"}}
    seen = si.parse([admin("u7", "export_users"), admin("u7", "grant_admin", at=30), *normal(5)])
    assert si.conclusive(seen, set())
    d = si.diagnose(seen, 40, users, set())
    assert d.cause == "compromised-account"
    assert (d.disable, d.reset, d.block) == (["u7"], ["u7"], ["102.89.34.11"])
    text = "\n".join(d.evidence)
    assert d.per_min == 3.0  # 2 actions in 40 s
    assert d.watch_seconds(30) == 60  # 3 more are expected within a minute
    assert "jamie@example.com" in text and "102.89.34.11 (NG)" in text and "export_users ×1" in text


def test_an_admin_acting_from_a_trusted_ip_is_fine_and_from_elsewhere_is_not() -> None:
    users = {"a1": {"id": "a1", "email": "admin@peptalk.com", "role": "admin"}}
    seen = si.parse([admin("a1", "export_users", ip="10.0.0.5")])
    assert si.diagnose(seen, 40, users, {"10.0.0.5"}).cause == "healthy"
    assert si.diagnose(seen, 40, users, set()).cause == "healthy"  # no trusted list to compare
    assert si.diagnose(seen, 40, users, {"10.0.0.9"}).cause == "compromised-account"


def test_an_api_key_used_from_an_unknown_source_is_a_leaked_secret() -> None:
    use = item("194.26.29.113", ["API key auth", {"key": "ADMIN_API_KEY", "source_ip": "194.26.29.113", "action": "export_users"}],
               path="/admin/users/export", method="GET", status=200, country="NL")  # fmt: skip
    seen = si.parse([use, use, *normal(3)])
    d = si.diagnose(seen, 20, {}, set())
    assert d.cause == "leaked-secret"
    assert (d.rotate, d.block) == (["ADMIN_API_KEY"], ["194.26.29.113"])
    assert "ADMIN_API_KEY used 2× from 194.26.29.113 (country NL, ASN 9009)" in d.evidence[0]
    assert si.diagnose(seen, 20, {}, {"194.26.29.113"}).cause == "healthy"


def test_the_72_hour_clock() -> None:
    started = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    clock = si.notification_clock(started, started + timedelta(hours=5, minutes=30))
    assert clock.deadline == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert clock.hours_left == 66.5
    assert "2026-11-26T10:00:00Z, 66.5 h from now" in clock.text()
    late = si.notification_clock(started, started + timedelta(hours=80))
    assert late.hours_left == -8.0 and "PASSED" in late.text()
