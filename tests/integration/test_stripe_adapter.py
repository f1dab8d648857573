"""The Stripe write adapter on the real emulator (localstripe): each action, its errors, its reconcile."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tierline.stripe_adapter import (
    CardDeclined,
    InvoiceNotPayable,
    LinkExpired,
    LinkInvalid,
    RefundExceedsCharge,
    StripeActions,
    StripeNotFound,
    sign_link_token,
    verify_link_token,
)
from tierline_tools.world import build_world

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def actions(infra: Any) -> StripeActions:
    return StripeActions(infra)


def _token(url: str) -> str:
    return url.split("token=", 1)[1]


async def test_retry_invoice_pays_with_the_new_working_card(actions: StripeActions, unique: str) -> None:
    # Given a past-due customer whose failed invoice is still open and who now has a working visa
    world = await build_world(
        {
            "card": "visa",
            "subscription": {"status": "past_due", "monthly_usd": 49},
            "failed_invoice": {"amount_usd": 49, "days_ago": 1, "decline_code": "insufficient_funds"},
        },
        actions,
        label=f"retry-ok-{unique}",
    )
    assert world.failed_invoice_id
    # When the invoice is retried
    result = await actions.retry_invoice(world.failed_invoice_id, f"k-{unique}")
    # Then it is paid, the subscription is active again, and the reconcile sees the retry
    assert (result.status, result.amount_cents, result.already_paid) == ("paid", 4900, False)
    assert result.charge_id
    invoice = await actions.get_invoice(world.failed_invoice_id)
    assert invoice["status"] == "paid"
    assert (await actions.get_subscription(world.subscription_id or ""))["status"] == "active"
    charge = await actions.get_charge(result.charge_id)
    assert (charge["status"], charge["invoice"]) == ("succeeded", world.failed_invoice_id)
    found = await actions.find_invoice_retry(world.failed_invoice_id, f"k-{unique}")
    assert found is not None
    assert found.status == "paid"
    assert await actions.find_invoice_retry(world.failed_invoice_id, "another-key") is None
    # And retrying again charges nothing more
    again = await actions.retry_invoice(world.failed_invoice_id, f"k2-{unique}")
    assert again.already_paid


async def test_retry_invoice_on_a_declining_card_raises_card_declined(
    actions: StripeActions, unique: str
) -> None:
    # Given a customer whose card still has insufficient funds
    world = await build_world(
        {
            "card": "declined_insufficient_funds",
            "subscription": {"status": "past_due"},
            "failed_invoice": {"days_ago": 0},
        },
        actions,
        label=f"retry-bad-{unique}",
    )
    assert world.failed_invoice_id
    # When the invoice is retried, Then the decline is typed with the issuer's code
    with pytest.raises(CardDeclined) as exc:
        await actions.retry_invoice(world.failed_invoice_id, f"k-{unique}")
    assert exc.value.code == "insufficient_funds"
    assert exc.value.result["status"] == "failed"
    # And the invoice stays open, the failed charge is on the invoice with the decline code
    invoice = await actions.get_invoice(world.failed_invoice_id)
    assert invoice["status"] == "open"
    failed_charge = await actions.get_charge(exc.value.result["charge_id"])
    assert failed_charge["status"] == "failed"
    assert failed_charge["metadata"]["tl_decline_code"] == "insufficient_funds"
    found = await actions.find_invoice_retry(world.failed_invoice_id, f"k-{unique}")
    assert found is not None
    assert (found.status, found.decline_code) == ("failed", "insufficient_funds")


@pytest.mark.parametrize("code", ["stolen_card", "expired_card"])
async def test_given_a_failed_invoice_when_its_decline_is_fetched_then_stripes_own_fields_give_the_code(
    actions: StripeActions, unique: str, code: str
) -> None:
    world = await build_world(
        {"card": "declined_generic", "failed_invoice": {"amount_usd": 30, "decline_code": code}},
        actions,
        label=f"decline-{code}-{unique}",
    )
    assert world.failed_invoice_id

    fetched = await actions.invoice_decline_code(world.failed_invoice_id)

    assert fetched == code
    charge = await actions.get_charge(world.failed_charge_id)
    assert charge["outcome"]["reason"] == code  # as Stripe reports it (the emulator, from the world's word)
    assert charge["failure_code"] == ("expired_card" if code == "expired_card" else "card_declined")


async def test_retry_without_any_card_is_not_payable(actions: StripeActions, unique: str) -> None:
    world = await build_world(
        {"card": "none", "subscription": {"status": "past_due"}}, actions, label=f"retry-nocard-{unique}"
    )
    with pytest.raises(InvoiceNotPayable):
        await actions.retry_invoice(world.failed_invoice_id or "", f"k-{unique}")


async def test_refund_partial_then_over_remaining_then_reconcile(actions: StripeActions, unique: str) -> None:
    # Given a $49 charge
    world = await build_world(
        {"charges": [{"amount_usd": 49, "days_ago": 2}]}, actions, label=f"refund-{unique}"
    )
    charge_id = world.charge_ids[0]
    # When $20 is refunded
    refund = await actions.refund(charge_id, 2000, "duplicate", f"r1-{unique}")
    # Then the refund exists with our key and reason in Stripe
    assert (refund.amount_cents, refund.status, refund.reason) == (2000, "succeeded", "duplicate")
    assert (await actions.get_charge(charge_id))["amount_refunded"] == 2000
    # And a refund above the $29 left is refused before Stripe is asked
    with pytest.raises(RefundExceedsCharge) as exc:
        await actions.refund(charge_id, 3000, "requested_by_customer", f"r2-{unique}")
    assert exc.value.remaining_cents == 2900
    assert (await actions.get_charge(charge_id))["amount_refunded"] == 2000
    # And the reconcile finds the first refund by its key, and nothing for an unused key
    found = await actions.find_refund(charge_id, f"r1-{unique}")
    assert found is not None
    assert found.refund_id == refund.refund_id
    assert await actions.find_refund(charge_id, f"r2-{unique}") is None


async def test_refund_of_unknown_charge_is_not_found(actions: StripeActions, unique: str) -> None:
    with pytest.raises(StripeNotFound):
        await actions.refund(f"ch_missing{unique}", 100, "duplicate", f"k-{unique}")


async def test_update_customer_and_tax_id(actions: StripeActions, unique: str) -> None:
    world = await build_world(
        {"customer": {"plan": "starter", "email": f"old-{unique}@acme.io"}}, actions, label=f"cust-{unique}"
    )
    result = await actions.update_customer(
        world.customer_id,
        idempotency_key=f"u-{unique}",
        email=f"finance-{unique}@acme.io",
        address={"country": "DE"},
    )
    assert result.email == f"finance-{unique}@acme.io"
    customer = await actions.get_customer(world.customer_id)
    assert (customer["email"], customer["address"]["country"]) == (f"finance-{unique}@acme.io", "DE")
    assert customer["metadata"]["tl_idem_update"] == f"u-{unique}"
    first = await actions.add_tax_id(world.customer_id, "eu_vat", "DE123456789", f"t-{unique}")
    second = await actions.add_tax_id(world.customer_id, "eu_vat", "DE123456789", f"t-{unique}")
    assert (second.tax_id, second.already_present, first.already_present) == (first.tax_id, True, False)


async def test_cancel_at_period_end(actions: StripeActions, unique: str) -> None:
    world = await build_world({}, actions, label=f"cancel-{unique}")
    result = await actions.cancel_at_period_end(world.subscription_id or "", f"c-{unique}")
    assert (result.cancel_at_period_end, result.status) == (True, "active")
    sub = await actions.get_subscription(world.subscription_id or "")
    assert sub["cancel_at_period_end"] is True


async def test_plan_change_with_proration_preview(actions: StripeActions, unique: str) -> None:
    # Given a pro customer whose period started 10 days ago
    world = await build_world(
        {"customer": {"plan": "pro", "seats": 3}, "charges": [{"amount_usd": 49, "days_ago": 10}]},
        actions,
        label=f"plan-{unique}",
    )
    business = await actions.ensure_plan("business", 299)
    assert await actions.ensure_plan("business", 299) == business  # idempotent
    # When the upgrade to business with 5 seats is previewed
    preview = await actions.preview_plan_change(world.subscription_id or "", business, 5)
    # Then about two thirds of the period is credited on pro and charged on business
    assert preview.source == "computed"
    assert "computed" in preview.note
    assert (preview.old_amount_cents, preview.new_amount_cents, preview.old_seats) == (4900, 29900, 3)
    period = (preview.period_end or 0) - (preview.proration_date - 10 * 86400)
    fraction = ((preview.period_end or 0) - preview.proration_date) / period
    assert preview.credit_cents == pytest.approx(4900 * fraction, abs=2)
    assert preview.charge_cents == pytest.approx(29900 * fraction, abs=2)
    assert preview.net_cents == preview.charge_cents - preview.credit_cents > 0
    # When the plan is changed
    change = await actions.change_plan(world.subscription_id or "", business, 5, f"p-{unique}")
    # Then the subscription is on business x5, and the pending prorations are exactly ours
    assert (change.subscription.plan_id, change.subscription.quantity) == (business, 5)
    assert change.proration.net_cents == pytest.approx(preview.net_cents, abs=2)
    pending = (await actions.raw_get("/v1/invoiceitems", customer=world.customer_id))["data"]
    assert sorted(ii["amount"] for ii in pending) == sorted(
        [-change.proration.credit_cents, change.proration.charge_cents]
    )
    found = await actions.find_plan_change(world.subscription_id or "", f"p-{unique}")
    assert found is not None
    assert found.plan_id == business


async def test_update_card_link_is_signed_and_expires(
    actions: StripeActions, infra: Any, unique: str
) -> None:
    world = await build_world({"card": "expired"}, actions, label=f"card-{unique}")
    link = await actions.update_card_link(world.customer_id, "https://app.example/billing")
    secret = infra.session_secret.get_secret_value()
    assert link.url.startswith(f"{infra.public_base_url}/update-card?token=")
    claims = verify_link_token(_token(link.url), secret, purpose="update_card")
    assert claims["sub"] == world.customer_id
    assert link.expires_at - int(time.time()) == pytest.approx(24 * 3600, abs=5)
    with pytest.raises(LinkInvalid):
        verify_link_token(_token(link.url), "another-secret", purpose="update_card")
    with pytest.raises(LinkInvalid):
        verify_link_token(_token(link.url), secret, purpose="pay_invoice")
    stale = sign_link_token(
        secret, purpose="update_card", subject=world.customer_id, expires_at=int(time.time()) - 1
    )
    with pytest.raises(LinkExpired):
        verify_link_token(stale, secret, purpose="update_card")


async def test_expired_invoice_link_is_regenerated(actions: StripeActions, infra: Any, unique: str) -> None:
    # Given a failed invoice whose pay link expired
    world = await build_world(
        {
            "customer": {"plan": "business"},
            "subscription": {"status": "past_due"},
            "failed_invoice": {"amount_usd": 299, "days_ago": 9},
            "expired_invoice_link": True,
        },
        actions,
        label=f"link-{unique}",
    )
    invoice_id = world.failed_invoice_id or ""
    secret = infra.session_secret.get_secret_value()
    old = await actions.invoice_link(invoice_id)
    assert old.expired
    with pytest.raises(LinkExpired):
        verify_link_token(_token(old.url), secret, purpose="pay_invoice")
    # When it is regenerated
    new = await actions.regenerate_invoice_link(invoice_id, f"l-{unique}")
    # Then the new link verifies for 30 days and the invoice metadata carries the new expiry
    assert not new.expired
    assert new.url.startswith(f"{infra.public_base_url}/pay/{invoice_id}?token=")
    assert verify_link_token(_token(new.url), secret, purpose="pay_invoice")["sub"] == invoice_id
    assert new.expires_at - int(time.time()) == pytest.approx(30 * 86400, abs=5)
    meta = (await actions.get_invoice(invoice_id))["metadata"]
    assert (meta["tl_link_expires_at"], meta["tl_idem_link"]) == (str(new.expires_at), f"l-{unique}")
    assert not (await actions.invoice_link(invoice_id)).expired


async def test_send_invoice_returns_document_links(actions: StripeActions, infra: Any, unique: str) -> None:
    world = await build_world(
        {"charges": [{"amount_usd": 49, "days_ago": 12}]}, actions, label=f"doc-{unique}"
    )
    doc = await actions.send_invoice(world.initial_invoice_id or "")
    assert (doc.status, doc.amount_paid_cents) == ("paid", 4900)
    assert doc.pdf_url.startswith(f"{infra.public_base_url}/invoices/{world.initial_invoice_id}.pdf?token=")
    claims = verify_link_token(
        _token(doc.pdf_url), infra.session_secret.get_secret_value(), purpose="invoice_document"
    )
    assert claims["sub"] == world.initial_invoice_id
    assert doc.created == pytest.approx(int(time.time()) - 12 * 86400, abs=60)
