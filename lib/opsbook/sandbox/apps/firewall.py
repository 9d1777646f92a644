"""The edge in front of the apps: IP Access Rules, applied before the Worker runs.

`screen_request(state, request, profile, route)` is the one call the shared request path makes:
None lets the request through; otherwise it is Cloudflare's answer to a request a rule
stops (403 with error 1006 "Access denied", or a challenge page), and the request is
recorded in the traffic table as the 403 it was, with no Worker logs.
"""

from __future__ import annotations

import html
import random
import time

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .. import cf_firewall, trace
from .. import workers_model as wm
from ..profiles import Profile
from ..state import State

BLOCK_PAGE = """<!DOCTYPE html>
<html lang="en-US">
<head><title>Access denied | {host} used Cloudflare to restrict access</title></head>
<body>
<div id="cf-error-details">
  <h1><span class="cf-error-type">Error</span> <span class="cf-error-code">1006</span></h1>
  <h2 class="cf-subheadline">Access denied</h2>
  <h2>What happened?</h2>
  <p>The owner of this website ({host}) has banned your IP address ({ip}).</p>
  <p>Cloudflare Ray ID: <strong>{ray}</strong> &bull; Your IP: {ip} &bull; Performance &amp; security by Cloudflare</p>
</div>
</body>
</html>
"""
CHALLENGE_PAGE = """<!DOCTYPE html>
<html lang="en-US">
<head><title>Just a moment...</title></head>
<body><noscript>Enable JavaScript and cookies to continue</noscript>
<p>{host} needs to review the security of your connection before proceeding.</p>
<p>Ray ID: {ray}</p></body>
</html>
"""


def client_ip(request: Request) -> str:
    return request.headers.get("cf-connecting-ip") or (
        request.client.host if request.client else "127.0.0.1"
    )


def answer(rule: cf_firewall.Rule, host: str, ip: str, ray: str) -> Response:
    """Cloudflare's response to a request `rule` stops."""
    headers = {"cf-ray": f"{ray}-IAD", "server": "cloudflare", "cache-control": "no-store"}
    if rule.mode == "block":
        page = BLOCK_PAGE.format(host=html.escape(host), ip=html.escape(ip), ray=ray)
        return HTMLResponse(page, status_code=403, headers=headers)
    page = CHALLENGE_PAGE.format(host=html.escape(host), ray=ray)
    return HTMLResponse(page, status_code=403, headers={**headers, "cf-mitigated": "challenge"})


def screen_request(state: State, request: Request, profile: Profile, route: str) -> Response | None:
    """None when no rule stops this request; else the edge's 403, recorded as traffic."""
    rules = cf_firewall.load_rules(state)
    if not rules:
        return None
    ip = client_ip(request)
    country = request.headers.get("cf-ipcountry", "US")
    at = int(time.time() * 1000)
    rule = cf_firewall.decide(rules, ip, country, None, at)
    if not cf_firewall.stopped(rule):
        return None
    assert rule is not None
    ray = f"{random.getrandbits(64):016x}"
    host = request.headers.get("host") or request.url.netloc
    response = answer(rule, host, ip, ray)
    path = request.url.path.split(f"/apps/{profile.name}", 1)[-1] or "/"
    query = f"?{request.url.query}" if request.url.query else ""
    version = wm.current_version(state, profile.worker)
    inv = trace.Invocation(
        ts_ms=at, script=profile.worker, version_id=version.id if version else None,
        outcome="ok", wall_ms=0.0, cpu_ms=0.0, method=request.method,
        url=f"{request.url.scheme}://{request.url.netloc}{path}{query}", path=path,
        route=route, status=403, colo="IAD", country=country,
        client_ip=ip, user_agent=request.headers.get("user-agent", ""),
        response_bytes=len(response.body), ray_id=ray, synthetic=False,
        extra={"host": request.url.netloc, "firewall": {"action": rule.mode, "rule_id": rule.id}},
    )  # fmt: skip
    with state.tx() as db:
        trace.insert(db, [inv])
    return response
