"""The official `cloudflare` SDK (5.9) against the sandbox, unchanged but for base_url."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from opsbook import sandbox as sandbox_api

cloudflare = pytest.importorskip("cloudflare")

MANUSCRIPT = "manuscript-upload-api"


def sdk_for(info: sandbox_api.SandboxInfo) -> cloudflare.Cloudflare:
    return cloudflare.Cloudflare(
        api_token=info.credentials["OPSBOOK_SANDBOX_TOKEN"],
        base_url=info.urls()["cloudflare"],
        max_retries=0,
    )


@pytest.fixture
def sdk(sandbox: sandbox_api.SandboxInfo) -> Iterator[cloudflare.Cloudflare]:
    with sdk_for(sandbox) as client:
        yield client


def test_d1_list_and_query(sdk: cloudflare.Cloudflare, sandbox: sandbox_api.SandboxInfo) -> None:
    databases = {db.name: db for db in sdk.d1.database.list(account_id=sandbox.account_id)}
    assert {"manuscript-platform", "peptalk-production-db"} <= set(databases)
    uuid = databases["peptalk-production-db"].uuid
    assert uuid
    pages = sdk.d1.database.query(
        database_id=uuid, account_id=sandbox.account_id, sql="SELECT ? AS v", params=["x"]
    )
    [result] = list(pages)
    assert result.success and result.results == [{"v": "x"}]


def test_secrets_list(sdk: cloudflare.Cloudflare, sandbox: sandbox_api.SandboxInfo) -> None:
    names = {
        s.name for s in sdk.workers.scripts.secrets.list(MANUSCRIPT, account_id=sandbox.account_id)
    }
    assert names == {
        "JWT_SECRET",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "ANTHROPIC_API_KEY",
    }


def test_kv_namespaces_and_value(
    sdk: cloudflare.Cloudflare, sandbox: sandbox_api.SandboxInfo
) -> None:
    spaces = list(sdk.kv.namespaces.list(account_id=sandbox.account_id, per_page=1))
    titles = {ns.title for ns in spaces}
    assert {"manuscript-sessions", "peptalk-sessions"} <= titles  # paged one by one, then []
    flags = next(ns for ns in spaces if ns.title == "feature-flags")
    value = sdk.kv.namespaces.values.get(
        "flag:uploads", account_id=sandbox.account_id, namespace_id=flags.id
    )
    assert value.read() == b"true"


def test_queues_and_r2(sdk: cloudflare.Cloudflare, sandbox: sandbox_api.SandboxInfo) -> None:
    queues = {q.queue_name: q for q in sdk.queues.list(account_id=sandbox.account_id)}
    assert "manuscript-analysis-queue" in queues
    consumers = queues["manuscript-analysis-queue"].consumers or []
    assert [c.script for c in consumers] == [MANUSCRIPT]
    buckets = sdk.r2.buckets.list(account_id=sandbox.account_id)
    assert {"manuscript-uploads", "peptalk-pdfs"} <= {b.name for b in buckets.buckets or []}


def test_deployments_list_needs_the_raw_response(
    sdk: cloudflare.Cloudflare, sandbox: sandbox_api.SandboxInfo
) -> None:
    # The SDK types deployments.list as V4 page pagination (result.items); the real result
    # is {deployments: [...]}, so the typed call yields nothing. The raw response has it.
    raw = sdk.workers.scripts.deployments.with_raw_response.list(
        MANUSCRIPT, account_id=sandbox.account_id
    )
    body = json.loads(raw.http_response.text)
    assert body["success"] and len(body["result"]["deployments"]) >= 7


def test_deployments_create(fresh_sandbox: sandbox_api.SandboxInfo) -> None:
    with sdk_for(fresh_sandbox) as sdk:
        acct = fresh_sandbox.account_id
        versions = sdk.workers.scripts.versions.list(MANUSCRIPT, account_id=acct)
        target = [v.id for v in versions][1]
        made = sdk.workers.scripts.deployments.create(
            MANUSCRIPT, account_id=acct, strategy="percentage",
            versions=[{"version_id": target, "percentage": 100}],
            annotations={"workers/message": "Rollback via SDK"},
        )  # fmt: skip
        assert made is not None and made.versions[0].version_id == target
        raw = sdk.workers.scripts.deployments.with_raw_response.list(MANUSCRIPT, account_id=acct)
        current = json.loads(raw.http_response.text)["result"]["deployments"][0]
        assert current["annotations"]["workers/message"] == "Rollback via SDK"


def test_sdk_sees_auth_errors(sandbox: sandbox_api.SandboxInfo) -> None:
    with (
        cloudflare.Cloudflare(
            api_token="y" * 40, base_url=sandbox.urls()["cloudflare"], max_retries=0
        ) as bad,
        pytest.raises(cloudflare.PermissionDeniedError),
    ):
        list(bad.queues.list(account_id=sandbox.account_id))


def test_versions_create_upload(fresh_sandbox: sandbox_api.SandboxInfo) -> None:
    # SDK 5.9 with pydantic 2.x cannot build the schema of VersionCreateResponse
    # (PydanticSchemaGenerationError for ResourcesBindings, whatever the server answers),
    # so the typed call is unusable; the raw response carries the real upload result.
    with sdk_for(fresh_sandbox) as sdk:
        raw = sdk.workers.scripts.versions.with_raw_response.create(
            MANUSCRIPT, account_id=fresh_sandbox.account_id,
            metadata={"main_module": "index.js", "annotations": {"workers/message": "via SDK"}},
            files=[("index.js", b"export default {}", "application/javascript+module")],
        )  # fmt: skip
        made = json.loads(raw.http_response.text)["result"]
        assert made["annotations"]["workers/message"] == "via SDK"
        listed = sdk.workers.scripts.versions.list(MANUSCRIPT, account_id=fresh_sandbox.account_id)
        assert next(v.id for v in listed) == made["id"]
