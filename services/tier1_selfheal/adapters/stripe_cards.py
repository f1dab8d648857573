"""Stripe adapter for the product's own pages: let Stripe collect a new card, read invoices.

Reuses :class:`tierline.stripe_adapter.StripeActions` for its client, retries and typed errors. Card
numbers never reach tierline: a new card starts as a SetupIntent created here; the browser confirms it
with Stripe (Stripe.js Elements on real Stripe; on the emulator, localstripe's API with the publishable
key, which localstripe accepts on ``/v1/setup_intents/{id}/confirm``) and tierline only reads back the
payment method it collected. The emulator's gaps stay in this file.
"""

from __future__ import annotations

from typing import Any

import structlog

from services.tier1_selfheal.ports import CardRejected, CardSetup, InvoiceView, UnknownInvoice, UnknownSetup
from tierline.settings import InfraSettings
from tierline.stripe_adapter import (
    InvalidStripeRequest,
    StripeActions,
    StripeNotFound,
    as_dict,
    ref_id,
)

log = structlog.get_logger(__name__)

#: localstripe accepts any ``pk_`` key on the endpoints a browser may call.
EMULATOR_PUBLISHABLE_KEY = "pk_test_tierline_emulator"


def _invoice_view(inv: dict[str, Any]) -> InvoiceView:
    return InvoiceView(
        invoice_id=inv["id"],
        customer_id=ref_id(inv.get("customer")) or "",
        status=str(inv.get("status") or ""),
        amount_due_usd=round(int(inv.get("amount_due") or 0) / 100, 2),
        currency=str(inv.get("currency") or "usd"),
    )


class StripeCardVault:
    def __init__(
        self,
        settings: InfraSettings,
        stripe: StripeActions | None = None,
        *,
        publishable_key: str | None = None,
    ) -> None:
        self.stripe = stripe or StripeActions(settings)
        self.api_base = settings.stripe_api_base
        self.publishable_key = publishable_key or (EMULATOR_PUBLISHABLE_KEY if self.api_base else None)

    async def start_card_setup(self, customer_id: str) -> CardSetup:
        if not self.publishable_key:
            raise CardRejected("card collection is not configured (TIERLINE_TIER1_STRIPE_PUBLISHABLE_KEY)")
        s = self.stripe
        if self.api_base:  # the emulator creates a SetupIntent for any customer id; Stripe answers 404
            await s.get_customer(customer_id)
        intent = as_dict(
            await s.call(
                lambda: s.v1.setup_intents.create_async(
                    {"customer": customer_id, "usage": "off_session", "payment_method_types": ["card"]}
                ),
                op="setup_intent.create",
                create=True,
            )
        )
        log.info("tier1.card.setup_started", customer_id=customer_id, setup_intent=intent["id"])
        return CardSetup(
            mode="emulator" if self.api_base else "stripe",
            setup_intent_id=intent["id"],
            client_secret=str(intent["client_secret"]),
            publishable_key=self.publishable_key,
            api_base=self.api_base.rstrip("/") if self.api_base else None,
        )

    async def collected_payment_method(self, customer_id: str, setup_intent_id: str) -> str:
        s = self.stripe
        try:
            intent = as_dict(
                await s.call(
                    lambda: s.v1.setup_intents.retrieve_async(setup_intent_id), op="setup_intent.get"
                )
            )
        except (StripeNotFound, InvalidStripeRequest) as exc:
            raise UnknownSetup(f"no card setup {setup_intent_id}") from exc
        if ref_id(intent.get("customer")) != customer_id:
            raise UnknownSetup(f"no card setup {setup_intent_id}")
        pm = ref_id(intent.get("payment_method"))
        if intent.get("status") != "succeeded" or pm is None:
            raise CardRejected(
                "the card was not confirmed by the payment processor"
                + (" (it needs authentication)" if intent.get("status") == "requires_action" else "")
            )
        return pm

    async def billing_profile(self, customer_id: str) -> dict[str, Any]:
        return await self.stripe.customer_with_tax_ids(customer_id)

    async def open_invoices(self, customer_id: str) -> list[InvoiceView]:
        s = self.stripe
        page = as_dict(
            await s.call(
                lambda: s.v1.invoices.list_async({"customer": customer_id, "limit": 100}), op="invoice.list"
            )
        )
        return [
            _invoice_view(i)
            for i in page.get("data", [])
            if i.get("status") == "open" and int(i.get("amount_due") or 0) > 0
        ]

    async def invoice(self, invoice_id: str) -> InvoiceView:
        try:
            return _invoice_view(await self.stripe.get_invoice(invoice_id))
        except StripeNotFound as exc:
            raise UnknownInvoice(f"no invoice {invoice_id}") from exc
