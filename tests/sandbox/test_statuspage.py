"""The sandbox status page in Statuspage v2 shapes, read raw and through the client."""

from __future__ import annotations

import httpx
import pytest

from opsbook import sandbox as sandbox_api
from opsbook.clients.statuspage import StatusPage
from opsbook.errors import ApiUnreachable, NotFound
from opsbook.sandbox import statuspage
from opsbook.sandbox.state import State

NAMES = {
    "Cloudflare Workers",
    "D1",
    "KV",
    "R2",
    "Queues",
    "Cloudflare API",
    "Cloudflare Dashboard",
    "CDN/Cache",
}


def test_healthy_shapes(sandbox: sandbox_api.SandboxInfo) -> None:
    base = f"{sandbox.base_url}/status/api/v2"
    with httpx.Client(timeout=10) as http:
        status = http.get(f"{base}/status.json").json()
        comps = http.get(f"{base}/components.json").json()
        unresolved = http.get(f"{base}/incidents/unresolved.json").json()
        summary = http.get(f"{base}/summary.json").json()
    assert status["status"] == {"indicator": "none", "description": "All Systems Operational"}
    assert {"id", "name", "url", "time_zone", "updated_at"} <= set(status["page"])
    assert {c["name"] for c in comps["components"]} == NAMES
    first = comps["components"][0]
    for key in (
        "id",
        "name",
        "status",
        "created_at",
        "updated_at",
        "position",
        "description",
        "showcase",
        "start_date",
        "group_id",
        "page_id",
        "group",
        "only_show_if_degraded",
    ):
        assert key in first
    assert unresolved["incidents"] == []
    assert summary["status"]["indicator"] == "none" and len(summary["components"]) == len(NAMES)


def test_client_sees_an_incident(fresh_sandbox: sandbox_api.SandboxInfo) -> None:
    state = State(fresh_sandbox.state_dir)
    statuspage.open_incident(
        state, "R2 errors", "Investigating R2 errors", {"R2": "partial_outage"}, "minor"
    )
    with StatusPage(f"{fresh_sandbox.base_url}/status") as page:
        assert page.status().indicator == "major"  # a partial outage is a major indicator
        r2 = next(c for c in page.components() if c.name == "R2")
        assert r2.status == "partial_outage" and not r2.operational
        (incident,) = page.unresolved_incidents()
        assert incident.name == "R2 errors" and incident.status == "investigating"
        assert incident.components == ["R2"] and incident.updates == ["Investigating R2 errors"]
        statuspage.resolve_all(state)
        assert page.status().indicator == "none" and page.unresolved_incidents() == []
        (old,) = page.incidents()
        assert old.status == "resolved" and old.resolved_at and old.name == "R2 errors"
    with httpx.Client(timeout=10) as http:
        history = http.get(f"{fresh_sandbox.base_url}/status/api/v2/incidents.json").json()[
            "incidents"
        ]
    assert [i["name"] for i in history] == ["R2 errors"] and history[0]["status"] == "resolved"
    assert [u["status"] for u in history[0]["incident_updates"]] == ["resolved", "investigating"]


def test_client_errors(sandbox: sandbox_api.SandboxInfo) -> None:
    with StatusPage(f"{sandbox.base_url}/nothing-here") as page, pytest.raises(NotFound):
        page.status()
    with StatusPage("http://127.0.0.1:9", timeout=2) as page, pytest.raises(ApiUnreachable):
        page.components()
