"""Every Cloudflare endpoint of the sandbox core, through opsbook's Cloudflare client,
over real sockets. Tests that change state use `fresh_cf` (a restored sandbox)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from opsbook import sandbox as sandbox_api
from opsbook.clients.cloudflare import Cloudflare
from opsbook.errors import ApiError, AuthenticationError, ConflictError, NotFound
from opsbook.sandbox import queues_model
from opsbook.sandbox.state import State

MANUSCRIPT = "manuscript-upload-api"
PEPTALK = "peptalk-api"


def raw_get(info: sandbox_api.SandboxInfo, path: str, **params: object) -> dict:
    token = info.credentials["OPSBOOK_SANDBOX_TOKEN"]
    response = httpx.get(
        f"{info.urls()['cloudflare']}{path}",
        params=params,  # type: ignore[arg-type]
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


# ---- account ------------------------------------------------------------------
def test_token_verify_and_accounts(cf: Cloudflare, sandbox: sandbox_api.SandboxInfo) -> None:
    assert cf.verify_token()["status"] == "active"
    assert [a["id"] for a in cf.accounts()] == [sandbox.account_id]
    members = raw_get(sandbox, "/memberships", page=1)
    assert members["result"][0]["account"]["id"] == sandbox.account_id
    assert raw_get(sandbox, "/user")["result"]["email"]


def test_page_past_the_end_is_empty(sandbox: sandbox_api.SandboxInfo) -> None:
    acct = f"/accounts/{sandbox.account_id}"
    for path in ("/memberships", "/accounts", f"{acct}/storage/kv/namespaces", f"{acct}/queues"):
        body = raw_get(sandbox, path, page=50, per_page=20)
        assert body["success"] and body["result"] == [], path
        assert body["result_info"]["page"] == 50 and body["result_info"]["count"] == 0
    items = raw_get(sandbox, f"{acct}/workers/scripts/{MANUSCRIPT}/versions", page=9)
    assert items["result"] == {"items": []}


def test_wrong_token_raises_authentication_error(sandbox: sandbox_api.SandboxInfo) -> None:
    with (
        Cloudflare(sandbox.urls()["cloudflare"], sandbox.account_id, "x" * 40) as bad,
        pytest.raises(AuthenticationError, match=r"code 10000.*CLOUDFLARE_API_TOKEN") as err,
    ):
        bad.deployments(MANUSCRIPT)
    assert err.value.status == 403 and err.value.code == 10000


def test_wrong_account_is_refused(sandbox: sandbox_api.SandboxInfo) -> None:
    token = sandbox.credentials["OPSBOOK_SANDBOX_TOKEN"]
    with (
        Cloudflare(sandbox.urls()["cloudflare"], "f" * 32, token) as other,
        pytest.raises(AuthenticationError, match="account_id"),
    ):
        other.secrets(MANUSCRIPT)


# ---- workers ------------------------------------------------------------------
def test_deployments_newest_first_and_healthy_history(cf: Cloudflare) -> None:
    deployments = cf.deployments(MANUSCRIPT)
    assert len(deployments) >= 7
    stamps = [d["created_on"] for d in deployments]
    assert stamps == sorted(stamps, reverse=True)
    current = deployments[0]
    assert current["strategy"] == "percentage"
    assert current["versions"] == [
        {"version_id": current["versions"][0]["version_id"], "percentage": 100}
    ]
    assert set(current["annotations"]) >= {"workers/triggered_by"}
    assert cf.deployment(MANUSCRIPT, current["id"]) == current
    messages = [d["annotations"].get("workers/message", "") for d in deployments]
    assert any(m.startswith("Rollback") for m in messages)


def test_versions_list_and_detail(cf: Cloudflare) -> None:
    versions = cf.versions(PEPTALK)
    assert len(versions) >= 6
    numbers = [v["number"] for v in versions]
    assert numbers == sorted(numbers, reverse=True)
    newest = versions[0]
    assert set(newest["metadata"]) >= {"created_on", "author_email", "source", "hasPreview"}
    detail = cf.version(PEPTALK, newest["id"])
    bindings = {b["name"]: b for b in detail["resources"]["bindings"]}
    assert bindings["EMAIL_FROM"] == {
        "type": "plain_text",
        "name": "EMAIL_FROM",
        "text": "noreply@peptalk.com",
    }
    assert bindings["OPENAI_API_KEY"] == {"type": "secret_text", "name": "OPENAI_API_KEY"}
    assert bindings["DB"]["type"] == "d1"
    assert detail["resources"]["script"]["etag"]
    assert "fetch" in detail["resources"]["script"]["handlers"]
    assert detail["resources"]["script_runtime"]["compatibility_date"]


def test_hidden_behaviour_never_leaks(sandbox: sandbox_api.SandboxInfo, cf: Cloudflare) -> None:
    acct = f"/accounts/{sandbox.account_id}/workers"
    texts = [json.dumps(raw_get(sandbox, f"{acct}/scripts/{MANUSCRIPT}/versions"))]
    texts += [json.dumps(cf.version(MANUSCRIPT, v["id"])) for v in cf.versions(MANUSCRIPT)]
    texts.append(json.dumps(cf.deployments(MANUSCRIPT)))
    for text in texts:
        assert "behaviour" not in text and "exception" not in text


def test_service(cf: Cloudflare) -> None:
    service = cf.service(MANUSCRIPT)
    assert service["id"] == MANUSCRIPT
    assert service["default_environment"]["script"]["etag"]
    with pytest.raises(NotFound):
        cf.service("no-such-worker")


def test_unknown_script_and_version_are_not_found(cf: Cloudflare) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        cf.deployments("no-such-worker")
    with pytest.raises(NotFound):
        cf.version(MANUSCRIPT, "00000000-0000-4000-8000-000000000000")


def test_rollback_deploys_an_older_version(fresh_cf: Cloudflare) -> None:
    cf = fresh_cf
    before = cf.deployments(MANUSCRIPT)[0]["versions"][0]["version_id"]
    target = next(v for v in cf.versions(MANUSCRIPT) if v["id"] != before)
    made = cf.rollback(MANUSCRIPT, target["id"], "Rollback due to issue")
    assert made["versions"] == [{"version_id": target["id"], "percentage": 100}]
    assert made["annotations"]["workers/message"] == "Rollback due to issue"
    assert made["author_email"] == "ops@sandbox.opsbook.dev"  # the token's user
    assert made["source"] == "api"
    current = cf.deployments(MANUSCRIPT)[0]
    assert current["id"] == made["id"]
    assert current["versions"][0]["version_id"] == target["id"]


def test_secret_change_then_rollback_needs_force(fresh_cf: Cloudflare) -> None:
    cf = fresh_cf
    older = cf.versions(MANUSCRIPT)[1]["id"]
    cf.put_secret(MANUSCRIPT, "JWT_SECRET", "rotated-value-for-the-test")
    with pytest.raises(ConflictError, match="force") as err:
        cf.rollback(MANUSCRIPT, older, "try without force")
    assert err.value.code == 10220 and err.value.status == 400
    assert str(err.value).endswith(
        "The following secrets have changed: JWT_SECRET (code 10220). A secret changed since the target version was created; deploy with force to use the current secrets."
    )
    assert cf.deployments(MANUSCRIPT)[0]["versions"][0]["version_id"] != older
    made = cf.rollback(MANUSCRIPT, older, "with force", force=True)
    assert cf.deployments(MANUSCRIPT)[0]["id"] == made["id"]


def test_deployment_percentages_must_add_up(fresh_cf: Cloudflare) -> None:
    ids = [v["id"] for v in fresh_cf.versions(PEPTALK)[:2]]
    with pytest.raises(ApiError, match="add up to 100") as err:
        fresh_cf.create_deployment(PEPTALK, [(ids[0], 50), (ids[1], 40)])
    assert err.value.status == 400
    split = fresh_cf.create_deployment(PEPTALK, [(ids[0], 90), (ids[1], 10)], "canary")
    assert [v["percentage"] for v in split["versions"]] == [90, 10]


def test_secrets_list_put_delete(fresh_cf: Cloudflare) -> None:
    cf = fresh_cf
    names = {s["name"] for s in cf.secrets(PEPTALK)}
    assert names == {
        "JWT_SECRET",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
    }
    assert all(s["type"] == "secret_text" for s in cf.secrets(PEPTALK))
    assert cf.put_secret(PEPTALK, "NEW_ONE", "v") == {"name": "NEW_ONE", "type": "secret_text"}
    assert "NEW_ONE" in {s["name"] for s in cf.secrets(PEPTALK)}
    cf.delete_secret(PEPTALK, "NEW_ONE")
    assert "NEW_ONE" not in {s["name"] for s in cf.secrets(PEPTALK)}
    with pytest.raises(NotFound):
        cf.delete_secret(PEPTALK, "NEW_ONE")


def test_stripe_webhook_secret_matches_credentials(sandbox: sandbox_api.SandboxInfo) -> None:
    from opsbook.sandbox import workers_model

    state = State(sandbox.state_dir)
    for profile, worker in (("MANUSCRIPT", MANUSCRIPT), ("PEPTALK", PEPTALK)):
        values = workers_model.secret_values(state, worker)
        assert (
            values["STRIPE_WEBHOOK_SECRET"]
            == sandbox.credentials[f"STRIPE_WEBHOOK_SECRET_{profile}"]
        )
        assert values["STRIPE_SECRET_KEY"] == sandbox.credentials["OPSBOOK_SANDBOX_STRIPE_KEY"]


# ---- KV -----------------------------------------------------------------------
def test_kv_namespaces(cf: Cloudflare, sandbox: sandbox_api.SandboxInfo) -> None:
    titles = {ns["title"] for ns in cf.kv_namespaces()}
    assert {"manuscript-sessions", "peptalk-sessions"} <= titles
    body = raw_get(sandbox, f"/accounts/{sandbox.account_id}/storage/kv/namespaces", per_page=1)
    assert body["result_info"]["total_count"] == len(titles) and body["result_info"]["count"] == 1


def test_kv_keys_cursor_paging(cf: Cloudflare, sandbox: sandbox_api.SandboxInfo) -> None:
    ns = cf.kv_namespace_id("manuscript-sessions")
    first = raw_get(
        sandbox, f"/accounts/{sandbox.account_id}/storage/kv/namespaces/{ns}/keys", limit=10
    )
    assert first["result_info"]["count"] == 10 and first["result_info"]["cursor"]
    with State(sandbox.state_dir).read() as db:
        stored = db.execute(
            "SELECT count(*) FROM kv_values WHERE namespace_id = ? AND key LIKE 'session:%'", (ns,)
        ).fetchone()[0]
    keys = list(cf.kv_keys(ns, prefix="session:", limit=10))
    assert stored >= 25 and len(keys) == stored and len({k["name"] for k in keys}) == stored
    assert all(k["expiration"] > time.time() for k in keys)
    assert list(cf.kv_keys(ns, prefix="nothing-has-this-prefix")) == []


def test_kv_values_roundtrip(fresh_cf: Cloudflare) -> None:
    cf = fresh_cf
    ns = "peptalk-sessions"
    cf.kv_put(ns, "dir/with space?", b"\x00binary\xff", ttl=120)
    assert cf.kv_get(ns, "dir/with space?") == b"\x00binary\xff"
    cf.kv_put(ns, "meta", "value", metadata={"user_id": 7})
    assert [k for k in cf.kv_keys(ns, prefix="meta")] == [
        {"name": "meta", "metadata": {"user_id": 7}}
    ]
    cf.kv_delete(ns, "meta")
    with pytest.raises(NotFound, match="key not found"):
        cf.kv_get(ns, "meta")
    with pytest.raises(ApiError, match="at least 60") as err:
        cf.kv_put(ns, "short", "x", ttl=30)
    assert err.value.status == 400


def test_kv_namespace_create_and_delete(
    fresh_cf: Cloudflare, fresh_sandbox: sandbox_api.SandboxInfo
) -> None:
    path = f"/accounts/{fresh_sandbox.account_id}/storage/kv/namespaces"
    made = fresh_cf.call("POST", path, json={"title": "scratch"})
    assert made["title"] == "scratch" and len(made["id"]) == 32
    with pytest.raises(ApiError, match="already exists"):
        fresh_cf.call("POST", path, json={"title": "scratch"})
    fresh_cf.call("DELETE", f"{path}/{made['id']}")
    assert "scratch" not in {n["title"] for n in fresh_cf.kv_namespaces()}


# ---- R2 -----------------------------------------------------------------------
def test_r2_buckets_and_metrics(cf: Cloudflare) -> None:
    buckets = {b["name"]: b for b in cf.r2_buckets()}
    assert {"manuscript-uploads", "peptalk-pdfs"} <= set(buckets)
    assert cf.r2_bucket("peptalk-pdfs")["storage_class"] == "Standard"
    with pytest.raises(NotFound):
        cf.r2_bucket("nope")
    metrics = cf.r2_metrics()
    standard = metrics["standard"]["published"]
    assert standard["objects"] > 1000 and standard["payloadSize"] > standard["objects"]
    assert set(metrics) == {"standard", "infrequentAccess"}


# ---- Queues -------------------------------------------------------------------
def test_queues_consumers_and_dlq(cf: Cloudflare) -> None:
    names = {q["queue_name"] for q in cf.queues()}
    assert names >= {
        "manuscript-analysis-queue",
        "manuscript-analysis-dlq",
        "peptalk-pipeline-queue",
        "peptalk-pipeline-dlq",
    }
    queue = cf.queue("manuscript-analysis-queue")
    assert cf.queue(queue["queue_id"])["queue_name"] == "manuscript-analysis-queue"
    assert queue["consumers_total_count"] == 1
    [consumer] = cf.queue_consumers("manuscript-analysis-queue")
    assert consumer["script_name"] == MANUSCRIPT
    assert consumer["dead_letter_queue"] == "manuscript-analysis-dlq"
    assert set(consumer["settings"]) >= {"batch_size", "max_retries", "max_wait_time_ms"}
    assert cf.queue_consumers("manuscript-analysis-dlq") == []
    metrics = cf.queue_metrics("manuscript-analysis-queue")
    assert set(metrics) == {"backlog_count", "backlog_bytes", "oldest_message_timestamp_ms"}
    with pytest.raises(NotFound):
        cf.queue("no-such-queue")


def test_consumer_update_dlq(fresh_cf: Cloudflare) -> None:
    [consumer] = fresh_cf.queue_consumers("peptalk-pipeline-queue")
    updated = fresh_cf.update_queue_consumer(
        "peptalk-pipeline-queue", consumer["consumer_id"],
        {"dead_letter_queue": "manuscript-analysis-dlq", "settings": {"max_retries": 5}},
    )  # fmt: skip
    assert updated["dead_letter_queue"] == "manuscript-analysis-dlq"
    assert updated["settings"]["max_retries"] == 5
    assert updated["settings"]["batch_size"] == consumer["settings"]["batch_size"]


def test_the_consumer_drains_the_backlog(
    fresh_cf: Cloudflare, fresh_sandbox: sandbox_api.SandboxInfo
) -> None:
    state = State(fresh_sandbox.state_dir)
    queues_model.enqueue_many(state, "peptalk-pipeline-queue", [{"n": i} for i in range(300)])
    assert fresh_cf.queue_metrics("peptalk-pipeline-queue")["backlog_count"] >= 200  # <= 50/tick
    deadline = time.monotonic() + 30
    while (
        fresh_cf.queue_metrics("peptalk-pipeline-queue")["backlog_count"]
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert fresh_cf.queue_metrics("peptalk-pipeline-queue")["backlog_count"] == 0


# ---- D1, GraphQL, tails (served by the D1 and apps modules) ---------------------------
def test_d1_list_query_raw(cf: Cloudflare) -> None:
    names = {db["name"] for db in cf.d1_databases()}
    assert {"manuscript-platform", "peptalk-production-db"} <= names
    info = cf.d1_database("peptalk-production-db")
    assert info["name"] == "peptalk-production-db" and info["uuid"] == cf.d1_id(
        "peptalk-production-db"
    )
    [result] = cf.d1_query("peptalk-production-db", "SELECT ? + 1 AS two", [1])
    assert result["results"] == [{"two": 2}] and result["success"] and "duration" in result["meta"]
    [raw] = cf.d1_raw("peptalk-production-db", "SELECT 1 AS a, 'x' AS b")
    assert raw["results"] == {"columns": ["a", "b"], "rows": [[1, "x"]]}
    with pytest.raises(ApiError, match="no such table"):
        cf.d1_query("peptalk-production-db", "SELECT * FROM no_such_table")
    with pytest.raises(NotFound):
        cf.d1_database("no-such-db")


def test_d1_export_import_time_travel(fresh_cf: Cloudflare) -> None:
    cf = fresh_cf
    db = "peptalk-production-db"
    bookmark = cf.d1_bookmark(db)
    cf.d1_import(
        db, "CREATE TABLE opsbook_probe (x INTEGER); INSERT INTO opsbook_probe VALUES (41), (42);"
    )
    assert cf.d1_query(db, "SELECT max(x) AS m FROM opsbook_probe")[0]["results"] == [{"m": 42}]
    dump = cf.d1_export(db, tables=["opsbook_probe"])
    assert "CREATE TABLE" in dump and "opsbook_probe" in dump and "42" in dump
    restored = cf.d1_restore(db, bookmark=bookmark)
    assert restored["bookmark"]
    with pytest.raises(ApiError, match="no such table"):
        cf.d1_query(db, "SELECT * FROM opsbook_probe")


def test_graphql_workers_invocations(cf: Cloudflare, sandbox: sandbox_api.SandboxInfo) -> None:
    now = time.time()
    data = cf.graphql(
        "query($acct:String!,$s:Time!,$e:Time!,$w:String!){viewer{accounts(filter:{accountTag:$acct}){"
        "workersInvocationsAdaptive(limit:1000,filter:{scriptName:$w,datetime_geq:$s,datetime_leq:$e}){"
        "sum{requests errors}}}}}",
        {
            "acct": sandbox.account_id, "w": MANUSCRIPT,
            "s": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
            "e": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        },
    )  # fmt: skip
    rows = data["viewer"]["accounts"][0]["workersInvocationsAdaptive"]
    assert sum(r["sum"]["requests"] for r in rows) > 0
    with pytest.raises(ApiError, match="GraphQL"):
        cf.graphql("query { noSuchField }")


def test_tail_create_and_delete(cf: Cloudflare) -> None:
    tail = cf.create_tail(MANUSCRIPT, [{"outcome": ["exception"]}])
    assert tail["id"] and tail["url"].startswith("ws://127.0.0.1:") and tail["expires_at"]
    cf.delete_tail(MANUSCRIPT, tail["id"])


def test_upload_version_then_deploy(fresh_cf: Cloudflare) -> None:
    cf = fresh_cf
    before = cf.versions(MANUSCRIPT)[0]
    made = cf.upload_version(
        MANUSCRIPT, "index.js", "export default { fetch() { return new Response('ok') } }",
        message="Fix request context", tag="v1.6.0",
    )  # fmt: skip
    assert made["number"] == before["number"] + 1
    assert made["annotations"]["workers/message"] == "Fix request context"
    names = {b["name"] for b in made["resources"]["bindings"]}
    assert {"EMAIL_FROM", "DB", "SESSIONS", "JWT_SECRET"} <= names  # kept from the current one
    assert cf.versions(MANUSCRIPT)[0]["id"] == made["id"]
    assert cf.deployments(MANUSCRIPT)[0]["versions"][0]["version_id"] != made["id"]  # not deployed
    cf.create_deployment(MANUSCRIPT, made["id"], "Deploy the fix")
    assert cf.deployments(MANUSCRIPT)[0]["versions"][0]["version_id"] == made["id"]


def test_upload_version_with_bindings(fresh_cf: Cloudflare) -> None:
    db_id = fresh_cf.d1_id("manuscript-platform")
    made = fresh_cf.upload_version(
        MANUSCRIPT, "worker.js", "export default {}",
        bindings=[{"type": "plain_text", "name": "EMAIL_FROM", "text": "ops@example.com"},
                  {"type": "d1", "name": "DB", "id": db_id}],
    )  # fmt: skip
    bindings = {b["name"]: b for b in made["resources"]["bindings"]}
    assert bindings["EMAIL_FROM"]["text"] == "ops@example.com"
    assert bindings["DB"]["id"] == db_id
    assert "EMAIL_FROM_NAME" not in bindings  # replaced, not merged
    assert "ANTHROPIC_API_KEY" in bindings  # secrets are kept
    with pytest.raises(ApiError, match="main_module"):
        fresh_cf.call(
            "POST", f"{fresh_cf.acct}/workers/scripts/{MANUSCRIPT}/versions",
            files=[("metadata", (None, '{"main_module": "missing.js"}', "application/json"))],
        )  # fmt: skip
