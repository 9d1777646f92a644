"""api-down remedies (guarded actions) and the verification after them.

- `rollback`: deploy the version that was live before the onset at 100%, as
  `wrangler rollback <version-id>` does. Cloudflare refuses with 10220 when a secret
  changed since that version was created; the approved action then retries with
  `?force=true` (what wrangler does) and says so in its result.
- `put-secret`: put a missing secret back. Its value is never a parameter: it comes from
  an environment variable named by `-p secret_value_ref=env:NAME` or by the environment's
  `app.secret_sources` (`{SECRET_NAME: env:VAR}`), read inside the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..environments import SECRET_REF
from ..errors import ConflictError
from . import incident_signals as sig
from .api_down import is_down, probe_app, probe_rows

if TYPE_CHECKING:
    from ..platform import Platform
    from .api_down import Correlation


def _script_path(p: Platform) -> str:
    return f"/accounts/{p.cf.account_id}/workers/scripts/{p.worker}"


@dataclass(frozen=True)
class RollbackPlan:
    version_id: str
    number: Any
    bad_version_id: str
    bad_number: Any
    message: str

    def preview(self, p: Platform) -> dict[str, Any]:
        return {
            "call": f"POST {_script_path(p)}/deployments",
            "body": {
                "strategy": "percentage",
                "versions": [{"version_id": self.version_id, "percentage": 100}],
                "annotations": {"workers/message": self.message},
            },
            "wrangler": f'npx wrangler rollback {self.version_id} --name {p.worker} -m "{self.message}"',
            "what": f"version {self.bad_number} ({self.bad_version_id}) -> version "
            f"{self.number} ({self.version_id}), the version live before the onset",
            "on 10220": "a secret changed since that version: retried with ?force=true "
            "(the current secrets are kept), as wrangler does",
        }


def rollback_plan(c: Correlation | None) -> RollbackPlan | None:
    if c is None or not c.good_version_id:
        return None
    message = f"api-down: roll back version {c.version_number} to {c.good_version_number}"
    return RollbackPlan(
        c.good_version_id, c.good_version_number, c.version_id, c.version_number, message
    )


def rollback(p: Platform, plan: RollbackPlan) -> dict[str, Any]:
    forced = ""
    try:
        dep = p.cf.create_deployment(p.worker, plan.version_id, plan.message)
    except ConflictError as exc:
        dep = p.cf.create_deployment(p.worker, plan.version_id, plan.message, force=True)
        forced = f"Cloudflare refused with 10220 ({exc}); retried with ?force=true"
    return {
        "deployment": dep.get("id"),
        "version": plan.version_id,
        "number": plan.number,
        "forced": forced or "no (no 10220 refusal)",
        "at": sig.fix_time(),
    }


@dataclass(frozen=True)
class SecretPlan:
    refs: dict[str, str | None]  # secret name -> env:VAR holding its value (None: unknown)

    @property
    def ready(self) -> bool:
        return all(self.refs.values())

    @property
    def unsourced(self) -> list[str]:
        return [n for n, ref in self.refs.items() if not ref]

    def preview(self, p: Platform) -> dict[str, Any]:
        def var(ref: str | None) -> str:
            return ref.split(":", 1)[1] if ref else "VALUE"

        out: dict[str, Any] = {
            "call": f"PUT {_script_path(p)}/secrets",
            "body": [
                {"name": n, "text": f"<value of {ref}>" if ref else "<needs a value>",
                 "type": "secret_text"}
                for n, ref in self.refs.items()
            ],
            "wrangler": " && ".join(
                f'printf %s "${var(ref)}" | npx wrangler secret put {n} --name {p.worker}'
                for n, ref in self.refs.items()
            ),
        }  # fmt: skip
        if not self.ready:
            out["needs"] = (
                f"no value source for {', '.join(self.unsourced)}: export the value in a "
                "variable and run again with -p secret_value_ref=env:NAME (or map it in "
                "app.secret_sources). The value is never a parameter."
            )
        return out


def secret_plan(p: Platform, missing: list[str], secret_value_ref: str = "") -> SecretPlan:
    sources = dict(p.setting("app.secret_sources") or {})
    refs: dict[str, str | None] = {}
    for name in missing:
        ref = secret_value_ref if (secret_value_ref and len(missing) == 1) else sources.get(name)
        if ref is not None and not SECRET_REF.match(str(ref)):
            raise ValueError(f"the value of {name} must come from env:NAME, got {ref!r}")
        refs[name] = str(ref) if ref else None
    return SecretPlan(refs)


def put_secrets(p: Platform, plan: SecretPlan) -> dict[str, Any]:
    if not plan.ready:
        raise ValueError(str(plan.preview(p)["needs"]))
    for name, ref in plan.refs.items():
        assert ref is not None
        p.cf.put_secret(p.worker, name, p.env.secret(ref))  # read here, never shown
    return {
        "put": sorted(plan.refs),
        "from": dict(plan.refs),
        "at": sig.fix_time(),
    }


def verify(
    p: Platform, fixed_at: datetime, *, rounds: int = 2, threshold: float = 0.05
) -> tuple[bool, list[str]]:
    """Fresh probes (every smoke check, `rounds` times) and the analytics since the fix."""
    probes = [r for _ in range(rounds) for r in probe_app(p)]
    since = sig.since_fix(p, fixed_at)
    ok = not is_down(probes) and all(r.ok for r in probes)
    passed = ok and since["error_rate"] <= threshold
    evidence = [
        *probe_rows(probes),
        f"since the fix ({since['since']}): {since['requests']} requests, {since['errors']} "
        f"errors ({sig.pct(since['error_rate'])}) — GraphQL workersInvocationsAdaptive",
    ]
    return passed, evidence


def fixed_at(result: Any) -> datetime:
    """When an applied action's fix took effect; now for one applied in an earlier run."""
    at = result.result.get("at") if isinstance(getattr(result, "result", None), dict) else None
    return datetime.fromisoformat(at.replace("Z", "+00:00")) if at else datetime.now(UTC)
