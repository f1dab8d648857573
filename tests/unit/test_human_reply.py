"""Humans reply (issue 19): the console's reply rules and draft, and the honest status the customer's
pages show for a request a person holds — pure decisions, no component running."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.tier1_selfheal.domain import human_case_status
from services.tier3_handoff.domain import (
    MAX_REPLY_CHARS,
    ReplyInvalid,
    check_reply,
    draft_reply,
    resolution_message,
)

PACKET = {
    "reason": "refund_over_policy",
    "diagnosis": {"explanation": "You were charged $49.00 twice on 3 May for the Pro plan."},
    "suggested_next_step": "Refund the remaining $100 if the duplicate is confirmed",
}


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "x" * (MAX_REPLY_CHARS + 1)])
def test_given_an_empty_or_too_long_reply_when_checked_then_it_is_refused(text: str) -> None:
    with pytest.raises(ReplyInvalid):
        check_reply(text)


def test_given_a_reply_when_checked_then_it_is_sent_trimmed() -> None:
    assert check_reply("  Hello, fixed.  \n") == "Hello, fixed."
    assert check_reply("x" * MAX_REPLY_CHARS) == "x" * MAX_REPLY_CHARS


def test_given_a_packet_when_drafting_then_the_customer_reads_the_diagnosis_never_the_agent_step() -> None:
    draft = draft_reply(PACKET)
    assert draft.startswith("Hello,")
    assert "charged $49.00 twice on 3 May" in draft
    assert "refund you asked for" in draft
    assert "Refund the remaining" not in draft


def test_given_a_packet_without_diagnosis_when_drafting_then_a_plain_draft() -> None:
    draft = draft_reply({"reason": "customer_asked"})
    assert "reviewed your account." in draft
    assert "looking into this personally" in draft


def test_given_a_resolution_note_when_resolving_then_the_customer_is_told_it_is_resolved() -> None:
    assert resolution_message(" Refunded $49.00. ") == "Your request is resolved. Refunded $49.00."


@pytest.mark.parametrize("case_status", ["open", "claimed"])
def test_given_an_open_case_when_the_meter_shows_it_then_a_person_is_on_it_with_the_sla(
    case_status: str,
) -> None:
    due = datetime(2026, 12, 3, 18, 47, tzinfo=UTC)
    status = human_case_status(case_status, sla_due_at=due, resolution_note=None)
    assert status.state == "with_human"
    assert "Resolved" not in status.title
    assert status.detail == (
        "A person on our billing team is looking at this; expect an answer by 3 Dec 2026, 18:47 UTC."
    )


def test_given_a_resolved_case_when_the_meter_shows_it_then_resolved_with_the_persons_note() -> None:
    status = human_case_status("resolved", sla_due_at=None, resolution_note="Refunded the duplicate.")
    assert status.state == "resolved"
    assert status.title == "Resolved by our billing team"
    assert status.detail == "Refunded the duplicate."
