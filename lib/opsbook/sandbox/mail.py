"""A MailChannels-like transactional mail endpoint: POST /mail/tx/v1/send.

Body: {"personalizations":[{"to":[{"email","name"?}]}], "from":{"email","name"?},
"subject", "content":[{"type","value"}]}. Answers 202 with an empty body and stores the
message in the control table `mail_messages`; 400 with {"errors":[...]} for a malformed
request. While the provider is down (condition `mail`), it answers 503.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import conditions
from .state import from_request

SCHEMA = """
CREATE TABLE IF NOT EXISTS mail_messages (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    from_email TEXT NOT NULL,
    to_emails TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL
);
"""


def _problems(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return ["request body must be a JSON object"]
    errors: list[str] = []
    pers = body.get("personalizations")
    if not isinstance(pers, list) or not pers:
        errors.append("personalizations: at least one is required")
    else:
        for i, p in enumerate(pers):
            to = p.get("to") if isinstance(p, dict) else None
            if (
                not isinstance(to, list)
                or not to
                or not all(isinstance(t, dict) and "@" in str(t.get("email", "")) for t in to)
            ):
                errors.append(f"personalizations[{i}].to: a list of {{email}} is required")
    sender = body.get("from")
    if not isinstance(sender, dict) or "@" not in str(sender.get("email", "")):
        errors.append("from.email: a valid address is required")
    if not str(body.get("subject", "")).strip():
        errors.append("subject: is required")
    content = body.get("content")
    if (
        not isinstance(content, list)
        or not content
        or not all(isinstance(c, dict) and c.get("type") and "value" in c for c in content)
    ):
        errors.append("content: a list of {type, value} is required")
    return errors


async def send(request: Request) -> Response:
    state = from_request(request)
    if conditions.active(conditions.load(state), "mail", int(time.time() * 1000)):
        return JSONResponse({"errors": ["Service Unavailable"]}, status_code=503)
    try:
        body = json.loads(await request.body() or b"null")
    except json.JSONDecodeError:
        return JSONResponse({"errors": ["request body is not valid JSON"]}, status_code=400)
    errors = _problems(body)
    if errors:
        return JSONResponse({"errors": errors}, status_code=400)
    to = [t["email"] for p in body["personalizations"] for t in p["to"]]
    with state.tx() as db:
        db.execute(
            "INSERT INTO mail_messages (ts_ms, from_email, to_emails, subject, body) VALUES (?,?,?,?,?)",
            (int(time.time() * 1000), body["from"]["email"], json.dumps(to), body["subject"],
             body["content"][0]["value"]),
        )  # fmt: skip
    return Response(status_code=202)


def sent(state: Any, to: str | None = None) -> list[dict[str, Any]]:
    """Messages sent, newest first (optionally to one address)."""
    with state.read() as db:
        rows = db.execute("SELECT * FROM mail_messages ORDER BY id DESC").fetchall()
    out = [dict(r) | {"to": json.loads(r["to_emails"])} for r in rows]
    return [m for m in out if to is None or to in m["to"]]


routes: list[BaseRoute] = [Route("/tx/v1/send", send, methods=["POST"])]
