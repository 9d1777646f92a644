"""password-reset: table, settings, then the provider the app's own log line blames."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from opsbook.clients.probes import ProbeResult
from opsbook.runbooks import incident_signals as sig
from opsbook.runbooks import password_reset as pr
from opsbook.sqlguard import check

SETTINGS = {"app.test_user": "prodtest3@example.com", "app.name": "Manuscript platform"}
P: Any = SimpleNamespace(setting=lambda k, d=None: SETTINGS.get(k, d))
OK_TOKENS = pr.Tokens(True, "verification_tokens: 203 password_reset rows")
NO_TABLE = pr.Tokens(False, "SELECT ...: D1_ERROR: no such table: verification_tokens (code 7500)")
EMAIL_OK = pr.EmailConfig("v6", 6, ["EMAIL_FROM", "EMAIL_FROM_NAME"], [])
EMAIL_GONE = pr.EmailConfig("v7", 7, [], ["EMAIL_FROM", "EMAIL_FROM_NAME"])


def captured(status: int, *logs: str) -> sig.Captured:
    body = '{"error":"Failed to send email"}' if status >= 500 else '{"message":"sent"}'
    event = {"logs": [{"level": "error", "message": list(logs)}], "exceptions": []}
    return sig.Captured(
        ProbeResult("http://x", "POST", status, status < 300, 9.0, body=body),
        [event] if logs else [],
    )


def test_order_table_then_settings_then_provider() -> None:
    mail = captured(500, "MailChannels send failed", "503")
    assert pr.diagnose(P, mail, EMAIL_GONE, NO_TABLE)[0] == "verification-tokens-missing"
    cause, evidence, _ = pr.diagnose(P, mail, EMAIL_GONE, OK_TOKENS)
    assert cause == "email-config-missing" and "EMAIL_FROM" in evidence[0] and "v7" in evidence[0]
    cause, evidence, remedy = pr.diagnose(P, mail, EMAIL_OK, OK_TOKENS)
    assert cause == "mail-provider-down" and "MailChannels send failed" in " ".join(evidence)
    assert remedy == pr.NO_REMEDY["mail-provider-down"]


def test_a_500_without_a_provider_log_line_is_unknown() -> None:
    assert pr.diagnose(P, captured(500), EMAIL_OK, OK_TOKENS)[0] == "unknown"


def test_healthy_and_no_reset_route() -> None:
    assert (
        pr.diagnose(P, captured(200, "Password reset email sent"), EMAIL_OK, OK_TOKENS)[0]
        == "healthy"
    )
    assert pr.diagnose(P, captured(404), EMAIL_OK, NO_TABLE)[0] == "unknown"


def test_the_migration_ddl_passes_the_sql_guard() -> None:
    for sql in pr.TOKENS_DDL:
        g = check(sql, allow_ddl=True)
        assert g.refused is None and "verification_tokens" in g.sql
