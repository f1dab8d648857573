"""The sweeper's decisions and the stack's storage choice, without a broker or a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas import EscalationReason, Intent, Tier
from tierline.sweeper import OpenContact, overdue, sweep_escalation, sweep_message_id
from tierline_tools.stack.manager import StackConfig

pytestmark = pytest.mark.unit

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
BOUND = timedelta(minutes=5)


def open_contact(contact_id: str, age: timedelta, intent: str | None = None) -> OpenContact:
    return OpenContact(
        contact_id=contact_id,
        customer_id="cus_1",
        trigger="contact",
        channel="chat",
        started_at=NOW - age,
        intent=intent,
    )


def test_given_contacts_of_several_ages_when_deciding_then_only_those_past_the_bound_oldest_first() -> None:
    contacts = [
        open_contact("fresh", timedelta(minutes=1)),
        open_contact("old", timedelta(hours=2)),
        open_contact("just-over", BOUND + timedelta(seconds=1)),
        open_contact("at-bound", BOUND),
    ]
    assert [c.contact_id for c in overdue(contacts, now=NOW, bound=BOUND)] == ["old", "just-over"]


def test_given_an_overdue_contact_when_built_twice_then_an_identical_escalation_reason_error() -> None:
    contact = open_contact("c-1", timedelta(hours=1), intent="payment_failed")
    first = sweep_escalation(contact, bound=BOUND)
    again = sweep_escalation(contact, bound=BOUND)
    assert first == again
    assert first.message_id == sweep_message_id("c-1") != sweep_message_id("c-2")
    assert first.payload.reason is EscalationReason.ERROR
    assert first.payload.opened_by == Tier.TIER3
    assert first.payload.intent is Intent.PAYMENT_FAILED
    assert first.payload.contact_started_at == contact.started_at
    assert (first.contact_id, first.customer_id) == ("c-1", "cus_1")


def test_given_an_unknown_stored_intent_when_building_the_escalation_then_it_has_no_intent() -> None:
    assert (
        sweep_escalation(open_contact("c", timedelta(hours=1), "nonsense"), bound=BOUND).payload.intent
        is None
    )


def test_given_stack_configs_when_built_then_durable_by_default_and_memory_only_when_asked(
    tmp_path: Path,
) -> None:
    durable = StackConfig(data_dir=str(tmp_path))
    assert durable.durable_broker is True
    assert durable.kafka().storage_url.startswith("s3://")
    assert durable.kafka().extra_env["AWS_ENDPOINT"] == durable.s3().endpoint
    assert durable.s3().root == tmp_path / "broker-log"  # in the data dir: kept across down/up
    memory = StackConfig(data_dir=str(tmp_path), durable_broker=False)
    assert memory.kafka().storage_url.startswith("memory://")
    assert StackConfig.for_tests(tmp_path).kafka().storage_url.startswith("memory://")
