"""The D1 API over real sockets: list, get, query/raw meta, errors, export/import, time travel."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from opsbook import sandbox as sandbox_api

ACCOUNT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
LIST_QUERY = "SELECT * FROM manuscripts WHERE author_id = ? ORDER BY created_at DESC"


@pytest.fixture
def api(sandbox: sandbox_api.SandboxInfo) -> Iterator[httpx.Client]:
    token = sandbox.credentials["OPSBOOK_SANDBOX_TOKEN"]
    with httpx.Client(
        base_url=f"{sandbox.base_url}/client/v4/accounts/{ACCOUNT}/d1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ) as client:
        yield client


def _uuid(api: httpx.Client, name: str) -> str:
    dbs = api.get("/database", params={"name": name}).json()["result"]
    return str(dbs[0]["uuid"])


def _q(api: httpx.Client, uuid: str, sql: str, *params: Any, raw: bool = False) -> Any:
    r = api.post(
        f"/database/{uuid}/{'raw' if raw else 'query'}", json={"sql": sql, "params": list(params)}
    )
    assert r.status_code == 200, r.text
    return r.json()["result"]


def test_list_pages_and_get(api: httpx.Client) -> None:
    body = api.get("/database", params={"per_page": 10, "page": 1}).json()
    names = sorted(d["name"] for d in body["result"])
    assert names == ["manuscript-platform", "peptalk-production-db"]
    assert body["result_info"]["total_count"] == 2
    assert api.get("/database", params={"per_page": 10, "page": 2}).json()["result"] == []
    db = api.get(f"/database/{_uuid(api, 'peptalk-production-db')}").json()["result"]
    assert db["version"] == "production" and db["num_tables"] >= 5 and db["file_size"] > 100_000
    assert api.get("/database/00000000-0000-4000-8000-000000000000").status_code == 404


def test_seeded_data_matches_the_runbooks(api: httpx.Client) -> None:
    ms = _uuid(api, "manuscript-platform")
    pt = _uuid(api, "peptalk-production-db")
    assert _q(api, ms, "SELECT count(*) AS n FROM manuscripts")[0]["results"][0]["n"] >= 200_000
    idx = _q(
        api, ms, "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='manuscripts'"
    )
    names = {r["name"] for r in idx[0]["results"]}
    assert {"idx_manuscripts_user_id", "idx_manuscripts_created"} <= names
    row = _q(api, ms, "SELECT password_hash FROM users WHERE email = ?", "prodtest1@example.com")
    scheme, iters, *_ = row[0]["results"][0]["password_hash"].split("$")
    assert scheme == "pbkdf2_sha256" and int(iters) <= 100_000
    sub = _q(
        api,
        pt,
        "SELECT s.status, s.current_period_end, u.email FROM subscriptions s "
        "JOIN users u ON u.id = s.user_id WHERE u.email = ?",
        "prodtest1@example.com",
    )[0]["results"]
    assert sub and sub[0]["status"] == "active" and sub[0]["current_period_end"].endswith("Z")
    bpc = _q(api, pt, "SELECT name FROM peptides WHERE slug = 'bpc-157'")[0]["results"]
    assert bpc == [{"name": "BPC-157"}]
    migrations = _q(api, pt, "SELECT id, name, applied_at FROM d1_migrations")[0]["results"]
    assert len(migrations) >= 3


def test_query_meta_and_raw(api: httpx.Client) -> None:
    pt = _uuid(api, "peptalk-production-db")
    res = _q(
        api, pt, "SELECT slug FROM peptides ORDER BY id LIMIT 3; SELECT count(*) AS n FROM studies"
    )
    assert len(res) == 2 and res[1]["results"][0]["n"] >= 2_500
    meta = res[0]["meta"]
    for key in ("duration", "changes", "last_row_id", "changed_db", "rows_read", "rows_written",
                "size_after", "served_by_region", "served_by_primary", "timings"):  # fmt: skip
        assert key in meta
    assert meta["changed_db"] is False and meta["size_after"] > 0
    raw = _q(api, pt, "SELECT id, slug FROM peptides WHERE slug = ?", "bpc-157", raw=True)
    assert raw[0]["results"]["columns"] == ["id", "slug"]
    assert raw[0]["results"]["rows"][0][1] == "bpc-157"
    batch = api.post(
        f"/database/{pt}/query",
        json={"batch": [{"sql": "SELECT 1 AS a"}, {"sql": "SELECT 2 AS b"}]},
    )
    assert [r["results"] for r in batch.json()["result"]] == [[{"a": 1}], [{"b": 2}]]


def test_sql_error_is_a_d1_error_envelope(api: httpx.Client) -> None:
    ms = _uuid(api, "manuscript-platform")
    r = api.post(f"/database/{ms}/query", json={"sql": "SELECT * FROM no_such_thing"})
    assert r.status_code == 400
    body = r.json()
    assert body["success"] is False and body["result"] is None
    assert body["errors"][0] == {
        "code": 7500,
        "message": "no such table: no_such_thing: SQLITE_ERROR",
    }


def test_missing_index_is_a_full_scan_and_slower(
    fresh_sandbox: sandbox_api.SandboxInfo, api: httpx.Client
) -> None:
    ms = _uuid(api, "manuscript-platform")
    author = _q(api, ms, "SELECT author_id FROM manuscripts LIMIT 1")[0]["results"][0]["author_id"]
    plan = _q(api, ms, "EXPLAIN QUERY PLAN " + LIST_QUERY, author)[0]["results"]
    assert any("USING INDEX idx_manuscripts_user_id" in r["detail"] for r in plan)
    fast = _q(api, ms, LIST_QUERY, author)[0]["meta"]
    _q(api, ms, "DROP INDEX idx_manuscripts_user_id")
    plan = _q(api, ms, "EXPLAIN QUERY PLAN " + LIST_QUERY, author)[0]["results"]
    assert not any("idx_manuscripts_user_id" in r["detail"] for r in plan)
    slow = _q(api, ms, LIST_QUERY, author)[0]["meta"]
    assert slow["rows_read"] >= 200_000 > 100 * fast["rows_read"]
    assert slow["duration"] > 5 * fast["duration"]


def test_export_import_roundtrip(fresh_sandbox: sandbox_api.SandboxInfo, api: httpx.Client) -> None:
    pt = _uuid(api, "peptalk-production-db")
    r = api.post(
        f"/database/{pt}/export",
        json={"output_format": "polling", "dump_options": {"tables": ["peptides"]}},
    )
    result = r.json()["result"]
    assert result["status"] == "complete" and result["at_bookmark"]
    with httpx.Client(timeout=30) as plain:  # the signed URL needs no token
        dump = plain.get(result["result"]["signed_url"]).text
        assert (
            plain.get(
                result["result"]["signed_url"].replace("Signature=", "Signature=0")
            ).status_code
            == 403
        )
    lines = dump.splitlines()
    assert lines[0] == "PRAGMA defer_foreign_keys=TRUE;"
    assert lines[1].startswith("CREATE TABLE peptides")
    assert sum(1 for line in lines if line.startswith('INSERT INTO "peptides" ("id","slug"')) == 60
    # import: the dump of one table into a fresh table name
    sql = dump.replace("CREATE TABLE peptides", "CREATE TABLE peptides_copy").replace(
        'INSERT INTO "peptides"', 'INSERT INTO "peptides_copy"'
    )
    sql = "\n".join(line for line in sql.splitlines() if "sqlite_sequence" not in line) + "\n"
    etag = hashlib.md5(sql.encode()).hexdigest()
    init = api.post(f"/database/{pt}/import", json={"action": "init", "etag": etag}).json()[
        "result"
    ]
    with httpx.Client(timeout=30) as plain:
        put = plain.put(init["upload_url"], content=sql.encode())
    assert put.headers["etag"].strip('"') == etag
    ingest = api.post(
        f"/database/{pt}/import",
        json={"action": "ingest", "filename": init["filename"], "etag": etag},
    )
    done = ingest.json()["result"]
    poll = api.post(
        f"/database/{pt}/import", json={"action": "poll", "current_bookmark": done["at_bookmark"]}
    )
    final = poll.json()["result"]
    assert final["status"] == "complete" and final["result"]["num_queries"] == 62
    assert final["result"]["final_bookmark"]
    assert _q(api, pt, "SELECT count(*) AS n FROM peptides_copy")[0]["results"][0]["n"] == 60


def test_time_travel_restore(fresh_sandbox: sandbox_api.SandboxInfo, api: httpx.Client) -> None:
    pt = _uuid(api, "peptalk-production-db")
    before = api.get(f"/database/{pt}/time_travel/bookmark").json()["result"]["bookmark"]
    _q(api, pt, "DELETE FROM studies WHERE peptide_id = 1")
    assert (
        _q(api, pt, "SELECT count(*) AS n FROM studies WHERE peptide_id = 1")[0]["results"][0]["n"]
        == 0
    )
    r = api.post(f"/database/{pt}/time_travel/restore", params={"bookmark": before}).json()[
        "result"
    ]
    assert r["bookmark"] == before and r["previous_bookmark"] != before and r["message"]
    assert (
        _q(api, pt, "SELECT count(*) AS n FROM studies WHERE peptide_id = 1")[0]["results"][0]["n"]
        == 50
    )
    # a nightly backup from two days ago, by timestamp
    two_days = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2 * 86400))
    mark = api.get(f"/database/{pt}/time_travel/bookmark", params={"timestamp": two_days}).json()[
        "result"
    ]
    assert mark["bookmark"]
    restored = api.post(f"/database/{pt}/time_travel/restore", params={"timestamp": two_days})
    assert restored.status_code == 200 and restored.json()["result"]["bookmark"] == mark["bookmark"]
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 31 * 86400))
    too_old = api.get(f"/database/{pt}/time_travel/bookmark", params={"timestamp": old})
    assert too_old.status_code == 400 and too_old.json()["success"] is False
    bogus = api.post(
        f"/database/{pt}/time_travel/restore", params={"bookmark": "00000001-00000000-00000000-abc"}
    )
    assert bogus.status_code == 400


def test_every_endpoint_through_the_cloudflare_client(
    fresh_sandbox: sandbox_api.SandboxInfo,
) -> None:
    """The same endpoints through opsbook.clients.cloudflare's d1_* methods."""
    from opsbook.clients.cloudflare import Cloudflare
    from opsbook.errors import ApiError

    token = fresh_sandbox.credentials["OPSBOOK_SANDBOX_TOKEN"]
    with Cloudflare(f"{fresh_sandbox.base_url}/client/v4", ACCOUNT, token) as cf:
        assert {d["name"] for d in cf.d1_databases()} == {
            "manuscript-platform",
            "peptalk-production-db",
        }
        db = "peptalk-production-db"
        assert cf.d1_database(db)["name"] == db
        rows = cf.d1_query(db, "SELECT slug FROM peptides WHERE slug = ?", ["bpc-157"])
        assert rows[0]["results"] == [{"slug": "bpc-157"}] and rows[0]["meta"]["rows_read"] >= 1
        raw = cf.d1_raw(db, "SELECT count(*) AS n FROM studies")
        assert raw[0]["results"]["columns"] == ["n"]
        mark = cf.d1_bookmark(db)
        dump = cf.d1_export(db, tables=["pipeline_runs"], no_schema=True)
        assert dump.startswith('PRAGMA defer_foreign_keys=TRUE;\nINSERT INTO "pipeline_runs"')
        assert "CREATE TABLE" not in dump
        cf.d1_query(db, "DELETE FROM pipeline_runs WHERE id > 0")
        done = cf.d1_import(db, dump)
        assert done["num_queries"] >= 1_800 and done["final_bookmark"]
        n = cf.d1_query(db, "SELECT count(*) AS n FROM pipeline_runs")[0]["results"][0]["n"]
        assert n == done["num_queries"] - 3  # the PRAGMA and the two sqlite_sequence lines
        cf.d1_query(db, "DROP TABLE studies")
        restored = cf.d1_restore(db, bookmark=mark)
        assert restored["bookmark"] == mark
        assert cf.d1_query(db, "SELECT count(*) AS n FROM studies")[0]["results"][0]["n"] >= 2_500
        with pytest.raises(ApiError) as err:
            cf.d1_query(db, "SELECT * FROM nope")
        assert err.value.code == 7500


def test_official_cloudflare_sdk(sandbox: sandbox_api.SandboxInfo) -> None:
    """The `cloudflare` SDK's d1 resources parse the sandbox's answers unchanged."""
    cloudflare = pytest.importorskip("cloudflare")
    token = sandbox.credentials["OPSBOOK_SANDBOX_TOKEN"]
    with (
        httpx.Client(timeout=30) as http,
        cloudflare.Cloudflare(
            api_token=token,
            base_url=f"{sandbox.base_url}/client/v4",
            http_client=http,
            max_retries=0,
        ) as client,
    ):
        dbs = list(client.d1.database.list(account_id=ACCOUNT))
        assert {d.name for d in dbs} == {"manuscript-platform", "peptalk-production-db"}
        pt = next(d for d in dbs if d.name == "peptalk-production-db")
        got = client.d1.database.get(pt.uuid, account_id=ACCOUNT)
        assert got.num_tables and got.file_size
        page = client.d1.database.query(
            pt.uuid,
            account_id=ACCOUNT,
            sql="SELECT slug FROM peptides WHERE slug = ?",
            params=["tb-500"],
        )
        first = next(iter(page))
        assert first.success and first.results == [{"slug": "tb-500"}] and first.meta.rows_read >= 1
        raw = next(iter(client.d1.database.raw(pt.uuid, account_id=ACCOUNT, sql="SELECT 1 AS one")))
        assert raw.results.columns == ["one"] and raw.results.rows == [[1]]
        mark = client.d1.database.time_travel.get_bookmark(pt.uuid, account_id=ACCOUNT)
        assert mark.bookmark
