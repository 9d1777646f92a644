"""Maintenance (read-only) mode through the Cloudflare KV API, shared by maintenance-window
and database-corruption (stop-writes / resume-writes).

The app reads a KV flag on every request (sandbox/apps/maintenance.py does what the
Workers do): with the value `true` its writes answer 503 with `Retry-After`, reads keep
working and the health route says `"maintenance": true`. The environment names the flag
in `app.maintenance_flag` (`{namespace, key, write_probe}`); without it the app is not
known to honour one and nothing is switched.

On: `PUT …/storage/kv/namespaces/{id}/values/{key}` with the value `true` and metadata
(`until`, `reason`, `by`): the app's `Retry-After` counts down to `until`. Off: `DELETE`
of the key. Each is proved by the app's own answer to `write_probe` (a POST with an empty
JSON body, which changes nothing): 503 with `Retry-After` while on, anything else after.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..clients.probes import ProbeResult, probe
from ..errors import NotFound

if TYPE_CHECKING:
    from ..platform import Platform

ON = "true"


@dataclass(frozen=True)
class Flag:
    namespace: str  # title or id of the KV namespace
    key: str
    write_probe: str  # a route the app answers a POST on

    def __str__(self) -> str:
        return f"{self.key} in KV namespace {self.namespace}"


def flag(p: Platform) -> Flag | None:
    """The environment's maintenance flag (`app.maintenance_flag`), or None."""
    conf = p.setting("app.maintenance_flag")
    if not isinstance(conf, dict) or not conf.get("namespace") or not conf.get("key"):
        return None
    return Flag(str(conf["namespace"]), str(conf["key"]), str(conf.get("write_probe") or "/"))


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_on(p: Platform, f: Flag) -> bool:
    try:
        return p.cf.kv_get(f.namespace, f.key).decode(errors="replace").strip().lower() == ON
    except NotFound:
        return False


def write_probe(p: Platform, f: Flag) -> ProbeResult:
    """The app's answer to a write that changes nothing (POST write_probe, body {})."""
    return probe(p.app_url(f.write_probe), method="POST", expected_status=503, json={})


def refused(r: ProbeResult) -> bool:
    """True when the app refused the write for maintenance (503 with Retry-After)."""
    return r.status == 503 and "retry-after" in r.headers


def probe_text(r: ProbeResult) -> str:
    retry = r.headers.get("retry-after")
    return f"{r.method} {r.url} -> {r.status if r.status is not None else r.error}" + (
        f" (Retry-After: {retry})" if retry else ""
    )


def turn_on(p: Platform, f: Flag, until: datetime | None, reason: str) -> dict[str, Any]:
    """Put the flag, then prove it with the app's answer to a write."""
    meta: dict[str, Any] = {"reason": reason, "by": "opsbook", "since": _stamp(datetime.now(UTC))}
    if until is not None:
        meta["until"] = _stamp(until)
    p.cf.kv_put(f.namespace, f.key, ON, metadata=meta)
    r = write_probe(p, f)
    if not refused(r):
        raise RuntimeError(
            f"{f} is set but the app still takes writes: {probe_text(r)}; "
            "it does not read the flag (check the FLAGS binding of the serving version)"
        )
    return {"flag": str(f), "value": ON, "metadata": meta, "write probe": probe_text(r)}


def turn_off(p: Platform, f: Flag) -> dict[str, Any]:
    """Delete the flag, then prove writes reach the app again."""
    with contextlib.suppress(NotFound):  # already off
        p.cf.kv_delete(f.namespace, f.key)
    r = write_probe(p, f)
    if refused(r):
        raise RuntimeError(f"{f} is deleted but the app still refuses writes: {probe_text(r)}")
    return {"flag": str(f), "deleted": True, "write probe": probe_text(r)}


def on_preview(p: Platform, f: Flag, until: datetime | None, reason: str) -> dict[str, Any]:
    meta = {"reason": reason, "by": "opsbook", **({"until": _stamp(until)} if until else {})}
    return {
        "call": f"PUT /accounts/{{account}}/storage/kv/namespaces/{{{f.namespace}}}/values/"
        f"{quote(f.key, safe='')} (value {ON!r}, metadata {json.dumps(meta)})",
        "wrangler": f"npx wrangler kv key put {f.key!r} {ON} --namespace-id <{f.namespace} id> "
        f"--remote --metadata '{json.dumps(meta)}'",
        "effect": "the app answers writes 503 with Retry-After; reads keep working",
        "undo": off_preview(p, f)["wrangler"],
    }


def off_preview(p: Platform, f: Flag) -> dict[str, Any]:
    return {
        "call": f"DELETE /accounts/{{account}}/storage/kv/namespaces/{{{f.namespace}}}/values/"
        f"{quote(f.key, safe='')}",
        "wrangler": f"npx wrangler kv key delete {f.key!r} --namespace-id <{f.namespace} id> --remote",
    }
