"""Workers API routes: scripts, deployments (deploy and rollback), versions, secrets.

Shapes follow the reference (section 1.1-1.2). Deploying a version created before the
script's secrets last changed answers error 10220 unless `?force=true`, which is how
`wrangler rollback` behaves. The hidden `behaviour` of a version is never shown.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import workers_model as wm
from .cf_account import check_account
from .envelope import CFError, json_body, multipart, ok, page_slice
from .state import USER_EMAIL, State, from_request

BASE = "/accounts/{account_id}/workers"
SCRIPT = BASE + "/scripts/{script_name}"


def _script(request: Request) -> tuple[State, dict[str, Any]]:
    check_account(request)
    state = from_request(request)
    row = wm.script_row(state, request.path_params["script_name"])
    if row is None:
        raise CFError(404, 10007, "This Worker does not exist on your account.")
    return state, row


def _version(state: State, script: str, version_id: str) -> wm.Version:
    version = wm.get_version(state, script, version_id)
    if version is None:
        raise CFError(404, 10007, f"Version {version_id} not found for worker {script}.")
    return version


def deployment_json(row: dict[str, Any]) -> dict[str, Any]:
    annotations = {"workers/triggered_by": row["triggered_by"]}
    if row["message"]:
        annotations["workers/message"] = row["message"]
    return {
        "id": row["id"],
        "created_on": row["created_on"],
        "source": row["source"],
        "strategy": "percentage",
        "author_email": row["author_email"],
        "annotations": annotations,
        "versions": json.loads(row["versions"]),
    }


def version_json(v: wm.Version) -> dict[str, Any]:
    annotations = {"workers/triggered_by": "upload"}
    if v.message:
        annotations["workers/message"] = v.message
    if v.tag:
        annotations["workers/tag"] = v.tag
    return {
        "id": v.id,
        "number": v.number,
        "metadata": {
            "created_on": v.created_on,
            "modified_on": v.created_on,
            "source": v.source,
            "author_id": v.author_email.split("@")[0],
            "author_email": v.author_email,
            "hasPreview": False,
        },
        "annotations": annotations,
    }


def _resolve_binding(state: State, binding: dict[str, Any]) -> dict[str, Any]:
    """A stored binding as the API shows it: D1 and KV ids in place of names."""
    b = dict(binding)
    if b["type"] == "d1" and "database_name" in b:
        b["id"] = _lookup(
            state, "SELECT uuid FROM d1_databases WHERE name = ?", b.pop("database_name")
        )
    elif b["type"] == "kv_namespace" and "namespace_title" in b:
        b["namespace_id"] = _lookup(
            state, "SELECT id FROM kv_namespaces WHERE title = ?", b.pop("namespace_title")
        )
    return b


def _stored_binding(state: State, binding: dict[str, Any]) -> dict[str, Any]:
    """An uploaded binding as stored: D1 and KV by name (what the apps resolve)."""
    b = {k: v for k, v in binding.items() if not (binding["type"] == "secret_text" and k == "text")}
    if b["type"] == "d1" and "id" in b:
        b["database_name"] = _lookup(
            state, "SELECT name FROM d1_databases WHERE uuid = ?", b.pop("id")
        )
    elif b["type"] == "kv_namespace" and "namespace_id" in b:
        b["namespace_title"] = _lookup(
            state, "SELECT title FROM kv_namespaces WHERE id = ?", b.pop("namespace_id")
        )
    return b


def _lookup(state: State, sql: str, key: Any) -> Any:
    with state.read() as db:
        try:
            row = db.execute(sql, (key,)).fetchone()
        except sqlite3.OperationalError:  # a table another module has not created
            return None
    return row[0] if row else None


def version_detail(state: State, v: wm.Version, script: dict[str, Any]) -> dict[str, Any]:
    out = version_json(v)
    out["resources"] = {
        "bindings": [_resolve_binding(state, b) for b in v.bindings],
        "script": {
            "etag": v.etag,
            "handlers": json.loads(script["handlers"]),
            "last_deployed_from": "wrangler",
        },
        "script_runtime": {
            "compatibility_date": script["compatibility_date"],
            "compatibility_flags": [],
            "usage_model": script["usage_model"],
            "limits": {"cpu_ms": 30000},
        },
    }
    return out


async def list_scripts(request: Request) -> Response:
    check_account(request)
    state = from_request(request)
    with state.read() as db:
        rows = db.execute("SELECT * FROM scripts ORDER BY name").fetchall()
    return ok([_script_json(state, dict(r)) for r in rows])


def _script_json(state: State, row: dict[str, Any]) -> dict[str, Any]:
    current = wm.current_version(state, row["name"])
    return {
        "id": row["name"],
        "etag": current.etag if current else "",
        "handlers": json.loads(row["handlers"]),
        "created_on": row["created_on"],
        "modified_on": row["modified_on"],
        "usage_model": row["usage_model"],
        "compatibility_date": row["compatibility_date"],
        "last_deployed_from": "wrangler",
        "has_assets": False,
        "has_modules": True,
    }


async def service(request: Request) -> Response:
    check_account(request)
    state = from_request(request)
    row = wm.script_row(state, request.path_params["service_name"])
    if row is None:
        raise CFError(404, 10090, "This service does not exist.")
    return ok(
        {
            "id": row["name"],
            "default_environment": {
                "environment": "production",
                "created_on": row["created_on"],
                "modified_on": row["modified_on"],
                "script": _script_json(state, row),
            },
            "created_on": row["created_on"],
            "modified_on": row["modified_on"],
        }
    )


async def script_settings(request: Request) -> Response:
    """GET .../settings: the non-versioned settings wrangler reads before an upload."""
    _script(request)
    return ok(
        {
            "logpush": False,
            "tail_consumers": None,
            "observability": {"enabled": True, "head_sampling_rate": 1},
        }
    )


async def list_deployments(request: Request) -> Response:
    state, script = _script(request)
    rows = wm.deployments(state, script["name"])
    return ok({"deployments": [deployment_json(r) for r in rows]})


async def get_deployment(request: Request) -> Response:
    state, script = _script(request)
    wanted = request.path_params["deployment_id"]
    for row in wm.deployments(state, script["name"]):
        if row["id"] == wanted:
            return ok(deployment_json(row))
    raise CFError(404, 10007, f"Deployment {wanted} not found for worker {script['name']}.")


def _shares(body: dict[str, Any]) -> list[tuple[str, float]]:
    if body.get("strategy", "percentage") != "percentage":
        raise CFError(400, 10021, "strategy must be 'percentage'")
    entries = body.get("versions")
    if not isinstance(entries, list) or not entries:
        raise CFError(400, 10021, "versions must be a non-empty list of {version_id, percentage}")
    shares: list[tuple[str, float]] = []
    for entry in entries:
        if not isinstance(entry, dict) or "version_id" not in entry:
            raise CFError(400, 10021, "each version needs version_id and percentage")
        shares.append((str(entry["version_id"]), float(entry.get("percentage", 100))))
    if abs(sum(p for _, p in shares) - 100.0) > 1e-6:
        raise CFError(400, 10021, "version percentages must add up to 100")
    return shares


async def create_deployment(request: Request) -> Response:
    state, script = _script(request)
    body = await json_body(request)
    shares = _shares(body)
    force = request.query_params.get("force", "").lower() in ("true", "1")
    for version_id, _ in shares:
        version = _version(state, script["name"], version_id)
        changed = wm.changed_secrets(state, script["name"], version.created_on)
        if changed and not force:
            raise CFError(
                400,
                10220,
                f"Secrets changed since version {version_id} was created; deploy with "
                "force=true to use the current secrets. "
                f"The following secrets have changed: {', '.join(changed)}",
            )
    annotations = body.get("annotations") or {}
    agent = request.headers.get("user-agent", "").lower()
    deployment_id = wm.deploy(
        state, script["name"], shares, annotations.get("workers/message"),
        author_email=USER_EMAIL, source="wrangler" if agent.startswith("wrangler") else "api",
    )  # fmt: skip
    row = next(r for r in wm.deployments(state, script["name"]) if r["id"] == deployment_id)
    return ok(deployment_json(row))


async def list_versions(request: Request) -> Response:
    state, script = _script(request)
    items = [version_json(v) for v in wm.versions(state, script["name"])]
    chunk, info = page_slice(request, items, per_page=100, max_per_page=100)
    return ok({"items": chunk}, info)


def _upload_bindings(
    state: State, metadata: dict[str, Any], current: wm.Version | None
) -> list[dict[str, Any]]:
    """Bindings of an uploaded version: the metadata's, `inherit` ones and the types in
    `keep_bindings` taken from the current version. Secret values are not kept here."""
    previous = current.bindings if current else []
    if "bindings" not in metadata:
        return list(previous)
    by_name = {b["name"]: b for b in previous}
    out: list[dict[str, Any]] = []
    for b in metadata["bindings"]:
        if not isinstance(b, dict) or "name" not in b or "type" not in b:
            raise CFError(400, 10021, "each binding needs a type and a name")
        if b["type"] == "inherit":
            if b["name"] in by_name:
                out.append(by_name[b["name"]])
            continue
        out.append(_stored_binding(state, b))
    keep = set(metadata.get("keep_bindings") or [])
    names = {b["name"] for b in out}
    out += [b for b in previous if b["type"] in keep and b["name"] not in names]
    return out


async def upload_version(request: Request) -> Response:
    """POST .../versions (multipart): upload a version without deploying it."""
    state, script = _script(request)
    parts = multipart(request.headers.get("content-type", ""), await request.body())
    meta_part = next((p for p in parts if p.name == "metadata"), None)
    if meta_part is None:
        raise CFError(400, 10021, "the upload needs a 'metadata' part")
    try:
        metadata = json.loads(meta_part.data)
    except json.JSONDecodeError:
        raise CFError(400, 10021, "metadata is not valid JSON") from None
    main = metadata.get("main_module") or metadata.get("body_part")
    modules = [p for p in parts if p.name != "metadata"]
    if not main or all(p.name != main and p.filename != main for p in modules):
        raise CFError(400, 10021, "main_module must name one of the uploaded parts")
    annotations = metadata.get("annotations") or {}
    version = wm.create_version(
        state, script["name"],
        message=str(annotations.get("workers/message") or ""),
        tag=annotations.get("workers/tag"),
        bindings=_upload_bindings(state, metadata, wm.current_version(state, script["name"])),
        author_email=USER_EMAIL,
        etag=hashlib.sha256(b"".join(p.data for p in modules)).hexdigest(),
    )  # fmt: skip
    return ok(version_detail(state, version, script))


async def get_version(request: Request) -> Response:
    state, script = _script(request)
    version = _version(state, script["name"], request.path_params["version_id"])
    return ok(version_detail(state, version, script))


async def list_secrets(request: Request) -> Response:
    state, script = _script(request)
    with state.read() as db:
        rows = db.execute(
            "SELECT name, type FROM secrets WHERE script = ? ORDER BY name", (script["name"],)
        ).fetchall()
    return ok([{"name": r["name"], "type": r["type"]} for r in rows])


async def get_secret(request: Request) -> Response:
    state, script = _script(request)
    name = request.path_params["secret_name"]
    with state.read() as db:
        row = db.execute(
            "SELECT name, type FROM secrets WHERE script = ? AND name = ?", (script["name"], name)
        ).fetchone()
    if row is None:
        raise CFError(404, 10056, f"Secret {name} not found.")
    return ok({"name": row["name"], "type": row["type"]})


async def put_secret(request: Request) -> Response:
    state, script = _script(request)
    body = await json_body(request)
    name, text = body.get("name"), body.get("text")
    type_ = body.get("type", "secret_text")
    if not isinstance(name, str) or not name or not isinstance(text, str):
        raise CFError(400, 10021, "a secret needs a name and a text value")
    if type_ != "secret_text":
        raise CFError(400, 10021, "only secret_text secrets are supported by the sandbox")
    wm.put_secret(state, script["name"], name, text, type_)
    return ok({"name": name, "type": type_})


async def delete_secret(request: Request) -> Response:
    state, script = _script(request)
    name = request.path_params["secret_name"]
    if not wm.delete_secret(state, script["name"], name):
        raise CFError(404, 10056, f"Secret {name} not found.")
    return ok({})


routes = [
    Route(BASE + "/scripts", list_scripts, methods=["GET"]),
    Route(BASE + "/services/{service_name}", service, methods=["GET"]),
    Route(SCRIPT + "/settings", script_settings, methods=["GET"]),
    Route(SCRIPT + "/deployments", list_deployments, methods=["GET"]),
    Route(SCRIPT + "/deployments", create_deployment, methods=["POST"]),
    Route(SCRIPT + "/deployments/{deployment_id}", get_deployment, methods=["GET"]),
    Route(SCRIPT + "/versions", list_versions, methods=["GET"]),
    Route(SCRIPT + "/versions", upload_version, methods=["POST"]),
    Route(SCRIPT + "/versions/{version_id}", get_version, methods=["GET"]),
    Route(SCRIPT + "/secrets", list_secrets, methods=["GET"]),
    Route(SCRIPT + "/secrets", put_secret, methods=["PUT"]),
    Route(SCRIPT + "/secrets/{secret_name}", get_secret, methods=["GET"]),
    Route(SCRIPT + "/secrets/{secret_name}", delete_secret, methods=["DELETE"]),
]
