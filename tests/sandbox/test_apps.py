"""The two apps over real sockets: routes, sessions, PDF gating, webhooks, password reset."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from opsbook import sandbox as sandbox_api
from opsbook.clients.probes import preflight, probe
from opsbook.sandbox import mail
from opsbook.sandbox.state import State

USERS = {"manuscript": "prodtest3@example.com", "peptalk": "prodtest1@example.com"}
PASSWORD = "TestPass123@"


def url(info: sandbox_api.SandboxInfo, app: str, path: str) -> str:
    return f"{info.base_url}/apps/{app}{path}"


def token(info: sandbox_api.SandboxInfo, app: str, email: str | None = None) -> str:
    r = httpx.post(
        url(info, app, "/auth/login"),
        json={"email": email or USERS[app], "password": PASSWORD},
        timeout=20,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def test_health_of_both_apps(sandbox: sandbox_api.SandboxInfo) -> None:
    for app, path in (("manuscript", "/health"), ("peptalk", "/api/health")):
        res = probe(url(sandbox, app, path), budget_ms=5000)
        assert res.ok and res.json()["database"] == "ok", res


def test_login_session_and_manuscripts(sandbox: sandbox_api.SandboxInfo) -> None:
    assert httpx.get(url(sandbox, "manuscript", "/manuscripts"), timeout=10).status_code == 401
    bad = httpx.post(
        url(sandbox, "manuscript", "/auth/login"),
        json={"email": USERS["manuscript"], "password": "nope"},
        timeout=20,
    )
    assert bad.status_code == 401
    forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    assert (
        httpx.get(
            url(sandbox, "manuscript", "/manuscripts"),
            headers={"Authorization": f"Bearer {forged}"},
            timeout=10,
        ).status_code
        == 401
    )
    h = {"Authorization": f"Bearer {token(sandbox, 'manuscript')}"}
    page = httpx.get(
        url(sandbox, "manuscript", "/manuscripts?page=1&limit=5"), headers=h, timeout=20
    )
    assert page.status_code == 200
    body = page.json()
    assert len(body["manuscripts"]) <= 5 and body["total"] >= len(body["manuscripts"])
    stamps = [m["created_at"] for m in body["manuscripts"]]
    assert stamps == sorted(stamps, reverse=True)
    created = httpx.post(
        url(sandbox, "manuscript", "/manuscripts"),
        json={"title": "Test novel"},
        headers=h,
        timeout=20,
    )
    assert created.status_code == 201
    mid = created.json()["id"]
    one = httpx.get(url(sandbox, "manuscript", f"/manuscripts/{mid}"), headers=h, timeout=20)
    assert one.status_code == 200 and one.json()["title"] == "Test novel"
    assert (
        httpx.get(
            url(sandbox, "manuscript", "/manuscripts/nope"), headers=h, timeout=20
        ).status_code
        == 404
    )
    analysis = httpx.get(
        url(sandbox, "manuscript", f"/manuscripts/{mid}/analysis"), headers=h, timeout=20
    )
    assert analysis.status_code == 200 and analysis.json()["manuscript_id"] == mid


def test_cors_preflight(sandbox: sandbox_api.SandboxInfo) -> None:
    good = preflight(
        url(sandbox, "manuscript", "/auth/login"), "https://scarter4workmanuscripthub.com"
    )
    assert good.allowed and good.allow_origin == "https://scarter4workmanuscripthub.com"
    other = preflight(url(sandbox, "manuscript", "/auth/login"), "https://evil.example.com")
    assert not other.allowed and other.allow_origin is None


def test_password_reset_sends_mail(sandbox: sandbox_api.SandboxInfo) -> None:
    state = State(sandbox.state_dir)
    before = len(mail.sent(state, USERS["manuscript"]))
    r = httpx.post(
        url(sandbox, "manuscript", "/auth/password-reset-request"),
        json={"email": USERS["manuscript"]},
        timeout=20,
    )
    assert r.status_code == 200, r.text
    sent = mail.sent(state, USERS["manuscript"])
    assert len(sent) == before + 1
    assert (
        sent[0]["from_email"] == "noreply@scarter4workmanuscripthub.com"
        and "token=" in sent[0]["body"]
    )


def test_mail_endpoint_validates(sandbox: sandbox_api.SandboxInfo) -> None:
    r = httpx.post(f"{sandbox.base_url}/mail/tx/v1/send", json={"subject": "x"}, timeout=10)
    assert r.status_code == 400 and r.json()["errors"]


def test_pdf_gating(sandbox: sandbox_api.SandboxInfo) -> None:
    pdf = url(sandbox, "peptalk", "/api/peptides/bpc-157/pdf")
    assert httpx.get(pdf, timeout=10).status_code == 401
    r = httpx.get(pdf, headers={"Authorization": f"Bearer {token(sandbox, 'peptalk')}"}, timeout=20)
    assert r.status_code == 200 and r.content.startswith(b"%PDF-")
    # a user without an active subscription: give one the test password (copy of its hash)
    from opsbook.sandbox import d1data

    with d1data.d1_connect(State(sandbox.state_dir), "peptalk-production-db") as db:
        known = db.execute(
            "SELECT password_hash FROM users WHERE email = ?", (USERS["peptalk"],)
        ).fetchone()[0]
        row = db.execute(
            "SELECT u.id, u.email FROM users u WHERE NOT EXISTS (SELECT 1 FROM subscriptions s"
            " WHERE s.user_id = u.id) ORDER BY u.id LIMIT 1"
        ).fetchone()
        assert row is not None
        db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (known, row[0]))
    denied = httpx.get(
        pdf, headers={"Authorization": f"Bearer {token(sandbox, 'peptalk', row[1])}"}, timeout=20
    )
    assert denied.status_code in (402, 403) and denied.json()["error"] == "Subscription required"


def signed(payload: bytes, secret: str, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    sig = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={sig}"


def test_webhook_signature(sandbox: sandbox_api.SandboxInfo) -> None:
    from opsbook.sandbox import workers_model as wm

    secret = wm.secret_values(State(sandbox.state_dir), "peptalk-api")["STRIPE_WEBHOOK_SECRET"]
    hook = url(sandbox, "peptalk", "/webhooks/stripe")
    payload = json.dumps(
        {"id": "evt_test_1", "type": "invoice.paid", "data": {"object": {}}}
    ).encode()
    ok = httpx.post(
        hook, content=payload, headers={"Stripe-Signature": signed(payload, secret)}, timeout=10
    )
    assert ok.status_code == 200 and ok.json() == {"received": True}
    for header in (
        signed(payload, "whsec_wrong"),
        signed(payload, secret, int(time.time()) - 3600),
        "garbage",
        "",
    ):
        bad = httpx.post(hook, content=payload, headers={"Stripe-Signature": header}, timeout=10)
        assert bad.status_code == 400, header
    tampered = httpx.post(
        hook,
        content=payload + b" ",
        headers={"Stripe-Signature": signed(payload, secret)},
        timeout=10,
    )
    assert tampered.status_code == 400


def test_peptides_catalogue(sandbox: sandbox_api.SandboxInfo) -> None:
    listing = httpx.get(url(sandbox, "peptalk", "/api/peptides"), timeout=10).json()
    assert listing["count"] >= 10
    one = httpx.get(url(sandbox, "peptalk", "/api/peptides/bpc-157"), timeout=10)
    assert one.status_code == 200 and one.json()["name"] == "BPC-157" and one.json()["studies"]
    assert httpx.get(url(sandbox, "peptalk", "/api/peptides/nope"), timeout=10).status_code == 404
