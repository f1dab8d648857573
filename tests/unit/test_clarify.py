"""Clarifying questions (issue 19): when the router asks, and how the customer's answer is read and routed.

Pure decisions only (services/router/clarify.py); the pipeline test is tests/integration/pipeline/
test_clarify.py.
"""

from __future__ import annotations

import pytest

from schemas.messages import Choice
from schemas.vocab import EscalationReason, Intent, RootCause, Tier
from services.router.clarify import (
    CHOICE_READING,
    CONTEXT_READING,
    PendingQuestion,
    clarifying_question,
    question_intents,
    read_reply,
    unclear_after_question,
)
from services.router.domain import NEUTRAL_GATES, Gates, MessageReading, RouteDecision, decide_route
from tierline_tools.demo import clarify_report, pick_choice

THRESHOLD = 0.78
I = Intent  # noqa: E741 - table shorthand


def _route(
    intent: Intent, confidence: float, gates: Gates = NEUTRAL_GATES, rc: RootCause | None = None
) -> RouteDecision:
    return decide_route(intent, confidence, gates, rc, None, THRESHOLD)


def _reading(intent: Intent, confidence: float, reason: str = "whole_text") -> MessageReading:
    return MessageReading(intent=intent, confidence=confidence, reason=reason)


@pytest.mark.parametrize(
    ("candidates", "reading", "flagged", "expected"),
    [
        # unsure between two billing asks: a question offering both
        (
            [(I.PAYMENT_PENDING, 0.39), (I.UNRECOGNIZED_CHARGE, 0.37), (I.OUT_OF_SCOPE, 0.16)],
            _reading(I.PAYMENT_PENDING, 0.39),
            False,
            (I.PAYMENT_PENDING, I.UNRECOGNIZED_CHARGE),
        ),
        # three plausible billing asks, listed most likely first
        (
            [(I.UNEXPECTED_CHARGE, 0.36), (I.PAYMENT_PENDING, 0.22), (I.REFUND_REQUEST, 0.12)],
            _reading(I.UNEXPECTED_CHARGE, 0.36),
            False,
            (I.UNEXPECTED_CHARGE, I.PAYMENT_PENDING, I.REFUND_REQUEST),
        ),
        # only one billing candidate: no question (the usual unsure path)
        (
            [(I.OUT_OF_SCOPE, 0.46), (I.PAYMENT_PENDING, 0.44), (I.PAYMENT_FAILED, 0.07)],
            _reading(I.OUT_OF_SCOPE, 0.46),
            False,
            (),
        ),
        # two billing candidates, but too little of the reading is about billing at all
        (
            [(I.OUT_OF_SCOPE, 0.7), (I.UNRECOGNIZED_CHARGE, 0.15), (I.PAYMENT_FAILED, 0.12)],
            _reading(I.OUT_OF_SCOPE, 0.7),
            False,
            (),
        ),
        # a person or a fraud report is never guessed in a question
        (
            [(I.HUMAN_AGENT, 0.4), (I.FRAUD_COMPROMISED, 0.3), (I.REFUND_REQUEST, 0.2)],
            _reading(I.HUMAN_AGENT, 0.4),
            False,
            (),
        ),
        # a text the guardrail flagged takes its usual path
        (
            [(I.PAYMENT_PENDING, 0.39), (I.UNRECOGNIZED_CHARGE, 0.37)],
            _reading(I.PAYMENT_PENDING, 0.39),
            True,
            (),
        ),
        # confident: no question
        (
            [(I.INVOICE_REQUEST, 0.95), (I.PAYMENT_PENDING, 0.04)],
            _reading(I.INVOICE_REQUEST, 0.95),
            False,
            (),
        ),
    ],
)
def test_given_a_reading_when_the_router_decides_then_it_asks_only_when_unsure_between_billing_asks(
    candidates: list[tuple[Intent, float]],
    reading: MessageReading,
    flagged: bool,
    expected: tuple[Intent, ...],
) -> None:
    decision = _route(reading.intent, reading.confidence)
    assert question_intents(candidates, decision, reading, flagged=flagged) == expected


def test_given_an_unsure_reading_behind_a_gate_when_decided_then_the_gate_wins_and_no_question() -> None:
    candidates = [(I.REFUND_REQUEST, 0.4), (I.DUPLICATE_CHARGE, 0.35)]
    reading = _reading(I.REFUND_REQUEST, 0.4)
    unverified = Gates(customer_found=True, sender_authorized=False)
    disputed = Gates(customer_found=True, sender_authorized=True, dispute_open=True)

    assert question_intents(candidates, _route(I.REFUND_REQUEST, 0.4, unverified), reading) == ()
    assert question_intents(candidates, _route(I.REFUND_REQUEST, 0.4, disputed), reading) == ()


def test_given_a_reading_from_clauses_when_unsure_then_no_question() -> None:
    reading = _reading(I.PAYMENT_PENDING, 0.5, reason="from_clause")
    candidates = [(I.PAYMENT_PENDING, 0.5), (I.UNRECOGNIZED_CHARGE, 0.4)]
    assert question_intents(candidates, _route(I.PAYMENT_PENDING, 0.5), reading) == ()


QUESTION = PendingQuestion(
    choices=(
        Choice(label="A payment still pending", value="payment_pending"),
        Choice(label="A charge I don't recognise", value="unrecognized_charge"),
        Choice(label="Talk to a person", value="human"),
    )
)
UNSURE = _reading(I.OUT_OF_SCOPE, 0.5)


@pytest.mark.parametrize(
    ("choice", "text", "reading", "expected"),
    [
        # a clicked choice the question offered: that intent, sure
        (
            "unrecognized_charge",
            "A charge I don't recognise",
            UNSURE,
            (I.UNRECOGNIZED_CHARGE, 1.0, CHOICE_READING),
        ),
        # typed back by number or label (an email reply)
        (None, "2", UNSURE, (I.UNRECOGNIZED_CHARGE, 1.0, CHOICE_READING)),
        (None, " option 1. ", UNSURE, (I.PAYMENT_PENDING, 1.0, CHOICE_READING)),
        (None, "a charge I don't recognise", UNSURE, (I.UNRECOGNIZED_CHARGE, 1.0, CHOICE_READING)),
        (None, "3", UNSURE, (I.HUMAN_AGENT, 1.0, "chose_human")),
        # a person, clicked
        ("human", "Talk to a person", UNSURE, (I.HUMAN_AGENT, 1.0, "chose_human")),
        # a clear new message is read as usual
        (
            None,
            "send me the invoice",
            _reading(I.INVOICE_REQUEST, 0.97),
            (I.INVOICE_REQUEST, 0.97, "whole_text"),
        ),
        # unsure, but one of the asks the question offered: the question is its context
        (
            None,
            "the pending one",
            _reading(I.PAYMENT_PENDING, 0.45),
            (I.PAYMENT_PENDING, THRESHOLD, CONTEXT_READING),
        ),
        # a choice the question did not offer is not taken (the text is read instead)
        ("refund_request", "refund me", _reading(I.REFUND_REQUEST, 0.3), None),
        # still unclear, or not about billing: a second unclear turn
        (None, "hmm", _reading(I.PLAN_CHANGE, 0.4), None),
        (None, "I still don't get it", _reading(I.OUT_OF_SCOPE, 0.96), None),
    ],
)
def test_given_a_pending_question_when_the_customer_replies_then_the_reply_is_read_with_it(
    choice: str | None, text: str, reading: MessageReading, expected: tuple[Intent, float, str] | None
) -> None:
    got = read_reply(QUESTION, choice, text, reading, THRESHOLD)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert (got.intent, got.confidence, got.reason) == expected


CONFIRMATION = PendingQuestion(  # tier 2's question before an account change it was unsure of
    choices=(
        Choice(label="Cancelling my subscription", value="cancel_subscription"),
        Choice(label="Talk to a person", value="human"),
    )
)


@pytest.mark.parametrize("text", ["yes", "Yes please.", "sí, por favor", "ja bitte", "Oui", "ok, go ahead!"])
def test_given_a_confirmation_question_when_the_customer_says_yes_then_the_change_is_chosen(
    text: str,
) -> None:
    got = read_reply(CONFIRMATION, None, text, UNSURE, THRESHOLD)

    assert got is not None
    assert (got.intent, got.confidence, got.reason) == (I.CANCEL_SUBSCRIPTION, 1.0, CHOICE_READING)


@pytest.mark.parametrize("text", ["yes", "yes but which one is cheaper?", "no"])
def test_given_a_question_of_several_asks_or_more_than_yes_when_replied_then_yes_picks_nothing(
    text: str,
) -> None:
    question = QUESTION if text == "yes" else CONFIRMATION  # "yes" to "which of these?" is no answer

    assert read_reply(question, None, text, _reading(I.OUT_OF_SCOPE, 0.9), THRESHOLD) is None


def test_given_no_pending_question_when_a_choice_arrives_then_only_human_counts() -> None:
    reading = _reading(I.PAYMENT_PENDING, 0.5)
    assert read_reply(None, "refund_request", "refund me", reading, THRESHOLD) == reading
    human = read_reply(None, "human", "Talk to a person", reading, THRESHOLD)
    assert human is not None
    assert human.intent is I.HUMAN_AGENT


def test_given_a_chosen_intent_when_routed_then_it_goes_through_the_same_gates() -> None:
    """A choice is confidence 1.0, never a pass: the sender check, a dispute, fraud still decide."""
    chosen = read_reply(QUESTION, "unrecognized_charge", "A charge I don't recognise", UNSURE, THRESHOLD)
    assert chosen is not None

    assert _route(chosen.intent, chosen.confidence).tier is Tier.TIER2
    unverified = _route(chosen.intent, chosen.confidence, Gates(customer_found=True, sender_authorized=False))
    assert (unverified.tier, unverified.escalation_reason) == (Tier.TIER3, EscalationReason.POLICY_DENIED)
    fraud = _route(
        chosen.intent,
        chosen.confidence,
        Gates(customer_found=True, sender_authorized=True, fraud_signal=True),
    )
    assert fraud.escalation_reason is EscalationReason.FRAUD
    disputed = _route(chosen.intent, chosen.confidence, rc=RootCause.DISPUTE_OPEN)
    assert disputed.escalation_reason is EscalationReason.DISPUTE


def test_given_a_second_unclear_turn_when_decided_then_a_person_takes_it_as_low_confidence() -> None:
    decision = unclear_after_question()
    assert (decision.tier, decision.escalation_reason) == (Tier.TIER3, EscalationReason.LOW_CONFIDENCE)


@pytest.mark.parametrize("language", ["en", "es", "de", "fr", "pt", "ja", None])
def test_given_offered_intents_when_the_question_is_written_then_it_is_in_the_language_with_a_person_last(
    language: str | None,
) -> None:
    text, choices = clarifying_question((I.PAYMENT_PENDING, I.UNRECOGNIZED_CHARGE), language)
    assert [c.value for c in choices] == ["payment_pending", "unrecognized_charge", "human"]
    assert all(c.label for c in choices)
    for n, c in enumerate(choices, start=1):
        assert f"{n}. {c.label}" in text  # numbered, for a channel without buttons
    if language == "es":
        assert choices[-1].label == "Hablar con una persona"
    if language in ("ja", None, "en"):
        assert choices[-1].label == "Talk to a person"


# --------------------------------------------------------------------------- the demo's figure
def test_given_a_demo_customer_asked_when_answering_then_they_pick_what_they_meant_or_a_person() -> None:
    offered = ["payment_pending", "unrecognized_charge", "human"]
    assert pick_choice("unrecognized_charge", offered) == "unrecognized_charge"
    assert pick_choice("refund_request", offered) == "human"
    assert pick_choice(None, offered) == "human"


def test_given_answers_when_the_demo_counts_then_resolved_means_no_person() -> None:
    answers = [{"payload": {"resolved_by": t}} for t in ("tier2", "tier1", "tier3")]
    report = clarify_report(asked=4, answers=answers)
    assert report == {
        "questions_asked": 4,
        "answered": 3,
        "resolved_after_answer": 2,
        "to_person_after_answer": 1,
        "resolved_share_of_questions": 0.5,
    }
