"""The traffic model: 24 h of seeded history, regeneration from an onset, a live ticker.

Requests are drawn per minute from a Random seeded by (script seed, minute), so any
window regenerates identically under the same state: diurnal volume (the 04:00 UTC trough is
a quarter of the 16:00 UTC peak), each app's endpoint mix, a few normal 4xx, cold starts
after idle gaps, and whichever version the deployment history says was live
(behaviour.evaluate decides each outcome). The manuscript app adds a queue consumer
invocation per upload; PepTalk has its nightly pipeline at 02:00 UTC.

    seed(state, rng)                         the last 24 h for each app
    regenerate(state, script, since_ms)      replace synthetic rows since an onset
    advance(state)                           generate up to now (what the ticker does)
    start_ticker(state, interval_s) -> stop  background thread calling advance()
    export(state, script, path, fmt, since_ms, until_ms)   wrangler json | ndjson
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import json
import math
import random
import threading
import time
from pathlib import Path
from typing import Any

from . import cf_firewall, cf_r2, conditions, d1data, mail, platform_view, tail, trace
from .behaviour import ENDPOINTS, Snapshot, consume, evaluate
from .profiles import PROFILES, Profile
from .state import State

SCHEMA = (
    trace.SCHEMA
    + conditions.SCHEMA
    + tail.SCHEMA
    + mail.SCHEMA
    + """
CREATE TABLE IF NOT EXISTS traffic_meta (
    script TEXT PRIMARY KEY,
    seed INTEGER NOT NULL,
    cursor_ms INTEGER NOT NULL,
    users TEXT NOT NULL DEFAULT '[]',
    peptides TEXT NOT NULL DEFAULT '[]'
);
"""
)

PEAK_PER_MIN = {"manuscript": 14.0, "peptalk": 18.0}
IDLE_COLD_MS = 3 * 60_000
HISTORY_MS = 24 * 3600_000
COLOS = {
    "US": ("IAD", "ORD", "DFW", "SJC", "LAX", "SEA", "EWR"), "GB": ("LHR",), "DE": ("FRA",),
    "CA": ("YYZ",), "AU": ("SYD",), "NL": ("AMS",), "FR": ("CDG",), "IN": ("BOM",),
}  # fmt: skip
COUNTRIES = ("US",) * 14 + ("GB", "GB", "CA", "CA", "DE", "AU", "NL", "FR", "IN")
UAS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
)
HOSTS = {"manuscript": "api.scarter4workmanuscripthub.com", "peptalk": "api.peptalk.com"}


def now_ms() -> int:
    return int(time.time() * 1000)


# The quietest hour carries a quarter of the busiest hour's traffic (users across time
# zones): a few requests a minute at 04:00 UTC, not one every few minutes
TROUGH = 0.25


def diurnal(minute: int) -> float:
    hour = (minute % 1440) / 60
    return TROUGH + (1 - TROUGH) * (0.5 - 0.5 * math.cos(2 * math.pi * (hour - 4) / 24))


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@functools.lru_cache(maxsize=8192)
def client(key: str) -> dict[str, Any]:
    """A stable visitor identity (ip, country, colo, user agent) for `key`."""
    r = random.Random(f"client:{key}")
    country = r.choice(COUNTRIES)
    first = {"US": (73, 98, 24, 71, 108), "GB": (81, 86), "CA": (99, 142), "DE": (91, 87)}.get(
        country, (5, 31, 45)
    )
    return {
        "ip": f"{r.choice(first)}.{r.randrange(1, 255)}.{r.randrange(255)}.{r.randrange(1, 255)}",
        "country": country,
        "colo": r.choice(COLOS[country]),
        "ua": r.choice(UAS),
    }


class Generator:
    """Generates one script's invocations for minutes under one platform snapshot."""

    def __init__(self, state: State, profile: Profile, meta: dict[str, Any]) -> None:
        self.profile = profile
        self.state = state
        self.edge = cf_firewall.history_rules(state)  # IP Access Rules, as they were each minute
        self.seed = int(meta["seed"])
        self.users: list[str] = json.loads(meta["users"])
        self.peptides: list[str] = json.loads(meta["peptides"])
        self.base = platform_view.snapshot(state, profile.name)
        self.timeline = platform_view.timeline(state, profile.worker)
        self.starts = [t for t, _ in self.timeline]
        self.snaps: dict[str, Snapshot] = {}
        self.endpoints = ENDPOINTS[profile.name]
        self.weights = [ep.weight for ep in self.endpoints]

    def snap_at(self, at: int, rng: random.Random) -> Snapshot:
        i = bisect.bisect_right(self.starts, at) - 1
        if i < 0:
            return self.base
        shares = self.timeline[i][1]
        version = shares[0][0]
        if len(shares) > 1:
            version = rng.choices([v for v, _ in shares], [p for _, p in shares])[0]
        if version.id not in self.snaps:
            self.snaps[version.id] = platform_view.with_version(self.base, version)
        return self.snaps[version.id]

    def minute(self, m: int, last_ms: int) -> tuple[list[trace.Invocation], int]:
        rng = random.Random(f"{self.seed}:{self.profile.worker}:{m}")
        t0 = m * 60_000
        visitors = conditions.active(self.base.conds, f"visitors:{self.profile.worker}", t0) or {}
        if "per_minute" in visitors:  # a flat rate, whatever the hour (sparse traffic)
            lam = float(visitors["per_minute"])
        else:
            lam = PEAK_PER_MIN[self.profile.name] * diurnal(m) * float(visitors.get("volume", 1.0))
            lam = max(lam, float(visitors.get("min_per_minute", 0.0)))
        times = sorted(t0 + rng.randrange(60_000) for _ in range(poisson(rng, lam)))
        out: list[trace.Invocation] = []
        for at in times:
            inv = self.request(at, rng, cold=at - last_ms > IDLE_COLD_MS)
            last_ms = at
            out.append(inv)
            if inv.route == "POST /manuscripts" and inv.status == 201:
                out.append(self.job(at + rng.randint(800, 4000), rng, inv.extra.get("id", "")))
        if self.profile.name == "peptalk" and m % 1440 == 120:
            out.append(self.nightly(t0, rng))
        out += self.attacks(m, rng)
        return cf_firewall.screen(self.edge, out), last_ms

    def request(self, at: int, rng: random.Random, cold: bool) -> trace.Invocation:
        ep = rng.choices(self.endpoints, self.weights)[0]
        snap = self.snap_at(at, rng)
        user = rng.choice(self.users) if self.users and (ep.auth or ep.kv) else None
        who = client(user or f"anon:{rng.randrange(5000)}")
        res = evaluate(snap, ep, at, rng, cold=cold, user_id=user)
        path = ep.pattern
        extra: dict[str, Any] = {"host": HOSTS[self.profile.name]}
        if ":id" in path:
            ident = f"{rng.getrandbits(64):016x}"
            path, extra["id"] = path.replace(":id", ident), ident
        if ":slug" in path:
            path = path.replace(
                ":slug",
                (rng.choice(self.peptides) if self.peptides else "bpc-157")
                .lower()
                .replace(" ", "-"),
            )
        if ep.route == "POST /manuscripts":
            extra["id"] = f"{rng.getrandbits(64):016x}"
        query = "?page=1&limit=20" if ep.route == "GET /manuscripts" else ""
        if ep.method == "OPTIONS":
            extra["headers"] = {
                "origin": self.profile.frontend_origin,
                "access-control-request-method": "POST",
            }
        return trace.Invocation(
            ts_ms=at, script=self.profile.worker, version_id=snap.version_id, outcome=res.outcome,
            wall_ms=res.wall_ms, cpu_ms=res.cpu_ms, method=ep.method,
            url=f"https://{HOSTS[self.profile.name]}{path}{query}", path=path, route=ep.route,
            status=res.status, subrequests=res.subrequests, colo=who["colo"], country=who["country"],
            client_ip=who["ip"], user_agent=who["ua"], logs=res.logs, exceptions=res.exceptions,
            tokens_used=res.tokens_used, response_bytes=res.response_bytes,
            user_id=user if res.status < 400 else None, ray_id=f"{rng.getrandbits(64):016x}",
            cold_start=cold, extra=extra,
        )  # fmt: skip

    def job(self, at: int, rng: random.Random, job: str) -> trace.Invocation:
        snap = self.snap_at(at, rng)
        res = consume(snap, at, rng, job)
        return trace.Invocation(
            ts_ms=at, script=self.profile.worker, version_id=snap.version_id, event_type="queue",
            outcome=res.outcome, wall_ms=res.wall_ms, cpu_ms=res.cpu_ms, subrequests=res.subrequests,
            logs=res.logs, exceptions=res.exceptions, tokens_used=res.tokens_used,
            extra={"queue": self.profile.queue, "batchSize": 1},
        )  # fmt: skip

    def nightly(self, at: int, rng: random.Random) -> trace.Invocation:
        from .apps.pipeline import CRON, simulate

        snap = self.snap_at(at, rng)
        res, _ = simulate(snap, self.peptides, at, rng)
        return trace.Invocation(
            ts_ms=at, script=self.profile.worker, version_id=snap.version_id, event_type="scheduled",
            outcome=res.outcome, wall_ms=res.wall_ms, cpu_ms=res.cpu_ms, subrequests=res.subrequests,
            logs=res.logs, tokens_used=res.tokens_used, extra={"cron": CRON},
        )  # fmt: skip

    def attacks(self, m: int, rng: random.Random) -> list[trace.Invocation]:
        from .apps.security import attack_minute

        out: list[trace.Invocation] = []
        prefix = f"attack:{self.profile.worker}:"
        for name in sorted(self.base.conds):
            cond = conditions.active(self.base.conds, name, m * 60_000)
            if name.startswith(prefix) and cond:
                out += attack_minute(self, name[len(prefix) :], cond, m, rng)
        return out

    @property
    def host(self) -> str:
        return HOSTS[self.profile.name]


def _meta(db: Any, script: str) -> dict[str, Any] | None:
    row = db.execute("SELECT * FROM traffic_meta WHERE script = ?", (script,)).fetchone()
    return dict(row) if row else None


def generate(state: State, profile: Profile, start_ms: int, end_ms: int, db: Any) -> int:
    """Insert the synthetic invocations of [start_ms, end_ms) through `db` (in a tx)."""
    meta = _meta(db, profile.worker)
    if meta is None or end_ms <= start_ms:
        return 0
    gen = Generator(state, profile, meta)
    row = db.execute(
        "SELECT max(ts_ms) FROM traffic WHERE script = ? AND ts_ms < ? AND event_type = 'fetch'",
        (profile.worker, start_ms),
    ).fetchone()
    last = row[0] if row and row[0] is not None else start_ms - 60_000
    total = 0
    for m in range(start_ms // 60_000, (end_ms - 1) // 60_000 + 1):
        invs, _ = gen.minute(m, last)
        keep = [i for i in invs if start_ms <= i.ts_ms < end_ms]
        fetches = [i.ts_ms for i in invs if i.event_type == "fetch" and i.ts_ms < end_ms]
        last = max(fetches) if fetches else last
        total += trace.insert(db, keep)
    db.execute(
        "UPDATE traffic_meta SET cursor_ms = max(cursor_ms, ?) WHERE script = ?",
        (end_ms, profile.worker),
    )
    return total


def seed(state: State, rng: random.Random) -> None:
    end = now_ms()
    for profile in PROFILES.values():
        users, peptides = _population(state, profile)
        if profile.name == "peptalk":
            _seed_pdfs(state, peptides)
        with state.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO traffic_meta (script, seed, cursor_ms, users, peptides) VALUES (?,?,?,?,?)",
                (
                    profile.worker,
                    rng.getrandbits(31),
                    end - HISTORY_MS,
                    json.dumps(users),
                    json.dumps(peptides),
                ),
            )
            generate(state, profile, end - HISTORY_MS, end, db)


def _population(state: State, profile: Profile) -> tuple[list[str], list[str]]:
    try:
        with d1data.d1_connect(state, profile.database) as db:
            users = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM users WHERE role = 'user' ORDER BY id LIMIT 400"
                )
            ]
            peptides = (
                [r[0] for r in db.execute("SELECT name FROM peptides ORDER BY id")]
                if profile.name == "peptalk"
                else []
            )
    except (d1data.D1Error, Exception):  # no D1 yet (partial tree): visitors only
        return [], []
    return users, peptides


def _seed_pdfs(state: State, peptides: list[str]) -> None:
    """The last nightly run's PDFs, one per peptide, in the peptalk-pdfs bucket."""
    from .apps.common import pdf_bytes
    from .apps.pipeline import slug

    with contextlib.suppress(Exception):  # no R2 yet (partial tree)
        for name in peptides:
            cf_r2.put_object(
                state, "peptalk-pdfs", f"pdfs/{slug(name)}.pdf", pdf_bytes(name), "application/pdf"
            )


def regenerate(state: State, script: str, since_ms: int) -> int:
    """Replace the synthetic rows of `script` from `since_ms` on, under the current state."""
    profile = next(p for p in PROFILES.values() if p.worker == script)
    end = now_ms()
    with state.tx() as db:
        db.execute(
            "DELETE FROM traffic WHERE script = ? AND synthetic = 1 AND ts_ms >= ?",
            (script, since_ms),
        )
        db.execute("UPDATE traffic_meta SET cursor_ms = ? WHERE script = ?", (since_ms, script))
        return generate(state, profile, since_ms, end, db)


def advance(state: State, until_ms: int | None = None) -> int:
    """Generate every script's traffic from its cursor up to now."""
    end = until_ms or now_ms()
    total = 0
    for profile in PROFILES.values():
        with state.tx() as db:
            meta = _meta(db, profile.worker)
            if meta is not None:
                start = max(int(meta["cursor_ms"]), end - HISTORY_MS)
                total += generate(state, profile, start, end, db)
    return total


def start_ticker(state: State, interval_s: float = 2.0) -> Any:
    """A daemon thread that calls advance() every `interval_s`; returns stop()."""
    stopping = threading.Event()

    def run() -> None:
        while not stopping.is_set():
            try:
                advance(state)
            except Exception as exc:  # keep ticking; the next tick retries
                (state.dir / "traffic-ticker.err").write_text(repr(exc), encoding="utf-8")
            stopping.wait(interval_s)

    thread = threading.Thread(target=run, name="opsbook-traffic", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(10)

    return stop


def rows(state: State, script: str, since_ms: int = 0, until_ms: int | None = None) -> list[Any]:
    with state.read() as db:
        return db.execute(
            "SELECT * FROM traffic WHERE script = ? AND ts_ms >= ? AND ts_ms <= ? ORDER BY ts_ms, id",
            (script, since_ms, until_ms if until_ms is not None else 2**62),
        ).fetchall()


def export(
    state: State,
    script: str,
    path: Path,
    fmt: str = "json",
    since_ms: int = 0,
    until_ms: int | None = None,
) -> int:
    """Write the TraceItems of a window as `wrangler tail --format json` or NDJSON."""
    items = [trace.trace_item(r) for r in rows(state, script, since_ms, until_ms)]
    writer = trace.to_wrangler_json if fmt == "json" else trace.to_ndjson
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(writer(items))
    return len(items)
