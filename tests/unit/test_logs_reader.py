"""clients.logs: wrangler's concatenated pretty JSON, NDJSON, and the DuckDB/Arrow fast path
for scalar columns agree."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from opsbook.clients import logs


def make_events(n: int, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = 1_790_000_000_000 + i * 1500
        bad = i % 17 == 0
        entries: list[dict[str, Any]] = []
        if i >= n // 3:  # empty lists first, filled later
            entries.append(
                {"message": ["D1 query", {"rows": i % 9}], "level": "log", "timestamp": ts}
            )
            if i % 4 == 0:
                entries.append(
                    {"message": ["tokens_used", 100 + i], "level": "log", "timestamp": ts}
                )
            if i % 5 == 0:
                entries.append(
                    {"message": [[1, "a"], 2.5, None, True], "level": "debug", "timestamp": ts}
                )
        kind = f"/manuscripts/{rng.getrandbits(56):014x}" if i % 3 else "/manuscripts"
        out.append(
            {
                "outcome": "exception" if bad else "ok",
                "scriptName": "manuscript-upload-api",
                "scriptVersion": {"id": "v-1"},
                "exceptions": [{"name": "TypeError", "message": "boom", "timestamp": ts}]
                if bad
                else [],
                "logs": entries,
                "eventTimestamp": ts,
                "event": {
                    "request": {
                        "url": f"https://api.example.com{kind}?page=1",
                        "method": "GET",
                        "headers": {"cf-connecting-ip": f"10.0.0.{i % 250}"},
                        "cf": {"colo": "IAD", "country": "US"},
                    },
                    "response": {"status": 500 if bad else 200},
                },
                "wallTime": 10 + i % 50,
                "cpuTime": 1 + i % 7,
            }
        )
    return out


def write(events: list[dict[str, Any]], path: Path, pretty: bool) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for e in events:
            fh.write(json.dumps(e, indent=4) + "\n" if pretty else json.dumps(e) + "\n")
    return path


def test_wrangler_json_and_ndjson_give_the_same_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = make_events(300)
    monkeypatch.setattr(logs, "_CHUNK", 997)  # objects cut by chunk boundaries
    pretty = logs.read_events(write(events, tmp_path / "tail.json", pretty=True))
    nd = logs.read_events(write(events, tmp_path / "tail.ndjson", pretty=False))
    assert list(pretty.columns) == list(logs.COLUMNS)
    pd.testing.assert_frame_equal(pretty, nd)
    assert len(pretty) == 300
    assert str(pretty["ts"].dtype) == "datetime64[ms, UTC]"
    assert pretty["path"].iloc[0] == "/manuscripts"
    assert set(pretty["route"]) == {"GET /manuscripts", "GET /manuscripts/:id"}


def test_reference_values(tmp_path: Path) -> None:
    events = make_events(120)
    df = logs.read_events(write(events, tmp_path / "t.json", pretty=True))
    for row, ev in zip(df.itertuples(), events, strict=True):
        assert row.status == ev["event"]["response"]["status"]
        assert row.wall_ms == ev["wallTime"]
        assert row.client_ip == ev["event"]["request"]["headers"]["cf-connecting-ip"]
        want = sum(m["message"][1] for m in ev["logs"] if m["message"][0] == "tokens_used") or None
        assert (None if pd.isna(row.tokens_used) else row.tokens_used) == want
        if ev["exceptions"]:
            assert row.exceptions == "TypeError: boom"
    mixed = df["logs"][df["logs"].str.contains("debug")].iloc[0]
    assert '[1,"a"] 2.5 null true' in mixed


@pytest.mark.parametrize("pretty", [False, True], ids=["ndjson", "wrangler-json"])
def test_fast_path_matches_python_path(tmp_path: Path, pretty: bool) -> None:
    path = write(make_events(500), tmp_path / "t.json", pretty=pretty)
    cols = ("ts", "script", "version", "method", "url", "path", "route", "status", "outcome",
            "wall_ms", "cpu_ms", "client_ip", "country", "colo")  # fmt: skip
    fast = logs.read_events(path, columns=cols)
    slow = logs.read_events(path)[list(cols)]
    fast["route"] = fast["route"].astype("str")
    fast["outcome"] = fast["outcome"].astype("str")
    pd.testing.assert_frame_equal(
        fast.reset_index(drop=True), slow.reset_index(drop=True), check_dtype=False
    )


def test_unknown_column_and_bad_file(tmp_path: Path) -> None:
    path = write(make_events(3), tmp_path / "t.ndjson", pretty=False)
    with pytest.raises(ValueError, match="unknown columns"):
        logs.read_events(path, columns=("nope",))
    broken = tmp_path / "broken.json"
    broken.write_text('{"outcome": "ok",\n  "logs": [', encoding="utf-8")
    with pytest.raises(json.JSONDecodeError):
        logs.read_events(broken)


def test_queue_and_scheduled_events() -> None:
    df = logs.to_frame(
        [
            {"outcome": "ok", "scriptName": "s", "eventTimestamp": 1, "logs": [], "exceptions": [],
             "event": {"queue": "manuscript-analysis-queue", "batchSize": 1}, "wallTime": 5, "cpuTime": 1},
            {"outcome": "ok", "scriptName": "s", "eventTimestamp": 2, "logs": [], "exceptions": [],
             "event": {"cron": "0 2 * * *", "scheduledTime": 2}, "wallTime": 5, "cpuTime": 1},
        ]
    )  # fmt: skip
    assert list(df["route"]) == ["QUEUE manuscript-analysis-queue", "SCHEDULED 0 2 * * *"]


FAST_COLS = ("ts", "script", "version", "method", "url", "path", "route", "status", "outcome",
             "wall_ms", "cpu_ms", "client_ip", "country", "colo")  # fmt: skip


def as_plain(df: pd.DataFrame) -> pd.DataFrame:
    out = df.reset_index(drop=True).copy()
    for col in ("route", "outcome"):
        if col in out:
            out[col] = out[col].astype("str")
    return out


def count_batches(monkeypatch: pytest.MonkeyPatch, rows: int) -> list[int]:
    """Batches of `rows` rows; returns the list that records each batch's size."""
    sizes: list[int] = []
    reduce = logs._batch_columns

    def counted(batch: Any, cols: Any) -> dict[str, Any]:
        sizes.append(batch.num_rows)
        return reduce(batch, cols)

    monkeypatch.setattr(logs, "_BATCH_ROWS", rows)
    monkeypatch.setattr(logs, "_batch_columns", counted)
    return sizes


def test_batches_mixed_types_and_late_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small batches: log messages mixing strings, numbers, objects, arrays, null and
    booleans, lists empty for the first rows and filled later."""
    events = make_events(400)
    for i, e in enumerate(events[200:]):
        e["logs"].append({"message": [{"a": [1, {"b": None}]}, "x", 3, False], "level": "warn"})
        e["exceptions"] = e["exceptions"] or ([{"name": "Error", "message": "m"}] if i % 9 else [])
    events[250]["event"]["request"]["url"] = "https://api.example.com/manuscripts/12?q=/a/b#f"
    path = write(events, tmp_path / "t.ndjson", pretty=False)
    sizes = count_batches(monkeypatch, 37)
    fast = logs.read_events(path, columns=FAST_COLS)
    assert len(sizes) > 5 and sum(sizes) == 400
    slow = logs.read_events(path)[list(FAST_COLS)]
    pd.testing.assert_frame_equal(as_plain(fast), as_plain(slow), check_dtype=False)
    assert fast["path"].iloc[250] == "/manuscripts/12"
    assert fast["route"].iloc[250] == "GET /manuscripts/:id"
    # the Python path keeps the mixed messages as text
    assert '{"a":[1,{"b":null}]} x 3 false' in logs.read_events(path)["logs"].iloc[399]


def test_fast_path_queue_cron_and_odd_urls(tmp_path: Path) -> None:
    base = make_events(40)
    base[3]["event"] = {"queue": "manuscript-analysis-queue", "batchSize": 1}
    base[4]["event"] = {"cron": "0 2 * * *", "scheduledTime": 2}
    base[5]["event"]["request"]["url"] = "/manuscripts/1234567890123"  # no scheme, no host
    base[6]["event"]["request"]["url"] = "https://api.example.com"  # no path
    base[7]["event"]["request"]["url"] = "HTTPS://API.example.com/a/123?x=1"
    base[8]["event"]["request"]["url"] = "https://api.example.com/q?u=https://x.y/1"
    base[9]["event"] = {"request": {"method": "GET"}}  # no URL at all
    path = write(base, tmp_path / "t.ndjson", pretty=False)
    fast = logs.read_events(path, columns=FAST_COLS)
    slow = logs.read_events(path)[list(FAST_COLS)]
    pd.testing.assert_frame_equal(as_plain(fast), as_plain(slow), check_dtype=False)
    assert list(fast["route"].astype("str")[3:10]) == [
        "QUEUE manuscript-analysis-queue",
        "SCHEDULED 0 2 * * *",
        "GET /manuscripts/:id",
        "GET /",
        "GET /a/:id",
        "GET /q",
        "GET ",
    ]
    only_route = logs.read_events(path, columns=("route", "status"))
    assert list(only_route["route"].astype("str")) == list(fast["route"].astype("str"))


def test_slugs_across_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = make_events(60)
    for i, e in enumerate(events):
        e["event"]["request"]["url"] = f"https://h.example/api/peptides/p-{'abcdefghij'[i % 10]}"
    path = write(events, tmp_path / "t.ndjson", pretty=False)
    sizes = count_batches(monkeypatch, 1)  # each slug value alone in its own batches
    fast = logs.read_events(path, columns=("route",))
    assert sizes == [1] * 60
    assert set(fast["route"].astype("str")) == {"GET /api/peptides/:slug"}
    assert set(logs.read_events(path)["route"]) == {"GET /api/peptides/:slug"}


@pytest.mark.parametrize(
    ("hosts", "bare"),
    [(("api.example.com",), False), (("api.example.com",), True), (("a.example", "b:8787"), False)],
)
def test_fast_path_plain_urls_one_or_many_hosts(
    tmp_path: Path, hosts: tuple[str, ...], bare: bool
) -> None:
    """One host behind the Worker (ids collapsed after the common prefix), a bare host among
    them, several hosts: the same frame as the Python path."""
    events = make_events(90)
    tails = ("/manuscripts", "/", "" if bare else "/", "/manuscripts/7/analysis", "/u/" + "x" * 24)
    for i, e in enumerate(events):
        tail = tails[i % 5] + (f"/{i}" if tails[i % 5].startswith("/m") else "")
        e["event"]["request"]["url"] = f"https://{hosts[i % len(hosts)]}{tail}"
    path = write(events, tmp_path / "t.ndjson", pretty=False)
    fast = logs.read_events(path, columns=FAST_COLS)
    slow = logs.read_events(path)[list(FAST_COLS)]
    pd.testing.assert_frame_equal(as_plain(fast), as_plain(slow), check_dtype=False)
    assert "GET /manuscripts/:id/analysis/:id" in set(fast["route"].astype("str"))


def test_a_field_of_the_wrong_json_type_is_a_clear_error(tmp_path: Path) -> None:
    events = make_events(10)
    events[2]["event"]["response"]["status"] = "502"  # a number in a string reads as it
    events[3]["event"]["response"]["status"] = "OK"
    path = write(events, tmp_path / "t.ndjson", pretty=False)
    with pytest.raises(
        ValueError, match=r"t\.ndjson does not read as Workers trace events: line 4.*status"
    ):
        logs.read_events(path, columns=("route", "status"))
    del events[3]
    path = write(events, tmp_path / "t.ndjson", pretty=False)
    assert logs.read_events(path, columns=("status",))["status"].iloc[2] == 502


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such log file"):
        logs.read_events(tmp_path / "nope.ndjson", columns=("status",))
    (tmp_path / "empty.ndjson").write_text("", encoding="utf-8")
    empty = logs.read_events(tmp_path / "empty.ndjson", columns=("ts", "route", "status"))
    assert list(empty.columns) == ["ts", "route", "status"] and len(empty) == 0


def test_a_name_that_looks_like_a_glob_reads_only_that_file(tmp_path: Path) -> None:
    events = make_events(5)
    for name, n in (
        ("tail*.ndjson", 5),
        ("tail-a.ndjson", 2),
        ("tail[1].json", 3),
        ("tail1.json", 4),
    ):
        write(events[:n], tmp_path / name, pretty=name.endswith(".json"))
    for name, n in (("tail*.ndjson", 5), ("tail[1].json", 3)):
        assert len(logs.read_events(tmp_path / name, columns=("ts", "route"))) == n
