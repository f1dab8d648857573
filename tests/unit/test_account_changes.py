"""Account changes: the before → after a ledgered change records, the event it becomes (once), and what
the notifier says about it to the customer and to the support team."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas import Action, Tier
from schemas.messages import BillingChangeRecordedPayload
from services.notifier import change_notices
from tests.helpers import chat_contact
from tierline import account_changes
from tierline.actions import ActionContext


def ctx(actor: Any = "selfheal", actor_id: str = "customer") -> ActionContext:
    return ActionContext(
        f"c-{uuid.uuid4()}", "cus_A", Tier.TIER1, actor, actor_id, chat_contact("cus_A", "x")
    )


BEFORE = {
    "email": "old@acme.test",
    "name": "Acme",
    "address": {"line1": "Hauptstr. 5", "city": "Berlin", "country": "DE"},
    "tax_ids": {"data": []},
}
AFTER = {**BEFORE, "email": "new@acme.test", "tax_ids": {"data": [{"value": "DE136695976"}]}}


def test_given_an_email_change_when_diffed_then_only_the_asked_fields_before_and_after() -> None:
    diff = account_changes.details_change(BEFORE, AFTER, ["email"])
    assert diff == {"before": {"email": "old@acme.test"}, "after": {"email": "new@acme.test"}}
    tax = account_changes.details_change(BEFORE, AFTER, ["tax_id"])
    assert tax == {"before": {"tax_ids": []}, "after": {"tax_ids": ["DE136695976"]}}


def test_given_a_card_change_when_diffed_then_only_brand_and_last_four() -> None:
    diff = account_changes.details_change(
        BEFORE,
        AFTER,
        ["payment_method"],
        previous_card={"brand": "visa", "last4": "4242"},
        card={"brand": "mastercard", "last4": "4444", "number": "5555"},
    )
    assert diff == {"before": {"card": "Visa ending 4242"}, "after": {"card": "Mastercard ending 4444"}}


@pytest.mark.parametrize(
    ("action", "after", "kind"),
    [
        (Action.UPDATE_BILLING_DETAILS, {"email": "a@b.test"}, "billing_email"),
        (Action.UPDATE_BILLING_DETAILS, {"tax_ids": ["DE1"]}, "tax_id"),
        (Action.UPDATE_BILLING_DETAILS, {"name": "Acme GmbH"}, "company_details"),
        (Action.UPDATE_BILLING_DETAILS, {"card": "Visa ending 1"}, "card"),
        (Action.CHANGE_PLAN, {"plan": "pro"}, "plan"),
        (Action.CANCEL_SUBSCRIPTION, {"cancel_at_period_end": True}, "cancellation"),
        (Action.REFUND, {"x": 1}, None),
    ],
)
def test_given_an_action_when_classified_then_its_kind_of_change(
    action: Action, after: dict[str, Any], kind: str | None
) -> None:
    assert account_changes.change_kind(action, after) == kind


def test_given_an_email_change_when_its_event_is_built_twice_then_identical_and_tells_both_addresses() -> (
    None
):
    c = ctx()
    result = account_changes.stamp(
        c,
        {"message": "ok", **account_changes.details_change(BEFORE, AFTER, ["email"])},
        notify=["old@acme.test", "new@acme.test"],
    )
    first = account_changes.change_event(c, Action.UPDATE_BILLING_DETAILS, "key-1", result)
    again = account_changes.change_event(c, Action.UPDATE_BILLING_DETAILS, "key-1", result)
    assert first is not None
    assert again is not None
    assert first.message_id == again.message_id
    assert first.payload == again.payload
    assert first.payload.change == "billing_email"
    assert first.payload.notify == ["old@acme.test", "new@acme.test"]
    assert first.payload.actor == "tier1:customer"


@pytest.mark.parametrize(
    "result",
    [{"message": "no before/after"}, {"after": {"plan": "pro"}, "preview_only": True}],
)
def test_given_a_result_without_a_change_when_built_then_no_event(result: dict[str, Any]) -> None:
    assert account_changes.change_event(ctx(), Action.CHANGE_PLAN, "k", result) is None


def _payload(**kw: Any) -> BillingChangeRecordedPayload:
    base: dict[str, Any] = {
        "change": "billing_email",
        "action": Action.UPDATE_BILLING_DETAILS,
        "actor": "tier1:customer",
        "actor_kind": "selfheal",
        "changed_at": datetime(2026, 12, 3, 15, 0, tzinfo=UTC),
        "before": {"email": "old@acme.test"},
        "after": {"email": "new@acme.test"},
        "notify": ["old@acme.test", "new@acme.test"],
        "idempotency_key": "k",
    }
    return BillingChangeRecordedPayload(**{**base, **kw})


def test_given_an_email_change_when_the_customer_email_is_written_then_a_teammate_and_before_after() -> None:
    notice = change_notices.customer_email(_payload())
    assert notice.subject == "Your billing email was changed"
    assert "someone on your team" in notice.body
    assert "old@acme.test → new@acme.test" in notice.body


def test_given_a_plan_change_when_the_slack_message_is_written_then_it_names_customer_who_and_prices() -> (
    None
):
    msg = change_notices.slack_message(
        _payload(
            change="plan",
            action=Action.CHANGE_PLAN,
            actor="tier3:ana",
            actor_kind="human",
            before={"plan": "starter", "monthly_usd": 19.0},
            after={"plan": "pro", "monthly_usd": 49.0},
        ),
        "cus_A",
    )
    assert "`cus_A`" in msg["text"]
    assert "tier3:ana" in msg["text"]
    assert "starter → pro" in msg["text"]
    assert "$19.00 → $49.00" in msg["text"]


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ({}, ["email", "slack"]),
        ({"billing_email": ["slack"]}, ["slack"]),
        ({"billing_email": []}, []),
        ({"billing_email": ["email", "sms"]}, ["email"]),
        ({"plan": ["slack"]}, ["email", "slack"]),
    ],
)
def test_given_channel_settings_when_asked_then_the_channels_per_kind(
    configured: dict[str, list[str]], expected: list[str]
) -> None:
    assert change_notices.channels_for("billing_email", configured) == expected
