"""report.html in a real browser: Debian's headless chromium loads it offline and the
verdict is in the DOM. Skipped with a reason when chromium is not installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from opsbook import render
from unit.report_fixture import VERDICT_CAUSE, VERDICT_EVIDENCE, build

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not on PATH (Debian: apt-get install -y chromium)",
    ),
]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp_path / "chromium-profile"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture
def report(tmp_path: Path) -> Path:
    nb, record = build(failed=True)
    path = tmp_path / "report.html"
    path.write_text(render.render_html(nb, record), encoding="utf-8")
    return path


def test_dom_has_the_verdict(tmp_path: Path, report: Path) -> None:
    dom = _chromium(tmp_path, "--dump-dom", report.as_uri()).stdout
    assert VERDICT_CAUSE in dom and VERDICT_EVIDENCE in dom
    assert 'id="cell-' in dom and "<svg" in dom


def test_screenshot(tmp_path: Path, report: Path) -> None:
    png = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={png}", "--window-size=1280,1600", report.as_uri())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000  # a rendered page, not a blank one
