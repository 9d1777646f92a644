"""The archive index: rows, filters, lookups, the HTML page, two writers at once."""

from __future__ import annotations

import multiprocessing
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from opsbook.errors import UnknownRun
from opsbook.index import SCHEMA_VERSION, Index

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def make_record(
    run_id: str,
    runbook: str = "api-down",
    *,
    started: datetime = T0,
    status: str = "completed",
    incident: str | None = None,
    cause: str | None = "healthy",
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "run": {
            "id": run_id,
            "runbook": runbook,
            "env": "local",
            "incident": incident,
            "operator": "alice",
            "mode": "headless",
            "started": started.isoformat(timespec="milliseconds"),
            "ended": (started + timedelta(seconds=3)).isoformat(timespec="milliseconds"),
            "duration_s": 3.2,
            "status": status,
            "exit_code": 0 if status == "completed" else 1,
        },
        "verdict": {"cause": cause, "evidence": [], "remedy": None} if cause else None,
    }


def add(index: Index, outputs: Path, record: dict[str, Any]) -> Path:
    run = record["run"]
    folder = outputs / run["started"][:10] / f"{run['id']}_{run['runbook']}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.html").write_text("<html></html>", encoding="utf-8")
    index.upsert(record, folder)
    return folder


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    return tmp_path / "outputs"


@pytest.fixture
def filled(outputs: Path) -> Path:
    with Index(outputs) as index:
        add(index, outputs, make_record("20261123T100000Z-aaaa", started=T0))
        add(
            index,
            outputs,
            make_record(
                "20261123T110000Z-bbbb",
                started=T0 + timedelta(hours=1),
                status="failed",
                incident="INC-42",
                cause="bad-deploy",
            ),
        )
        add(
            index,
            outputs,
            make_record(
                "20261123T120000Z-cccc",
                "auth-broken",
                started=T0 + timedelta(hours=2),
                incident="INC-42",
                cause=None,
                status="aborted",
            ),
        )
        add(
            index,
            outputs,
            make_record("20261124T090000Z-dddd", started=T0 + timedelta(days=1), incident="INC-7"),
        )
    return outputs


def test_schema_wal_and_version(outputs: Path) -> None:
    Index(outputs).close()
    db = sqlite3.connect(outputs / "index.sqlite")
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
    Index(outputs).close()  # reopening an existing index is fine


def test_rows_and_filters(filled: Path) -> None:
    with Index(filled) as index:
        rows = index.list()
        assert [r["run_id"][-4:] for r in rows] == ["dddd", "cccc", "bbbb", "aaaa"]
        row = rows[2]
        assert row == {
            "run_id": "20261123T110000Z-bbbb",
            "runbook": "api-down",
            "env": "local",
            "incident": "INC-42",
            "operator": "alice",
            "mode": "headless",
            "status": "failed",
            "verdict": "bad-deploy",
            "exit_code": 1,
            "started": "2026-11-23T11:00:00.000+00:00",
            "ended": "2026-11-23T11:00:03.000+00:00",
            "duration_s": 3.2,
            "path": "2026-11-23/20261123T110000Z-bbbb_api-down",
        }
        assert rows[1]["verdict"] is None
        assert [r["run_id"][-4:] for r in index.list(runbook="api-down", status="completed")] == [
            "dddd",
            "aaaa",
        ]
        assert len(index.list(incident="INC-42")) == 2
        since = datetime(2026, 11, 23, 11, 30)  # naive: UTC
        assert [r["run_id"][-4:] for r in index.list(since=since)] == ["dddd", "cccc"]
        assert len(index.list(limit=1)) == 1
        assert len(index.list(limit=0)) == 4


def test_upsert_replaces(filled: Path) -> None:
    with Index(filled) as index:
        record = make_record("20261123T100000Z-aaaa", status="failed", cause="unknown")
        add(index, filled, record)
        rows = index.list()
        assert len(rows) == 4
        assert index.get("20261123T100000Z-aaaa")["status"] == "failed"


def test_incident_runs_oldest_first(filled: Path) -> None:
    with Index(filled) as index:
        assert [r["run_id"][-4:] for r in index.incident_runs("INC-42")] == ["bbbb", "cccc"]
        assert index.incident_runs("INC-0") == []


def test_get_by_id_prefix_suffix_and_folder(filled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Index(filled) as index:
        full = "20261123T110000Z-bbbb"
        assert index.get(full)["run_id"] == full
        assert index.get("20261123T11")["run_id"] == full
        assert index.get("bbbb")["run_id"] == full  # the random suffix alone
        folder = filled / "2026-11-23" / f"{full}_api-down"
        assert index.get(str(folder))["run_id"] == full
        assert index.get(str(folder / "report.html"))["run_id"] == full
        assert index.get(f"{full}_api-down")["run_id"] == full
        monkeypatch.chdir(filled)
        assert index.get(f"2026-11-23/{full}_api-down/")["run_id"] == full


def test_get_unknown_and_ambiguous(filled: Path) -> None:
    with Index(filled) as index:
        with pytest.raises(UnknownRun) as err:
            index.get("nope")
        assert str(err.value) == (
            f"No run 'nope' in the archive at {filled.resolve()}. "
            "`opsbook runs list` shows the runs."
        )
        assert err.value.exit_code == 2
        with pytest.raises(UnknownRun) as err:
            index.get("20261123T1")
        assert "ambiguous" in str(err.value)
        assert "20261123T110000Z-bbbb (api-down)" in str(err.value)
        assert len(err.value.candidates) == 3
        with pytest.raises(UnknownRun):
            index.get("%")  # LIKE wildcards are literal


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.rows = 0
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links += [v for k, v in attrs if k == "href" and v]
        if tag == "tr" and "tbody" in self.stack:
            self.rows += 1
        if tag not in ("meta", "br", "input"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
        self.stack.pop()


def parse_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.stack == []
    return page


def test_write_html(filled: Path) -> None:
    with Index(filled) as index:
        path = index.write_html()
    assert path == filled / "index.html"
    page = parse_page(path)
    assert page.rows == 4
    assert page.links[0] == "2026-11-24/20261124T090000Z-dddd_api-down/report.html"
    for link in page.links:
        assert (filled / link).is_file()
    text = path.read_text(encoding="utf-8")
    assert "bad-deploy" in text and "INC-42" in text and "ob-badge ob-fail" in text
    assert "http://" not in text and "https://" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in filled.iterdir() if p.name.startswith(".index-")] == []


def test_write_html_empty(outputs: Path) -> None:
    with Index(outputs) as index:
        assert "No runs yet" in index.write_html().read_text(encoding="utf-8")


def _writer(outputs: str, worker: int, count: int, barrier: Any) -> None:
    out = Path(outputs)
    with Index(out) as index:
        barrier.wait(timeout=60)  # both processes write at the same moment
        for i in range(count):
            started = T0 + timedelta(minutes=i, seconds=worker)
            record = make_record(f"20261123T10{i:02d}0{worker}Z-w{worker}{i:02d}", started=started)
            add(index, out, record)
            index.write_html()


def test_two_processes_upserting_at_once(outputs: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(outputs), w, 20, barrier)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert parse_page(outputs / "index.html").rows >= 20  # valid whatever the last writer saw
    with Index(outputs) as index:
        rows = index.list(limit=0)
        assert len(rows) == 40
        assert len({r["run_id"] for r in rows}) == 40
        assert parse_page(index.write_html()).rows == 40
