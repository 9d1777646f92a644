"""POST /client/v4/graphql: the Workers analytics subset, computed over the traffic table.

    viewer { accounts(filter: {accountTag}) {
      workersInvocationsAdaptive(limit, filter, orderBy) {
        dimensions { datetime datetimeMinute datetimeFiveMinutes datetimeFifteenMinutes
                     datetimeHour date scriptName scriptVersion status coloCode }
        sum { requests errors subrequests cpuTimeUs wallTime duration responseBodySize
              clientDisconnects }
        quantiles { (cpuTime|wallTime|duration|responseBodySize|requestDuration)
                    P(25|50|75|90|99|999) }
        max { cpuTime wallTime duration responseBodySize }   (min likewise)
        avg { sampleInterval }  count }
      r2StorageAdaptiveGroups(limit, filter: {bucketName}) { max { objectCount payloadSize
        metadataSize } dimensions { bucketName datetime } } } }

Filters: scriptName, scriptVersion, coloCode, status (value, _in, _neq), datetime and
date (_geq, _gt, _leq, _lt), AND/OR lists. Units: cpuTime/wallTime in µs, duration in
GB-s (128 MB), responseBodySize in bytes. `errors` counts invocations whose outcome is not
ok, the same events a tail shows with `outcome != "ok"`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import cf_r2
from .graphql_parser import Field, GraphQLError, bind_variables, parse, resolve
from .state import State, from_request

STATUS_SQL = (
    "CASE outcome WHEN 'ok' THEN 'success' WHEN 'exception' THEN 'scriptThrewException' "
    "WHEN 'exceededCpu' THEN 'exceededResources' WHEN 'exceededMemory' THEN 'exceededResources' "
    "WHEN 'canceled' THEN 'clientDisconnected' ELSE 'internalError' END"
)


def _bucket(seconds: int, fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    return f"strftime('{fmt}', (ts_ms / {seconds * 1000}) * {seconds}, 'unixepoch')"


DIMENSIONS = {
    "datetime": _bucket(1),
    "datetimeMinute": _bucket(60),
    "datetimeFiveMinutes": _bucket(300),
    "datetimeFifteenMinutes": _bucket(900),
    "datetimeHour": _bucket(3600),
    "date": _bucket(86400, "%Y-%m-%d"),
    "scriptName": "script",
    "scriptVersion": "coalesce(version_id, '')",
    "status": STATUS_SQL,
    "coloCode": "coalesce(colo, '')",
}
SUMS = {
    "requests": "count(*)",
    "errors": "sum(outcome != 'ok')",
    "subrequests": "sum(subrequests)",
    "cpuTimeUs": "cast(round(sum(cpu_ms) * 1000) AS INTEGER)",
    "wallTime": "cast(round(sum(wall_ms) * 1000) AS INTEGER)",
    "duration": "sum(wall_ms) / 1000.0 * 0.125",
    "responseBodySize": "sum(response_bytes)",
    "clientDisconnects": "sum(outcome = 'canceled')",
}
METRICS = {  # per-invocation values for max/min/quantiles
    "cpuTime": "cpu_ms * 1000",
    "wallTime": "wall_ms * 1000",
    "duration": "wall_ms / 1000.0 * 0.125",
    "responseBodySize": "response_bytes",
    "requestDuration": "wall_ms * 1000",
}
QUANTILES = {"P25": 0.25, "P50": 0.5, "P75": 0.75, "P90": 0.9, "P99": 0.99, "P999": 0.999}
FILTER_FIELDS = {
    "scriptName": "script",
    "scriptVersion": "version_id",
    "coloCode": "colo",
    "status": STATUS_SQL,
    "datetime": "ts_ms",
    "date": "ts_ms",
}
OPS = {"": "=", "_neq": "!=", "_gt": ">", "_geq": ">=", "_lt": "<", "_leq": "<="}
MAX_LIMIT = 10_000


def _time_ms(value: Any, field: str, end: bool) -> int:
    text = str(value)
    try:
        if field == "date":
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            return int(day.timestamp() * 1000) + (86_400_000 - 1 if end else 0)
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise GraphQLError(f"invalid {field} value {text!r}: expected RFC 3339") from None


def where(filt: Any, path: list[str]) -> tuple[str, list[Any]]:
    """SQL for a filter object (AND of its keys)."""
    if filt is None:
        return "1", []
    if not isinstance(filt, dict):
        raise GraphQLError("filter must be an object", path)
    clauses: list[str] = []
    args: list[Any] = []
    for key, value in filt.items():
        if key in ("AND", "OR"):
            parts = [where(v, path) for v in (value or [])]
            if parts:
                joiner = " AND " if key == "AND" else " OR "
                clauses.append("(" + joiner.join(f"({c})" for c, _ in parts) + ")")
                for _clause, part_args in parts:
                    args += part_args
            continue
        base, _, op = key.partition("_")
        suffix = f"_{op}" if op else ""
        if base not in FILTER_FIELDS or (suffix not in OPS and suffix not in ("_in", "_notin")):
            raise GraphQLError(f"unknown filter field {key!r}", path)
        column = FILTER_FIELDS[base]
        convert = (
            (lambda v, b=base, s=suffix: _time_ms(v, b, s in ("_leq", "_lt")))
            if base in ("datetime", "date")
            else (lambda v: v)
        )
        if suffix in ("_in", "_notin"):
            values = [convert(v) for v in (value or [])]
            marks = ", ".join("?" * len(values)) or "NULL"
            clauses.append(f"{column} {'IN' if suffix == '_in' else 'NOT IN'} ({marks})")
            args += values
        else:
            clauses.append(f"{column} {OPS[suffix]} ?")
            args.append(convert(value))
    return " AND ".join(clauses) or "1", args


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile (the value at rank ceil(q*n))."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def invocations(state: State, fld: Field, path: list[str]) -> list[dict[str, Any]]:
    limit = int(fld.args.get("limit") or 100)
    if limit < 1 or limit > MAX_LIMIT:
        raise GraphQLError(f"limit must be between 1 and {MAX_LIMIT}", path)
    cond, args = where(fld.args.get("filter"), path)
    groups = {sel.key: sel for sel in fld.selections}
    dims: list[Field] = []
    for sel in fld.selections:
        if sel.name not in (
            "dimensions",
            "sum",
            "quantiles",
            "max",
            "min",
            "avg",
            "count",
            "__typename",
        ):
            raise GraphQLError(
                f'Cannot query field "{sel.name}" on type "WorkersInvocationsAdaptive".',
                [*path, sel.key],
            )
        if sel.name == "dimensions":
            for d in sel.selections:
                if d.name not in DIMENSIONS:
                    raise GraphQLError(f"unknown dimension {d.name!r}", [*path, sel.key, d.key])
                dims.append(d)
    key_sql = [DIMENSIONS[d.name] for d in dims]
    select = [
        *(f"{k} AS k{i}" for i, k in enumerate(key_sql)),
        *(f"{v} AS s_{n}" for n, v in SUMS.items()),
    ]
    select += [f"max({v}) AS max_{n}" for n, v in METRICS.items()] + [
        f"min({v}) AS min_{n}" for n, v in METRICS.items()
    ]
    group_by = f" GROUP BY {', '.join(f'k{i}' for i in range(len(key_sql)))}" if key_sql else ""
    with state.read() as db:
        rows = db.execute(
            f"SELECT {', '.join(select)} FROM traffic WHERE {cond}{group_by}", args
        ).fetchall()
        need_q = any(g.name == "quantiles" for g in groups.values())
        values: dict[tuple[Any, ...], dict[str, list[float]]] = {}
        if need_q:
            cols = ", ".join([*(f"{k}" for k in key_sql), *(METRICS[m] for m in METRICS)])
            for r in db.execute(f"SELECT {cols} FROM traffic WHERE {cond}", args):
                key = tuple(r[: len(key_sql)])
                bucket = values.setdefault(key, {m: [] for m in METRICS})
                for i, m in enumerate(METRICS):
                    bucket[m].append(float(r[len(key_sql) + i]))
            for bucket in values.values():
                for series in bucket.values():
                    series.sort()
    out: list[dict[str, Any]] = []
    for r in rows:
        if r["s_requests"] == 0:
            continue
        key = tuple(r[f"k{i}"] for i in range(len(key_sql)))
        item: dict[str, Any] = {}
        for gkey, g in groups.items():
            item[gkey] = _group(g, r, dims, key, values.get(key, {}), [*path, gkey])
        out.append(item)
    out = _order(out, fld.args.get("orderBy") or [], groups, path)
    return out[:limit]


def _group(
    g: Field,
    r: Any,
    dims: list[Field],
    key: tuple[Any, ...],
    vals: dict[str, list[float]],
    path: list[str],
) -> Any:
    if g.name == "count":
        return r["s_requests"]
    if g.name == "__typename":
        return "AccountWorkersInvocationsAdaptive"
    obj: dict[str, Any] = {}
    for f in g.selections:
        if g.name == "dimensions":
            obj[f.key] = key[[d.key for d in dims].index(f.key)]
        elif g.name == "sum" and f.name in SUMS:
            obj[f.key] = r[f"s_{f.name}"] or 0
        elif g.name in ("max", "min") and f.name in METRICS:
            obj[f.key] = r[f"{g.name}_{f.name}"]
        elif g.name == "avg" and f.name == "sampleInterval":
            obj[f.key] = 1
        elif g.name == "quantiles" and (m := _quantile_field(f.name)):
            obj[f.key] = quantile(vals.get(m[0], []), m[1])
        else:
            raise GraphQLError(f'Cannot query field "{f.name}" on "{g.name}".', [*path, f.key])
    return obj


def _quantile_field(name: str) -> tuple[str, float] | None:
    for metric in METRICS:
        rest = name[len(metric) :] if name.startswith(metric) else ""
        if rest in QUANTILES:
            return metric, QUANTILES[rest]
    return None


def _getter(field_path: str, names: dict[str, str]) -> Any:
    """A function reading the value `field_path` (e.g. sum_requests) from a result item."""
    head, _, tail = field_path.partition("_")
    if head in ("sum", "max", "min", "quantiles", "avg") and tail:
        return lambda it: (it.get(names.get(head, head)) or {}).get(tail)
    if field_path == "count":
        return lambda it: it.get(names.get("count", "count"))
    if field_path in DIMENSIONS:
        return lambda it: (it.get(names.get("dimensions", "dimensions")) or {}).get(field_path)
    return None


def _sort_key(getter: Any) -> Any:
    return lambda it: (getter(it) is None, getter(it) or 0)


def _order(
    items: list[dict[str, Any]], order: Any, groups: dict[str, Field], path: list[str]
) -> list[dict[str, Any]]:
    order = order if isinstance(order, list) else [order]
    names = {g.name: k for k, g in groups.items()}
    for spec in reversed(order):
        text = str(spec)
        field_path, _, direction = text.rpartition("_")
        getter = _getter(field_path, names) if direction in ("ASC", "DESC") else None
        if getter is None:
            raise GraphQLError(f"invalid orderBy {text!r}", path)
        items.sort(key=_sort_key(getter), reverse=direction == "DESC")
    return items


def r2_groups(state: State, fld: Field) -> list[dict[str, Any]]:
    filt = fld.args.get("filter") or {}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = []
    for u in cf_r2.usage(state):
        if filt.get("bucketName") and filt["bucketName"] != u["name"]:
            continue
        values = {
            "objectCount": u["objects"],
            "payloadSize": u["payload_size"],
            "metadataSize": u["metadata_size"],
            "uploadCount": u["objects"],
        }
        item: dict[str, Any] = {}
        for g in fld.selections:
            if g.name == "dimensions":
                item[g.key] = {
                    f.key: (u["name"] if f.name == "bucketName" else now) for f in g.selections
                }
            elif g.name in ("max", "sum"):
                item[g.key] = {f.key: values.get(f.name, 0) for f in g.selections}
        out.append(item)
    return out[: int(fld.args.get("limit") or 100)]


def execute(
    state: State, query: str, variables: dict[str, Any] | None, operation: str | None
) -> dict[str, Any]:
    op = parse(query, operation)
    if op.kind != "query":
        raise GraphQLError(f"{op.kind} operations are not supported")
    bound = bind_variables(op, variables)
    data: dict[str, Any] = {}
    for top in op.selections:
        if top.name != "viewer":
            raise GraphQLError(f'Cannot query field "{top.name}" on type "Query".', [top.key])
        viewer: dict[str, Any] = {}
        for acc in top.selections:
            if acc.name != "accounts":
                raise GraphQLError(
                    f'Cannot query field "{acc.name}" on type "viewer".', [top.key, acc.key]
                )
            tag = (resolve(acc.args.get("filter"), bound) or {}).get("accountTag")
            if tag is not None and tag != state.account_id:
                raise GraphQLError("not authorized for that account", [top.key, acc.key])
            account: dict[str, Any] = {}
            for ds in acc.selections:
                ds.args = {k: resolve(v, bound) for k, v in ds.args.items()}
                where_path = [top.key, acc.key, ds.key]
                if ds.name == "workersInvocationsAdaptive":
                    account[ds.key] = invocations(state, ds, where_path)
                elif ds.name == "r2StorageAdaptiveGroups":
                    account[ds.key] = r2_groups(state, ds)
                else:
                    raise GraphQLError(
                        f'Cannot query field "{ds.name}" on type "account".', where_path
                    )
            viewer[acc.key] = [account]
        data[top.key] = viewer
    return data


async def graphql(request: Request) -> Response:
    state = from_request(request)
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse(
            {"data": None, "errors": [{"message": "request body is not valid JSON"}]},
            status_code=400,
        )
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return JSONResponse(
            {"data": None, "errors": [{"message": "a query string is required"}]}, status_code=400
        )
    try:
        data = execute(state, body["query"], body.get("variables"), body.get("operationName"))
    except GraphQLError as exc:
        return JSONResponse({"data": None, "errors": [exc.as_dict()]})
    return JSONResponse({"data": data, "errors": None})


async def not_allowed(request: Request) -> Response:
    return JSONResponse(
        {"data": None, "errors": [{"message": "GET is not supported; POST the query"}]},
        status_code=405,
    )


routes: list[BaseRoute] = [
    Route("/", graphql, methods=["POST"]),
    Route("/", not_allowed, methods=["GET"]),
]
