"""What Stripe really sends, read the same way across API versions (issue 24, "Stripe of today").

A Stripe account created today sends the shapes of the current API versions (2025-03-31 and later): an
invoice has no top-level ``charge``, ``payment_intent`` or ``subscription`` — its payments are
InvoicePayment objects (``payments.data[].payment.payment_intent`` / ``.charge``, present only when
expanded or listed through ``/v1/invoice_payments``) and its subscription is under
``parent.subscription_details.subscription`` — and charges and payment intents no longer name their
invoice. Older versions (and the localstripe emulator) put ``charge``, ``payment_intent`` and
``subscription`` on the invoice. Webhook objects carry ids, not expanded objects.

These readers take either shape and never guess: a decline code comes from the charge
(``failure_code``, or ``outcome.reason`` when the failure is the generic ``card_declined``) or the payment
intent (``last_payment_error.decline_code``, else its ``code``); ``None`` when the object at hand does not
say, and the caller fetches what it needs (``StripeActions.invoice_decline_code``). No emulator convention
is read here: the Stripe adapter fills in the real fields on the emulator's objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

#: A charge's ``failure_code`` that says only "the issuer declined": the reason is in ``outcome.reason``.
GENERIC_FAILURE = "card_declined"


def ref_id(value: Any) -> str | None:
    """The id of a reference: an id string, or an expanded object's ``id``."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict):
        found = value.get("id")
        return found if isinstance(found, str) and found else None
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def invoice_subscription_id(invoice: dict[str, Any]) -> str | None:
    """The invoice's subscription: top-level (older versions) or ``parent.subscription_details``."""
    top = ref_id(invoice.get("subscription"))
    if top:
        return top
    details = _dict(_dict(invoice.get("parent")).get("subscription_details"))
    return ref_id(details.get("subscription"))


def invoice_payments(invoice: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The invoice's payments as ``{"payment_intent": ..., "charge": ...}`` (ids or expanded objects),
    newest first as Stripe lists them: the InvoicePayment list when present, then the older top-level
    fields."""
    payments = invoice.get("payments")
    data = payments.get("data") if isinstance(payments, dict) else payments
    for item in data if isinstance(data, list) else []:
        payment = _dict(_dict(item).get("payment"))
        if payment:
            yield {"payment_intent": payment.get("payment_intent"), "charge": payment.get("charge")}
    if invoice.get("payment_intent") or invoice.get("charge"):
        yield {"payment_intent": invoice.get("payment_intent"), "charge": invoice.get("charge")}


def invoice_payment_intent_id(invoice: dict[str, Any]) -> str | None:
    return next((i for p in invoice_payments(invoice) if (i := ref_id(p["payment_intent"]))), None)


def invoice_charge_id(invoice: dict[str, Any]) -> str | None:
    return next((i for p in invoice_payments(invoice) if (i := ref_id(p["charge"]))), None)


def charge_decline_code(charge: dict[str, Any]) -> str | None:
    """A failed charge's decline code: the issuer's reason for a generic ``card_declined``, else the
    failure code itself (``expired_card``, ``incorrect_number``, ``processing_error``…)."""
    failure = _text(charge.get("failure_code"))
    if failure is None:
        return None
    reason = _text(_dict(charge.get("outcome")).get("reason"))
    return reason if failure == GENERIC_FAILURE and reason else failure


def payment_error_decline_code(error: Any) -> str | None:
    """``last_payment_error`` (or a card error's body): its ``decline_code``, else its ``code``."""
    err = _dict(error)
    return _text(err.get("decline_code")) or _text(err.get("code"))


def payment_intent_decline_code(payment_intent: dict[str, Any]) -> str | None:
    code = payment_error_decline_code(payment_intent.get("last_payment_error"))
    if code:
        return code
    latest = payment_intent.get("latest_charge")
    return charge_decline_code(latest) if isinstance(latest, dict) else None


def invoice_decline_code(invoice: dict[str, Any]) -> str | None:
    """The decline code an invoice carries through its expanded payments (either shape); ``None`` when
    its payments are ids only — fetch them."""
    for payment in invoice_payments(invoice):
        pi, charge = payment["payment_intent"], payment["charge"]
        code = (payment_intent_decline_code(pi) if isinstance(pi, dict) else None) or (
            charge_decline_code(charge) if isinstance(charge, dict) else None
        )
        if code:
            return code
    return None
