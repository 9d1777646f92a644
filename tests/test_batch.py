"""Batch runs end to end: real subprocess jobs over fixture notebooks, one summary."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from opsbook import batchfile
from opsbook.batch import OUTCOME_OF_EXIT, run_batch
from opsbook.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsbook.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def records(outputs: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in outputs.glob("20*/*/record.json")]


def summary_of(outputs: Path) -> tuple[Path, dict]:
    [folder] = (outputs / "batches").iterdir()
    return folder, json.loads((folder / "summary.json").read_text())


def test_batch_of_fixtures_summary_matches_the_records(
    tmp_path: Path, outputs: Path, fixture_nb
) -> None:
    for name in ("ok", "problem", "raises"):
        fixture_nb(name)
    batch = write(
        tmp_path / "mixed.yaml",
        """\
name: mixed fixtures
parallel: 2
runs:
  - runbook: nb/ok.ipynb           # relative to this file
    env: [local, local-peptalk]
    parameters: {count: 4, items: [a, b]}
  - runbook: nb/problem.ipynb
    env: local
    parameters: {threshold: 0.1}
  - runbook: nb/raises.ipynb
    parameters: {n: 3}
""",
    )
    proc = cli("batch", str(batch))
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the worst: a failed run
    assert "mixed fixtures: 4 runs, 2 ok, 1 problem, 1 failed" in proc.stdout
    assert "ValueError: boom 3" in proc.stdout
    folder, summary = summary_of(outputs)
    assert folder.name.endswith("_mixed-fixtures")
    assert summary["exit_code"] == 1 and summary["interrupted"] is False
    written = records(outputs)
    assert len(written) == len(summary["jobs"]) == 4
    from_records = Counter(OUTCOME_OF_EXIT[r["run"]["exit_code"]] for r in written)
    assert {k: v for k, v in summary["counts"].items() if v} == dict(from_records)
    assert from_records == {"ok": 2, "problem": 1, "failed": 1}
    by_id = {r["run"]["id"]: r for r in written}
    assert sorted((j["runbook"], j["env"]) for j in summary["jobs"]) == [
        ("ok", "local"),
        ("ok", "local-peptalk"),
        ("problem", "local"),
        ("raises", "local"),
    ]
    html = (folder / "summary.html").read_text()
    for job in summary["jobs"]:
        record = by_id[job["run_id"]]
        assert (job["status"], job["exit_code"]) == (
            record["run"]["status"],
            record["run"]["exit_code"],
        )
        assert job["verdict"] == (record["verdict"] or {}).get("cause")
        assert not Path(job["report"]).is_absolute()
        target = (folder / job["report"]).resolve()
        assert target.is_file() and target.parent.name.startswith(job["run_id"])
        assert f'href="{job["report"]}"' in html
        assert record["run"]["env"] == job["env"]
    ok_params = [r["parameters"] for r in written if r["run"]["runbook"] == "ok"]
    assert all(p["count"] == 4 and p["items"] == ["a", "b"] for p in ok_params)
    assert "<script" not in html and "http://" not in html and "https://" not in html


def test_api_exit_code_3_when_a_run_finds_a_problem(tmp_path: Path, outputs: Path) -> None:
    batch = write(
        tmp_path / "b.yaml",
        f"name: two\nruns:\n  - runbook: {FIXTURES / 'ok.ipynb'}\n"
        f"  - runbook: {FIXTURES / 'problem.ipynb'}\n",
    )
    seen: list[tuple[int, str]] = []
    result = run_batch(batch, parallel=1, on_event=lambda s: seen.append((s.job.n, s.state)))
    assert result.exit_code == 3
    assert [j.outcome for j in result.jobs] == ["ok", "problem"]
    # every job is announced pending, then one at a time (parallel=1)
    announced, first, second = [(1, "pending"), (2, "pending")], (1, "running"), (2, "running")
    assert seen == [*announced, first, (1, "done"), second, (2, "done")]
    assert result.summary_json.is_file() and result.summary_html.is_file()
    assert result.folder.parent == outputs / "batches"


def test_env_option_replaces_the_files_environments(tmp_path: Path) -> None:
    batch = write(
        tmp_path / "b.yaml",
        f"name: e\nruns:\n  - runbook: {FIXTURES / 'ok.ipynb'}\n    env: [local, local-peptalk]\n",
    )
    loaded = batchfile.load(batch, envs=["local-peptalk"])
    assert [(j.runbook, j.env) for j in loaded.jobs] == [("ok", "local-peptalk")]
    assert batchfile.load(batch, parallel=64).parallel <= (__import__("os").cpu_count() or 1)


BAD = {
    "malformed": (
        "name: x\nruns:\n  - runbook: ok\n   env: local\n",
        "is not valid YAML at line 4, column 4: expected <block end>, but found "
        "'<block mapping start>'. Check the indentation",
    ),
    "unknown-top-key": (
        "name: x\nparalel: 3\nruns:\n  - runbook: {ok}\n",
        "line 2: unknown key 'paralel' at the top. Did you mean 'parallel'? "
        "Allowed keys: name, description, parallel, runs.",
    ),
    "unknown-item-key": (
        "name: x\nruns:\n  - runbook: {ok}\n    params: {{count: 2}}\n",
        "line 4: unknown key 'params' in runs[0]. Did you mean 'parameters'?",
    ),
    "missing-runbook": (
        "name: x\nruns:\n  - env: local\n",
        "line 3 (runs[0]): `runbook:` is missing; name a runbook (`opsbook list`).",
    ),
    "unknown-runbook": (
        "name: x\nruns:\n  - runbook: helth-check\n",
        "line 3 (runs[0]): No runbook named 'helth-check'",
    ),
    "parameter-typo": (
        "name: x\nruns:\n  - runbook: {ok}\n  - runbook: {ok}\n    parameters: {{cuont: 2}}\n",
        "line 4 (runs[1]), ok on local: Runbook 'ok' has no parameter 'cuont'. "
        "Did you mean 'count'?",
    ),
    "bad-value": (
        "name: x\nruns:\n  - runbook: {ok}\n    parameters: {{count: many}}\n",
        "Parameter 'count' expects a whole number, e.g. 30; got 'many'.",
    ),
    "unknown-env": (
        "name: x\nruns:\n  - runbook: {ok}\n    env: [local, prod]\n",
        "ok on prod: No environment named 'prod'",
    ),
    "no-runs": ("name: x\nruns: []\n", "`runs:` must be a non-empty list"),
    "bad-parallel": (
        "name: x\nparallel: 0\nruns:\n  - runbook: {ok}\n",
        "line 2: parallel must be a whole number >= 1; got 0.",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_batch_files_fail_up_front(case: str, tmp_path: Path, outputs: Path) -> None:
    text, message = BAD[case]
    batch = write(tmp_path / "bad.yaml", text.format(ok=FIXTURES / "ok.ipynb"))
    with pytest.raises(InputError) as err:
        run_batch(batch)
    assert message in str(err.value)
    assert "nothing ran" in str(err.value)
    assert not outputs.exists()  # nothing archived, not even a summary


def test_bad_batch_file_exits_2_listing_every_problem(tmp_path: Path, outputs: Path) -> None:
    batch = write(
        tmp_path / "bad.yaml",
        f"name: x\nruns:\n  - runbook: {FIXTURES / 'ok.ipynb'}\n    parameters: {{cuont: 1}}\n"
        f"  - runbook: {FIXTURES / 'ok.ipynb'}\n    approve: touch\n    colour: red\n",
    )
    proc = cli("batch", str(batch))
    assert proc.returncode == 2
    assert "has 2 problems; nothing ran" in proc.stderr
    assert "no parameter 'cuont'" in proc.stderr
    assert "line 7: unknown key 'colour' in runs[1]" in proc.stderr
    assert not outputs.exists()
    missing = cli("batch", "nightly")
    assert missing.returncode == 2
    assert "No batch named 'nightly'" in missing.stderr
    assert "Known batches: daily, monthly, weekly." in missing.stderr


@pytest.mark.parametrize("name", ["daily", "weekly", "monthly"])
def test_checklist_batches_load_or_name_the_missing_runbook(name: str) -> None:
    runbook = f"checklist-{name}"
    notebook = Path(__file__).resolve().parent.parent / "notebooks" / f"{runbook}.ipynb"
    if notebook.exists():
        loaded = batchfile.load(name)
        assert [(j.runbook, j.env) for j in loaded.jobs] == [
            (runbook, "local"),
            (runbook, "local-peptalk"),
        ]
        return
    with pytest.raises(InputError) as err:
        batchfile.load(name)
    assert f"No runbook named '{runbook}'" in str(err.value)


@pytest.mark.usefixtures("ctrl_c")
def test_ctrl_c_stops_the_batch_and_keeps_every_record(tmp_path: Path, outputs: Path) -> None:
    batch = write(
        tmp_path / "slow.yaml",
        f"name: slow\nparallel: 2\nruns:\n  - runbook: {FIXTURES / 'long_running.ipynb'}\n"
        "    env: [local, local-peptalk]\n"
        f"  - runbook: {FIXTURES / 'ok.ipynb'}\n",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "opsbook.cli", "batch", str(batch), "--parallel", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 90
    started: list[Path] = []
    while time.monotonic() < deadline and len(started) < 2:
        started = list(outputs.glob("20*/*_long_running/events.jsonl"))
        time.sleep(0.2)
    assert len(started) == 2, "the two slow jobs never started"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    folder, summary = summary_of(outputs)
    assert summary["interrupted"] is True and summary["exit_code"] == 130
    assert [j["outcome"] for j in summary["jobs"]] == ["aborted", "aborted", "not-run"]
    written = records(outputs)
    assert sorted(r["run"]["status"] for r in written) == ["aborted", "aborted"]
    for job in summary["jobs"][:2]:
        assert (folder / job["report"]).is_file()
    assert summary["jobs"][2]["report"] is None
    assert "slow: 3 runs, 2 aborted, 1 not-run" in out


def test_job_argv_round_trips_typed_parameters() -> None:
    from opsbook import params

    job = batchfile.Job(
        1,
        "ok",
        str(FIXTURES / "ok.ipynb"),
        "local",
        {"count": 4, "ratio": 0.25, "verbose": True, "items": ["a", "b,c"], "label": "x y"},
        incident="INC-9",
        approve=["touch"],
    )
    argv = job.argv()
    assert argv[:3] == [str(FIXTURES / "ok.ipynb"), "--env", "local"]
    assert argv[-4:] == ["--incident", "INC-9", "--approve", "touch"]
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
    specs = params.inspect_notebook(FIXTURES / "ok.ipynb")
    back = {
        name: params.parse_text(specs[name], text)
        for name, text in params.parse_overrides(pairs).items()
    }
    assert back == job.parameters


def test_run_json_prints_one_line(outputs: Path) -> None:
    proc = cli("run", str(FIXTURES / "problem.ipynb"), "--json")
    assert proc.returncode == 3
    [line] = proc.stdout.splitlines()
    data = json.loads(line)
    assert sorted(data) == ["exit_code", "run_dir", "run_id", "status", "verdict"]
    assert (data["status"], data["exit_code"], data["verdict"]) == (
        "completed",
        3,
        "too-many-errors",
    )
    assert Path(data["run_dir"], "record.json").is_file()
