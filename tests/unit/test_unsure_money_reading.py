"""A money ask the whole text reads unsure but its own sentence reads clearly, beside a safe ask: the safe
ask is the main one and a person decides the money; a clause's confidence never lets the refund act."""

from __future__ import annotations

import pytest

from schemas.vocab import Intent, Tier
from services.router.domain import NEUTRAL_GATES, ClauseReading, decide_route, read_message

pytestmark = pytest.mark.unit

T = 0.86
TEXT = "Send me last month's invoice. Also I want a refund for the charge on the 3rd."
CLAUSES = [
    ClauseReading(text="Send me last month's invoice.", intent=Intent.INVOICE_REQUEST, confidence=1.0),
    ClauseReading(
        text="Also I want a refund for the charge on the 3rd.", intent=Intent.REFUND_REQUEST, confidence=0.998
    ),
]


def test_given_an_unsure_refund_text_and_an_invoice_ask_when_read_then_invoice_and_a_person_refunds() -> None:
    reading = read_message(TEXT, Intent.REFUND_REQUEST, 0.75, CLAUSES, T)

    assert reading.intent is Intent.INVOICE_REQUEST
    assert reading.secondary_intents == (Intent.REFUND_REQUEST,)
    assert reading.reason == "several_asks"
    assert decide_route(reading.intent, reading.confidence, NEUTRAL_GATES, None, None, T).tier is Tier.TIER1


def test_given_a_confident_refund_reading_beside_an_invoice_ask_when_read_then_the_refund_stays_main() -> (
    None
):
    reading = read_message(TEXT, Intent.REFUND_REQUEST, 0.97, CLAUSES, T)

    assert reading.intent is Intent.REFUND_REQUEST
    assert Intent.INVOICE_REQUEST in reading.secondary_intents


def test_given_an_unsure_refund_reading_alone_when_read_then_it_stays_unsure() -> None:
    reading = read_message("refund?", Intent.REFUND_REQUEST, 0.6, [], T)

    assert (reading.intent, reading.confidence) == (Intent.REFUND_REQUEST, 0.6)
