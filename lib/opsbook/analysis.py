"""Error rates, percentiles, change points and slow queries over logs and analytics.

Pure data in, data out (pandas DataFrames and dataclasses); no notebook knowledge.
Input frames have the columns of `clients.logs.COLUMNS` (ts, method, path, route,
status, outcome, wall_ms, ...); only the columns a function uses must be present.

Percentiles are linear-interpolated (pandas `quantile`, DuckDB `quantile_cont`).
An error is a 5xx response or an invocation whose outcome is not `ok`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

# RE2-compatible (pyarrow): a segment is an id when it is a UUID, a number, 12+ hex chars,
# or a 20+ char token. `(/|$)` keeps the next slash; the pass runs twice for /id/id.
# The same rule segment by segment: ID_SEGMENT is matched against whole segments.
_ID_ALTERNATIVES = (
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9]+|[0-9a-fA-F]{12,}|[A-Za-z0-9_\-]{20,}"
)
ID_PATTERN = rf"/(?:{_ID_ALTERNATIVES})(/|$)"
ID_SEGMENT = rf"^(?:{_ID_ALTERNATIVES})$"
SLUG_MIN_DISTINCT = 8  # a position with this many distinct values under one parent is a slug
_ID_RE = re.compile(ID_PATTERN)


def collapse_ids_text(path: str) -> str:
    """One path with its id segments replaced by `:id` (ID_PATTERN, twice)."""
    for _ in range(2):
        path = _ID_RE.sub(r"/:id\1", path)
    return path


def _collapse_slugs(unique_paths: Iterable[str]) -> dict[str, str]:
    """Segments with many distinct values under the same parent become `:slug`."""
    split = {p: p.split("/") for p in unique_paths}
    children: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for segs in split.values():
        for i in range(1, len(segs)):
            children[tuple(segs[:i])].add(segs[i])
    mapping: dict[str, str] = {}
    for path, segs in split.items():
        new = list(segs)
        for i in range(1, len(segs)):
            seg = segs[i]
            if seg.startswith(":") or not seg:
                continue
            if len(children[tuple(segs[:i])]) >= SLUG_MIN_DISTINCT:
                new[i] = ":slug"
        mapping[path] = "/".join(new)
    return mapping


def collapse_segments(strings: Any, first: int = 1) -> Any:
    """pyarrow strings with each `/`-separated segment at position >= `first` that is an id
    replaced by `:id`; nulls become "". Segment 0 is what precedes the first slash, so
    `first=1` is ID_PATTERN over a path and `first=3` the path part of `scheme://host/...`.

    Vectorised without a regex over every row: the segments are dictionary-encoded and only
    the distinct ones are matched against ID_SEGMENT; rows are re-joined only when an id
    was found."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    strings = pc.fill_null(strings, "").cast(pa.string())
    if len(strings) == 0:
        return strings
    segments = pc.split_pattern(strings, "/")
    offsets = segments.offsets.to_numpy().astype(np.int64)
    values = segments.values
    if offsets[0] != 0 or offsets[-1] != len(values):
        values = values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        offsets = offsets - offsets[0]
    encoded = pc.dictionary_encode(values)
    is_id = pc.match_substring_regex(encoded.dictionary, ID_SEGMENT)
    is_id_np = is_id.to_numpy(zero_copy_only=False)
    if not is_id_np.any():
        return strings
    codes = encoded.indices.to_numpy()
    flag = is_id_np[codes]
    starts, ends = offsets[:-1], offsets[1:]
    for k in range(first):  # the leading segments (scheme, host) are never ids
        at = starts + k
        flag[at[at < ends]] = False
    if not flag.any():
        return strings
    dictionary = pa.concat_arrays([encoded.dictionary, pa.array([":id"], pa.string())])
    taken = pc.take(dictionary, np.where(flag, len(encoded.dictionary), codes))
    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int64()).cast(pa.int32()), taken)
    return pc.binary_join(lists, "/")


def collapse_ids_arrow(paths: Any) -> Any:
    """pyarrow strings with their id segments replaced by `:id` (the vectorised first step)."""
    return collapse_segments(paths, first=1)


def collapse_paths_arrow(paths: Any, ids_done: bool = False) -> Any:
    """pyarrow strings -> a dictionary array of collapsed paths (ids, then slugs)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = paths if ids_done else collapse_ids_arrow(paths)
    encoded = pc.dictionary_encode(arr)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.unify_dictionaries()
        chunks = encoded.chunks
    else:
        chunks = [encoded]
    if not chunks:
        return pa.array([], pa.dictionary(pa.int32(), pa.string()))
    dictionary = chunks[0].dictionary.to_pylist()
    mapping = _collapse_slugs(dictionary)
    new_dict = pa.array([mapping[d] for d in dictionary], pa.string())
    out = [pa.DictionaryArray.from_arrays(c.indices, new_dict) for c in chunks]
    return pa.chunked_array(out, type=out[0].type)


def route_categorical(routes: Sequence[Any]) -> pd.Categorical:
    """Dictionary-encoded pyarrow chunks of "METHOD /path" (ids already collapsed) -> a
    Categorical with high-cardinality slugs collapsed too; strings exist only for the
    distinct routes, rows are integer codes throughout."""
    import numpy as np
    import pyarrow as pa

    kind = pa.dictionary(pa.int32(), pa.string())
    chunked = pa.chunked_array([c.cast(kind) for c in routes], kind).unify_dictionaries()
    if chunked.num_chunks == 0:
        return pd.Categorical([], categories=pd.Index([], dtype="str"))
    names = [str(n) for n in chunked.chunks[0].dictionary.to_pylist()]
    parts = [n.split(" ", 1) if " " in n else [n, ""] for n in names]
    mapping = _collapse_slugs({p for _, p in parts})
    final = np.array([f"{m} {mapping[p]}" for m, p in parts], dtype=object)
    cats, inverse = np.unique(final, return_inverse=True) if len(final) else (final, final)
    codes = np.concatenate(
        [c.indices.to_numpy(zero_copy_only=False) for c in chunked.chunks]
    ).astype(np.int64)
    return pd.Categorical.from_codes(
        np.asarray(inverse, dtype=np.int64)[codes], categories=[str(c) for c in cats]
    )


def collapse_paths(paths: pd.Series) -> pd.Series:
    """/manuscripts/123 -> /manuscripts/:id, uuids and hex ids too, high-cardinality slugs."""
    import pyarrow as pa

    arr = pa.array(paths.astype("object").where(paths.notna(), None).tolist(), pa.string())
    collapsed = collapse_paths_arrow(arr).cast(pa.string())
    return pd.Series(collapsed.to_pylist(), index=paths.index, dtype="str")


def collapse_path(path: str) -> str:
    return str(collapse_paths(pd.Series([path])).iloc[0])


def route_column(method: pd.Series, path: pd.Series) -> pd.Series:
    """'METHOD /collapsed/path' per row (queue and cron events keep their name)."""
    return method.fillna("").astype("str") + " " + collapse_paths(path)


def _errors(df: pd.DataFrame) -> pd.Series:
    import numpy as np

    err = np.zeros(len(df), dtype=bool)
    if "status" in df:
        err |= df["status"].to_numpy(dtype="float64", na_value=0.0) >= 500
    if "outcome" in df:
        outcome = df["outcome"]
        err |= ((outcome != "ok") & outcome.notna()).to_numpy(dtype=bool)
    return pd.Series(err, index=df.index)


def _routes(df: pd.DataFrame) -> pd.Series:
    if "route" in df:
        return df["route"]
    return route_column(df["method"], df["path"])


def _quantiles(values: Any, qs: Sequence[float]) -> list[float]:
    """Linear-interpolated quantiles of a float array, NaN skipped (pandas' `quantile`)."""
    import numpy as np

    values = values[~np.isnan(values)]
    if len(values) == 0:
        return [float("nan")] * len(qs)
    return [float(v) for v in np.quantile(values, list(qs))]


def endpoint_stats(df: pd.DataFrame, value: str = "wall_ms") -> pd.DataFrame:
    """Per route: requests, errors (5xx or not ok), error_rate, share, p50/p95/p99 of `value`."""
    import numpy as np

    routes = _routes(df).reset_index(drop=True)
    if not isinstance(routes.dtype, pd.CategoricalDtype):
        routes = routes.astype("category")  # group on codes: no per-row strings
    codes = routes.cat.codes.to_numpy().astype(np.int64)
    values = df[value].to_numpy(dtype="float64", na_value=np.nan)
    err = _errors(df).to_numpy()
    keep = codes >= 0  # a missing route is no group
    if not keep.all():
        codes, values, err = codes[keep], values[keep], err[keep]
    k = len(routes.cat.categories)
    requests = np.bincount(codes, minlength=k)
    errors = np.bincount(codes, weights=err, minlength=k).astype(np.int64)
    # one stable sort on the (few) codes, then each group's quantiles by selection
    ordered = values[np.argsort(codes, kind="stable")]
    bounds = np.concatenate([[0], np.cumsum(requests)])
    seen = np.flatnonzero(requests)
    q = np.array(
        [_quantiles(ordered[bounds[g] : bounds[g + 1]], (0.5, 0.95, 0.99)) for g in seen],
        dtype="float64",
    ).reshape(len(seen), 3)
    out = pd.DataFrame(
        {
            "route": np.asarray(routes.cat.categories, dtype=object)[seen],
            "requests": requests[seen].astype(np.int64),
            "errors": errors[seen],
        }
    )
    out["error_rate"] = out["errors"] / out["requests"]
    out["share"] = out["requests"] / out["requests"].sum()
    out["p50_ms"], out["p95_ms"], out["p99_ms"] = q[:, 0], q[:, 1], q[:, 2]
    out["route"] = out["route"].astype("str")
    out = out.sort_values(["requests", "route"], ascending=[False, True])
    return out.reset_index(drop=True)


def percentiles(
    df: pd.DataFrame, value: str = "wall_ms", qs: Sequence[float] = (0.5, 0.95, 0.99)
) -> dict[float, float]:
    """Linear-interpolated percentiles of `value` (missing values skipped), one selection pass."""
    import numpy as np

    return dict(
        zip(qs, _quantiles(df[value].to_numpy(dtype="float64", na_value=np.nan), qs), strict=True)
    )


def error_series(df: pd.DataFrame, freq: str = "1min") -> pd.DataFrame:
    """Per time bucket: requests, errors, error_rate (index: bucket start, UTC)."""
    import numpy as np

    step = int(pd.Timedelta(freq).total_seconds() * 1000)
    ts = df["ts"]
    if ts.dt.tz is None:
        ts = ts.dt.tz_localize("UTC")
    ms = ts.dt.tz_convert("UTC").astype("datetime64[ms, UTC]").astype("int64").to_numpy()
    if len(ms) == 0:
        empty = pd.DataFrame(
            {"requests": [], "errors": [], "error_rate": []},
            index=pd.DatetimeIndex([], tz="UTC", name="ts"),
        )
        return empty.astype({"requests": "int64", "errors": "int64"})
    first = ms.min() // step
    idx = ms // step - first
    requests = np.bincount(idx)
    errors = np.bincount(idx, weights=_errors(df).to_numpy(dtype="float64")).astype("int64")
    index = pd.to_datetime((np.arange(len(requests)) + first) * step, unit="ms", utc=True)
    out = pd.DataFrame(
        {"requests": requests, "errors": errors}, index=pd.DatetimeIndex(index, name="ts")
    )
    out["error_rate"] = np.where(requests > 0, errors / np.maximum(requests, 1), 0.0)
    return out


@dataclass(frozen=True)
class Sustained:
    start: pd.Timestamp
    end: pd.Timestamp
    minutes: float
    peak: float
    mean: float


def sustained(
    series: pd.Series | pd.DataFrame, threshold: float, minutes: float
) -> Sustained | None:
    """The longest run where the rate stays above `threshold` for at least `minutes`.

    A bucket without data (no requests in an error series, NaN in a latency series) says
    nothing either way: it neither ends a run nor starts one, so a quiet night's empty
    minutes do not cut an outage in pieces. A run starts and ends on buckets above the
    threshold."""
    rate = series["error_rate"] if isinstance(series, pd.DataFrame) else series
    if rate.empty:
        return None
    if isinstance(series, pd.DataFrame) and "requests" in series:
        known = (series["requests"] > 0).to_numpy()
    else:
        known = rate.notna().to_numpy()
    step = (rate.index[1] - rate.index[0]) if len(rate) > 1 else pd.Timedelta(minutes=1)
    above = ((rate > threshold).to_numpy()) & known
    best: tuple[int, int] | None = None
    start: int | None = None
    last = -1
    for i in range(len(above) + 1):
        if i < len(above) and above[i]:
            start = i if start is None else start
            last = i
        elif i == len(above) or known[i]:  # a bucket below the threshold (or the end)
            if start is not None and (best is None or last + 1 - start > best[1] - best[0]):
                best = (start, last + 1)
            start = None
    if best is None:
        return None
    span = rate.iloc[best[0] : best[1]]
    length = (best[1] - best[0]) * step / pd.Timedelta(minutes=1)
    if length < minutes:
        return None
    hot = span[above[best[0] : best[1]]]  # the run's minutes above the threshold
    return Sustained(
        span.index[0], span.index[-1] + step, float(length), float(hot.max()), float(hot.mean())
    )


@dataclass(frozen=True)
class ChangePoint:
    at: pd.Timestamp
    before: float  # mean rate before
    after: float  # mean rate after
    deployment: dict[str, Any] | None  # the deployment at or just before the onset
    lag_minutes: float | None  # onset minus deployment time


def change_points(
    series: pd.Series | pd.DataFrame,
    deployments: Sequence[dict[str, Any]] = (),
    *,
    min_jump: float = 0.02,
    window: int = 10,
    match_minutes: float = 30,
) -> list[ChangePoint]:
    """Onsets where the mean rate over `window` buckets jumps by `min_jump` or more,
    each lined up with the latest deployment (`created_on`) up to `match_minutes` before."""
    rate = series["error_rate"] if isinstance(series, pd.DataFrame) else series
    if len(rate) < 2 * window:
        window = max(1, len(rate) // 2)
    if len(rate) < 2:
        return []
    values = rate.to_numpy(dtype=float)
    scores = []
    for i in range(window, len(values) - window + 1):
        before, after = values[i - window : i].mean(), values[i : i + window].mean()
        scores.append((after - before, i, before, after))
    deps = sorted(
        (
            (
                pd.Timestamp(d["created_on"]).tz_convert("UTC")
                if pd.Timestamp(d["created_on"]).tzinfo
                else pd.Timestamp(d["created_on"]).tz_localize("UTC"),
                d,
            )
            for d in deployments
        ),
        key=lambda x: x[0],
    )
    out: list[ChangePoint] = []
    taken: list[int] = []
    for jump, i, before, after in sorted(scores, reverse=True):
        if jump < min_jump or any(abs(i - j) < window for j in taken):
            continue
        taken.append(i)
        step = rate.index[1] - rate.index[0]
        # the onset: the split that maximises the jump (a noisy bucket before it is not it)
        onset = i
        at = rate.index[onset]
        match = [
            (t, d) for t, d in deps if -step <= at - t <= pd.Timedelta(minutes=match_minutes) + step
        ]
        dep = match[-1] if match else None
        lag = (at - dep[0]) / pd.Timedelta(minutes=1) if dep else None
        out.append(ChangePoint(at, float(before), float(after), dep[1] if dep else None, lag))
    return sorted(out, key=lambda c: c.at)


def slow_queries(results: Iterable[dict[str, Any]], threshold_ms: float = 100.0) -> pd.DataFrame:
    """D1 query results (`{sql?, meta:{duration, rows_read, ...}}`) slower than `threshold_ms`."""
    rows = []
    for r in results:
        meta = r.get("meta") or {}
        duration = meta.get("duration", (meta.get("timings") or {}).get("sql_duration_ms", 0.0))
        rows.append(
            {
                "sql": r.get("sql", ""),
                "duration_ms": float(duration or 0.0),
                "rows_read": int(meta.get("rows_read", 0) or 0),
                "rows_written": int(meta.get("rows_written", 0) or 0),
            }
        )
    df = pd.DataFrame(rows, columns=["sql", "duration_ms", "rows_read", "rows_written"])
    return (
        df[df["duration_ms"] >= threshold_ms]
        .sort_values("duration_ms", ascending=False)
        .reset_index(drop=True)
    )
