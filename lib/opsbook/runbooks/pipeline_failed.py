"""pipeline-failed: the nightly research pipeline failed for a peptide (seed 004).

Evidence comes from D1 (`pipeline_runs`: status and the error the app logs as
"Pipeline failed for BPC-157: <reason>"; `peptides`: page_version, last_pipeline_run)
and the pipeline's success rate against the Key Metrics threshold. The retry re-runs the
pipeline for the failing peptides while a tail filtered on their names watches the log
lines (`wrangler tail | grep "BPC-157"`). An LLM error that is an authentication error
(401/403: the key was revoked or rotated) is not transient: the Worker's LLM API key is put
first, from the operator's environment, then the pipeline is re-run. The verification
reads fresh evidence: the new pipeline_runs row, page_version, the PDF in R2 (uploaded
after the new run started) and the log lines the tail saw.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..platform import Platform

CAUSES = {
    "pubmed-timeout": "the PubMed fetch timed out (usually transient: retry)",
    "llm-error": "the LLM API answered an error (retry)",
    "compliance-failed": "the compliance check rejected the generated page (review, fix the prompt)",
}
PROFILES = ("peptalk",)
SEVERITY = "P2"
NO_REMEDY = {
    "compliance-failed": "no automatic retry: the check would fail the same way. Review the "
    "generated page for the flagged claim, fix the prompt in packages/research, then re-run "
    'the peptide (`pnpm cli run-single "BPC-157"`)',
}
# the error text the pipeline records (and logs after "Pipeline failed for X: ")
PATTERNS = (
    ("pubmed-timeout", "PubMed API timeout"),
    ("llm-error", "LLM API error"),
    ("compliance-failed", "Compliance check failed"),
)
RETRYABLE = ("pubmed-timeout", "llm-error")
# an LLM error that no retry fixes: the provider refuses the key (Anthropic: 401
# authentication_error, 403 permission_error; OpenAI: 401 invalid_api_key)
AUTH_STATUS = ("401", "403")
AUTH_MARKERS = ("authentication_error", "permission_error", "invalid_api_key", "invalid x-api-key")
LLM_SECRET = "ANTHROPIC_API_KEY"  # the Worker secret the pipeline's LLM calls use
TRIGGER_PATH = "/__scheduled"  # the Worker's scheduled handler, as `wrangler dev` exposes it
LIST_MAX = 12


@dataclass
class Peptide:
    id: int
    name: str
    slug: str
    page_version: int
    last_pipeline_run: str | None
    run_id: int | None
    started_at: str | None
    status: str | None
    error: str | None
    last_success: str | None

    @property
    def failing(self) -> bool:
        return self.status == "failed"

    @property
    def cause(self) -> str | None:
        return classify(self.error)

    @property
    def key_rejected(self) -> bool:
        """An LLM error that says the API key is refused (no retry alone fixes it)."""
        return self.cause == "llm-error" and is_auth_error(self.error)

    def error_line(self) -> str:
        return f"Pipeline failed for {self.name}: {self.error} (run #{self.run_id}, started {self.started_at})"


def classify(error: str | None) -> str | None:
    """The cause of one recorded pipeline error, or None when no pattern fits."""
    text = (error or "").lower()
    for cause, pattern in PATTERNS:
        if pattern.lower() in text:
            return cause
    return None


def is_auth_error(error: str | None) -> bool:
    """`LLM API error: 401 authentication_error ...`: the provider refuses the key."""
    text = (error or "").lower()
    if "llm api error:" not in text:
        return False
    after = text.split("llm api error:", 1)[1].strip()
    status = after.split()[0] if after else ""
    return status in AUTH_STATUS or any(m in after for m in AUTH_MARKERS)


STATE_SQL = """SELECT p.id, p.name, p.slug, p.page_version, p.last_pipeline_run,
  r.id AS run_id, r.started_at, r.status, r.error,
  (SELECT max(s.finished_at) FROM pipeline_runs s
    WHERE s.peptide_id = p.id AND s.status = 'success') AS last_success
FROM peptides p
LEFT JOIN pipeline_runs r ON r.id = (SELECT max(id) FROM pipeline_runs WHERE peptide_id = p.id)"""


def _rows(p: Platform, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    out = p.cf.d1_query(p.database, sql, params)
    return list(out[0]["results"]) if out else []


def peptide_states(p: Platform, peptide: str = "") -> list[Peptide]:
    """Every peptide (or the one named, by name or slug) with its newest run."""
    sql, params = STATE_SQL, None
    if peptide.strip():
        sql += " WHERE lower(p.name) = lower(?) OR lower(p.slug) = lower(?)"
        params = [peptide.strip(), peptide.strip()]
    return [Peptide(**r) for r in _rows(p, sql + " ORDER BY p.name", params)]


def peptide_names(p: Platform) -> list[str]:
    return [r["name"] for r in _rows(p, "SELECT name FROM peptides ORDER BY name")]


@dataclass(frozen=True)
class Rate:
    ok: int
    total: int
    since: str
    until: str
    threshold: float

    @property
    def value(self) -> float | None:
        return self.ok / self.total if self.total else None

    @property
    def breached(self) -> bool:
        return self.value is not None and self.value < self.threshold

    def text(self) -> str:
        if self.value is None:
            return "no pipeline runs recorded"
        mark = "<" if self.breached else ">="
        return (
            f"pipeline success {self.ok}/{self.total} = {self.value:.1%} over the 24 h up to the "
            f"newest run ({self.since} .. {self.until}); {mark} threshold {self.threshold:.0%}"
        )


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def success_rate(runs: list[dict[str, Any]], threshold: float, hours: float = 24) -> Rate:
    """Success over the `hours` up to the newest run (Key Metrics: < 90 % for 24 h)."""
    if not runs:
        return Rate(0, 0, "-", "-", threshold)
    newest = max(parse_time(r["started_at"]) for r in runs)
    since = newest - timedelta(hours=hours)
    window = [r for r in runs if parse_time(r["started_at"]) > since]
    ok = sum(1 for r in window if r["status"] == "success")
    return Rate(ok, len(window), iso(since), iso(newest), threshold)


def recent_runs(p: Platform, hours: float = 48) -> list[dict[str, Any]]:
    newest = _rows(p, "SELECT max(started_at) AS newest FROM pipeline_runs")
    if not newest or not newest[0]["newest"]:
        return []
    since = iso(parse_time(newest[0]["newest"]) - timedelta(hours=hours))
    return _rows(p, "SELECT started_at, status FROM pipeline_runs WHERE started_at >= ?", [since])


def threshold_of(p: Platform) -> tuple[float, float]:
    t = p.setting("thresholds.pipeline_success") or {}
    return float(t.get("value", 0.90)), float(t.get("for_hours", 24))


def _names(items: list[Peptide]) -> str:
    names = [i.name for i in items]
    return ", ".join(names)


def diagnose(
    states: list[Peptide], rate: Rate, wanted: str = ""
) -> tuple[str, list[str], str | None]:
    """(cause, evidence, remedy) from the peptides' newest runs and the success rate."""
    scope = f"peptide {wanted}" if wanted else f"all {len(states)} peptides"
    if not states:
        return (
            "unknown",
            [f"no peptide named {wanted!r} in D1 peptides" if wanted else "no peptides in D1"],
            None,
        )
    failing = [s for s in states if s.failing]
    if not failing:
        running = [s for s in states if s.status not in ("success", None)]
        evidence = [
            f"the newest pipeline run of {scope} succeeded",
            rate.text(),
        ]
        if running:
            evidence.append(f"still running: {_names(running)}")
        return "healthy", evidence, None
    by_cause = Counter(s.cause for s in failing)
    known = [(c, n) for c, n in by_cause.most_common() if c is not None]
    evidence = [f"{len(failing)} failing peptide(s) in {scope}: {_names(failing)}"]
    evidence += [s.error_line() for s in failing[:LIST_MAX]]
    if len(failing) > LIST_MAX:
        evidence.append(f"... and {len(failing) - LIST_MAX} more with the same kind of error")
    for s in failing[:LIST_MAX]:
        evidence.append(
            f"{s.name}: last successful run {s.last_success or 'never'}; page_version "
            f"{s.page_version} not updated since {s.last_pipeline_run or 'never'}"
        )
    evidence.append(rate.text())
    if not known:
        return "unknown", evidence, "Read the error lines above; no known cause fits them."
    cause = known[0][0]
    if len(known) > 1:
        evidence.append(
            "mixed causes: " + "; ".join(f"{c}: {n}" for c, n in known) + f" — acting on {cause}"
        )
    if cause in NO_REMEDY:
        return cause, evidence, NO_REMEDY[cause]
    refused = [s for s in failing if s.key_rejected]
    if cause == "llm-error" and refused:
        evidence.append(
            f"the LLM API refuses the key for {len(refused)} peptide(s) (authentication error): "
            "not transient, a retry alone fails the same way"
        )
        return (
            cause,
            evidence,
            f"Put a valid {LLM_SECRET} (rotated in the provider's console) as the Worker's "
            f"secret, then retry the pipeline for {_names(retryable(failing))}",
        )
    return cause, evidence, f"Retry the pipeline for {_names(retryable(failing))}"


def retryable(states: list[Peptide]) -> list[Peptide]:
    return [s for s in states if s.failing and s.cause in RETRYABLE]


def key_rejected(states: list[Peptide]) -> bool:
    return any(s.failing and s.key_rejected for s in states)


# ---- the LLM key --------------------------------------------------------------------------
def key_ref(p: Platform) -> str | None:
    """Where the new key's value comes from: `app.secret_sources` (an env: reference)."""
    ref = (p.setting("app.secret_sources") or {}).get(LLM_SECRET)
    return str(ref) if ref else None


def put_key_preview(p: Platform) -> dict[str, Any]:
    ref = key_ref(p) or f"env:{LLM_SECRET}"
    var = ref.split(":", 1)[-1]
    return {
        "call": f"PUT /accounts/{{account}}/workers/scripts/{p.worker}/secrets",
        "body": {"name": LLM_SECRET, "text": f"<the value of {ref}>", "type": "secret_text"},
        "wrangler": f'printf %s "${var}" | npx wrangler secret put {LLM_SECRET} --name {p.worker}',
        "source": f"{ref}: the key from the provider's console (create a new one if it was revoked)",
        "undo": "none: secrets are write-only, the old value cannot be put back",
    }


def put_key(p: Platform) -> dict[str, Any]:
    ref = key_ref(p) or f"env:{LLM_SECRET}"
    result = p.cf.put_secret(p.worker, LLM_SECRET, p.env.secret(ref))  # read here, never shown
    return {"secret": result.get("name", LLM_SECRET), "worker": p.worker, "from": ref}


# ---- the retry ----------------------------------------------------------------------------
def retry_preview(p: Platform, names: list[str]) -> dict[str, Any]:
    first = names[0] if names else "BPC-157"
    return {
        "call": f"POST {p.app_url(TRIGGER_PATH)}",
        "body": {"peptides": names},
        "effect": "runs the pipeline now for these peptides: new pipeline_runs rows, "
        "page_version + 1 and the PDF in R2 overwritten on success; LLM tokens are spent",
        "cli": f'cd packages/research && pnpm cli run-single "{first}"',
        "wrangler": 'npx wrangler dev --test-scheduled, then curl -X POST "http://localhost:8787/__scheduled?cron=0+2+*+*+*"',
    }


def run_retry(p: Platform, names: list[str], tail_seconds: float = 10) -> dict[str, Any]:
    """Trigger the pipeline for `names` while a tail filtered on the first name watches."""
    import httpx

    from .live_tail import log_messages, tail_until

    def trigger() -> dict[str, Any]:
        resp = httpx.post(p.app_url(TRIGGER_PATH), json={"peptides": names}, timeout=120)
        resp.raise_for_status()
        return dict(resp.json())

    filters = [{"query": names[0]}] if len(names) == 1 else []
    events, answer = tail_until(p, tail_seconds, filters, stop=lambda ev: bool(ev), during=trigger)
    wanted = set(names)
    lines = [
        head
        for e in events
        for head, _ in log_messages(e)
        if head.startswith("Pipeline ") and head.split(" for ", 1)[-1].split(":")[0] in wanted
    ]
    results = answer.get("results", []) if isinstance(answer, dict) else []
    skipped = answer.get("skipped") if isinstance(answer, dict) else None
    return {
        "peptides": names,
        **({"skipped": f"the Worker did not run the pipeline: {skipped}"} if skipped else {}),
        "succeeded": [r["peptide"] for r in results if r.get("ok")],
        "failed": {r["peptide"]: r.get("error") for r in results if not r.get("ok")},
        "tail": lines[:LIST_MAX] or ["(no matching log line reached the tail)"],
        "tail_lines": len(lines),
        "log_failed": sorted({_peptide_of(x) for x in lines if x.startswith("Pipeline failed")}),
        "log_succeeded": sorted(
            {_peptide_of(x) for x in lines if x.startswith("Pipeline succeeded")}
        ),
    }


def _peptide_of(line: str) -> str:
    return line.split(" for ", 1)[-1].split(":")[0]


def pdf_key(s: Peptide) -> str:
    return f"pdfs/{s.slug}.pdf"


def pdf_objects(p: Platform, states: list[Peptide]) -> dict[str, dict[str, Any] | None]:
    """Each peptide's PDF in R2 (size, ETag, Last-Modified), None when it is not there."""
    bucket = str(p.setting("app.r2_bucket"))
    return {s.name: p.cf.r2_object_info(bucket, pdf_key(s)) for s in states}


def pdf_fresh(obj: dict[str, Any] | None, run_started: str | None) -> bool:
    """The object was uploaded by the run that started at `run_started` (or later)."""
    from email.utils import parsedate_to_datetime

    if not obj or not obj.get("last_modified") or not run_started:
        return False
    modified = parsedate_to_datetime(str(obj["last_modified"]))
    started = parse_time(run_started).replace(microsecond=0)  # Last-Modified has seconds only
    return modified >= started


def log_verdict(name: str, logs: dict[str, Any] | None) -> tuple[bool, str]:
    """What the tail saw for `name` during the retry (`run_retry`'s log_failed and
    log_succeeded): a failure line fails the check; no line leaves it to D1 and R2."""
    logs = logs or {}
    if name in (logs.get("log_failed") or []):
        return False, f"logs: Pipeline failed for {name}"
    if name in (logs.get("log_succeeded") or []):
        return True, f"logs: Pipeline succeeded for {name}"
    return True, "logs: no line for it reached the tail (D1 and R2 decide)"


def verify(
    before: list[Peptide],
    after: list[Peptide],
    pdfs: dict[str, dict[str, Any] | None] | None = None,
    logs: dict[str, Any] | None = None,
) -> tuple[bool, list[str]]:
    """Each retried peptide's newest run is a new success, its page_version advanced, its
    PDF in R2 was uploaded by that run (when `pdfs` is given), and no log line the tail saw
    says it failed."""
    old = {s.name: s for s in before}
    lines: list[str] = []
    good: list[str] = []
    passed = bool(after)
    for s in after:
        prev = old.get(s.name)
        new_run = prev is None or (s.run_id or 0) > (prev.run_id or 0)
        advanced = prev is None or s.page_version > prev.page_version
        ok = new_run and s.status == "success" and advanced
        line = (
            f"{s.name}: newest run #{s.run_id} {s.status}"
            + (f" ({s.error})" if s.error else "")
            + f" started {s.started_at}; page_version {prev.page_version if prev else '?'} -> {s.page_version}"
        )
        if pdfs is not None:
            obj = pdfs.get(s.name)
            fresh = pdf_fresh(obj, s.started_at)
            ok = ok and fresh
            line += (
                f"; R2 {pdf_key(s)} " + (f"{obj['size']} bytes, Last-Modified {obj['last_modified']}"
                if obj else "missing") + (" (uploaded by this run)" if fresh else " (stale)")
            )  # fmt: skip
        logs_ok, seen = log_verdict(s.name, logs)
        passed = passed and ok and logs_ok
        (lines if not (ok and logs_ok) else good).append(f"{line}; {seen}")
    room = max(LIST_MAX - len(lines), 1)
    lines += good[:room]
    if len(good) > room:
        lines.append(f"... and {len(good) - room} more peptide(s) verified the same way")
    return passed, lines
