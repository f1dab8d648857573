"""What the tiers tell the customer, and how a follow-up is read against the conversation (issue 19).

The texts are pure: the handoff status with its SLA time, the follow-up reading ("that didn't work" after
an automated answer), the planner's and the LLM prompt's use of the history.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas.messages import Turn
from schemas.vocab import EscalationReason, Intent
from services.tier3_handoff.domain import follow_up_outcome, handoff_status_text
from tests.unit.test_agent_loop import ScriptedLLM, completion, make_loop, request_for
from tests.unit.test_planner import FakeBilling, ask, reason, run
from tierline.followups import did_not_work, last_automated_answer

pytestmark = pytest.mark.unit

CARD_LINK_ANSWER = (
    "We sent you a secure link to update your card. Once the new card is saved we retry the payment."
)
HISTORY = [
    Turn(role="customer", text="My card was declined"),
    Turn(role="assistant", text=CARD_LINK_ANSWER),
]


# --------------------------------------------------------------------------- the handoff status turn
def test_given_a_case_sla_when_the_status_is_written_then_it_names_a_person_and_the_due_time_in_utc() -> None:
    due = datetime(2026, 12, 3, 18, 30, tzinfo=timezone(timedelta(hours=2)))  # 16:30 UTC

    text = handoff_status_text(due)

    assert "person" in text
    assert "3 Dec 2026, 16:30 UTC" in text


def test_given_a_spanish_contact_when_the_status_is_written_then_it_is_in_spanish_with_the_time() -> None:
    due = datetime(2026, 12, 3, 16, 30, tzinfo=UTC)

    text = handoff_status_text(due, "es")

    assert text.startswith("Una persona de nuestro equipo")
    assert "3 Dec 2026, 16:30 UTC" in text


def test_given_a_language_tierline_does_not_answer_in_when_the_status_is_written_then_english() -> None:
    due = datetime(2026, 12, 3, 16, 30, tzinfo=UTC)

    assert handoff_status_text(due, "ja") == handoff_status_text(due, None)


def test_given_a_follow_up_on_an_open_case_when_its_outcome_is_written_then_it_names_the_case() -> None:
    from schemas.messages import EscalationOpenedPayload

    packet = EscalationOpenedPayload(
        reason=EscalationReason.CUSTOMER_ASKED, opened_by="router", text="any news?"
    )

    outcome = follow_up_outcome(packet, "case_abc")

    assert outcome.summary == "follow-up added to open case case_abc"
    assert outcome.escalation_reason is EscalationReason.CUSTOMER_ASKED


# --------------------------------------------------------------------------- reading a follow-up
@pytest.mark.parametrize(
    "text",
    [
        "That didn't work",
        "it did not work, my card is still declined",
        "I never got the link",
        "Still getting the same error",
        "La tarjeta sigue sin funcionar, no funcionó",
        "Das hat nicht funktioniert",
        "Ça n'a pas marché",
        "Não funcionou",
    ],
)
def test_given_an_automated_answer_before_when_the_customer_says_it_failed_then_that_answer_is_named(
    text: str,
) -> None:
    assert did_not_work(text, HISTORY) == CARD_LINK_ANSWER


def test_given_no_earlier_answer_when_the_customer_says_it_failed_then_it_is_no_follow_up() -> None:
    assert did_not_work("That didn't work", [Turn(role="customer", text="hi")]) is None
    assert did_not_work("That didn't work", []) is None


def test_given_a_person_answered_last_when_the_customer_says_it_failed_then_it_is_not_an_automated_miss() -> (
    None
):
    history = [*HISTORY, Turn(role="agent", text="I've retried it myself.")]

    assert last_automated_answer(history) is None
    assert did_not_work("That didn't work", history) is None


def test_given_an_earlier_answer_when_the_customer_thanks_then_it_is_no_complaint() -> None:
    assert did_not_work("Thanks, that worked, the payment went through!", HISTORY) is None


# --------------------------------------------------------------------------- tier 2 uses the history
async def test_given_a_card_link_answer_before_when_the_customer_says_it_failed_then_a_person_takes_it() -> (
    None
):
    world = FakeBilling(failed_invoice={"id": "in_9", "decline_code": "expired_card"})

    result = await run(world, ask("That didn't work, still declined", Intent.PAYMENT_FAILED, history=HISTORY))

    assert reason(result) is EscalationReason.LOW_CONFIDENCE
    assert result.escalation is not None
    assert "update your card" in result.escalation.note
    assert world.effect_names() == []  # the same link is not sent again


async def test_given_no_history_when_the_same_words_arrive_then_the_planner_acts_as_before() -> None:
    world = FakeBilling(failed_invoice={"id": "in_9", "decline_code": "expired_card"})

    result = await run(world, ask("That didn't work, still declined", Intent.PAYMENT_FAILED))

    assert result.resolved
    assert world.effect_names() == ["send_update_card_link"]


async def test_given_a_history_when_the_model_is_asked_then_the_prompt_holds_the_earlier_turns_as_data() -> (
    None
):
    llm = ScriptedLLM([completion(content="That $49.00 charge is your Pro renewal of 3 March.")])
    request = request_for("and what about this one?").model_copy(update={"history": HISTORY})

    await make_loop(llm).run(request, _tools())

    messages = llm.body(0)["messages"]
    thread = [m for m in messages if m["role"] == "system" and "conversation so far" in m["content"]]
    assert len(thread) == 1
    assert f'<turn role="assistant">{CARD_LINK_ANSWER}</turn>' in thread[0]["content"]
    assert messages[-1]["role"] == "user"  # the new message stays last
    assert "and what about this one?" in messages[-1]["content"]
    assert json.dumps(messages).count("My card was declined") == 1


def _tools():  # type: ignore[no-untyped-def]
    from tests.unit.test_agent_loop import FakeTools

    return FakeTools()
