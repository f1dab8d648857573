"""Stripe effects for Tier 0: ``tierline.stripe_adapter.StripeActions`` when present, else a small SDK adapter.

The SDK adapter is a stand-in until the shared adapter lands (same method names and errors); both talk
to Stripe or the emulator through the official SDK, in a thread (the SDK is synchronous).
"""

from __future__ import annotations

import asyncio
from typing import Any

import stripe
import structlog

from services.tier0_prevent.domain import decline_code_of
from services.tier0_prevent.ports import BillingActions
from tierline.settings import InfraSettings

log = structlog.get_logger(__name__)


class CardDeclined(Exception):  # noqa: N818 - the name the shared adapter uses
    def __init__(self, code: str | None, message: str = "card declined") -> None:
        super().__init__(f"{message} ({code})")
        self.code = code


class InvoiceAlreadyPaid(Exception):  # noqa: N818
    pass


def decline_code_from(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else None


class SdkBillingActions:
    def __init__(self, settings: InfraSettings) -> None:
        base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        self.client = stripe.StripeClient(settings.stripe_api_key.get_secret_value(), base_addresses=base or {})
        self.public_base_url = settings.public_base_url

    async def retry_invoice(self, invoice_id: str, key: str) -> dict[str, Any]:
        def pay() -> dict[str, Any]:
            try:
                inv = self.client.v1.invoices.pay(invoice_id, options={"idempotency_key": key})
            except stripe.CardError as exc:
                raise CardDeclined(getattr(exc.error, "decline_code", None) or exc.code) from exc
            except stripe.InvalidRequestError as exc:
                if "already paid" in str(exc).lower():
                    raise InvoiceAlreadyPaid(invoice_id) from exc
                raise
            body = inv.to_dict()
            if body.get("status") != "paid":
                raise CardDeclined(decline_code_of(body) or "card_declined")
            return {"invoice_id": invoice_id, "status": "paid", "amount_paid": body.get("amount_paid", 0)}

        return await asyncio.to_thread(pay)

    async def update_card_link(self, customer_id: str, return_url: str) -> str:
        try:
            session = await asyncio.to_thread(
                self.client.v1.billing_portal.sessions.create,
                params={"customer": customer_id, "return_url": return_url},
            )
            return str(session.url)
        except stripe.StripeError as exc:  # the emulator has no billing portal: our own update page
            log.info("tier0.stripe.portal_unavailable", error=type(exc).__name__)
            return f"{self.public_base_url.rstrip('/')}/billing/{customer_id}/payment-method"

    async def invoice_link(self, invoice_id: str) -> str | None:
        inv = await asyncio.to_thread(self.client.v1.invoices.retrieve, invoice_id)
        url = inv.to_dict().get("hosted_invoice_url")
        return str(url) if url else None

    async def regenerate_invoice_link(self, invoice_id: str, key: str) -> str:
        url = await self.invoice_link(invoice_id)
        return url or f"{self.public_base_url.rstrip('/')}/billing/invoices/{invoice_id}/pay"


def billing_actions(settings: InfraSettings) -> BillingActions:
    try:
        from tierline.stripe_adapter import StripeActions  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return SdkBillingActions(settings)
    return StripeActions(settings)  # type: ignore[no-any-return]


def card_declined_types() -> tuple[type[BaseException], ...]:
    """Every exception type that means 'the card was declined' (ours and the shared adapter's)."""
    types: list[type[BaseException]] = [CardDeclined]
    try:
        from tierline.stripe_adapter import CardDeclined as Shared  # type: ignore[import-not-found,unused-ignore]

        types.append(Shared)
    except ImportError:
        pass
    return tuple(types)
