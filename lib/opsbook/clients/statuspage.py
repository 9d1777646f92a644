"""Atlassian Statuspage v2 client: www.cloudflarestatus.com or the sandbox's /status.

with StatusPage("https://www.cloudflarestatus.com") as page:
    page.status().indicator            # "none" | "minor" | "major" | "critical"
    [c for c in page.components() if not c.operational]
    page.unresolved_incidents()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from ..errors import ApiError, ApiUnreachable, NotFound


@dataclass(frozen=True)
class Status:
    indicator: str
    description: str
    page_name: str = ""
    updated_at: str = ""


@dataclass(frozen=True)
class Component:
    id: str
    name: str
    status: str
    description: str | None = None
    updated_at: str = ""

    @property
    def operational(self) -> bool:
        return self.status == "operational"


@dataclass(frozen=True)
class Incident:
    id: str
    name: str
    status: str
    impact: str
    created_at: str
    shortlink: str = ""
    updates: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)
    resolved_at: str = ""


class StatusPage:
    def __init__(
        self, base_url: str, *, timeout: float = 10.0, client: httpx.Client | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._own = client is None
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=True)

    def __enter__(self) -> StatusPage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self._client.close()

    def _get(self, path: str) -> dict[str, Any]:
        url = f"{self.base_url}/api/v2/{path}"
        try:
            r = self._client.get(url)
        except httpx.TransportError as exc:
            raise ApiUnreachable(
                f"Status page {self.base_url} is unreachable: {exc}", url=url, method="GET"
            ) from exc
        if r.status_code == 404:
            raise NotFound(
                f"{url} not found: is {self.base_url} a Statuspage site?",
                status=404,
                url=url,
                method="GET",
            )
        if r.status_code >= 400:
            raise ApiError(
                f"{url} answered HTTP {r.status_code}", status=r.status_code, url=url, method="GET"
            )
        data = r.json()
        if not isinstance(data, dict):
            raise ApiError(
                f"{url} did not answer a JSON object", status=r.status_code, url=url, method="GET"
            )
        return data

    def status(self) -> Status:
        data = self._get("status.json")
        page, st = data.get("page") or {}, data.get("status") or {}
        return Status(
            str(st.get("indicator", "")),
            str(st.get("description", "")),
            str(page.get("name", "")),
            str(page.get("updated_at", "")),
        )

    def components(self) -> list[Component]:
        return [
            Component(
                str(c["id"]),
                str(c["name"]),
                str(c["status"]),
                c.get("description"),
                str(c.get("updated_at", "")),
            )
            for c in self._get("components.json").get("components", [])
            if not c.get("group")
        ]

    def unresolved_incidents(self) -> list[Incident]:
        return self._incidents("incidents/unresolved.json")

    def incidents(self) -> list[Incident]:
        """Recent incidents, resolved ones included (newest first)."""
        return self._incidents("incidents.json")

    def _incidents(self, path: str) -> list[Incident]:
        return [
            Incident(
                id=str(i["id"]),
                name=str(i["name"]),
                status=str(i["status"]),
                impact=str(i.get("impact", "")),
                created_at=str(i.get("created_at", "")),
                shortlink=str(i.get("shortlink") or ""),
                updates=[str(u.get("body", "")) for u in i.get("incident_updates") or []],
                components=[str(c.get("name", "")) for c in i.get("components") or []],
                resolved_at=str(i.get("resolved_at") or ""),
            )
            for i in self._get(path).get("incidents", [])
        ]
