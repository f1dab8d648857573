"""Stripe of today (issue 24): declines, payments and subscriptions read the same from the current API
versions' shapes (built from Stripe's published fixtures, data/stripe/fixtures3.json) and from the older
shapes localstripe speaks — and the decisions tier 0 takes on them (classification, dunning) are equal."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from services.tier0_prevent import domain
from tierline.billing import stripe_shapes as shapes
from tierline.billing.declines import classify_decline
from tierline.billing.mirror import normalize

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def fixtures(shared_dir: Path) -> dict[str, Any]:
    resources: dict[str, Any] = json.loads((shared_dir / "data" / "stripe" / "fixtures3.json").read_text())[
        "resources"
    ]
    return resources


def _today(fixtures: dict[str, Any], code: str) -> dict[str, dict[str, Any]]:
    """A failed subscription payment as a Stripe account of today sends it: the invoice (no charge,
    payment intent or subscription on it), its failed charge and payment intent (naming no invoice), and
    the InvoicePayment joining them."""
    charge = copy.deepcopy(fixtures["charge"])
    own = code in ("expired_card", "incorrect_number")
    charge.update(
        id="ch_today",
        status="failed",
        paid=False,
        customer="cus_today",
        failure_code=code if own else "card_declined",
        outcome={**charge["outcome"], "type": "issuer_declined", "reason": code},
    )
    intent = copy.deepcopy(fixtures["payment_intent"])
    intent.update(
        id="pi_today",
        customer="cus_today",
        status="requires_payment_method",
        latest_charge="ch_today",
        last_payment_error={
            "type": "card_error",
            "code": code if own else "card_declined",
            "decline_code": code,
            "charge": "ch_today",
        },
    )
    invoice = copy.deepcopy(fixtures["invoice"])
    invoice.update(
        id="in_today",
        customer="cus_today",
        status="open",
        attempt_count=1,
        amount_due=4900,
        parent={"type": "subscription_details", "subscription_details": {"subscription": "sub_today"}},
    )
    payment = copy.deepcopy(fixtures["invoice_payment"])
    payment.update(invoice="in_today", payment={"type": "payment_intent", "payment_intent": intent})
    return {"invoice": invoice, "charge": charge, "intent": intent, "payment": payment}


def _older(code: str) -> dict[str, Any]:
    """The same invoice in the older shape (localstripe's): charge and payment intent on the invoice."""
    own = code in ("expired_card", "incorrect_number")
    return {
        "object": "invoice",
        "id": "in_old",
        "customer": "cus_old",
        "subscription": "sub_old",
        "status": "open",
        "attempt_count": 1,
        "charge": {
            "object": "charge",
            "id": "ch_old",
            "status": "failed",
            "invoice": "in_old",
            "failure_code": code if own else "card_declined",
            "outcome": {"type": "issuer_declined", "reason": code},
        },
        "payment_intent": "pi_old",
    }


CODES = ["stolen_card", "insufficient_funds", "expired_card", "do_not_honor", "generic_decline"]


def test_given_todays_invoice_when_read_then_it_names_no_payment_and_its_subscription_is_under_parent(
    fixtures: dict[str, Any],
) -> None:
    sent = _today(fixtures, "stolen_card")["invoice"]

    assert "charge" not in sent
    assert "payment_intent" not in sent
    assert shapes.invoice_subscription_id(sent) == "sub_today"
    assert shapes.invoice_decline_code(sent) is None  # the event does not say: tier 0 fetches it
    assert domain.decline_code_of(sent) is None


@pytest.mark.parametrize("code", CODES)
def test_given_a_decline_in_either_shape_when_read_then_the_same_code_and_the_same_decision(
    fixtures: dict[str, Any], code: str
) -> None:
    today = _today(fixtures, code)
    listed = {"object": "list", "data": [today["payment"]]}  # GET /v1/invoice_payments, expanded

    from_charge = domain.decline_code_of(today["charge"])
    from_intent = domain.decline_code_of(today["intent"])
    from_payments = shapes.invoice_decline_code({"payments": listed})
    from_older = domain.decline_code_of(_older(code))

    assert from_charge == from_intent == from_payments == from_older == code
    kinds = {domain.decline_kind(classify_decline(c, attempt_count=1)) for c in (from_payments, from_older)}
    assert len(kinds) == 1


def test_given_a_stolen_card_today_when_classified_then_fraud_never_retried(fixtures: dict[str, Any]) -> None:
    today = _today(fixtures, "stolen_card")
    code = shapes.invoice_decline_code({"payments": {"data": [today["payment"]]}})

    assert domain.decline_kind(classify_decline(code, attempt_count=1)) is domain.DeclineKind.FRAUD


def test_given_a_generic_decline_without_a_reason_when_read_then_card_declined(
    fixtures: dict[str, Any],
) -> None:
    charge = copy.deepcopy(fixtures["charge"])
    charge.update(
        status="failed", failure_code="card_declined", outcome={"type": "issuer_declined", "reason": None}
    )

    assert shapes.charge_decline_code(charge) == "card_declined"
    assert shapes.charge_decline_code(fixtures["charge"]) is None  # a charge that did not fail


def test_given_the_world_builders_metadata_when_read_then_it_is_not_stripes_word(
    fixtures: dict[str, Any],
) -> None:
    invoice = {**_today(fixtures, "stolen_card")["invoice"], "metadata": {"tl_decline_code": "stolen_card"}}

    assert domain.decline_code_of(invoice) is None


def test_given_todays_objects_when_mirrored_then_subscription_and_payments_are_kept(
    fixtures: dict[str, Any],
) -> None:
    today = _today(fixtures, "insufficient_funds")
    expanded = {**today["invoice"], "payments": {"object": "list", "data": [today["payment"]]}}

    invoice = normalize(expanded).values
    charge = normalize(today["charge"]).values
    intent = normalize(today["intent"]).values

    assert invoice["subscription_id"] == "sub_today"
    assert invoice["payment_intent_id"] == "pi_today"
    assert invoice["last_decline_code"] == "insufficient_funds"
    assert charge["decline_code"] == "insufficient_funds"
    assert charge["invoice_id"] is None  # charges of today name no invoice
    assert intent["last_decline_code"] == "insufficient_funds"
