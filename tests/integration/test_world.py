"""The world builder on the real emulator: every scenario world field, read back through the SDK."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
import stripe

from tierline.stripe_adapter import StripeActions
from tierline_tools.world import build_event, build_world, sign_payload, world_event

pytestmark = pytest.mark.integration
DAY = 86400


@pytest.fixture(scope="module")
def actions(infra: Any) -> StripeActions:
    return StripeActions(infra)


def _ago(meta: dict[str, str], days: int) -> bool:
    return abs(int(meta["tl_created"]) - (int(time.time()) - days * DAY)) < 120


async def _charges(actions: StripeActions, customer_id: str) -> list[dict[str, Any]]:
    return (await actions.raw_get("/v1/charges", customer=customer_id, limit=100))["data"]


async def test_default_world_is_a_healthy_active_subscription(actions: StripeActions, unique: str) -> None:
    # Given an empty world, When it is built
    built = await build_world({}, actions, label=f"w-default-{unique}")
    # Then Stripe holds an active pro subscription at the list price, paid by a working visa, and no charge
    sub = await actions.get_subscription(built.subscription_id or "")
    assert (sub["status"], sub["quantity"], sub["plan"]["id"]) == ("active", 1, built.plan_id)
    assert sub["plan"]["metadata"]["tl_plan"] == "pro"
    assert sub["plan"]["metadata"]["tl_amount_cents"] == "4900"
    customer = await actions.get_customer(built.customer_id)
    pm = await actions.get_payment_method(customer["invoice_settings"]["default_payment_method"])
    assert (pm["card"]["last4"], pm["customer"]) == ("4242", built.customer_id)
    assert [c for c in await _charges(actions, built.customer_id) if c["status"] == "succeeded"] == []
    assert built.pending_events == []
    assert built.usage_events == []


async def test_customer_fields_and_seats(actions: StripeActions, unique: str) -> None:
    built = await build_world(
        {
            "customer": {
                "plan": "business",
                "tenure_days": 400,
                "email": f"ana-{unique}@acme.io",
                "seats": 12,
                "country": "DE",
            },
            "subscription": {"status": "active", "monthly_usd": 299},
        },
        actions,
        label=f"w-cust-{unique}",
    )
    customer = await actions.get_customer(built.customer_id)
    assert (customer["email"], customer["address"]["country"]) == (f"ana-{unique}@acme.io", "DE")
    assert {k: customer["metadata"][k] for k in ("tl_plan", "tenure_days", "seats")} == {
        "tl_plan": "business",
        "tenure_days": "400",
        "seats": "12",
    }
    sub = await actions.get_subscription(built.subscription_id or "")
    assert sub["quantity"] == 12
    first = await actions.get_invoice(built.initial_invoice_id or "")
    assert first["amount_due"] == 0  # no charge the scenario did not ask for (prepaid first period)


@pytest.mark.parametrize(
    ("card", "last4", "decline"),
    [
        ("declined_generic", "0341", "generic_decline"),
        ("declined_insufficient_funds", "0341", "insufficient_funds"),
        ("expired", "0341", "expired_card"),
    ],
)
async def test_declining_cards(
    actions: StripeActions, unique: str, card: str, last4: str, decline: str
) -> None:
    built = await build_world({"card": card}, actions, label=f"w-{card}-{unique}")
    pm = await actions.get_payment_method(built.payment_method_id or "")
    assert (pm["card"]["last4"], pm["metadata"]["tl_decline_code"]) == (last4, decline)
    customer = await actions.get_customer(built.customer_id)
    assert customer["invoice_settings"]["default_payment_method"] == built.payment_method_id
    if card == "expired":
        now = time.gmtime()
        assert (pm["card"]["exp_year"], pm["card"]["exp_month"]) < (now.tm_year, now.tm_mon)
    # and the emulator really declines a charge on it
    with pytest.raises(stripe.CardError):
        actions.client.v1.payment_intents.create(
            {
                "amount": 100,
                "currency": "usd",
                "customer": built.customer_id,
                "payment_method": pm["id"],
                "confirm": True,
            }
        )


async def test_no_card(actions: StripeActions, unique: str) -> None:
    built = await build_world({"card": "none"}, actions, label=f"w-nocard-{unique}")
    customer = await actions.get_customer(built.customer_id)
    assert customer["invoice_settings"]["default_payment_method"] is None
    assert built.payment_method_id is None
    listed = await actions.raw_get("/v1/payment_methods", customer=built.customer_id, type="card")
    assert listed["data"] == []
    assert (await actions.get_subscription(built.subscription_id or ""))["status"] == "active"


@pytest.mark.parametrize("status", ["canceled", "none"])
async def test_subscription_statuses(actions: StripeActions, unique: str, status: str) -> None:
    built = await build_world({"subscription": {"status": status}}, actions, label=f"w-{status}-{unique}")
    if status == "none":
        assert built.subscription_id is None
        assert (await actions.raw_get("/v1/subscriptions", customer=built.customer_id, status="all"))[
            "data"
        ] == []
    else:
        assert (await actions.get_subscription(built.subscription_id or ""))["status"] == "canceled"


async def test_charges_newest_first_and_backdated(actions: StripeActions, unique: str) -> None:
    # Given two duplicate $49 charges yesterday and an older $138 one
    built = await build_world(
        {
            "customer": {"plan": "pro"},
            "charges": [
                {"amount_usd": 49, "days_ago": 1},
                {"amount_usd": 49, "days_ago": 1},
                {"amount_usd": 138, "days_ago": 20},
            ],
        },
        actions,
        label=f"w-charges-{unique}",
    )
    # Then exactly those charges exist, in order, with their effective creation times
    assert len(set(built.charge_ids)) == 3
    got = {c["id"]: c for c in await _charges(actions, built.customer_id) if c["status"] == "succeeded"}
    assert set(got) == set(built.charge_ids)
    for cid, (amount, days) in zip(built.charge_ids, [(4900, 1), (4900, 1), (13800, 20)], strict=True):
        assert got[cid]["amount"] == amount
        assert _ago(got[cid]["metadata"], days)
    # And the newest charge of the subscription's price is its first invoice's payment
    invoice = await actions.get_invoice(built.initial_invoice_id or "")
    assert invoice["charge"]["id"] == built.charge_ids[0]
    assert got[built.charge_ids[0]]["invoice"] == invoice["id"]
    assert _ago(invoice["metadata"], 1)


async def test_failed_invoice_makes_past_due(actions: StripeActions, unique: str) -> None:
    built = await build_world(
        {
            "customer": {"plan": "pro"},
            "card": "declined_insufficient_funds",
            "subscription": {"status": "past_due", "monthly_usd": 49},
            "failed_invoice": {"amount_usd": 59, "days_ago": 3, "decline_code": "insufficient_funds"},
        },
        actions,
        label=f"w-failed-{unique}",
    )
    sub = await actions.get_subscription(built.subscription_id or "")
    assert sub["status"] == "past_due"
    invoice = await actions.get_invoice(built.failed_invoice_id or "")
    assert (invoice["status"], invoice["amount_due"]) == ("open", 5900)
    assert invoice["attempt_count"] >= 1
    meta = invoice["metadata"]
    assert meta["tl_decline_code"] == "insufficient_funds"
    assert _ago(meta, 3)
    assert int(meta["tl_link_expires_at"]) == int(meta["tl_created"]) + 30 * DAY
    charge = await actions.get_charge(built.failed_charge_id or "")
    assert (charge["status"], charge["failure_code"], charge["invoice"]) == (
        "failed",
        "card_declined",
        invoice["id"],
    )
    assert charge["metadata"]["tl_decline_code"] == "insufficient_funds"
    # the failing card used to drive the emulator is gone; the world's card is the default
    customer = await actions.get_customer(built.customer_id)
    assert customer["invoice_settings"]["default_payment_method"] == built.payment_method_id


async def test_failed_invoice_on_active_subscription_and_expired_link(
    actions: StripeActions, unique: str
) -> None:
    built = await build_world(
        {
            "subscription": {"status": "active"},
            "failed_invoice": {"days_ago": 9},
            "expired_invoice_link": True,
        },
        actions,
        label=f"w-link-{unique}",
    )
    assert (await actions.get_subscription(built.subscription_id or ""))["status"] == "active"
    invoice = await actions.get_invoice(built.failed_invoice_id or "")
    assert invoice["status"] == "open"
    assert int(invoice["metadata"]["tl_link_expires_at"]) < time.time()


async def test_refunds_on_matching_charges(actions: StripeActions, unique: str) -> None:
    built = await build_world(
        {
            "charges": [{"amount_usd": 49, "days_ago": 5}],
            "refunds": [
                {"amount_usd": 20, "days_ago": 3, "status": "pending"},
                {"amount_usd": 100, "days_ago": 10, "status": "succeeded"},
            ],
        },
        actions,
        label=f"w-refunds-{unique}",
    )
    first = await actions.raw_get(f"/v1/refunds/{built.refund_ids[0]}")
    assert (first["charge"], first["amount"], first["status"]) == (built.charge_ids[0], 2000, "pending")
    assert first["metadata"]["tl_refund_status"] == "pending"
    assert _ago(first["metadata"], 3)
    second = await actions.raw_get(f"/v1/refunds/{built.refund_ids[1]}")  # no charge fits: one is made for it
    assert second["charge"] == built.support_charge_ids[0]
    assert second["metadata"]["tl_refund_status"] == "succeeded"
    support = await actions.get_charge(built.support_charge_ids[0])
    assert support["amount"] == 10000
    assert _ago(support["metadata"], 12)


async def test_dispute_and_usage_are_returned_for_the_caller(actions: StripeActions, unique: str) -> None:
    built = await build_world(
        {
            "charges": [{"amount_usd": 49, "days_ago": 5}],
            "dispute_open": True,
            "usage": {"metric": "api_calls", "limit": 500000, "last_30d": 890000, "prev_30d": 410000},
        },
        actions,
        label=f"w-dispute-{unique}",
    )
    [event] = built.pending_events
    assert (event["type"], event["object"], event["livemode"]) == ("charge.dispute.created", "event", False)
    dispute = event["data"]["object"]
    assert (dispute["charge"], dispute["amount"], dispute["status"]) == (
        built.charge_ids[0],
        4900,
        "needs_response",
    )
    now = time.time()
    last = sum(e.units for e in built.usage_events if now - e.ts.timestamp() <= 30 * DAY)
    prev = sum(e.units for e in built.usage_events if 30 * DAY < now - e.ts.timestamp() <= 60 * DAY)
    assert (last, prev) == (890000, 410000)
    assert {e.metric for e in built.usage_events} == {"api_calls"}


@pytest.mark.parametrize(
    ("etype", "world", "check"),
    [
        (
            "invoice.payment_failed",
            {"subscription": {"status": "past_due"}},
            lambda o, b: o["id"] == b.failed_invoice_id,
        ),
        ("charge.failed", {"subscription": {"status": "past_due"}}, lambda o, b: o["status"] == "failed"),
        (
            "customer.source.expiring",
            {"card": "expired"},
            lambda o, b: o["object"] == "card" and o["last4"] == "0341",
        ),
        ("payment_method.updated", {}, lambda o, b: o["id"] == b.payment_method_id),
        ("invoice.upcoming", {}, lambda o, b: o["customer"] == b.customer_id and o["amount_due"] == 4900),
        (
            "charge.dispute.created",
            {"charges": [{"amount_usd": 49, "days_ago": 2}]},
            lambda o, b: o["object"] == "dispute" and o["charge"] == b.charge_ids[0],
        ),
    ],
)
async def test_world_events(
    actions: StripeActions, unique: str, etype: str, world: dict[str, Any], check: Any
) -> None:
    built = await build_world(world, actions, label=f"w-ev-{etype.replace('.', '-')}-{unique}")
    event = await world_event({"type": etype}, built)
    assert event["type"] == etype
    assert event["id"].startswith("evt_")
    assert event["api_version"]
    assert check(event["data"]["object"], built)


async def test_signed_event_verifies_independently(actions: StripeActions, unique: str) -> None:
    built = await build_world({"subscription": {"status": "past_due"}}, actions, label=f"w-sign-{unique}")
    payload = json.dumps(await world_event({"type": "invoice.payment_failed"}, built)).encode()
    ts = int(time.time())
    header = sign_payload(payload, "whsec_test", ts)
    expected = hmac.new(b"whsec_test", f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    assert header == f"t={ts},v1={expected}"
    event = stripe.Webhook.construct_event(payload.decode(), header, "whsec_test")  # Stripe's own verifier
    assert event.data.object.id == built.failed_invoice_id


async def test_public_scenarios_all_build(actions: StripeActions, shared_dir: Path, unique: str) -> None:
    lines = (shared_dir / "data" / "scenarios" / "public.jsonl").read_text().splitlines()
    for line in lines:
        scenario = json.loads(line)
        built = await build_world(scenario["world"], actions, label=f"{scenario['id']}-{unique}")
        if "stripe_event" in scenario:
            event = await world_event(scenario["stripe_event"], built)
            assert build_event(event["type"], event["data"]["object"])["data"] == event["data"]
