"""pipeline-failed: the pure diagnosis from the peptides' newest runs and the success rate."""

from __future__ import annotations

from typing import Any

from opsbook.runbooks import pipeline_failed as pf


def peptide(name: str, status: str = "success", error: str | None = None, **kw: Any) -> pf.Peptide:
    values: dict[str, Any] = {
        "id": 1, "name": name, "slug": name.lower(), "page_version": 7,
        "last_pipeline_run": "2026-11-22T02:03:00.000Z", "run_id": 100, "started_at": "2026-11-23T02:00:00.000Z",
        "status": status, "error": error, "last_success": "2026-11-22T02:03:00.000Z",
    }  # fmt: skip
    values.update(kw)
    return pf.Peptide(**values)


RATE_OK = pf.Rate(59, 60, "2026-11-22T02:00:00.000Z", "2026-11-23T02:00:00.000Z", 0.9)


def test_classify_the_recorded_errors() -> None:
    assert pf.classify("PubMed API timeout after 30000ms") == "pubmed-timeout"
    assert pf.classify("PubMed API timeout after 30000 ms") == "pubmed-timeout"
    assert pf.classify("LLM API error: 529 overloaded_error") == "llm-error"
    assert pf.classify("Compliance check failed: prohibited claim 'cures'") == "compliance-failed"
    assert pf.classify("R2 put failed") is None
    assert pf.classify(None) is None


def test_one_failing_peptide_is_named_with_its_error_line_and_last_success() -> None:
    states = [peptide("BPC-157", "failed", "PubMed API timeout after 30000ms"), peptide("TB-500")]
    cause, evidence, remedy = pf.diagnose(states, RATE_OK)
    assert cause == "pubmed-timeout"
    text = "\n".join(evidence)
    assert "Pipeline failed for BPC-157: PubMed API timeout after 30000ms" in text
    assert "BPC-157: last successful run 2026-11-22T02:03:00.000Z; page_version 7" in text
    assert "TB-500" not in text
    assert remedy and "BPC-157" in remedy


def test_compliance_failure_has_no_automatic_remedy() -> None:
    states = [peptide("GHK-Cu", "failed", "Compliance check failed: prohibited claim")]
    cause, _evidence, remedy = pf.diagnose(states, RATE_OK)
    assert cause == "compliance-failed"
    assert remedy == pf.NO_REMEDY["compliance-failed"]
    assert pf.retryable(states) == []


def test_mixed_causes_act_on_the_most_common_and_say_so() -> None:
    states = [
        peptide("A", "failed", "LLM API error: 529 overloaded_error"),
        peptide("B", "failed", "LLM API error: 500 api_error"),
        peptide("C", "failed", "PubMed API timeout after 30000ms"),
    ]
    cause, evidence, _ = pf.diagnose(states, RATE_OK)
    assert cause == "llm-error"
    assert any(e.startswith("mixed causes: llm-error: 2; pubmed-timeout: 1") for e in evidence)
    assert [s.name for s in pf.retryable(states)] == ["A", "B", "C"]


def test_an_unknown_error_is_unknown_not_forced() -> None:
    cause, _, _ = pf.diagnose([peptide("A", "failed", "disk full")], RATE_OK)
    assert cause == "unknown"


def test_healthy_when_every_newest_run_succeeded_and_unknown_for_a_missing_peptide() -> None:
    cause, evidence, remedy = pf.diagnose([peptide("A"), peptide("B")], RATE_OK)
    assert (cause, remedy) == ("healthy", None)
    assert "all 2 peptides" in evidence[0]
    assert pf.diagnose([], RATE_OK, "NOPE-1")[0] == "unknown"
    assert pf.diagnose([], RATE_OK)[0] == "unknown"


def test_success_rate_over_the_24h_up_to_the_newest_run() -> None:
    runs = [{"started_at": "2026-11-21T02:00:00.000Z", "status": "failed"}]  # outside the window
    runs += [{"started_at": "2026-11-23T02:00:00.000Z", "status": "success"}] * 8
    runs += [{"started_at": "2026-11-23T02:05:00.000Z", "status": "failed"}] * 2
    rate = pf.success_rate(runs, 0.9)
    assert (rate.ok, rate.total) == (8, 10)
    assert rate.breached and "80.0%" in rate.text() and "< threshold 90%" in rate.text()
    assert not pf.success_rate([], 0.9).breached


def test_verify_needs_a_new_successful_run_and_a_newer_page_version() -> None:
    before = [peptide("BPC-157", "failed", "PubMed API timeout after 30000ms", run_id=100)]
    ok = [peptide("BPC-157", run_id=101, page_version=8)]
    same_run = [peptide("BPC-157", run_id=100, page_version=8)]
    failed_again = [peptide("BPC-157", "failed", "PubMed API timeout after 30000ms", run_id=101)]
    assert pf.verify(before, ok)[0]
    assert not pf.verify(before, same_run)[0]
    assert not pf.verify(before, failed_again)[0]
    assert not pf.verify(before, [])[0]


def test_an_llm_auth_error_is_told_from_a_transient_one() -> None:
    assert pf.is_auth_error("LLM API error: 401 authentication_error: invalid x-api-key")
    assert pf.is_auth_error("LLM API error: 403 permission_error")
    assert not pf.is_auth_error("LLM API error: 529 overloaded_error")
    assert not pf.is_auth_error("LLM API error: 500 api_error")
    assert not pf.is_auth_error("PubMed API timeout after 401ms")
    assert not pf.is_auth_error(None)


def test_a_refused_key_is_llm_error_whose_remedy_puts_the_key_first() -> None:
    states = [
        peptide("BPC-157", "failed", "LLM API error: 401 authentication_error: invalid x-api-key"),
        peptide("TB-500", "failed", "LLM API error: 401 authentication_error: invalid x-api-key"),
    ]
    cause, evidence, remedy = pf.diagnose(states, RATE_OK)
    assert cause == "llm-error"
    assert pf.key_rejected(states)
    assert remedy and remedy.startswith(f"Put a valid {pf.LLM_SECRET}") and "BPC-157" in remedy
    assert any("refuses the key for 2 peptide(s)" in e for e in evidence)
    overloaded = [peptide("BPC-157", "failed", "LLM API error: 529 overloaded_error")]
    assert not pf.key_rejected(overloaded)
    assert pf.diagnose(overloaded, RATE_OK)[2] == "Retry the pipeline for BPC-157"


def test_verify_needs_a_fresh_pdf_in_r2_and_no_failure_in_the_logs() -> None:
    before = [peptide("BPC-157", "failed", "PubMed API timeout after 30000ms", run_id=100)]
    after = [peptide("BPC-157", run_id=101, page_version=8, started_at="2026-11-23T09:15:30.400Z")]
    fresh = {"BPC-157": {"size": 609, "last_modified": "Mon, 23 Nov 2026 09:15:30 GMT"}}
    stale = {"BPC-157": {"size": 609, "last_modified": "Mon, 23 Nov 2026 02:03:10 GMT"}}
    ok, lines = pf.verify(before, after, fresh, {"log_succeeded": ["BPC-157"]})
    assert (
        ok and "uploaded by this run" in lines[0] and "Pipeline succeeded for BPC-157" in lines[0]
    )
    assert not pf.verify(before, after, stale)[0]
    assert not pf.verify(before, after, {"BPC-157": None})[0]
    assert not pf.verify(before, after, fresh, {"log_failed": ["BPC-157"]})[0]
    # no line in the tail leaves it to D1 and R2
    ok, lines = pf.verify(before, after, fresh, {"log_succeeded": []})
    assert ok and "no line for it reached the tail" in lines[0]


def test_verify_lists_failures_first_and_summarises_many_successes() -> None:
    names = [f"P-{i:02d}" for i in range(30)]
    before = [peptide(n, "failed", "LLM API error: 529 overloaded_error", run_id=1) for n in names]
    after = [peptide(n, run_id=2, page_version=8) for n in names]
    after[20] = peptide("P-20", "failed", "LLM API error: 529 overloaded_error", run_id=2)
    ok, lines = pf.verify(before, after)
    assert not ok
    assert lines[0].startswith("P-20: newest run #2 failed")
    assert len(lines) == pf.LIST_MAX + 1 and lines[-1].startswith("... and 18 more")
