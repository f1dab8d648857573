"""The scenario world model, event building, signing and pure adapter helpers (no Stripe needed)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydantic
import pytest
import stripe

from tierline.stripe_adapter import plan_amount_cents
from tierline_tools.world import (
    LIST_PRICE_USD,
    UsageSpec,
    WorldSpec,
    build_event,
    sign_payload,
    usage_events_for,
)

pytestmark = pytest.mark.unit


def test_empty_world_means_healthy_active_subscription_on_a_working_card() -> None:
    world = WorldSpec.model_validate({})
    assert (world.card, world.subscription.status, world.customer.seats) == ("visa", "active", 1)
    assert world.charges == []
    assert world.refunds == []
    assert world.failed_invoice is None
    assert world.monthly_usd == LIST_PRICE_USD["pro"]
    assert world.effective_failed_invoice is None
    assert not world.dispute_open
    assert world.usage is None


def test_every_public_scenario_world_parses(shared_dir: Path) -> None:
    for line in (shared_dir / "data" / "scenarios" / "public.jsonl").read_text().splitlines():
        scenario = json.loads(line)
        world = WorldSpec.model_validate(scenario["world"])
        assert world.customer.plan == scenario["world"]["customer"]["plan"]


def test_past_due_without_failed_invoice_implies_one() -> None:
    world = WorldSpec.model_validate(
        {"customer": {"plan": "starter"}, "subscription": {"status": "past_due"}}
    )
    failed = world.effective_failed_invoice
    assert failed is not None
    assert failed.amount_usd == 19
    assert failed.days_ago == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"card": "mastercard"},
        {"subscription": {"status": "paused"}},
        {"charges": [{"amount_usd": -5}]},
        {"customer": {"seats": 0}},
        {"refunds": [{"amount_usd": 5, "status": "lost"}]},
    ],
)
def test_invalid_worlds_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        WorldSpec.model_validate(bad)


def test_usage_events_fill_both_windows_exactly() -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    events = usage_events_for(UsageSpec(metric="api_calls", last_30d=480_007, prev_30d=200_000), now)
    last = sum(e.units for e in events if now - e.ts <= timedelta(days=30))
    prev = sum(e.units for e in events if timedelta(days=30) < now - e.ts <= timedelta(days=60))
    assert (last, prev, len(events)) == (480_007, 200_000, 60)
    assert all(e.ts < now for e in events)


def test_build_event_is_shaped_like_stripe() -> None:
    event = build_event("invoice.payment_failed", {"id": "in_1", "object": "invoice"}, created=1_700_000_000)
    assert event["id"].startswith("evt_")
    assert len(event["id"]) > 10
    assert {k: event[k] for k in ("object", "created", "livemode", "type")} == {
        "object": "event",
        "created": 1_700_000_000,
        "livemode": False,
        "type": "invoice.payment_failed",
    }
    assert event["data"] == {"object": {"id": "in_1", "object": "invoice"}}
    assert event["api_version"] == stripe.api_version
    assert "request" in event
    assert build_event("x", {})["id"] != build_event("x", {})["id"]


def test_signature_matches_an_independent_hmac_and_stripes_verifier() -> None:
    payload = json.dumps(build_event("charge.failed", {"id": "ch_1", "object": "charge"})).encode()
    header = sign_payload(payload, "whsec_abc", 1_800_000_000)
    digest = hmac.new(b"whsec_abc", b"1800000000." + payload, hashlib.sha256).hexdigest()
    assert header == f"t=1800000000,v1={digest}"
    stripe.WebhookSignature.verify_header(payload.decode(), header, "whsec_abc", tolerance=None)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload.decode(), header, "whsec_other", tolerance=None)


@pytest.mark.parametrize(
    ("plan", "qty", "cents"),
    [
        ({"billing_scheme": "per_unit", "amount": 4900}, 3, 14700),
        (
            {
                "billing_scheme": "tiered",
                "tiers_mode": "volume",
                "tiers": [{"up_to": "inf", "flat_amount": "4900", "unit_amount": "0"}],
            },
            12,
            4900,
        ),
        (
            {
                "billing_scheme": "tiered",
                "tiers_mode": "volume",
                "tiers": [
                    {"up_to": 5, "flat_amount": 0, "unit_amount": 100},
                    {"up_to": "inf", "unit_amount": 80},
                ],
            },
            10,
            800,
        ),
        (
            {
                "billing_scheme": "tiered",
                "tiers_mode": "graduated",
                "tiers": [{"up_to": 5, "unit_amount": 100}, {"up_to": "inf", "unit_amount": 80}],
            },
            10,
            900,
        ),
    ],
)
def test_plan_amounts(plan: dict[str, object], qty: int, cents: int) -> None:
    assert plan_amount_cents(plan, qty) == cents
