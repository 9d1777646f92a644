"""The post-incident report from real runs of fixture notebooks, against a golden file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import opsbook
from opsbook.postmortem import OWNER, UnknownIncident, affected_users, build_report

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
GOLDEN = Path(__file__).parent / "golden" / "postmortem_fixture.md"


def normalize(text: str) -> str:
    """Mask what varies between runs (as nbclient's tests mask ids and addresses)."""
    text = re.sub(r"\d{8}T\d{6}Z-[0-9a-f]{4}", "RUN-ID", text)
    text = re.sub(r"\d+ hours? \d+ minutes?( \(\d+ s\))?", "DURATION", text)
    text = re.sub(r"\d{4}-\d{2}-\d{2}", "DATE", text)
    return re.sub(r"\b\d{2}:\d{2}\b", "HH:MM", text)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("postmortem") / "outputs"


@pytest.fixture(scope="module")
def incident(archive: Path) -> dict:
    """INC-77: a problem found, the fix proposed (dry run), then approved and verified healthy."""

    def run(name: str, incident: str = "INC-77", **kw: object) -> opsbook.RunResult:
        return opsbook.run(str(FIXTURES / name), incident=incident, outputs=archive, **kw)

    first = run("problem.ipynb")
    report_before = build_report("INC-77", outputs=archive)
    dry = run("ok.ipynb")
    fixed = run("ok.ipynb", approve=["touch"])
    run("ok.ipynb", incident="INC-other")
    return {"before": report_before, "runs": [first, dry, fixed]}


def test_report_matches_the_golden_file(incident: dict, archive: Path) -> None:
    report = build_report("INC-77", outputs=archive)
    assert report.markdown_path == archive / "incidents" / "INC-77" / "report.md"
    text = report.markdown_path.read_text()
    assert text == report.markdown
    if os.environ.get("OPSBOOK_UPDATE_GOLDEN"):
        GOLDEN.write_text(normalize(text))
    assert normalize(text) == GOLDEN.read_text()
    # the timeline is the records' times, in order, and recovery is the healthy verdict
    runs = incident["runs"]
    assert [r["run"]["id"] for r in report.records] == [r.run_id for r in runs]
    fixed = runs[2].record
    assert report.recovered == datetime.fromisoformat(fixed["verdict"]["at"])
    assert report.detected == datetime.fromisoformat(runs[0].record["run"]["started"])
    assert report.closed == datetime.fromisoformat(fixed["run"]["ended"])
    assert [e.at for e in report.entries] == sorted(e.at for e in report.entries)
    # every run links to its record, relative to the report
    links = re.findall(r"\]\(([^)]+report\.html)\)", text)
    assert len(links) == 3
    assert all((report.out / link).resolve().is_file() for link in links)


def test_html_is_the_same_report_self_contained(incident: dict, archive: Path) -> None:
    report = build_report("INC-77", outputs=archive)
    html = report.html_path.read_text()
    for heading in ("Summary", "Timeline", "Root Cause", "Resolution", "Impact", "Action Items"):
        assert f"<h2>{heading}</h2>" in html
    assert "<h1>Incident Report: INC-77: too-many-errors (problem)</h1>" in html
    assert "<script" not in html and "http" not in html.split("</style>", 1)[1]


def test_not_recovered_is_marked_and_human_parts_are_never_invented(
    incident: dict, archive: Path
) -> None:
    before = incident["before"]
    assert before.recovered is None
    text = before.markdown
    assert "(not recovered: measured to now)" in text
    assert "- [ ] Immediate fix (not recorded as done)" in text
    assert "No action was applied through opsbook." in text
    after = build_report("INC-77", outputs=archive).markdown
    # summary, root cause, revenue, data loss, further items; before a fix also resolution
    assert (text.count(OWNER), after.count(OWNER)) == (6, 5)
    for md in (text, after):
        [line] = [ln for ln in md.splitlines() if ln.startswith("**Affected Users:**")]
        assert line == "**Affected Users:** not measured (no traffic source)"
        impact = md.split("## Impact", 1)[1].split("##", 1)[0]
        assert "Number of affected users: not measured (no traffic source)" in impact
        assert "**Severity:** _To be set by the incident owner" in md


def test_unknown_incident_is_a_pinned_error(incident: dict, archive: Path) -> None:
    with pytest.raises(UnknownIncident) as err:
        build_report("INC-78", outputs=archive)
    assert str(err.value).startswith("No run recorded with incident 'INC-78' in the archive at ")
    assert "Did you mean 'INC-77'?" in str(err.value)
    assert "`opsbook runs list --incident ID` lists an incident's runs" in str(err.value)
    proc = subprocess.run(
        [sys.executable, "-m", "opsbook.cli", "report", "INC-404"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "error: No run recorded with incident 'INC-404'" in proc.stderr
    assert "opsbook runs list --incident" in proc.stderr
    with pytest.raises(UnknownIncident):
        build_report("INC-77", env="peptalk", outputs=archive)  # the env filter applies
    assert not (archive / "incidents" / "INC-78").exists()


def _trace(ts: datetime, status: int, ip: str | None) -> dict:
    headers = {"cf-connecting-ip": ip} if ip else {}
    return {
        "eventTimestamp": int(ts.timestamp() * 1000),
        "scriptName": "manuscript-upload-api",
        "outcome": "ok",
        "event": {
            "request": {"url": "https://api.example/x", "method": "GET", "headers": headers},
            "response": {"status": status},
        },
        "logs": [],
        "exceptions": [],
    }


def test_affected_users_counts_distinct_clients_from_a_tail_export(tmp_path: Path) -> None:
    start = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    end = start + timedelta(minutes=30)
    events = [
        _trace(start + timedelta(minutes=1), 500, "10.0.0.1"),
        _trace(start + timedelta(minutes=2), 502, "10.0.0.1"),
        _trace(start + timedelta(minutes=3), 503, "10.0.0.2"),
        _trace(start + timedelta(minutes=4), 200, "10.0.0.3"),  # not an error
        _trace(start - timedelta(minutes=5), 500, "10.0.0.4"),  # before the window
        _trace(end + timedelta(minutes=5), 500, "10.0.0.5"),  # after it
    ]
    path = tmp_path / "tail.ndjson"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    measured = affected_users("local", start, end, traffic=path)
    assert measured is not None
    assert (measured.count, measured.kind) == (2, "client IPs")
    assert affected_users("local", start, end) is None  # no source: not measured
    anonymous = tmp_path / "anon.ndjson"
    anonymous.write_text(json.dumps(_trace(start, 500, None)) + "\n")
    assert affected_users("local", start, end, traffic=anonymous) is None


def test_entries_recorded_in_the_same_millisecond_keep_the_order_they_happened(
    tmp_path: Path,
) -> None:
    """A finding inside a step and the step's end often share a timestamp on a fast run."""
    from opsbook.postmortem import timeline

    at = "2026-11-23T10:00:00.123+00:00"
    record = {
        "run": {
            "id": "r1",
            "runbook": "api-down",
            "env": "local",
            "operator": "t",
            "started": "2026-11-23T10:00:00.000+00:00",
            "ended": "2026-11-23T10:00:01.000+00:00",
        },
        "steps": [{"title": "Probe", "status": "passed", "ended": at, "seq": 3}],
        "findings": [{"severity": "error", "message": "HTTP 500", "at": at, "seq": 2}],
        "verdict": {"cause": "bad-deploy", "meaning": "a deploy", "at": at, "seq": 4},
        "actions": [
            {"id": "rollback", "risk": "reversible", "mode": "dry-run", "at": at, "seq": 1}
        ],
    }
    entries, *_ = timeline([(record, tmp_path / "run")], tmp_path)
    kinds = [e.kind for e in entries]
    assert kinds == ["detected", "run", "action", "finding", "step", "verdict", "closed"]
