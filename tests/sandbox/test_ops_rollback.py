"""rollback end to end: a bad deploy broken into the sandbox (the test may know the fault;
the runbook never does) and a secret changed since the good version, the runbook in a
real kernel with `rollback` approved, and the app checked through its public URL after."""

from __future__ import annotations

import httpx

import opsbook
from opsbook.clients.cloudflare import Cloudflare
from opsbook.runbooks import changelog
from opsbook.sandbox import SandboxInfo, faultctl
from opsbook.sandbox.state import State

WORKER = "manuscript-upload-api"


def serving(cf: Cloudflare) -> str:
    return str(cf.deployments(WORKER)[0]["versions"][0]["version_id"])


def test_rollback_restores_the_last_known_good_version(
    fresh_sandbox: SandboxInfo, fresh_cf: Cloudflare
) -> None:
    good = serving(fresh_cf)
    faultctl.break_fault(State(fresh_sandbox.state_dir), "bad-deploy")
    bad = serving(fresh_cf)
    app = fresh_sandbox.urls()["apps.manuscript"].rstrip("/")
    assert bad != good
    assert httpx.get(f"{app}/health").status_code == 500
    # a secret changed since the good version: Cloudflare refuses the plain deploy (10220)
    fresh_cf.put_secret(WORKER, "SENTRY_DSN", "https://key@sentry.example/1")

    result = opsbook.run("rollback", approve=["rollback"])

    assert result.status == "completed", result.record["error"]
    record = result.record
    assert record["verdict"]["cause"] == "bad-version"
    assert any(good in line for line in record["verdict"]["evidence"])
    [action] = record["actions"]
    assert (action["id"], action["mode"], action["risk"]) == ("rollback", "applied", "reversible")
    assert action["preview"]["wrangler"].startswith(f"npx wrangler rollback {good} ")
    assert action["result"]["version_id"] == good
    assert "10220" in action["result"]["forced"] and "force=true" in action["result"]["forced"]
    assert record["verification"]["passed"] is True
    # the real effect: the good version serves and the public app answers again
    assert serving(fresh_cf) == good
    assert httpx.get(f"{app}/health").status_code == 200
    assert httpx.get(f"{app}/manuscripts").status_code == 401
    [entry] = changelog.entries()
    assert (entry["action"], entry["version"], entry["run"]) == ("rollback", good, result.run_id)
