"""Cloudflare account and token endpoints: /memberships, /user, /user/tokens/verify, /accounts.

wrangler calls these without CLOUDFLARE_ACCOUNT_ID (`/memberships?page=1`) and for
`wrangler whoami` (`/user/tokens/verify`, `/user`, `/accounts?page=1`).
`check_account()` is what every `/accounts/{account_id}/...` route calls first.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .envelope import CFError, ok, paged
from .state import ACCOUNT_ID, ACCOUNT_NAME, USER_EMAIL, from_request

CREATED_ON = "2024-03-18T09:12:44.000000Z"


def check_account(request: Request) -> str:
    """The account id of the path, checked against the sandbox's one account."""
    account_id = str(request.path_params.get("account_id", ""))
    if account_id != ACCOUNT_ID:
        raise CFError(403, 9109, "Unauthorized to access requested resource")
    return account_id


def _account() -> dict[str, object]:
    return {
        "id": ACCOUNT_ID,
        "name": ACCOUNT_NAME,
        "type": "standard",
        "settings": {"enforce_twofactor": False, "abuse_contact_email": None},
        "created_on": CREATED_ON,
    }


def _token_id(request: Request) -> str:
    token = from_request(request).credentials.get("OPSBOOK_SANDBOX_TOKEN", "")
    return hashlib.md5(token.encode()).hexdigest()


async def verify_token(request: Request) -> Response:
    return ok({"id": _token_id(request), "status": "active"})


async def user(request: Request) -> Response:
    return ok(
        {
            "id": hashlib.md5(USER_EMAIL.encode()).hexdigest(),
            "email": USER_EMAIL,
            "first_name": "Ops",
            "last_name": "Sandbox",
            "username": "opssandbox",
            "suspended": False,
            "two_factor_authentication_enabled": True,
            "created_on": CREATED_ON,
        }
    )


async def memberships(request: Request) -> Response:
    member = {
        "id": hashlib.md5(f"{ACCOUNT_ID}:{USER_EMAIL}".encode()).hexdigest(),
        "status": "accepted",
        "account": {"id": ACCOUNT_ID, "name": ACCOUNT_NAME},
        "roles": ["Super Administrator - All Privileges"],
        "permissions": {"workers": {"read": True, "write": True}},
    }
    return paged(request, [member])


async def accounts(request: Request) -> Response:
    return paged(request, [_account()])


async def account(request: Request) -> Response:
    check_account(request)
    return ok(_account())


routes = [
    Route("/user/tokens/verify", verify_token, methods=["GET"]),
    Route("/user", user, methods=["GET"]),
    Route("/memberships", memberships, methods=["GET"]),
    Route("/accounts", accounts, methods=["GET"]),
    Route("/accounts/{account_id}", account, methods=["GET"]),
]
