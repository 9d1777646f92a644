"""`connect(env)`: one object with the environment's clients, for runbooks and notebooks.

    p = opsbook.connect("local")       # starts the embedded sandbox if the env needs it
    p.cf.deployments(p.worker)         # Cloudflare API v4 (thin client)
    p.stripe.customer_by_email(...)    # the official Stripe SDK
    p.status.status()                  # the status page
    p.app_url("/health")               # the app itself
    p.close()                          # or `with opsbook.connect(env) as p:`

Clients are created on first use, so a runbook that never touches Stripe never needs
a Stripe key. The same code reaches the sandbox and production: only the environment's
URLs and secret references differ.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from . import environments

if TYPE_CHECKING:
    from .clients.cloudflare import Cloudflare
    from .clients.statuspage import StatusPage
    from .clients.stripe import Stripe


class Platform:
    def __init__(self, env: environments.Environment) -> None:
        self.env = env

    # ---- the app's names, from params ---------------------------------------------
    @property
    def worker(self) -> str:
        return str(self.env.require("app.worker"))

    @property
    def database(self) -> str:
        return str(self.env.require("app.database"))

    @property
    def profile(self) -> str:
        return self.env.profile

    def app_url(self, path: str = "") -> str:
        return str(self.env.require("app.api_url")).rstrip("/") + path

    def setting(self, dotted: str, default: Any = None) -> Any:
        return self.env.get(dotted, default)

    # ---- clients ------------------------------------------------------------------
    @cached_property
    def cf(self) -> Cloudflare:
        from .clients.cloudflare import Cloudflare

        return Cloudflare(
            str(self.env.require("cloudflare.api_base")),
            self._account_id(),
            self.env.secret("cloudflare.api_token"),
        )

    @cached_property
    def stripe(self) -> Stripe:
        from .clients.stripe import Stripe

        return Stripe.from_env(self.env)

    @cached_property
    def status(self) -> StatusPage:
        from .clients.statuspage import StatusPage

        return StatusPage(str(self.env.require("statuspage.base_url")))

    def _account_id(self) -> str:
        value = str(self.env.require("cloudflare.account_id"))
        return self.env.secret(value) if value.startswith("env:") else value

    def close(self) -> None:
        for name in ("cf", "stripe", "status"):
            client = self.__dict__.pop(name, None)
            if client is not None:
                client.close()

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(env: str | environments.Environment | None = None) -> Platform:
    environment = env if isinstance(env, environments.Environment) else environments.load(env)
    return Platform(environment)
