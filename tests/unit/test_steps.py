"""The steps API in-process: recording, verdict rules, guarded actions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook import steps
from opsbook.runfolder import CONTEXT, read_events, write_json


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no context.json here: an in-memory session
    monkeypatch.delenv("OPSBOOK_RUN_DIR", raising=False)
    steps.reset()
    yield
    steps.reset()


CAUSES = {"bad-deploy": "the 5xx onset lines up with a deployment"}


def test_step_times_itself_and_records_failure(capsys: pytest.CaptureFixture[str]) -> None:
    steps.start("api-down", CAUSES)
    with steps.step("ok step"):
        pass
    with pytest.raises(KeyError), steps.step("bad step"):
        raise KeyError("x")
    events = [e for e in steps.session().events if e["type"] == "step"]
    assert [(e["title"], e["status"]) for e in events] == [
        ("ok step", "passed"),
        ("bad step", "failed"),
    ]
    assert events[1]["error"] == "KeyError: 'x'"
    assert events[0]["duration_s"] >= 0
    out = capsys.readouterr().out  # plain text outside a kernel
    assert "── Step 1: ok step" in out and "✘ bad step — failed" in out


def test_verdict_must_be_declared() -> None:
    steps.start("api-down", CAUSES)
    with pytest.raises(ValueError) as err:
        steps.verdict("d1-down", ["x"])
    assert str(err.value) == (
        "'d1-down' is not a declared cause of runbook 'api-down'. Declared: bad-deploy, healthy, unknown. "
        "Evidence that fits none is verdict 'unknown'."
    )
    steps.verdict("unknown", ["5xx at 10:02 but no deployment, D1 fine"])
    steps.verdict("bad-deploy", {"deployment": "d-1"}, remedy="roll back")
    assert steps.latest_verdict()["cause"] == "bad-deploy"


def test_finding_severity_checked() -> None:
    with pytest.raises(ValueError, match="severity must be one of info, warning, error, critical"):
        steps.finding("fatal", "x")


def test_read_action_runs_without_approval() -> None:
    steps.start("x", {})
    result = steps.action("list", "read", fn=lambda: [1, 2], preview={"call": "GET /x"})
    assert (result.mode, result.result) == ("applied", [1, 2])


def test_unapproved_action_is_a_dry_run_that_calls_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    steps.start("api-down", CAUSES)
    calls: list[int] = []
    result = steps.action(
        "rollback", "reversible", fn=lambda: calls.append(1), preview={"call": "POST /deployments"}
    )
    assert result.mode == "dry-run" and calls == []
    assert "To apply: opsbook run api-down --approve rollback" in capsys.readouterr().out


def test_approved_action_runs_once_per_target() -> None:
    steps.start("api-down", CAUSES, approve=["rollback"])
    calls: list[str] = []
    first = steps.action(
        "rollback", "reversible", fn=lambda: calls.append("v41") or "ok", preview={"to": "v41"}
    )
    again = steps.action(
        "rollback", "reversible", fn=lambda: calls.append("v41"), preview={"to": "v41"}
    )
    other = steps.action(
        "rollback", "reversible", fn=lambda: calls.append("v40") or "ok", preview={"to": "v40"}
    )
    assert (first.mode, again.mode, other.mode) == ("applied", "skipped", "applied")
    assert calls == ["v41", "v40"]


def test_failed_action_is_recorded_and_raised() -> None:
    steps.start("x", {}, approve=["put"])
    with pytest.raises(RuntimeError):
        steps.action(
            "put",
            "destructive",
            fn=lambda: (_ for _ in ()).throw(RuntimeError("api said no")),
            preview={},
        )
    [event] = [e for e in steps.session().events if e["type"] == "action"]
    assert (event["mode"], event["error"]) == ("failed", "RuntimeError: api said no")


def test_bad_risk() -> None:
    with pytest.raises(
        ValueError, match="risk must be one of read, reversible, destructive, irreversible"
    ):
        steps.action("x", "scary", fn=lambda: None, preview={})


def test_records_into_the_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_json(
        run_dir / CONTEXT,
        {
            "id": "r1",
            "runbook": "api-down",
            "mode": "interactive",
            "approved": [],
            "prior_actions": [
                {
                    "id": "rollback",
                    "key": steps.preview_key("rollback", {"to": "v41"}),
                    "run_id": "r0",
                }
            ],
        },
    )
    monkeypatch.setenv("OPSBOOK_RUN_DIR", str(run_dir))
    steps.reset()
    steps.start("api-down", CAUSES, approve=["rollback"])
    with steps.step("look"):
        steps.finding("warning", "errors up", {"rate": 0.5})
    skipped = steps.action(
        "rollback", "reversible", fn=lambda: "should not run", preview={"to": "v41"}
    )
    assert skipped.mode == "skipped" and "r0" in str(skipped.result)
    dry = steps.action("purge", "destructive", fn=lambda: None, preview={})
    assert dry.mode == "dry-run"
    events = read_events(run_dir)
    assert [e["type"] for e in events] == ["start", "finding", "step", "action", "action"]
    assert events[1]["step"] == "look"
    assert json.loads((run_dir / "events.jsonl").read_text().splitlines()[-1])["approve_with"] == (
        "add 'purge' to `approve` in the parameters cell and run this cell again"
    )


def test_incident_priority_goes_into_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opsbook import records

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_json(run_dir / CONTEXT, {"id": "r1", "runbook": "api-down", "approved": []})
    monkeypatch.setenv("OPSBOOK_RUN_DIR", str(run_dir))
    steps.reset()
    steps.start("api-down", CAUSES, severity="P0")
    events = read_events(run_dir)
    assert events[0]["severity"] == "P0"
    with pytest.raises(ValueError, match="P0, P1, P2, P3"):
        steps.start("api-down", CAUSES, severity="critical")
    record = records.build(run_dir, status="completed")
    assert record["run"]["severity"] == "P0"
