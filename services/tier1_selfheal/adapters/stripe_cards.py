"""Stripe adapter for the product's own pages: save a new default card, read invoices.

Reuses :class:`tierline.stripe_adapter.StripeActions` for its client, retries and typed errors. Card
numbers are only ever sent to Stripe (the emulator in the embedded stack); they are never logged. With
real Stripe the update-card page should post a ``payment_method`` id created by Stripe.js instead of
raw card fields (raw card data needs Stripe's PCI approval): both are accepted here.
"""

from __future__ import annotations

from typing import Any

import structlog

from services.tier1_selfheal.ports import CardOnFile, CardRejected, InvoiceView, UnknownInvoice
from tierline.settings import InfraSettings
from tierline.stripe_adapter import (
    CardDeclined,
    InvalidStripeRequest,
    StripeActions,
    StripeNotFound,
    as_dict,
    ref_id,
)

log = structlog.get_logger(__name__)


def _invoice_view(inv: dict[str, Any]) -> InvoiceView:
    return InvoiceView(
        invoice_id=inv["id"],
        customer_id=ref_id(inv.get("customer")) or "",
        status=str(inv.get("status") or ""),
        amount_due_usd=round(int(inv.get("amount_due") or 0) / 100, 2),
        currency=str(inv.get("currency") or "usd"),
    )


class StripeCardVault:
    def __init__(self, settings: InfraSettings, stripe: StripeActions | None = None) -> None:
        self.stripe = stripe or StripeActions(settings)

    async def save_card(
        self, customer_id: str, *, payment_method_id: str | None = None, card: dict[str, Any] | None = None
    ) -> CardOnFile:
        s = self.stripe
        try:
            if payment_method_id is None:
                if card is None:
                    raise CardRejected("give a card or a payment_method id")
                params = {
                    "type": "card",
                    "card": {k: card[k] for k in ("number", "exp_month", "exp_year", "cvc")},
                }
                pm = as_dict(
                    await s.call(
                        lambda: s.v1.payment_methods.create_async(params),  # type: ignore[arg-type]
                        op="payment_method.create",
                        create=True,
                    )
                )
                payment_method_id = pm["id"]
            await s.call(
                lambda: s.v1.payment_methods.attach_async(payment_method_id, {"customer": customer_id}),
                op="payment_method.attach",
            )
            await s.call(
                lambda: s.v1.customers.update_async(
                    customer_id, {"invoice_settings": {"default_payment_method": payment_method_id}}
                ),
                op="customer.set_default_payment_method",
            )
            pm = await s.get_payment_method(payment_method_id)
        except CardDeclined as exc:
            raise CardRejected(f"the card was declined ({exc.code}); please use another card") from exc
        except (InvalidStripeRequest, KeyError) as exc:
            raise CardRejected(
                "the card details were not accepted; check the number, expiry and CVC"
            ) from exc
        c = pm.get("card") or {}
        log.info(
            "tier1.card.saved",
            customer_id=customer_id,
            payment_method=payment_method_id,
            brand=c.get("brand"),
            last4=c.get("last4"),
        )
        return CardOnFile(
            payment_method_id, c.get("brand"), c.get("last4"), c.get("exp_month"), c.get("exp_year")
        )

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
