"""The pipeline faults against their remedies: break -> symptom -> remedy -> gone.

A PubMed timeout or an overloaded LLM API is an outage that ends: once the upstream has
recovered, re-running the peptide succeeds (new pipeline_runs row, page_version + 1, a
fresh PDF in R2, "Pipeline succeeded" in the logs). While it is still down, the re-run
fails the same way. A revoked LLM key fails every peptide until the provider's new key is
put as the Worker's ANTHROPIC_API_KEY. A compliance failure is not transient at all.
"""

from __future__ import annotations

import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from opsbook import environments
from opsbook import sandbox as sandbox_api
from opsbook.clients.cloudflare import Cloudflare
from opsbook.sandbox import d1data, faultctl, traffic
from opsbook.sandbox.state import State

Info = sandbox_api.SandboxInfo
ACCOUNT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
DB = "peptalk-production-db"


def cf(info: Info) -> Cloudflare:
    return Cloudflare(
        f"{info.base_url}/client/v4", ACCOUNT, info.credentials["OPSBOOK_SANDBOX_TOKEN"]
    )


def newest(state: State, peptide: str) -> dict[str, Any]:
    with d1data.d1_connect(state, DB) as db:
        row = db.execute(
            "SELECT r.id, r.status, r.error, r.started_at, p.page_version FROM pipeline_runs r"
            " JOIN peptides p ON p.id = r.peptide_id WHERE p.name = ? ORDER BY r.id DESC LIMIT 1",
            (peptide,),
        ).fetchone()
    return dict(zip(("id", "status", "error", "started_at", "page_version"), row, strict=True))


def rerun(info: Info, peptides: list[str] | None = None) -> list[dict[str, Any]]:
    """What `pnpm cli run-single` does: the scheduled handler, for these peptides."""
    body = {"peptides": peptides} if peptides else {}
    r = httpx.post(f"{info.base_url}/apps/peptalk/__scheduled", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return list(r.json()["results"])


def logs_since(state: State, since_ms: int) -> str:
    return "\n".join(r["logs"] for r in traffic.rows(state, "peptalk-api", since_ms))


def test_a_transient_pubmed_timeout_is_fixed_by_a_rerun(fresh_sandbox: Info) -> None:
    state = State(fresh_sandbox.state_dir)
    faultctl.break_fault(state, "pubmed-timeout", {})
    try:
        failed = newest(state, "BPC-157")
        assert failed["status"] == "failed" and failed["error"].startswith("PubMed API timeout")
        since = int(time.time() * 1000)
        (result,) = rerun(fresh_sandbox, ["BPC-157"])
        assert result["ok"], result
        now = newest(state, "BPC-157")
        assert now["id"] > failed["id"] and now["status"] == "success"
        assert now["page_version"] == failed["page_version"] + 1
        with cf(fresh_sandbox) as c:
            pdf = c.r2_object_info("peptalk-pdfs", "pdfs/bpc-157.pdf")
            assert c.r2_object_info("peptalk-pdfs", "pdfs/no-such-peptide.pdf") is None
        assert pdf and pdf["size"] > 0 and pdf["etag"]
        started = datetime.fromisoformat(now["started_at"].replace("Z", "+00:00"))
        assert parsedate_to_datetime(pdf["last_modified"]) >= started.replace(microsecond=0)
        assert "Pipeline succeeded for BPC-157" in logs_since(state, since)
    finally:
        faultctl.heal(state, "pubmed-timeout")
    assert faultctl.active(state) == []


def test_an_llm_outage_that_has_not_ended_fails_the_rerun_again(fresh_sandbox: Info) -> None:
    state = State(fresh_sandbox.state_dir)
    faultctl.break_fault(state, "llm-error", {"recovers_in_minutes": "30"})
    try:
        (result,) = rerun(fresh_sandbox, ["BPC-157"])
        assert not result["ok"] and result["error"] == "LLM API error: 529 overloaded_error"
        assert rerun(fresh_sandbox, ["TB-500"])[0]["ok"]  # only the named peptide was hit
    finally:
        faultctl.heal(state, "llm-error")
    assert newest(state, "BPC-157")["status"] == "success"


def test_a_compliance_failure_is_not_fixed_by_a_rerun(fresh_sandbox: Info) -> None:
    state = State(fresh_sandbox.state_dir)
    faultctl.break_fault(state, "compliance-failed", {})
    try:
        (result,) = rerun(fresh_sandbox, ["BPC-157"])
        assert not result["ok"] and result["error"].startswith("Compliance check failed")
    finally:
        faultctl.heal(state, "compliance-failed")
    assert newest(state, "BPC-157")["status"] == "success"


def test_a_revoked_llm_key_fails_until_the_new_key_is_put(
    fresh_sandbox: Info, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = State(fresh_sandbox.state_dir)
    old = state.credentials["ANTHROPIC_API_KEY_PEPTALK"]
    faultctl.break_fault(state, "llm-error", {"status": "401"})
    try:
        new = state.credentials["ANTHROPIC_API_KEY_PEPTALK"]
        assert new != old and new.startswith("sk-ant-api03-")
        failed = newest(state, "TB-500")  # a revoked key fails every peptide
        assert failed["error"].startswith("LLM API error: 401 authentication_error")
        (again,) = rerun(fresh_sandbox, ["BPC-157"])
        assert not again["ok"] and "401" in again["error"]
        # the operator's copy of the new key, by reference, as the runbook reads it
        monkeypatch.delenv("ANTHROPIC_API_KEY_PEPTALK", raising=False)
        env = environments.load("local-peptalk")
        value = env.secret(env.get("app.secret_sources")["ANTHROPIC_API_KEY"])
        assert value == new
        with cf(fresh_sandbox) as c:
            c.put_secret("peptalk-api", "ANTHROPIC_API_KEY", value)
        results = rerun(fresh_sandbox)
        assert results and all(r["ok"] for r in results)
    finally:
        faultctl.heal(state, "llm-error")
    assert faultctl.active(state) == []


def test_the_scheduled_run_holds_off_while_maintenance_mode_is_on(fresh_sandbox: Info) -> None:
    state = State(fresh_sandbox.state_dir)
    before = newest(state, "BPC-157")
    namespace = "feature-flags"  # bound as FLAGS, one key per Worker
    with cf(fresh_sandbox) as c:
        c.kv_put(namespace, "flag:maintenance:peptalk-api", "true")
        try:
            since = int(time.time() * 1000)
            r = httpx.post(f"{fresh_sandbox.base_url}/apps/peptalk/__scheduled", json={},
                           timeout=120)  # fmt: skip
            assert r.status_code == 200 and r.json()["results"] == []
            assert "maintenance mode is on" in r.json()["skipped"]
            assert newest(state, "BPC-157") == before  # no pipeline_runs row, no page bump
            assert "nightly-ingest skipped: maintenance mode is on" in logs_since(state, since)
        finally:
            c.kv_delete(namespace, "flag:maintenance:peptalk-api")
    (result,) = rerun(fresh_sandbox, ["BPC-157"])
    assert result["ok"] and newest(state, "BPC-157")["id"] > before["id"]
