"""Live read of one customer's Stripe objects through the official SDK (used on a mirror miss)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import stripe
import structlog

from tierline import metrics
from tierline.diagnostics_client import CustomerNotFound, SourceUnavailable

log = structlog.get_logger(__name__)

#: ``operation`` label of the Stripe call metrics for one customer's whole live read
READ_OPERATION = "diagnostics.read_customer"


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


class StripeLiveReader:
    """Reads a customer and everything billed to them. Never reads or returns full card numbers."""

    def __init__(
        self,
        api_key: str,
        api_base: str | None,
        *,
        timeout_s: float = 5.0,
        emulated: bool = False,
        list_limit: int = 100,
    ) -> None:
        bases: Any = {"api": api_base} if api_base else None
        http = stripe.RequestsClient(timeout=timeout_s) if _has_requests() else None
        self.client = stripe.StripeClient(
            api_key,
            base_addresses=bases,
            max_network_retries=0,  # type: ignore[arg-type]
            http_client=http,
        )
        self.timeout_s = timeout_s
        self.emulated = emulated
        self.limit = list_limit

    async def read_customer(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer first, then payment methods, subscriptions, invoices, intents, charges, refunds."""
        started = time.perf_counter()
        try:
            customer = await asyncio.wait_for(
                asyncio.to_thread(self._customer, customer_id), self.timeout_s * 2
            )
            parts = await asyncio.wait_for(
                asyncio.gather(
                    asyncio.to_thread(
                        self._list, "payment_methods", {"customer": customer_id, "type": "card"}
                    ),
                    asyncio.to_thread(
                        self._list, "subscriptions", {"customer": customer_id, "status": "all"}
                    ),
                    asyncio.to_thread(self._list, "invoices", {"customer": customer_id}),
                    asyncio.to_thread(self._list, "charges", {"customer": customer_id}),
                    asyncio.to_thread(self._payment_intents, customer_id),
                ),
                self.timeout_s * 3,
            )
        except CustomerNotFound:
            metrics.STRIPE_ERRORS.labels(READ_OPERATION, "not_found").inc()
            raise
        except (
            stripe.APIConnectionError,
            stripe.AuthenticationError,
            stripe.APIError,
            TimeoutError,
            OSError,
        ) as exc:
            kind = "auth" if isinstance(exc, stripe.AuthenticationError) else "unavailable"
            metrics.STRIPE_ERRORS.labels(READ_OPERATION, kind).inc()
            raise SourceUnavailable("stripe", f"{type(exc).__name__}: {exc}") from exc
        finally:
            metrics.STRIPE_SECONDS.labels(READ_OPERATION).observe(time.perf_counter() - started)
        pms, subs, invoices, charges, intents = parts
        refunds = [r for ch in charges for r in ((ch.get("refunds") or {}).get("data") or [])]
        objects = [customer, *pms, *subs, *invoices, *intents, *charges, *refunds]
        log.info("diagnostics.stripe.live_read", customer_id=customer_id, objects=len(objects))
        return objects

    def _customer(self, customer_id: str) -> dict[str, Any]:
        try:
            obj = _plain(self.client.v1.customers.retrieve(customer_id))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                raise CustomerNotFound(customer_id) from exc
            raise
        if obj.get("deleted") and obj.get("object") != "customer":
            obj["object"] = "customer"
        return obj

    def _list(self, resource: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        api = getattr(self.client.v1, resource)
        try:
            page = api.list(params={**params, "limit": self.limit})
        except stripe.InvalidRequestError as exc:
            log.warning("diagnostics.stripe.list_failed", resource=resource, error=str(exc)[:200])
            if resource == "subscriptions" and "status" in params:
                page = api.list(params={"customer": params["customer"], "limit": self.limit})
            else:
                raise
        return [_plain(o) for o in page.data]

    def _payment_intents(self, customer_id: str) -> list[dict[str, Any]]:
        try:
            page = self.client.v1.payment_intents.list(params={"customer": customer_id, "limit": self.limit})
            return [_plain(o) for o in page.data]
        except stripe.InvalidRequestError:
            if not self.emulated:
                raise
            # The emulator cannot filter payment intents by customer: page through its whole list (oldest
            # first, so the first page alone misses every recent intent once it holds more than a page).
            page = self.client.v1.payment_intents.list(params={"limit": self.limit})
            mine = [p for p in map(_plain, page.auto_paging_iter()) if p.get("customer") == customer_id]
            return mine[-self.limit :]


def _has_requests() -> bool:
    try:
        import requests  # noqa: F401
    except ImportError:
        return False
    return True
