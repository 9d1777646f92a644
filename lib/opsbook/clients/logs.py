"""Worker logs to a pandas DataFrame: a live tail, a `wrangler tail --format json` file, NDJSON.

Every source gives the same columns (COLUMNS):

    ts (datetime64[ms, UTC]), script, version, method, url, path, route ("GET /x/:id"),
    status (Int64), outcome, wall_ms, cpu_ms (float), exceptions (text), logs (text),
    tokens_used (Int64, summed from `tokens_used` log lines), client_ip, country, colo

- `tail(...)` opens a tail session (POST .../tails), reads the websocket (subprotocol
  trace-v1) for N seconds, and deletes the session.
- `read_events(path)` reads a file: wrangler's json format (concatenated, 4-space indented
  JSON documents, not NDJSON) or NDJSON. Asked only for scalar columns, it goes through
  DuckDB's JSON reader with explicit types for only the fields those columns need (never
  inference: log messages mix strings, numbers, objects and arrays, and lists are empty in
  early rows), in Arrow batches reduced as they arrive; routes come out as codes, with
  strings only for the distinct routes. The text columns (logs, exceptions, tokens_used)
  are built in Python from a stream parse (JSONDecoder.raw_decode).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = (
    "ts", "script", "version", "method", "url", "path", "route", "status", "outcome",
    "wall_ms", "cpu_ms", "exceptions", "logs", "tokens_used", "client_ip", "country", "colo",
)  # fmt: skip
_PYTHON_ONLY = {"exceptions", "logs", "tokens_used"}
_CHUNK = 1 << 20


# ---- one event -> one row --------------------------------------------------------------
def _text(part: Any) -> str:
    return part if isinstance(part, str) else json.dumps(part, separators=(",", ":"))


def log_text(logs: Iterable[dict[str, Any]]) -> str:
    """Log lines as `wrangler tail --format pretty` shows them: `(level) a b {...}` per line."""
    return "\n".join(
        f"({log.get('level', 'log')}) " + " ".join(_text(p) for p in (log.get("message") or []))
        for log in logs
    )


def tokens_in(logs: Iterable[dict[str, Any]]) -> int | None:
    """Sum of the numbers logged as `console.log("tokens_used", N)` (or `{tokens_used: N}`)."""
    total, found = 0, False
    for log in logs:
        msg = log.get("message") or []
        for i, part in enumerate(msg):
            value: Any = None
            if part == "tokens_used" and i + 1 < len(msg):
                value = msg[i + 1]
            elif isinstance(part, dict) and "tokens_used" in part:
                value = part["tokens_used"]
            if isinstance(value, int | float) and not isinstance(value, bool):
                total, found = total + int(value), True
    return total if found else None


def _path_of(url: str | None) -> str | None:
    if not url:
        return None
    rest = url.split("://", 1)[-1]
    slash = rest.find("/")
    path = rest[slash:] if slash >= 0 else "/"
    return path.split("?", 1)[0].split("#", 1)[0] or "/"


def row_of(event: dict[str, Any]) -> dict[str, Any]:
    ev = event.get("event") or {}
    req = ev.get("request") or {}
    cf = req.get("cf") or {}
    headers = {str(k).lower(): v for k, v in (req.get("headers") or {}).items()}
    logs = event.get("logs") or []
    url = req.get("url")
    kind = "queue" if "queue" in ev else "scheduled" if "cron" in ev else None
    return {
        "ts": event.get("eventTimestamp"),
        "script": event.get("scriptName"),
        "version": (event.get("scriptVersion") or {}).get("id"),
        "method": req.get("method") or (kind and kind.upper()),
        "url": url,
        "path": _path_of(url) if url else (ev.get("queue") or ev.get("cron")),
        "status": (ev.get("response") or {}).get("status"),
        "outcome": event.get("outcome"),
        "wall_ms": event.get("wallTime"),
        "cpu_ms": event.get("cpuTime"),
        "exceptions": "; ".join(
            f"{e.get('name')}: {e.get('message')}" for e in event.get("exceptions") or []
        ),
        "logs": log_text(logs),
        "tokens_used": tokens_in(logs),
        "client_ip": headers.get("cf-connecting-ip") or headers.get("x-real-ip"),
        "country": cf.get("country"),
        "colo": cf.get("colo"),
    }


def to_frame(events: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """TraceItems -> the DataFrame (COLUMNS)."""
    return _finish(
        pd.DataFrame([row_of(e) for e in events], columns=[c for c in COLUMNS if c != "route"])
    )


def _finish(df: pd.DataFrame, columns: Sequence[str] = COLUMNS) -> pd.DataFrame:
    from ..analysis import route_column

    if "ts" in df:
        if not isinstance(df["ts"].dtype, pd.DatetimeTZDtype):
            df["ts"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
        df["ts"] = df["ts"].astype("datetime64[ms, UTC]")
    for col in ("status", "tokens_used"):
        if col in df:
            df[col] = df[col].astype("Int64")
    for col in ("wall_ms", "cpu_ms"):
        if col in df:
            df[col] = df[col].astype("float64")
    if "route" in columns and "route" not in df:
        df["route"] = route_column(df["method"], df["path"])
    return df[[c for c in columns if c in df]]


# ---- files ---------------------------------------------------------------------------
def iter_concatenated(path: Path | str) -> Iterator[dict[str, Any]]:
    """Objects of a file of concatenated JSON documents (wrangler json, or NDJSON)."""
    decoder = json.JSONDecoder()
    buf = ""
    with open(path, encoding="utf-8") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            buf += chunk
            pos = 0
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos >= len(buf):
                    break
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError:
                    if not chunk:
                        raise
                    break  # an object cut by the chunk boundary: read more
                yield obj
                pos = end
            buf = buf[pos:]
            if not chunk:
                return


def _is_ndjson(path: Path | str) -> bool:
    with open(path, "rb") as fh:
        first = fh.readline().strip()
    if not first:
        return False
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def read_events(path: Path | str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A wrangler `--format json` file or NDJSON -> the DataFrame (all COLUMNS by default)."""
    cols = tuple(columns or COLUMNS)
    unknown = set(cols) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown columns {sorted(unknown)}; known: {', '.join(COLUMNS)}")
    if not (set(cols) & _PYTHON_ONLY):
        return _finish(_scalar_columns(path, cols), cols)
    frame = pd.DataFrame(
        [row_of(e) for e in iter_concatenated(path)], columns=[c for c in COLUMNS if c != "route"]
    )
    return _finish(frame, cols)


# ---- scalar columns through DuckDB's JSON reader and Arrow -------------------------------
# The JSON fields behind each scalar column (keys from the top of a TraceItem), the type to
# parse them as (string unless listed).
_REQ = ("event", "request")
_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "ts": (("eventTimestamp",),),
    "script": (("scriptName",),),
    "version": (("scriptVersion", "id"),),
    "method": ((*_REQ, "method"), ("event", "queue"), ("event", "cron")),
    "url": ((*_REQ, "url"),),
    "path": ((*_REQ, "url"), ("event", "queue"), ("event", "cron")),
    "status": (("event", "response", "status"),),
    "outcome": (("outcome",),),
    "wall_ms": (("wallTime",),),
    "cpu_ms": (("cpuTime",),),
    "client_ip": ((*_REQ, "headers", "cf-connecting-ip"), (*_REQ, "headers", "x-real-ip")),
    "country": ((*_REQ, "cf", "country"),),
    "colo": ((*_REQ, "cf", "colo"),),
}
_FIELDS["route"] = _FIELDS["method"] + _FIELDS["path"]
_NUMERIC = {
    "eventTimestamp": "BIGINT",
    "wallTime": "DOUBLE",
    "cpuTime": "DOUBLE",
    "status": "BIGINT",
}
_BATCH_ROWS = 1 << 14  # rows per Arrow batch, reduced to compact columns as it arrives
# DuckDB's JSON reader holds 32 MB buffers per thread: threads and memory kept in step
_READER_THREADS = 4  # at most
_READER_MEMORY_PER_THREAD_MB = 64
_READER_FLUSH = "16MB"  # freed memory DuckDB's allocator may keep cached
# a URL whose path is plain: scheme://host[/path], no query or fragment
_PLAIN_URL = r"^[a-z]+://[^/?#]*(?:/[^?#]*)?$"
# scheme://host followed by a path, a query or nothing (the host holds no `?` or `#`)
_SOUND_URL = r"^[a-z]+://[^/?#]*(?:[/?#]|$)"
_NOT_A_URL = "\x00"  # marks a route key that is a path already (queue, cron, odd URLs)


def _columns_sql(cols: Sequence[str]) -> str:
    """read_json's `columns` for only the fields `cols` need, as nested STRUCTs. Nothing is
    inferred (log messages mix types and lists start empty), and other fields are skipped."""
    tree: dict[str, Any] = {}
    for col in cols:
        for path in _FIELDS[col]:
            node = tree
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = None

    def sql_type(key: str, node: dict[str, Any] | None) -> str:
        if node is None:
            return _NUMERIC.get(key, "VARCHAR")
        return "STRUCT(" + ", ".join(f'"{k}" {sql_type(k, v)}' for k, v in node.items()) + ")"

    return "{" + ", ".join(f"'{k}': '{sql_type(k, v)}'" for k, v in tree.items()) + "}"


def _scalar_columns(path: Path | str, cols: Sequence[str]) -> pd.DataFrame:
    """A file of TraceItems (NDJSON or wrangler's concatenated JSON) -> the scalar columns
    `cols`. DuckDB parses only the needed fields on its own threads and hands over Arrow
    batches, each reduced to compact columns on arrival (routes as dictionary codes), so
    memory holds a few batches plus the result."""
    import os

    import duckdb
    import pyarrow as pa

    from ..analysis import route_categorical

    if not Path(path).is_file():
        raise FileNotFoundError(f"no such log file: {path}")
    fmt = "newline_delimited" if _is_ndjson(path) else "unstructured"
    threads = max(1, min(os.cpu_count() or 1, _READER_THREADS))
    limit_mb = _READER_MEMORY_PER_THREAD_MB * threads
    con = duckdb.connect(
        config={
            "threads": threads,
            "memory_limit": f"{limit_mb}MB",
            "allocator_flush_threshold": _READER_FLUSH,
        }
    )
    parts: list[dict[str, Any]] = []
    try:
        with _literal_path(path) as source:
            rel = con.sql(
                f"SELECT * FROM read_json($path, format='{fmt}', columns={_columns_sql(cols)})",
                params={"path": source},
            )
            pool = pa.default_memory_pool()
            for batch in rel.to_arrow_reader(_BATCH_ROWS):
                if batch.num_rows:
                    parts.append(_batch_columns(batch, cols))
                    pool.release_unused()  # the reduction's scratch, before the next batch
    except (
        duckdb.InvalidInputException,
        duckdb.ConversionException,
        duckdb.OutOfMemoryException,
        pa.ArrowInvalid,
        OSError,  # errors met while streaming come through Arrow's reader as OSError
    ) as exc:
        if "Out of Memory" in str(exc):
            raise MemoryError(
                f"reading {path} needed more than the reader's {limit_mb} MB: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        raise ValueError(_unreadable(path, exc)) from None
    finally:
        con.close()
    if not parts:
        return to_frame([])
    frame: dict[str, Any] = {}
    for col in cols:  # column by column, each dropped from the parts once converted
        chunks = [p.pop(col) for p in parts]
        if col == "route":
            frame[col] = route_categorical(chunks)
            continue
        array = pa.chunked_array(chunks)
        del chunks
        if col == "outcome":
            array = array.unify_dictionaries()
        mapper = {pa.int32(): pd.Int64Dtype()}.get if col == "status" else None
        frame[col] = array.to_pandas(types_mapper=mapper)
        del array
    return pd.DataFrame(frame)


@contextmanager
def _literal_path(path: Path | str) -> Iterator[str]:
    """`path` as DuckDB should read it: DuckDB expands `*`, `?`, `[` and `{` as a glob, so a
    name holding one is read through a plainly named link to the same file."""
    import os
    import tempfile

    name = os.path.abspath(path)
    if not any(ch in name for ch in "*?[]{}"):
        yield name
        return
    with tempfile.TemporaryDirectory(prefix="opsbook-logs-") as tmp:
        link = os.path.join(tmp, "events" + "".join(Path(path).suffixes[-1:]))
        os.symlink(name, link)
        yield link


def _unreadable(path: Path | str, exc: Exception) -> str:
    """DuckDB's reading error as one line that names the file, the line and what to check."""
    import re

    detail = str(exc).split("\n", 1)[0]
    for where in (f' in file "{path}",', f' in file "{path}"'):
        detail = detail.replace(where, "")
    detail = re.sub(r"^(?:[A-Za-z ]+ Error: )?(?:JSON transform error in )?", "", detail)
    detail = detail.rstrip(". ")
    if "Malformed JSON" in detail:
        hint = "The file must hold whole JSON objects: NDJSON, or `wrangler tail --format json`."
    else:
        hint = (
            "Each field must keep the JSON type Cloudflare sends (numbers for eventTimestamp, "
            "wallTime and the response status)."
        )
    return f"{path} does not read as Workers trace events: {detail}. {hint}"


def _batch_columns(batch: Any, cols: Sequence[str]) -> dict[str, Any]:
    """One Arrow record batch of parsed fields -> the requested columns as pyarrow arrays
    (route: dictionary encoded "METHOD /path" with ids collapsed, whose strings exist per
    distinct route). The results are copies: a view would hold DuckDB's whole exported
    batch alive, every field of it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = batch.num_rows

    def field(path: tuple[str, ...]) -> Any:
        array = batch.column(path[0])
        for key in path[1:]:
            array = pc.struct_field(array, key)
        return array

    def first(col: str) -> Any:
        paths = _FIELDS[col]
        return pc.coalesce(*[field(p) for p in paths]) if len(paths) > 1 else field(paths[0])

    out: dict[str, Any] = {}
    method = path = None
    if "method" in cols or "route" in cols:
        method = _method(field, n)
    if "path" in cols or "route" in cols:
        path = _route_keys(field, n, want_path="path" in cols)
    for col in cols:
        if col == "ts":
            out[col] = pc.cast(first(col), pa.timestamp("ms", tz="UTC"))
        elif col == "method":
            out[col] = method
        elif col == "path":
            assert path is not None
            out[col] = path[2]
        elif col == "route":
            assert path is not None and method is not None
            out[col] = _routes(method, path[0], path[1])
        elif col == "outcome":
            out[col] = pc.dictionary_encode(first(col))
        elif col == "status":  # HTTP status codes: half the memory until the frame is built
            out[col] = pc.cast(first(col), pa.int32())
        else:
            out[col] = first(col)
    return {col: pa.concat_arrays([array]) for col, array in out.items()}


def _method(field: Any, n: int) -> Any:
    """request.method, else QUEUE / SCHEDULED for queue and cron invocations."""
    import pyarrow as pa
    import pyarrow.compute as pc

    method = field((*_REQ, "method"))
    for key, name in (("queue", "QUEUE"), ("cron", "SCHEDULED")):
        other = field(("event", key))
        if other.null_count < n:
            named = pc.if_else(pc.is_valid(other), pa.scalar(name), pa.scalar(None, pa.string()))
            method = pc.coalesce(method, named)
    return method


def _route_keys(field: Any, n: int, want_path: bool) -> tuple[Any, Callable[[str], str], Any]:
    """(per row a dictionary-encoded key for the route's path with ids collapsed, the path of
    a key, the path per row as _path_of has it when `want_path`). Fast when every event is a
    request to a plain URL (no query): ids are collapsed in the text after a common
    `scheme://host/`, or else after each URL's host."""
    import pyarrow.compute as pc

    from ..analysis import collapse_segments

    url = field((*_REQ, "url"))
    prefix = _common_prefix(url) if url.null_count == 0 else None
    if prefix is not None:
        rest = pc.utf8_slice_codeunits(url, len(prefix))
        keys = pc.dictionary_encode(collapse_segments(rest, first=0))
        if not pc.any(pc.match_substring_regex(keys.dictionary, "[?#]")).as_py():
            path = _plain_path(url) if want_path else None
            return keys, lambda key: "/" + key, path
    elif url.null_count == 0:
        keys = pc.dictionary_encode(collapse_segments(url, first=3))
        if pc.all(pc.match_substring_regex(keys.dictionary, _PLAIN_URL)).as_py():
            path = _plain_path(url) if want_path else None
            return keys, lambda key: _path_of(key) or "/", path
    return _odd_route_keys(field, url, n, want_path)


def _common_prefix(url: Any) -> str | None:
    """`scheme://host/` when every URL starts with the first one's (one host behind a Worker)."""
    import re

    import pyarrow.compute as pc

    if len(url) == 0:
        return None
    head = re.match(r"[a-z]+://[^/?#]*/", str(url[0].as_py()))
    if head is None:
        return None
    starts = pc.starts_with(url, head.group(0))
    return head.group(0) if starts.false_count == 0 and starts.null_count == 0 else None


def _odd_route_keys(
    field: Any, url: Any, n: int, want_path: bool
) -> tuple[Any, Callable[[str], str], Any]:
    """_route_keys for blocks with queries, queue and cron invocations or odd URLs."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..analysis import collapse_segments

    plain = pc.fill_null(pc.match_substring_regex(url, _PLAIN_URL), False)
    # a query or fragment after scheme://host/...: cut it, the URL is plain then
    sound = pc.fill_null(pc.match_substring_regex(url, _SOUND_URL), False)
    url = pc.if_else(sound, pc.replace_substring_regex(url, r"[?#].*$", ""), url)
    plain = pc.or_(plain, sound)
    # queue and cron invocations, and odd URLs (no scheme, `?` in the host): as _path_of has it
    has_url = pc.fill_null(pc.not_equal(url, ""), False)
    odd = pc.fill_null(pc.and_(pc.invert(plain), has_url), False)
    raw = pc.if_else(
        has_url,
        pa.scalar(None, pa.string()),
        pc.coalesce(field(("event", "queue")), field(("event", "cron"))),
    )
    if pc.any(odd).as_py():
        urls = pc.dictionary_encode(pc.filter(url, odd))
        paths = pa.array([_path_of(u) for u in urls.dictionary.to_pylist()], pa.string())
        values = np.full(n, None, dtype=object)
        values[odd.to_numpy(zero_copy_only=False)] = pc.take(paths, urls.indices).to_pylist()
        raw = pc.coalesce(pa.array(values, pa.string()), raw)
    collapsed = pc.binary_join_element_wise(
        pa.scalar(_NOT_A_URL), collapse_segments(raw, first=1), ""
    )
    plain_url = pc.if_else(plain, url, pa.scalar("", pa.string()))
    keys = pc.dictionary_encode(pc.if_else(plain, collapse_segments(plain_url, first=3), collapsed))
    path = pc.if_else(plain, _plain_path(plain_url), raw) if want_path else None

    def to_path(key: str) -> str:
        return key[1:] if key.startswith(_NOT_A_URL) else (_path_of(key) or "/")

    return keys, to_path, path


def _plain_path(url: Any) -> Any:
    import pyarrow.compute as pc

    path = pc.replace_substring_regex(url, r"^[a-z]+://[^/]*", "")
    return pc.if_else(pc.equal(path, ""), "/", path)


def _routes(method: Any, keys: Any, to_path: Callable[[str], str]) -> Any:
    """'METHOD /path' dictionary-encoded: codes per row, strings per distinct pair."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    m = pc.dictionary_encode(pc.fill_null(method, ""))
    width = max(1, len(keys.dictionary))
    pair = m.indices.to_numpy().astype(np.int64) * width + keys.indices.to_numpy()
    pairs = pc.dictionary_encode(pa.array(pair))
    methods, paths = m.dictionary.to_pylist(), [to_path(k) for k in keys.dictionary.to_pylist()]
    names = [f"{methods[u // width]} {paths[u % width]}" for u in pairs.dictionary.to_pylist()]
    return pa.DictionaryArray.from_arrays(pairs.indices, pa.array(names, pa.string()))


def write_ndjson(events: Iterable[dict[str, Any]], path: Path | str) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(event, separators=(",", ":")) + "\n")
            n += 1
    return n


# ---- a live tail -------------------------------------------------------------------------
def tail(
    api_base: str,
    account_id: str,
    token: str,
    script: str,
    seconds: float,
    *,
    filters: list[dict[str, Any]] | None = None,
    max_events: int | None = None,
) -> pd.DataFrame:
    """Tail `script` for `seconds` (or until `max_events`) -> the DataFrame."""
    return to_frame(
        tail_events(
            api_base, account_id, token, script, seconds, filters=filters, max_events=max_events
        )
    )


def tail_events(
    api_base: str,
    account_id: str,
    token: str,
    script: str,
    seconds: float,
    *,
    filters: list[dict[str, Any]] | None = None,
    max_events: int | None = None,
) -> list[dict[str, Any]]:
    import httpx
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from ..errors import ApiError

    base = f"{api_base.rstrip('/')}/accounts/{account_id}/workers/scripts/{script}/tails"
    headers = {"Authorization": f"Bearer {token}"}
    events: list[dict[str, Any]] = []
    with httpx.Client(timeout=15, headers=headers) as http:
        resp = http.post(
            base,
            content=json.dumps({"filters": filters or []}),
            headers={"Content-Type": "text/plain;charset=UTF-8"},
        )
        body = resp.json()
        if resp.status_code != 200 or not body.get("success"):
            raise ApiError(
                f"could not start a tail of {script}: {body.get('errors')}",
                status=resp.status_code,
                url=base,
                method="POST",
            )
        session = body["result"]
        try:
            with connect(session["url"], subprotocols=["trace-v1"], open_timeout=10) as ws:  # type: ignore[list-item]
                ws.send(json.dumps({"debug": False}))
                deadline = time.monotonic() + seconds
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        message = ws.recv(timeout=left)
                    except TimeoutError:
                        break
                    except ConnectionClosed:
                        break
                    events.append(json.loads(message))
                    if max_events is not None and len(events) >= max_events:
                        break
        finally:
            http.delete(f"{base}/{session['id']}")
    return events
