"""Log analytics: opsbook's reader + analysis against DuckDB on 1,000,000 tail events.

    .venv/bin/python bench/log_analytics.py [--events N] [--runs 5] [--keep DIR]

Generates N TraceItem events as NDJSON (deterministic; log messages mix strings,
numbers, objects and arrays; `logs` and `exceptions` are empty in the early rows and
filled later, which defeats type inference), then computes, in the same run:
per-endpoint requests / errors / p50 / p95 / p99 of wall time, the per-minute error
series and the overall percentiles, once with opsbook (clients.logs.read_events +
analysis) and once with DuckDB (read_json_auto + SQL). Prints the median of `runs` for
each, the ratio, and opsbook's peak RSS measured in a fresh subprocess. The two answers
are checked against each other before any figure is printed.

opsbook's reader parses with DuckDB's JSON reader as well, but with explicit types for only
the fields the columns need; the baseline is DuckDB as one would first reach for it,
schema inference included.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lib"))

ROUTES = (
    ("GET", "/manuscripts", 0.34),
    ("GET", "/manuscripts/{id}", 0.25),
    ("GET", "/manuscripts/{id}/analysis", 0.08),
    ("POST", "/manuscripts", 0.06),
    ("POST", "/auth/login", 0.09),
    ("GET", "/health", 0.05),
    ("GET", "/users/{uuid}/sessions", 0.13),
)
T0 = 1_790_000_000_000  # ms


def generate(path: Path, n: int, seed: int = 11) -> None:
    rng = random.Random(seed)
    weights = [w for _, _, w in ROUTES]
    empty_until = n // 20
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            method, pattern, _ = rng.choices(ROUTES, weights)[0]
            url_path = pattern.replace("{id}", f"{rng.getrandbits(56):014x}").replace(
                "{uuid}",
                f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-a{rng.getrandbits(12):03x}-{rng.getrandbits(48):012x}",
            )
            ts = T0 + i * 86  # ~1 day
            bad = rng.random() < (0.08 if pattern.endswith("analysis") else 0.004)
            status = 500 if bad else (401 if rng.random() < 0.03 else 200)
            logs: list[dict[str, object]] = []
            exceptions: list[dict[str, object]] = []
            if i >= empty_until:
                logs.append(
                    {
                        "message": [
                            "D1 query",
                            {"rows": rng.randint(0, 50), "ms": round(rng.random() * 40, 2)},
                        ],
                        "level": "log",
                        "timestamp": ts,
                    }
                )
                if rng.random() < 0.3:
                    logs.append(
                        {
                            "message": ["tokens_used", rng.randint(100, 4000)],
                            "level": "log",
                            "timestamp": ts,
                        }
                    )
                if rng.random() < 0.1:
                    logs.append(
                        {
                            "message": [["cache", "miss"], 3.5, None, True],
                            "level": "debug",
                            "timestamp": ts,
                        }
                    )
                if bad:
                    exceptions.append(
                        {
                            "name": "TypeError",
                            "message": "Cannot read properties of undefined",
                            "timestamp": ts,
                        }
                    )
            event = {
                "outcome": "exception" if bad else "ok",
                "scriptName": "manuscript-upload-api",
                "scriptVersion": {"id": "4d9a806b-e24f-4897-a2ed-e87f583b2884"},
                "exceptions": exceptions,
                "logs": logs,
                "eventTimestamp": ts,
                "event": {
                    "request": {
                        "url": f"https://api.example.com{url_path}",
                        "method": method,
                        "headers": {
                            "cf-connecting-ip": f"73.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                        },
                        "cf": {
                            "colo": rng.choice(("IAD", "ORD", "LHR", "FRA")),
                            "country": rng.choice(("US", "US", "GB", "DE")),
                        },
                    },
                    "response": {"status": status},
                },
                "wallTime": round(rng.lognormvariate(3.6, 0.6) + (2000 if bad else 0), 1),
                "cpuTime": round(rng.lognormvariate(1.5, 0.5), 2),
            }
            fh.write(json.dumps(event, separators=(",", ":")) + "\n")


def run_opsbook(path: Path) -> dict[str, object]:
    from opsbook import analysis
    from opsbook.clients.logs import read_events

    df = read_events(path, columns=("ts", "route", "status", "outcome", "wall_ms"))
    stats = analysis.endpoint_stats(df)
    series = analysis.error_series(df, "1min")
    pct = analysis.percentiles(df, "wall_ms", (0.5, 0.95, 0.99))
    return {
        "routes": {
            r.route: (
                int(r.requests),
                int(r.errors),
                round(r.p50_ms, 3),
                round(r.p95_ms, 3),
                round(r.p99_ms, 3),
            )
            for r in stats.itertuples()
        },
        "minutes": len(series),
        "errors": int(series["errors"].sum()),
        "pct": [round(v, 3) for v in pct.values()],
    }


DUCK_ROUTE = (
    "method || ' ' || regexp_replace(regexp_replace(regexp_replace("
    "regexp_replace(url, '^[a-z]+://[^/]*', ''), '[?#].*$', ''),"
    " '/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(/|$)', '/:id\\1', 'g'),"
    " '/[0-9a-fA-F]{12,}(/|$)', '/:id\\1', 'g')"
)


def run_duckdb(path: Path) -> dict[str, object]:
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(
            "CREATE TEMP TABLE ev AS SELECT eventTimestamp AS ts, event.request.method AS method,"
            " event.request.url AS url, event.response.status AS status, outcome, wallTime AS wall_ms"
            f" FROM read_json_auto('{path}')"
        )
        con.execute(
            f"CREATE TEMP TABLE r AS SELECT {DUCK_ROUTE} AS route, (status >= 500 OR outcome <> 'ok') AS err, ts, wall_ms FROM ev"
        )
        routes = con.execute(
            "SELECT route, count(*), sum(err::INT), quantile_cont(wall_ms, 0.5), quantile_cont(wall_ms, 0.95),"
            " quantile_cont(wall_ms, 0.99) FROM r GROUP BY route"
        ).fetchall()
        minutes = con.execute(
            "SELECT count(*), sum(e) FROM (SELECT ts // 60000 AS m, sum(err::INT) AS e FROM r GROUP BY m)"
        ).fetchone()
        lo_hi = con.execute("SELECT min(ts) // 60000, max(ts) // 60000 FROM r").fetchone()
        pct = con.execute("SELECT quantile_cont(wall_ms, [0.5, 0.95, 0.99]) FROM r").fetchone()
    finally:
        con.close()
    assert minutes is not None and lo_hi is not None and pct is not None
    return {
        "routes": {
            r[0]: (int(r[1]), int(r[2]), round(r[3], 3), round(r[4], 3), round(r[5], 3))
            for r in routes
        },
        "minutes": int(lo_hi[1] - lo_hi[0] + 1),
        "errors": int(minutes[1]),
        "pct": [round(v, 3) for v in pct[0]],
    }


def timed(
    sides: dict[str, Callable[[Path], dict[str, object]]], path: Path, runs: int
) -> dict[str, tuple[float, list[float], dict[str, object]]]:
    """Each side `runs` times, interleaved (a, b, a, b, ...) so that load from elsewhere on a
    shared machine falls on both alike: the median, all the times and the last answer."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    results: dict[str, dict[str, object]] = {}
    for _ in range(runs):
        for name, fn in sides.items():
            started = time.perf_counter()
            results[name] = fn(path)
            times[name].append(time.perf_counter() - started)
    return {n: (statistics.median(t), t, results[n]) for n, t in times.items()}


def peak_rss_mb(path: Path) -> float:
    """opsbook's peak RSS, in a fresh interpreter: VmHWM from /proc (ru_maxrss would carry
    the parent's high-water mark across fork+exec on Linux)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[2]);"
        "import importlib.util as u; s = u.spec_from_file_location('b', sys.argv[3]); m = u.module_from_spec(s);"
        "s.loader.exec_module(m); from pathlib import Path; m.run_opsbook(Path(sys.argv[1]));"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(ROOT / "lib"), __file__],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep the file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"tail-{args.events}.ndjson"
        if not path.exists():
            started = time.perf_counter()
            generate(path, args.events)
            print(
                f"generated {args.events:,} events, {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - started:.1f} s"
            )
        timing = timed({"opsbook": run_opsbook, "duckdb": run_duckdb}, path, args.runs)
        (ops_s, ops_all, ops), (duck_s, duck_all, duck) = timing["opsbook"], timing["duckdb"]
        if ops != duck:
            print(
                "MISMATCH between opsbook and DuckDB:",
                json.dumps({"opsbook": ops, "duckdb": duck}, default=str)[:2000],
            )
            return 1
        rss = peak_rss_mb(path)
    runs = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(ops_all, duck_all, strict=True))
    print(f"opsbook  median {ops_s:.2f} s  (reader + endpoint stats + error series + percentiles)")
    print(f"duckdb   median {duck_s:.2f} s  (read_json_auto + SQL)")
    print(f"runs     opsbook/duckdb s: {runs}")
    print(f"ratio    {ops_s / duck_s:.2f}x DuckDB (goal <= 1.2x)")
    print(
        f"opsbook peak RSS {rss:.0f} MB (goal <= 300 MB); this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
