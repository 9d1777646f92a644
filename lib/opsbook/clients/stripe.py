"""The official `stripe` SDK pointed at an environment, plus what the runbooks ask of it.

    with Stripe.from_env(env) as st:
        cust = st.customer_by_email("user@example.com")
        subs = st.subscriptions(cust.id)
        st.undelivered_events(since=time.time() - 86400)
        st.resend_event("evt_...", "we_...")

Errors become opsbook.errors (AuthenticationError names the key's env var).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import stripe

from ..errors import ApiError, ApiUnreachable, AuthenticationError, NotFound, RateLimited

if TYPE_CHECKING:
    from ..environments import Environment

T = TypeVar("T")
DEFAULT_KEY_REF = "env:STRIPE_SECRET_KEY"


class _HTTPXClient(stripe.HTTPXClient):
    """stripe's HTTPXClient sends encoded bodies as `data=bytes`, which httpx deprecates
    (a DeprecationWarning on every POST); send them as `content=` instead."""

    def _get_request_args_kwargs(self, method: str, url: str, headers: Any, post_data: Any) -> Any:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        data = kwargs.pop("data", None)
        if isinstance(data, bytes | str):
            kwargs["content"] = data
        elif data:
            kwargs["data"] = data
        return args, kwargs


class Stripe:
    def __init__(
        self,
        api_key: str,
        api_base: str = "https://api.stripe.com",
        *,
        key_name: str = "the Stripe key",
        timeout: float = 30.0,
        max_network_retries: int = 2,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.key_name = key_name
        self._http = _HTTPXClient(allow_sync_methods=True, timeout=timeout)
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": self.api_base},
            http_client=self._http,
            max_network_retries=max_network_retries,
        )

    @classmethod
    def from_env(cls, env: Environment, **kwargs: Any) -> Stripe:
        ref = str(env.data.get("stripe", {}).get("api_key") or DEFAULT_KEY_REF)
        name = ref.split(":", 1)[1] if ref.startswith("env:") else "stripe.api_key"
        base = env.get("stripe.api_base") or "https://api.stripe.com"
        return cls(env.secret(ref), str(base), key_name=name, **kwargs)

    def __enter__(self) -> Stripe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- error mapping ----------------------------------------------------------
    def call(self, fn: Callable[[], T], what: str = "Stripe request") -> T:
        try:
            return fn()
        except stripe.AuthenticationError as exc:
            raise AuthenticationError(
                f"Stripe rejected the API key ({exc.user_message or exc}). Check the {self.key_name} "
                "environment variable holds a valid secret key for this account.",
                status=exc.http_status,
                code=exc.code,
                url=self.api_base,
            ) from exc
        except stripe.InvalidRequestError as exc:
            cls = NotFound if exc.http_status == 404 else ApiError
            raise cls(
                f"{what}: {exc.user_message or exc}",
                status=exc.http_status,
                code=exc.code,
                url=self.api_base,
            ) from exc
        except stripe.RateLimitError as exc:
            raise RateLimited(
                f"{what}: rate limited by Stripe", status=429, url=self.api_base
            ) from exc
        except stripe.APIConnectionError as exc:
            raise ApiUnreachable(
                f"{what}: cannot reach {self.api_base}: {exc.user_message or exc}",
                url=self.api_base,
            ) from exc
        except stripe.StripeError as exc:
            raise ApiError(
                f"{what}: {exc.user_message or exc}", status=exc.http_status, url=self.api_base
            ) from exc

    def _list(self, method: Callable[..., Any], params: dict[str, Any], what: str) -> Any:
        snapshot = dict(params)
        return self.call(lambda: method(params=snapshot), what)

    # ---- helpers ----------------------------------------------------------------
    def customer_by_email(self, email: str) -> stripe.Customer | None:
        found = self.call(
            lambda: self.client.v1.customers.list(params={"email": email, "limit": 1}), "customers"
        )
        return found.data[0] if found.data else None

    def search_customers(self, email: str) -> list[stripe.Customer]:
        res = self.call(
            lambda: self.client.v1.customers.search(params={"query": f"email:'{email}'"}), "search"
        )
        return list(res.data)

    def subscriptions(self, customer: str, status: str = "all") -> list[stripe.Subscription]:
        res = self.call(
            lambda: self.client.v1.subscriptions.list(
                params={"customer": customer, "status": status, "limit": 100}
            ),
            "subscriptions",
        )
        return list(res.data)

    @staticmethod
    def period_end(sub: stripe.Subscription) -> int | None:
        """current_period_end lives on the items since API 2025-03-31.basil."""
        ends = [
            int(i["current_period_end"]) for i in sub["items"]["data"] if "current_period_end" in i
        ]
        return max(ends) if ends else None

    def events(
        self,
        since: float | None = None,
        types: list[str] | None = None,
        *,
        undelivered: bool = False,
        limit: int = 1000,
    ) -> list[stripe.Event]:
        params: dict[str, Any] = {"limit": 100}
        if since is not None:
            params["created"] = {"gte": int(since)}
        if types:
            params["types"] = types
        if undelivered:
            params["delivery_success"] = False
        out: list[stripe.Event] = []
        while len(out) < limit:
            page = self._list(self.client.v1.events.list, params, "events")
            out += list(page.data)
            if not page.has_more or not page.data:
                break
            params["starting_after"] = page.data[-1].id
        return out[:limit]

    def undelivered_events(
        self, since: float | None = None, types: list[str] | None = None
    ) -> list[stripe.Event]:
        """Events still pending or failed for some endpoint (delivery_success=false)."""
        return self.events(
            since if since is not None else time.time() - 30 * 86400, types, undelivered=True
        )

    def event(self, event_id: str) -> stripe.Event:
        return self.call(lambda: self.client.v1.events.retrieve(event_id), f"event {event_id}")

    def resend_event(self, event_id: str, endpoint_id: str) -> dict[str, Any]:
        """POST /v1/events/{id}/retry, as `stripe events resend --webhook-endpoint` does."""
        resp = self.call(
            lambda: self.client.raw_request(
                "post", f"/v1/events/{event_id}/retry", webhook_endpoint=endpoint_id
            ),
            f"resend {event_id}",
        )
        event: dict[str, Any] = self.client.deserialize(resp, api_mode="V1").to_dict()
        return event

    def webhook_endpoints(self) -> list[stripe.WebhookEndpoint]:
        return list(
            self.call(
                lambda: self.client.v1.webhook_endpoints.list(params={"limit": 100}), "endpoints"
            ).data
        )

    def enable_endpoint(self, endpoint_id: str, enabled: bool = True) -> stripe.WebhookEndpoint:
        return self.call(
            lambda: self.client.v1.webhook_endpoints.update(
                endpoint_id, params={"disabled": not enabled}
            ),
            f"webhook endpoint {endpoint_id}",
        )

    def balance_fees(self, since: float) -> dict[str, int]:
        """Gross, fees and net (in cents) of balance transactions since `since`."""
        params: dict[str, Any] = {"limit": 100, "created": {"gte": int(since)}}
        gross = fee = net = count = 0
        while True:
            page = self._list(self.client.v1.balance_transactions.list, params, "balance")
            for txn in page.data:
                gross, fee, net, count = gross + txn.amount, fee + txn.fee, net + txn.net, count + 1
            if not page.has_more or not page.data:
                break
            params["starting_after"] = page.data[-1].id
        return {"gross": gross, "fee": fee, "net": net, "count": count}
