"""GraphQL analytics: parsing, errors, and aggregates that agree with the exported events."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from opsbook import sandbox as sandbox_api
from opsbook.clients.logs import read_events
from opsbook.sandbox import traffic
from opsbook.sandbox.graphql_parser import GraphQLError, bind_variables, parse, resolve
from opsbook.sandbox.state import State

SCRIPT = "manuscript-upload-api"
QUERY = """
query Errors($acct: String!, $s: Time!, $e: Time!, $w: String!) {
  viewer { accounts(filter: {accountTag: $acct}) {
    byStatus: workersInvocationsAdaptive(limit: 100, filter: {scriptName: $w, datetime_geq: $s, datetime_leq: $e},
                                         orderBy: [sum_requests_DESC]) {
      dimensions { status }
      sum { requests errors subrequests responseBodySize }
      quantiles { wallTimeP50 cpuTimeP99 }
      max { wallTime }
    }
    total: workersInvocationsAdaptive(limit: 1, filter: {scriptName: $w, datetime_geq: $s, datetime_leq: $e}) {
      sum { requests errors }
    }
  } }
}
"""


def post(
    info: sandbox_api.SandboxInfo, query: str, variables: dict[str, object] | None = None
) -> dict[str, object]:
    r = httpx.post(
        f"{info.base_url}/client/v4/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {info.credentials['OPSBOOK_SANDBOX_TOKEN']}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_parser_subset() -> None:
    op = parse(
        'query Q($a: Int = 3, $b: [String!]!) { x: f(n: $a, l: $b, e: ENUM_X, o: {k: "v\\n"}) { ...F } } fragment F on T { g h }'
    )
    bound = bind_variables(op, {"b": ["s"]})
    field = op.selections[0]
    assert field.key == "x" and [s.name for s in field.selections] == ["g", "h"]
    assert resolve(field.args, bound) == {"n": 3, "l": ["s"], "e": "ENUM_X", "o": {"k": "v\n"}}
    for bad in ("{ a ", "query { a(b: ) }", "{ ...Missing }", "{ a } { b }"):
        with pytest.raises(GraphQLError):
            parse(bad)
    with pytest.raises(GraphQLError, match="required type"):
        bind_variables(parse("query($x: String!) { a }"), {})


def test_errors_are_graphql_errors(sandbox: sandbox_api.SandboxInfo) -> None:
    out = post(sandbox, "{ viewer { accounts { nope { x } } } }")
    assert out["data"] is None and "nope" in out["errors"][0]["message"]  # type: ignore[index]
    assert post(sandbox, "{ viewer {")["errors"][0]["message"].startswith("Syntax Error")  # type: ignore[index]
    bad_dim = (
        "{ viewer { accounts { workersInvocationsAdaptive(limit: 1) { dimensions { colour } } } } }"
    )
    err = post(sandbox, bad_dim)["errors"][0]  # type: ignore[index]
    assert "colour" in err["message"] and err["path"][-1] == "colour"


def test_aggregates_agree_with_the_export(sandbox: sandbox_api.SandboxInfo, tmp_path: Path) -> None:
    state = State(sandbox.state_dir)
    end = int(time.time() * 1000) - 120_000  # a closed window: the ticker only adds later rows
    start = end - 6 * 3600_000
    variables = {"acct": sandbox.account_id, "s": iso(start), "e": iso(end), "w": SCRIPT}
    out = post(sandbox, QUERY, variables)
    assert out["errors"] is None
    account = out["data"]["viewer"]["accounts"][0]  # type: ignore[index]
    total = account["total"][0]["sum"]
    path = tmp_path / "window.json"
    count = traffic.export(state, SCRIPT, path, "json", start, end)
    df = read_events(path)
    assert count == len(df) == total["requests"] > 100
    assert total["errors"] == int((df["outcome"] != "ok").sum())
    by_status = {g["dimensions"]["status"]: g for g in account["byStatus"]}
    assert by_status["success"]["sum"]["requests"] == int((df["outcome"] == "ok").sum())
    assert sum(g["sum"]["requests"] for g in account["byStatus"]) == total["requests"]
    ok = df[df["outcome"] == "ok"]["wall_ms"]
    assert by_status["success"]["max"]["wallTime"] == pytest.approx(
        ok.max() * 1000, rel=0.01, abs=1000
    )
    counts = [g["sum"]["requests"] for g in account["byStatus"]]
    assert counts == sorted(counts, reverse=True)


def test_time_series_dimensions(sandbox: sandbox_api.SandboxInfo) -> None:
    end = int(time.time() * 1000) - 120_000
    q = """query($w: String!, $s: Time!, $e: Time!) { viewer { accounts { workersInvocationsAdaptive(
      limit: 1000, filter: {scriptName: $w, datetime_geq: $s, datetime_leq: $e, status_in: ["success"]},
      orderBy: [datetimeHour_ASC]) { dimensions { datetimeHour } sum { requests } } } } }"""
    out = post(sandbox, q, {"w": "peptalk-api", "s": iso(end - 24 * 3600_000), "e": iso(end)})
    rows = out["data"]["viewer"]["accounts"][0]["workersInvocationsAdaptive"]  # type: ignore[index]
    hours = [r["dimensions"]["datetimeHour"] for r in rows]
    assert hours == sorted(hours) and len(hours) >= 20 and all(h.endswith(":00:00Z") for h in hours)
    volumes = [r["sum"]["requests"] for r in rows]
    assert max(volumes) > 3 * min(volumes)  # diurnal


def test_r2_storage(sandbox: sandbox_api.SandboxInfo) -> None:
    q = '{ viewer { accounts { r2StorageAdaptiveGroups(limit: 1, filter: {bucketName: "peptalk-pdfs"}) { max { objectCount payloadSize } } } } }'
    out = post(sandbox, q)
    group = out["data"]["viewer"]["accounts"][0]["r2StorageAdaptiveGroups"][0]  # type: ignore[index]
    assert group["max"]["objectCount"] > 0 and group["max"]["payloadSize"] > 0
