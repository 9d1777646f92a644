"""Worker logs to a pandas DataFrame: a live tail, a `wrangler tail --format json` file, NDJSON.

Every source gives the same columns (COLUMNS):

    ts (datetime64[ms, UTC]), script, version, method, url, path, route ("GET /x/:id"),
    status (Int64), outcome, wall_ms, cpu_ms (float), exceptions (text), logs (text),
    tokens_used (Int64, summed from `tokens_used` log lines), client_ip, country, colo

- `tail(...)` opens a tail session (POST .../tails), reads the websocket (subprotocol
  trace-v1) for N seconds, and deletes the session.
- `read_events(path)` reads a file. wrangler's json format is concatenated, 4-space
  indented JSON documents (not NDJSON); it is stream-parsed with JSONDecoder.raw_decode.
  NDJSON asked only for the scalar columns goes through pyarrow's multi-threaded JSON
  reader with an explicit schema (never inference: log messages mix strings, numbers,
  objects and arrays, and lists are empty in early rows).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
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
    if not (set(cols) & _PYTHON_ONLY) and _is_ndjson(path):
        return _finish(_arrow_ndjson(path, cols), cols)
    frame = pd.DataFrame(
        [row_of(e) for e in iter_concatenated(path)], columns=[c for c in COLUMNS if c != "route"]
    )
    return _finish(frame, cols)


def _arrow_ndjson(path: Path | str, cols: Sequence[str]) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    s = pa.string()
    schema = pa.schema(
        [
            ("eventTimestamp", pa.int64()),
            ("scriptName", s),
            ("outcome", s),
            ("wallTime", pa.float64()),
            ("cpuTime", pa.float64()),
            ("scriptVersion", pa.struct([("id", s)])),
            (
                "event",
                pa.struct(
                    [
                        (
                            "request",
                            pa.struct(
                                [
                                    ("url", s),
                                    ("method", s),
                                    ("headers", pa.struct([("cf-connecting-ip", s)])),
                                    ("cf", pa.struct([("colo", s), ("country", s)])),
                                ]
                            ),
                        ),
                        ("response", pa.struct([("status", pa.int64())])),
                    ]
                ),
            ),
        ]
    )
    reader = pj.open_json(
        path,
        read_options=pj.ReadOptions(block_size=1 << 20),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )
    from ..analysis import collapse_ids_arrow, routes_from_codes

    chunks: dict[str, list[Any]] = {}
    for batch in reader:  # block by block: memory stays at a few blocks plus the columns
        for name, array in _columns(batch, cols, pa, pc).items():
            if name == "route_path":  # ids collapsed now; only distinct paths are kept as text
                array = pc.dictionary_encode(collapse_ids_arrow(array))
            elif name == "route_method":
                array = pc.dictionary_encode(pc.fill_null(array, ""))
            chunks.setdefault(name, []).append(array)
    data = {name: pa.chunked_array(parts) for name, parts in chunks.items()}
    route = None
    if "route" in cols and "route_path" in data:
        route = routes_from_codes(data.pop("route_method"), data.pop("route_path"))
    ordered = {c: data[c] for c in cols if c in data}
    frame = pa.table(ordered).to_pandas() if ordered else pd.DataFrame()
    if route is not None:
        frame["route"] = route
        frame = frame[[c for c in cols if c in frame]]
    return frame


def _columns(batch: Any, cols: Sequence[str], pa: Any, pc: Any) -> dict[str, Any]:
    event = batch.column("event")
    req = pc.struct_field(event, "request")
    url = pc.struct_field(req, "url")
    need_path = "path" in cols or "route" in cols
    path_col = (
        pc.replace_substring_regex(
            pc.replace_substring_regex(url, r"^[a-z]+://[^/]*", ""), r"[?#].*$", ""
        )
        if need_path
        else None
    )
    wanted = {
        "ts": lambda: pc.cast(batch.column("eventTimestamp"), pa.timestamp("ms", tz="UTC")),
        "script": lambda: batch.column("scriptName"),
        "version": lambda: pc.struct_field(batch.column("scriptVersion"), "id"),
        "method": lambda: pc.struct_field(req, "method"),
        "url": lambda: url,
        "path": lambda: path_col,
        "status": lambda: pc.struct_field(pc.struct_field(event, "response"), "status"),
        "outcome": lambda: batch.column("outcome"),
        "wall_ms": lambda: batch.column("wallTime"),
        "cpu_ms": lambda: batch.column("cpuTime"),
        "client_ip": lambda: pc.struct_field(pc.struct_field(req, "headers"), "cf-connecting-ip"),
        "country": lambda: pc.struct_field(pc.struct_field(req, "cf"), "country"),
        "colo": lambda: pc.struct_field(pc.struct_field(req, "cf"), "colo"),
    }
    out = {name: fn() for name, fn in wanted.items() if name in cols}
    if "route" in cols:
        out["route_method"] = pc.struct_field(req, "method")
        out["route_path"] = path_col
    if "outcome" in out:
        out["outcome"] = pc.dictionary_encode(out["outcome"])
    return out


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
