"""deploy end to end: an uploaded version deployed and watched (real kernel), and a
version that fails after the deploy rolled back by the approved `rollback`; plus the
app-repo test-result pre-check on a real git repository."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

import opsbook
from opsbook.clients.cloudflare import Cloudflare
from opsbook.runbooks import changelog
from opsbook.runbooks.deploy import recorded_tests as check_tests
from opsbook.sandbox import SandboxInfo, workers_model
from opsbook.sandbox.state import State

WORKER = "manuscript-upload-api"
CODE = "export default { async fetch() { return new Response('ok') } }"


def serving(cf: Cloudflare) -> str:
    return str(cf.deployments(WORKER)[0]["versions"][0]["version_id"])


def test_deploy_then_a_degrading_version_is_rolled_back(
    fresh_sandbox: SandboxInfo, fresh_cf: Cloudflare
) -> None:
    before = serving(fresh_cf)
    uploaded = fresh_cf.upload_version(WORKER, "index.js", CODE, message="Add request ids")["id"]

    ok = opsbook.run(
        "deploy", parameters={"watch_minutes": 0, "message": "Add request ids"}, approve=["deploy"]
    )
    assert ok.status == "completed", ok.record["error"]
    assert ok.record["verdict"]["cause"] == "healthy"
    [deployed] = ok.record["actions"]
    assert (deployed["id"], deployed["mode"]) == ("deploy", "applied")
    assert deployed["preview"]["wrangler"].startswith(
        f"npx wrangler versions deploy {uploaded}@100% -y"
    )
    assert serving(fresh_cf) == uploaded != before
    assert ok.record["verification"]["passed"] is True

    # a version whose code throws (made inside the sandbox: uploads are always healthy)
    bad = workers_model.create_version(
        State(fresh_sandbox.state_dir), WORKER, message="Stream uploads",
        behaviour={"errors": [{"route": "*", "status": 500, "rate": 1.0,
                               "exception": "TypeError: body is undefined"}]},
    ).id  # fmt: skip
    degraded = opsbook.run(
        "deploy", parameters={"watch_minutes": 0}, approve=["deploy", "rollback"]
    )
    assert degraded.status == "completed", degraded.record["error"]
    assert degraded.record["verdict"]["cause"] == "degraded"
    assert any("smoke checks failed" in e for e in degraded.record["verdict"]["evidence"])
    modes = [(a["id"], a["mode"]) for a in degraded.record["actions"]]
    assert modes == [("deploy", "applied"), ("rollback", "applied")]
    assert degraded.record["actions"][0]["result"]["version_id"] == bad
    # the real effect: the version before serves again and the app answers
    assert serving(fresh_cf) == uploaded
    app = fresh_sandbox.urls()["apps.manuscript"].rstrip("/")
    assert httpx.get(f"{app}/manuscripts").status_code == 401
    log = [(e["action"], e["version"]) for e in changelog.entries()]
    assert log == [("deploy", uploaded), ("deploy", bad), ("rollback", uploaded)]


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


JUNIT = '<testsuites><testsuite name="api" tests="{n}" failures="{f}" errors="0" skipped="0"/></testsuites>'


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    root.mkdir()
    git(root, "init", "-q")
    (root / "src.js").write_text("export {}\n")
    git(root, "add", "src.js")
    git(root, "commit", "-q", "-m", "first")
    return root


def write_result(repo: Path, n: int, f: int, age_s: float = 0) -> None:
    report = repo / "test-results" / "junit.xml"
    report.parent.mkdir(exist_ok=True)
    report.write_text(JUNIT.format(n=n, f=f))
    stamp = time.time() - age_s
    os.utime(report, (stamp, stamp))


def test_the_test_result_must_pass_and_be_newer_than_the_last_commit(repo: Path) -> None:
    passed, evidence = check_tests(repo)
    assert not passed and "no recorded test result" in evidence[0]
    write_result(repo, 12, 0)
    passed, evidence = check_tests(repo)
    assert passed, evidence
    assert evidence[0] == "test-results/junit.xml: 12 tests, 0 failures, 0 errors, 0 skipped"
    write_result(repo, 12, 2)
    assert check_tests(repo)[0] is False
    write_result(repo, 0, 0)
    assert check_tests(repo)[0] is False
    write_result(repo, 12, 0, age_s=3600)  # written an hour before the last commit
    passed, evidence = check_tests(repo)
    assert not passed and "older than the code" in evidence[-1]
