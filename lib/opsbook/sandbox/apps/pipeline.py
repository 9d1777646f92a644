"""PepTalk's nightly research pipeline (cron `0 2 * * *`), one scheduled invocation.

Per peptide: PubMed fetch -> LLM summary (tokens_used logged) -> compliance check ->
PDF to R2. A failure logs "Pipeline failed for BPC-157: <reason>". `simulate` is the
model (used by the traffic history too); `run_pipeline` runs it for real: pipeline_runs
rows and peptide updates in D1, the PDFs in R2, and the invocation in the traffic table.
"""

from __future__ import annotations

import hashlib
import random
import time
from datetime import UTC, datetime
from typing import Any

from .. import cf_r2, conditions, d1data, trace
from ..behaviour import Outcome, Snapshot, upstream_effect
from ..platform_view import snapshot

CRON = "0 2 * * *"


LLM_ERRORS = {401: "authentication_error: invalid x-api-key", 429: "rate_limit_error",
              529: "overloaded_error"}  # fmt: skip
LLM_SECRET = "ANTHROPIC_API_KEY"


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def llm_key_rejected(snap: Snapshot, at: int) -> bool:
    """The LLM provider only accepts the key it issued last (`valid_key_sha256`)."""
    cond = conditions.active(snap.conds, "upstream:anthropic", at) or {}
    want = cond.get("valid_key_sha256")
    return bool(want) and key_digest(snap.secrets.get(LLM_SECRET, "")) != want


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def simulate(
    snap: Snapshot, peptides: list[str], at: int, rng: random.Random
) -> tuple[Outcome, list[dict[str, Any]]]:
    out = Outcome(status=0, cpu_ms=0.0)
    t = at
    results: list[dict[str, Any]] = []
    out.log("log", t, "nightly-ingest started", {"peptides": len(peptides), "cron": CRON})
    for name in peptides:
        started = t
        out.log("log", t, "Pipeline started", {"peptide": name})
        latency, err = upstream_effect(snap, "pubmed", t, rng, subject=name)
        t += int(latency)
        out.subrequests += 1
        reason = None
        tokens = None
        if err:
            reason = f"PubMed API timeout after {int(latency)}ms"
        else:
            studies = rng.randint(3, 40)
            out.log("log", t, "PubMed fetch", {"peptide": name, "studies": studies})
            latency, err = upstream_effect(snap, "anthropic", t, rng, subject=name)
            if llm_key_rejected(snap, t):
                latency, err = latency * 0.2, 401
            t += int(latency)
            out.subrequests += 1
            if err:
                reason = f"LLM API error: {err} {LLM_ERRORS.get(err, 'api_error')}"
            else:
                tokens = rng.randint(1800, 7000)
                out.log("log", t, "tokens_used", tokens)
                cond = conditions.active(snap.conds, "upstream:compliance", t)
                only = (cond or {}).get("peptides")
                if cond is not None and (not only or name in only):
                    reason = "Compliance check failed: prohibited claim 'cures' in section Benefits"
                else:
                    size = rng.randint(180_000, 900_000)
                    out.log(
                        "log", t, "PDF uploaded", {"key": f"pdfs/{slug(name)}.pdf", "bytes": size}
                    )
                    out.subrequests += 1
        if reason:
            out.log("error", t, f"Pipeline failed for {name}: {reason}")
        else:
            out.log("log", t, f"Pipeline succeeded for {name}")
        out.cpu_ms += rng.uniform(8, 25)
        results.append(
            {"peptide": name, "ok": reason is None, "error": reason, "tokens_used": tokens,
             "started_ms": started, "finished_ms": t}
        )  # fmt: skip
    failed = [r["peptide"] for r in results if not r["ok"]]
    out.log("log" if not failed else "warn", t, "nightly-ingest finished",
            {"ok": len(results) - len(failed), "failed": len(failed)})  # fmt: skip
    out.tokens_used = sum(r["tokens_used"] or 0 for r in results)
    out.wall_ms = float(t - at)
    return out, results


def slug(name: str) -> str:
    return name.lower().replace(" ", "-")


def peptide_names(state: Any) -> list[str]:
    with d1data.d1_connect(state, "peptalk-production-db") as db:
        return [r[0] for r in db.execute("SELECT name FROM peptides ORDER BY id")]


def run_pipeline(
    state: Any, at_ms: int | None = None, only: list[str] | None = None
) -> list[dict[str, Any]]:
    """Run the nightly pipeline now (or as of `at_ms`): D1 rows, R2 PDFs, a traffic row."""
    from . import common

    at = at_ms if at_ms is not None else int(time.time() * 1000)
    snap = snapshot(state, "peptalk")
    names = peptide_names(state)
    if only:
        names = [n for n in names if n in only]
    out, results = simulate(snap, names, at, random.Random(f"pipeline:{at}"))
    with d1data.d1_connect(state, "peptalk-production-db") as db:
        db.execute("BEGIN")
        for r in results:
            pid = db.execute("SELECT id FROM peptides WHERE name = ?", (r["peptide"],)).fetchone()[
                0
            ]
            db.execute(
                "INSERT INTO pipeline_runs (peptide_id, started_at, finished_at, status, error) "
                "VALUES (?, ?, ?, ?, ?)",
                (pid, _iso(r["started_ms"]), _iso(r["finished_ms"]),
                 "success" if r["ok"] else "failed", r["error"]),
            )  # fmt: skip
            if r["ok"]:
                db.execute(
                    "UPDATE peptides SET last_pipeline_run = ?, page_version = page_version + 1, "
                    "updated_at = ? WHERE id = ?",
                    (_iso(r["finished_ms"]), _iso(r["finished_ms"]), pid),
                )
        db.execute("COMMIT")
    for r in results:
        if r["ok"]:  # uploaded when the peptide's run finished (the run's own clock)
            cf_r2.put_object(
                state,
                "peptalk-pdfs",
                f"pdfs/{slug(r['peptide'])}.pdf",
                common.pdf_bytes(r["peptide"]),
                "application/pdf",
                uploaded=r["finished_ms"] / 1000,
            )
    inv = trace.Invocation(
        ts_ms=at, script=snap.script, version_id=snap.version_id, event_type="scheduled",
        outcome="ok", wall_ms=out.wall_ms, cpu_ms=out.cpu_ms, subrequests=out.subrequests,
        logs=out.logs, tokens_used=out.tokens_used, synthetic=False, extra={"cron": CRON},
    )  # fmt: skip
    with state.tx() as db:
        trace.insert(db, [inv])
    return results


def skip_run(state: Any, why: str) -> None:
    """The scheduled handler ran but did nothing (maintenance mode): log it, write nothing."""
    at = int(time.time() * 1000)
    snap = snapshot(state, "peptalk")
    out = Outcome(status=0, cpu_ms=0.4)
    out.log("warn", at, f"nightly-ingest skipped: {why}", {"cron": CRON})
    inv = trace.Invocation(
        ts_ms=at, script=snap.script, version_id=snap.version_id, event_type="scheduled",
        outcome="ok", wall_ms=2.0, cpu_ms=out.cpu_ms, logs=out.logs, synthetic=False,
        extra={"cron": CRON},
    )  # fmt: skip
    with state.tx() as db:
        trace.insert(db, [inv])
