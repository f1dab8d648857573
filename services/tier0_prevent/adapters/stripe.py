"""Stripe effects for Tier 0: the shared :class:`tierline.stripe_adapter.StripeActions`, plus small readers
that turn its typed results into what the ledger records."""

from __future__ import annotations

from typing import Any

from services.tier0_prevent.ports import BillingActions
from tierline.settings import InfraSettings
from tierline.stripe_adapter import CardDeclined, InvoiceNotPayable, StripeActions


def billing_actions(settings: InfraSettings) -> BillingActions:
    return StripeActions(settings)


def url_of(link: Any) -> str | None:
    """A link result (SignedLink / InvoiceLink) or a plain URL string."""
    url = getattr(link, "url", link)
    return str(url) if url else None


def as_record(result: Any) -> dict[str, Any]:
    to_dict = getattr(result, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    return result if isinstance(result, dict) else {"result": str(result)}


__all__ = ["CardDeclined", "InvoiceNotPayable", "as_record", "billing_actions", "url_of"]
