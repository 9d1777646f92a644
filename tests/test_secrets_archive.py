"""No planted secret reaches any archived file: ipynb, HTML, record, journal, context, index."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import opsbook

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"

TOKEN = "Zq8Vx3Lm0Rt7Kp2Wn9Bd4Hs6Jf1Gc5Ya-Eu_Oi8Tb"[:40]
PASSWORD = "correct-horse-battery-staple-42"
SHAPES = [
    re.compile(r"sk_live_[A-Za-z0-9]{8,}"),
    re.compile(r"whsec_[A-Za-z0-9]{8,}"),
    re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"),
    re.compile(r"Bearer\s+[A-Za-z0-9._-]{8,}"),
]


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSBOOK_TEST_API_TOKEN", TOKEN)
    monkeypatch.setenv("OPSBOOK_PLANTED_PASSWORD", PASSWORD)


def archived_files(outputs: Path) -> list[Path]:
    return [p for p in outputs.rglob("*") if p.is_file()]


def test_no_planted_secret_in_any_archived_file(planted: None, outputs: Path) -> None:
    result = opsbook.run(str(FIXTURES / "leaks_secret.ipynb"))
    assert result.status == "failed"  # the notebook raises with the secret in the message
    files = archived_files(outputs)
    names = {p.name for p in files}
    assert {
        "notebook.ipynb",
        "report.html",
        "record.json",
        "events.jsonl",
        "context.json",
        "index.sqlite",
        "index.html",
    } <= names
    for path in files:
        data = path.read_bytes().decode("utf-8", errors="replace")
        assert TOKEN not in data, path
        assert PASSWORD not in data, path
        for shape in SHAPES:
            assert not shape.search(data), (path, shape.pattern, shape.search(data))
    # what was there is still readable around the redaction
    notebook = (result.run_dir / "notebook.ipynb").read_text()
    assert "[REDACTED" in notebook
    assert "db.internal:5432" in notebook
    assert result.record["error"]["ename"] == "RuntimeError"
