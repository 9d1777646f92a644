"""A Cloudflare-like status page in Atlassian Statuspage v2 shapes (reference §1.9).

    /status/api/v2/status.json | components.json | incidents/unresolved.json | summary.json

State lives in two control tables, so a fault can open an incident:
`status_components(id, name, status, position, description, updated_at)` and
`status_incidents(id, name, status, impact, created_at, updated_at, resolved_at, body,
component_ids JSON)`. Healthy means every component operational and no incident.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .state import State, from_request

SCHEMA = """
CREATE TABLE IF NOT EXISTS status_components (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'operational',
    position INTEGER NOT NULL,
    description TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS status_incidents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    impact TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    resolved_at TEXT,
    body TEXT NOT NULL,
    component_ids TEXT NOT NULL DEFAULT '[]'
);
"""

PAGE_ID = "yh6f0r4529hb"
COMPONENTS = (
    ("Cloudflare Workers", "Serverless compute on Cloudflare's network"),
    ("D1", "Serverless SQL databases"),
    ("KV", "Global key-value storage"),
    ("R2", "Object storage"),
    ("Queues", "Message queues for Workers"),
    ("Cloudflare API", "The Cloudflare API v4"),
    ("Cloudflare Dashboard", "dash.cloudflare.com"),
    ("CDN/Cache", "Content delivery and caching"),
)
SEVERITY = (
    "operational",
    "under_maintenance",
    "degraded_performance",
    "partial_outage",
    "major_outage",
)
INDICATOR = {
    "none": "All Systems Operational",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major Service Outage",
}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _id(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))


def seed(state: State, rng: random.Random) -> None:
    created = "2014-10-09T14:32:09.000Z"
    rows = [
        (_id(rng), name, i + 1, desc, created, _now()) for i, (name, desc) in enumerate(COMPONENTS)
    ]
    with state.tx() as db:
        db.executemany(
            "INSERT INTO status_components(id, name, position, description, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?)",
            rows,
        )


# ---- what faults call ---------------------------------------------------------


def open_incident(
    state: State, name: str, body: str, components: dict[str, str], impact: str = "major"
) -> str:
    """Open an incident and set each named component's status. Returns the incident id."""
    now = _now()
    incident_id = _id(random.Random())
    with state.tx() as db:
        ids = []
        for comp, status in components.items():
            db.execute(
                "UPDATE status_components SET status = ?, updated_at = ? WHERE name = ?",
                (status, now, comp),
            )
            row = db.execute("SELECT id FROM status_components WHERE name = ?", (comp,)).fetchone()
            if row:
                ids.append(row[0])
        db.execute(
            "INSERT INTO status_incidents(id, name, status, impact, created_at, updated_at, body, "
            "component_ids) VALUES (?,?,?,?,?,?,?,?)",
            (incident_id, name, "investigating", impact, now, now, body, json.dumps(ids)),
        )
    return incident_id


def resolve_all(state: State) -> None:
    """Every component operational, every incident resolved."""
    now = _now()
    with state.tx() as db:
        db.execute("UPDATE status_components SET status = 'operational', updated_at = ?", (now,))
        db.execute(
            "UPDATE status_incidents SET status = 'resolved', resolved_at = ?, updated_at = ? "
            "WHERE resolved_at IS NULL",
            (now, now),
        )


# ---- the API ------------------------------------------------------------------


def _page(request: Request) -> dict[str, Any]:
    return {
        "id": PAGE_ID,
        "name": "Cloudflare",
        "url": str(request.base_url).rstrip("/") + "/status",
        "time_zone": "Etc/UTC",
        "updated_at": _now(),
    }


def _components(state: State) -> list[dict[str, Any]]:
    with state.read() as db:
        rows = db.execute("SELECT * FROM status_components ORDER BY position").fetchall()
    return [
        {
            "id": r["id"],
            "name": r["name"],
            "status": r["status"],
            "created_at": r["created_at"],
            "updated_at": r["updated_at"],
            "position": r["position"],
            "description": r["description"],
            "showcase": True,
            "start_date": None,
            "group_id": None,
            "page_id": PAGE_ID,
            "group": False,
            "only_show_if_degraded": False,
        }
        for r in rows
    ]


def _incidents(
    state: State, comps: list[dict[str, Any]], *, unresolved: bool = True
) -> list[dict[str, Any]]:
    by_id = {c["id"]: c for c in comps}
    where = "WHERE resolved_at IS NULL" if unresolved else ""
    with state.read() as db:
        rows = db.execute(
            f"SELECT * FROM status_incidents {where} ORDER BY created_at DESC LIMIT 50"
        ).fetchall()
    out = []
    for r in rows:
        affected = [by_id[i] for i in json.loads(r["component_ids"]) if i in by_id]
        updates = []
        if r["resolved_at"]:
            updates.append(
                {
                    "id": r["id"] + "u2",
                    "status": "resolved",
                    "body": "This incident has been resolved.",
                    "incident_id": r["id"],
                    "created_at": r["resolved_at"],
                    "updated_at": r["resolved_at"],
                    "display_at": r["resolved_at"],
                    "affected_components": [],
                }
            )
        update = {
            "id": r["id"] + "u1",
            "status": "investigating",
            "body": r["body"],
            "incident_id": r["id"],
            "created_at": r["created_at"],
            "updated_at": r["updated_at"],
            "display_at": r["created_at"],
            "affected_components": [
                {
                    "code": c["id"],
                    "name": c["name"],
                    "old_status": "operational",
                    "new_status": c["status"],
                }
                for c in affected
            ],
        }
        out.append(
            {
                "id": r["id"],
                "name": r["name"],
                "status": r["status"],
                "impact": r["impact"],
                "created_at": r["created_at"],
                "updated_at": r["updated_at"],
                "monitoring_at": None,
                "resolved_at": r["resolved_at"],
                "shortlink": f"https://stspg.io/{r['id'][:7]}",
                "started_at": r["created_at"],
                "page_id": PAGE_ID,
                "incident_updates": [*updates, update],
                "components": affected,
            }
        )
    return out


def _status(comps: list[dict[str, Any]], incidents: list[dict[str, Any]]) -> dict[str, str]:
    worst = max((SEVERITY.index(c["status"]) for c in comps), default=0)
    impacts = [i["impact"] for i in incidents]
    if worst >= 4 or "critical" in impacts:
        indicator = "critical" if "critical" in impacts else "major"
    elif worst >= 3 or "major" in impacts:
        indicator = "major"
    elif worst >= 1 or impacts:
        indicator = "minor"
    else:
        indicator = "none"
    return {"indicator": indicator, "description": INDICATOR[indicator]}


async def status_json(request: Request) -> Response:
    state = from_request(request)
    comps = _components(state)
    return JSONResponse(
        {"page": _page(request), "status": _status(comps, _incidents(state, comps))}
    )


async def components_json(request: Request) -> Response:
    return JSONResponse({"page": _page(request), "components": _components(from_request(request))})


async def unresolved_json(request: Request) -> Response:
    state = from_request(request)
    return JSONResponse(
        {"page": _page(request), "incidents": _incidents(state, _components(state))}
    )


async def incidents_json(request: Request) -> Response:
    """Every incident, newest first (the last 50), resolved ones included."""
    state = from_request(request)
    incidents = _incidents(state, _components(state), unresolved=False)
    return JSONResponse({"page": _page(request), "incidents": incidents})


async def summary_json(request: Request) -> Response:
    state = from_request(request)
    comps = _components(state)
    incidents = _incidents(state, comps)
    return JSONResponse(
        {
            "page": _page(request),
            "components": comps,
            "incidents": incidents,
            "scheduled_maintenances": [],
            "status": _status(comps, incidents),
        }
    )


routes = [
    Route("/api/v2/status.json", status_json, methods=["GET"]),
    Route("/api/v2/components.json", components_json, methods=["GET"]),
    Route("/api/v2/incidents/unresolved.json", unresolved_json, methods=["GET"]),
    Route("/api/v2/incidents.json", incidents_json, methods=["GET"]),
    Route("/api/v2/summary.json", summary_json, methods=["GET"]),
]
