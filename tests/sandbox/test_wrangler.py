"""The real `wrangler` CLI against the sandbox (CLOUDFLARE_API_BASE_URL), when installed.

wrangler is found as $OPSBOOK_WRANGLER, `wrangler` on PATH, or `npx --no-install
wrangler`; it is never installed by the tests. Without it these tests skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from opsbook import sandbox as sandbox_api
from opsbook.clients.cloudflare import Cloudflare

MANUSCRIPT = "manuscript-upload-api"
Wrangler = Callable[..., subprocess.CompletedProcess[str]]


@cache
def wrangler_command() -> tuple[str, ...] | None:
    candidates: list[tuple[str, ...]] = []
    if os.environ.get("OPSBOOK_WRANGLER"):
        candidates.append((os.environ["OPSBOOK_WRANGLER"],))
    if found := shutil.which("wrangler"):
        candidates.append((found,))
    if shutil.which("npx"):
        candidates.append(("npx", "--no-install", "wrangler"))
    for command in candidates:
        try:
            done = subprocess.run(
                [*command, "--version"], capture_output=True, text=True, timeout=20,
                env={**os.environ, "WRANGLER_SEND_METRICS": "false"},
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return command
    return None


pytestmark = [
    pytest.mark.wrangler,
    pytest.mark.skipif(
        wrangler_command() is None,
        reason="wrangler is not installed (tried $OPSBOOK_WRANGLER, wrangler on PATH and "
        "`npx --no-install wrangler`); `npm install wrangler` in a folder and set "
        "OPSBOOK_WRANGLER=<folder>/node_modules/.bin/wrangler to run these",
    ),
]


def wrangler_for(info: sandbox_api.SandboxInfo, tmp: Path) -> Wrangler:
    command = wrangler_command()
    assert command is not None
    env = {
        **os.environ,
        "CLOUDFLARE_API_BASE_URL": info.urls()["cloudflare"],
        "CLOUDFLARE_API_TOKEN": info.credentials["OPSBOOK_SANDBOX_TOKEN"],
        "CLOUDFLARE_ACCOUNT_ID": info.account_id,
        "WRANGLER_SEND_METRICS": "false",
        "WRANGLER_CACHE_DIR": str(tmp / "wrangler-cache"),
        "WRANGLER_LOG_PATH": str(tmp / "wrangler-logs"),
    }
    work = tmp / "work"
    work.mkdir(exist_ok=True)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*command, *args], cwd=work, env=env, input=stdin, capture_output=True,
            text=True, timeout=90,
        )  # fmt: skip
        assert done.returncode == 0, f"wrangler {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    return run


def json_out(text: str) -> object:
    """The JSON document in wrangler's output (it may print a banner first)."""
    start = min(i for i in (text.find("["), text.find("{")) if i >= 0)
    return json.loads(text[start:])


def test_deployments_list_json(
    sandbox: sandbox_api.SandboxInfo, cf: Cloudflare, tmp_path: Path
) -> None:
    wrangler = wrangler_for(sandbox, tmp_path)
    printed = json_out(wrangler("deployments", "list", "--name", MANUSCRIPT, "--json").stdout)
    assert isinstance(printed, list)
    api = cf.deployments(MANUSCRIPT)
    assert {d["id"] for d in printed} == {d["id"] for d in api}
    assert printed[-1]["id"] == api[0]["id"]  # wrangler prints the current one last


def test_secret_list(sandbox: sandbox_api.SandboxInfo, tmp_path: Path) -> None:
    wrangler = wrangler_for(sandbox, tmp_path)
    printed = json_out(wrangler("secret", "list", "--name", MANUSCRIPT).stdout)
    assert isinstance(printed, list)
    assert {s["name"] for s in printed} == {
        "JWT_SECRET",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "ANTHROPIC_API_KEY",
    }


def test_d1_execute_remote(sandbox: sandbox_api.SandboxInfo, tmp_path: Path) -> None:
    wrangler = wrangler_for(sandbox, tmp_path)
    out = wrangler("d1", "execute", "peptalk-production-db", "--remote", "--json",
                   "--command", "SELECT 40 + 2 AS answer").stdout  # fmt: skip
    printed = json_out(out)
    assert isinstance(printed, list)
    assert printed[0]["results"] == [{"answer": 42}] and printed[0]["success"]


def test_whoami_and_kv_namespace_list(sandbox: sandbox_api.SandboxInfo, tmp_path: Path) -> None:
    wrangler = wrangler_for(sandbox, tmp_path)
    assert sandbox.account_id in wrangler("whoami").stdout
    printed = json_out(wrangler("kv", "namespace", "list").stdout)
    assert isinstance(printed, list)
    assert "manuscript-sessions" in {ns["title"] for ns in printed}


def test_rollback(
    fresh_sandbox: sandbox_api.SandboxInfo, fresh_cf: Cloudflare, tmp_path: Path
) -> None:
    wrangler = wrangler_for(fresh_sandbox, tmp_path)
    current = fresh_cf.deployments(MANUSCRIPT)[0]["versions"][0]["version_id"]
    target = next(v["id"] for v in fresh_cf.versions(MANUSCRIPT) if v["id"] != current)
    out = wrangler(
        "rollback", target, "--name", MANUSCRIPT, "--message", "Emergency rollback", "-y"
    ).stdout
    assert f"Worker Version {target} has been deployed to 100% of traffic" in out
    now = fresh_cf.deployments(MANUSCRIPT)[0]
    assert now["versions"] == [{"version_id": target, "percentage": 100}]
    assert now["annotations"]["workers/message"] == "Emergency rollback"
    assert now["source"] == "wrangler"


def test_rollback_after_a_secret_change_names_the_secret(
    fresh_sandbox: sandbox_api.SandboxInfo, fresh_cf: Cloudflare, tmp_path: Path
) -> None:
    wrangler = wrangler_for(fresh_sandbox, tmp_path)
    wrangler("secret", "put", "JWT_SECRET", "--name", MANUSCRIPT, stdin="a-new-jwt-secret")
    target = fresh_cf.versions(MANUSCRIPT)[1]["id"]
    out = wrangler("rollback", target, "--name", MANUSCRIPT, "-m", "after rotation", "-y").stdout
    assert "The following secrets have changed" in out and "* JWT_SECRET" in out
    assert fresh_cf.deployments(MANUSCRIPT)[0]["versions"][0]["version_id"] == target


def test_kv_key_put_with_metadata_and_get(
    fresh_sandbox: sandbox_api.SandboxInfo, fresh_cf: Cloudflare, tmp_path: Path
) -> None:
    wrangler = wrangler_for(fresh_sandbox, tmp_path)
    ns = fresh_cf.kv_namespace_id("feature-flags")
    wrangler("kv", "key", "put", "flag:maintenance", "on", "--namespace-id", ns, "--remote",
             "--metadata", '{"by": "ops"}', "--ttl", "3600")  # fmt: skip
    got = wrangler("kv", "key", "get", "flag:maintenance", "--namespace-id", ns, "--remote")
    assert got.stdout.strip().endswith("on")
    [key] = [k for k in fresh_cf.kv_keys(ns, prefix="flag:maintenance")]
    assert key["metadata"] == {"by": "ops"} and key["expiration"] > 0


def test_versions_upload_and_deploy(
    fresh_sandbox: sandbox_api.SandboxInfo, fresh_cf: Cloudflare, tmp_path: Path
) -> None:
    wrangler = wrangler_for(fresh_sandbox, tmp_path)
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True, exist_ok=True)
    (work / "src" / "index.js").write_text(
        "export default { fetch() { return new Response('fixed') } }\n"
    )
    (work / "wrangler.toml").write_text(
        f'name = "{MANUSCRIPT}"\nmain = "src/index.js"\ncompatibility_date = "2025-01-01"\n'
        '[vars]\nEMAIL_FROM = "noreply@scarter4workmanuscripthub.com"\n'
    )
    out = wrangler("versions", "upload", "--message", "Fix the context bug").stdout
    uploaded = fresh_cf.versions(MANUSCRIPT)[0]
    assert f"Worker Version ID: {uploaded['id']}" in out
    assert uploaded["annotations"]["workers/message"] == "Fix the context bug"
    detail = fresh_cf.version(MANUSCRIPT, uploaded["id"])
    bindings = {b["name"]: b for b in detail["resources"]["bindings"]}
    assert bindings["EMAIL_FROM"]["type"] == "plain_text"

    wrangler("versions", "deploy", f"{uploaded['id']}@100%", "-y", "--message", "ship it")
    current = fresh_cf.deployments(MANUSCRIPT)[0]
    assert current["versions"] == [{"version_id": uploaded["id"], "percentage": 100}]
    assert current["annotations"]["workers/message"] == "ship it"
