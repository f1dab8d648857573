"""The router's reading of a whole message: several asks, most urgent first; vague texts and the diagnosis."""

from __future__ import annotations

import pytest

from schemas.messages import DiagnosisView
from schemas.vocab import Action, HealthStatus, Intent, RootCause, Tier
from services.router.domain import (
    NEUTRAL_GATES,
    ClauseReading,
    MessageReading,
    decide_route,
    is_vague_trouble,
    read_message,
    secondary_actions,
)

pytestmark = pytest.mark.unit

T = 0.73


def clause(text: str, intent: Intent, confidence: float) -> ClauseReading:
    return ClauseReading(text=text, intent=intent, confidence=confidence)


def test_given_card_link_and_invoice_when_read_then_card_first_and_invoice_after() -> None:
    reading = read_message(
        "send me a new card link and last month's invoice",
        Intent.INVOICE_REQUEST,
        0.81,
        [
            clause("send me a new card link", Intent.CARD_EXPIRING, 0.55),  # unsure, but its words agree
            clause("last month's invoice", Intent.INVOICE_REQUEST, 0.99),
        ],
        T,
    )
    assert reading.intent is Intent.CARD_EXPIRING
    assert reading.secondary_intents == (Intent.INVOICE_REQUEST,)
    assert reading.confidence >= T
    decision = decide_route(reading.intent, reading.confidence, NEUTRAL_GATES, None, None, T)
    assert decision.tier is Tier.TIER1
    assert decision.selfheal_action is Action.SEND_UPDATE_CARD_LINK
    assert secondary_actions(reading, decision.selfheal_action, None, None) == [Action.SEND_INVOICE]


def test_given_an_unsure_clause_without_agreeing_words_when_read_then_it_is_not_an_ask() -> None:
    reading = read_message(
        "send me the invoice and the thing",
        Intent.INVOICE_REQUEST,
        0.95,
        [
            clause("the thing", Intent.CARD_EXPIRING, 0.6),
            clause("send me the invoice", Intent.INVOICE_REQUEST, 1.0),
        ],
        T,
    )
    assert reading.intent is Intent.INVOICE_REQUEST
    assert reading.secondary_intents == ()


def test_given_a_money_ask_in_a_clause_when_read_then_it_is_listed_never_the_main_or_an_action() -> None:
    reading = read_message(
        "Send me last month's invoice. Also I want a refund for the charge on the 3rd.",
        Intent.INVOICE_REQUEST,
        0.77,
        [
            clause("Send me last month's invoice.", Intent.INVOICE_REQUEST, 1.0),
            clause("Also I want a refund for the charge on the 3rd.", Intent.REFUND_REQUEST, 1.0),
        ],
        T,
    )
    assert reading.intent is Intent.INVOICE_REQUEST
    assert reading.secondary_intents == (Intent.REFUND_REQUEST,)
    assert secondary_actions(reading, Action.SEND_INVOICE, None, None) == []


def test_given_a_money_ask_as_the_whole_text_when_read_then_it_stays_main_and_safe_asks_ride_along() -> None:
    reading = read_message(
        "I want to cancel my subscription and also get last month's receipt",
        Intent.CANCEL_SUBSCRIPTION,
        0.8,
        [
            clause("I want to cancel my subscription", Intent.CANCEL_SUBSCRIPTION, 1.0),
            clause("get last month's receipt", Intent.INVOICE_REQUEST, 0.99),
        ],
        T,
    )
    assert reading.intent is Intent.CANCEL_SUBSCRIPTION
    assert reading.secondary_intents == (Intent.INVOICE_REQUEST,)
    decision = decide_route(reading.intent, reading.confidence, NEUTRAL_GATES, None, None, T)
    assert secondary_actions(reading, decision.selfheal_action, None, None) == [Action.SEND_INVOICE]


def test_given_an_unsure_money_text_when_read_then_its_confidence_is_not_raised_by_a_safe_clause() -> None:
    reading = read_message(
        "Please refund the duplicate charge and send me the invoice",
        Intent.REFUND_REQUEST,
        0.63,
        [
            clause("Please refund the duplicate charge", Intent.REFUND_REQUEST, 0.72),
            clause("send me the invoice", Intent.INVOICE_REQUEST, 1.0),
        ],
        T,
    )
    assert reading.intent is Intent.REFUND_REQUEST
    assert reading.confidence == 0.63
    assert reading.secondary_intents == (Intent.INVOICE_REQUEST,)


def test_given_a_person_asked_for_in_a_clause_when_read_then_only_the_person_counts() -> None:
    reading = read_message(
        "send me last month's invoice and I want to talk to a real person",
        Intent.INVOICE_REQUEST,
        0.9,
        [
            clause("send me last month's invoice", Intent.INVOICE_REQUEST, 1.0),
            clause("I want to talk to a real person", Intent.HUMAN_AGENT, 0.99),
        ],
        T,
    )
    assert reading.intent is Intent.HUMAN_AGENT
    assert not reading.secondary_intents
    assert decide_route(reading.intent, reading.confidence, NEUTRAL_GATES, None, None, T).tier is Tier.TIER3


def test_given_an_out_of_scope_preamble_and_a_sure_invoice_ask_when_read_then_the_invoice_is_sent() -> None:
    reading = read_message(
        "I'm travelling to Seoul next week. Can you send me last month's invoice?",
        Intent.OUT_OF_SCOPE,
        0.8,
        [
            clause("I'm travelling to Seoul next week.", Intent.OUT_OF_SCOPE, 0.99),
            clause("Can you send me last month's invoice?", Intent.INVOICE_REQUEST, 0.99),
        ],
        T,
    )
    assert reading.intent is Intent.INVOICE_REQUEST
    assert reading.reason == "from_clause"


def test_given_an_out_of_scope_text_when_a_clause_reads_as_a_refund_then_it_stays_out_of_scope() -> None:
    reading = read_message(
        "I bought car wax yesterday. Request a refund on it.",
        Intent.OUT_OF_SCOPE,
        0.9,
        [clause("Request a refund on it.", Intent.REFUND_REQUEST, 0.99)],
        T,
    )
    assert reading.intent is Intent.OUT_OF_SCOPE


@pytest.mark.parametrize(
    "text",
    [
        "account locked",
        "it's not working",
        "why can't I log in",
        "dashboard says something is wrong",
        "why can't I get into my dashboard",
        "login doesn't work",
        "Our account got suspended??",
    ],
)
@pytest.mark.parametrize(
    "root_cause",
    [RootCause.CARD_EXPIRED, RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS, RootCause.INVOICE_LINK_EXPIRED],
)
def test_given_a_vague_text_from_a_red_payment_diagnosis_when_read_then_the_payment_fix(
    text: str, root_cause: RootCause
) -> None:
    reading = read_message(text, Intent.OUT_OF_SCOPE, 0.95, [], T, diagnosis_red=True, root_cause=root_cause)
    assert reading.intent is Intent.PAYMENT_FAILED
    assert reading.reason == "vague_with_red_diagnosis"
    decision = decide_route(reading.intent, reading.confidence, NEUTRAL_GATES, root_cause, None, T)
    assert decision.tier is Tier.TIER1
    assert decision.selfheal_action in {
        Action.SEND_UPDATE_CARD_LINK,
        Action.RETRY_PAYMENT,
        Action.REGENERATE_INVOICE_LINK,
    }


@pytest.mark.parametrize(
    "text", ["do I need a visa for Korea", "what is the weather tomorrow", "tell me a joke"]
)
def test_given_an_out_of_scope_text_from_a_red_customer_when_read_then_it_stays_out_of_scope(
    text: str,
) -> None:
    reading = read_message(
        text, Intent.OUT_OF_SCOPE, 0.95, [], T, diagnosis_red=True, root_cause=RootCause.CARD_EXPIRED
    )
    assert reading.intent is Intent.OUT_OF_SCOPE
    decision = decide_route(
        reading.intent, reading.confidence, NEUTRAL_GATES, RootCause.CARD_EXPIRED, None, T
    )
    assert decision.escalation_reason is not None
    assert decision.escalation_reason.value == "out_of_scope"


@pytest.mark.parametrize(
    ("red", "root_cause"),
    [
        (False, RootCause.CARD_EXPIRED),
        (True, RootCause.USAGE_OVERAGE),
        (True, RootCause.DISPUTE_OPEN),
        (True, None),
    ],
)
def test_given_a_vague_text_without_a_red_payment_diagnosis_when_read_then_unchanged(
    red: bool, root_cause: RootCause | None
) -> None:
    reading = read_message(
        "account locked", Intent.OUT_OF_SCOPE, 0.9, [], T, diagnosis_red=red, root_cause=root_cause
    )
    assert reading.intent is Intent.OUT_OF_SCOPE


def test_given_a_long_text_mentioning_an_error_when_checked_then_it_is_not_vague() -> None:
    long_text = "I wrote a long story about my holiday and " * 8 + "the hotel wifi was not working"
    assert not is_vague_trouble(long_text)
    assert not is_vague_trouble("do I need a visa for Korea")


def test_given_an_expired_invoice_link_when_secondary_invoice_then_a_fresh_link_is_the_action() -> None:
    reading = MessageReading(
        intent=Intent.CARD_EXPIRING, confidence=0.9, secondary_intents=(Intent.INVOICE_REQUEST,)
    )
    assert secondary_actions(reading, Action.SEND_UPDATE_CARD_LINK, RootCause.INVOICE_LINK_EXPIRED, None) == [
        Action.REGENERATE_INVOICE_LINK
    ]


def test_given_a_secondary_with_the_main_action_when_listed_then_it_is_not_done_twice() -> None:
    reading = MessageReading(
        intent=Intent.PAYMENT_FAILED, confidence=0.9, secondary_intents=(Intent.CARD_EXPIRING,)
    )
    assert secondary_actions(reading, Action.SEND_UPDATE_CARD_LINK, RootCause.CARD_EXPIRED, None) == []


# --------------------------------------------------------------------------- with the shipped model


@pytest.fixture(scope="module")
def classifier():  # type: ignore[no-untyped-def]
    from services.router.intent import IntentClassifier, IntentModelError, default_model_path

    try:
        return IntentClassifier.load(default_model_path())
    except (IntentModelError, OSError) as exc:
        pytest.skip(f"no intent model: {exc}")


def _red(root_cause: RootCause) -> DiagnosisView:
    return DiagnosisView(
        customer_id="cus_test",
        status=HealthStatus.RED,
        root_cause=root_cause,
        explanation="Your card expired; the last invoice is unpaid.",
        recommended_action=Action.SEND_UPDATE_CARD_LINK,
    )


EMAIL = (
    "Hi team,\n\nCould you please send me the invoice for last month? Our accountant needs it for the "
    "audit.\n\nThanks,\nMaria\n\nMaria Lopez | Finance Manager | Acme Ltd\n+1 (555) 123-4567\n\n"
    "On Mon, Nov 3, 2026 at 9:14 AM Tierline Support <support@tierline.io> wrote:\n"
    "> Hello Maria, we could not process the refund you asked for; your account is locked.\n"
)


def test_given_the_model_when_an_email_with_greeting_signature_and_quote_then_invoice_request(
    classifier,
) -> None:  # type: ignore[no-untyped-def]
    from services.router.handlers import classify_message, read_contact

    cleaned, clauses, predictions = classify_message(classifier, EMAIL)
    assert "wrote" not in cleaned
    assert "Maria" not in cleaned
    reading = read_contact(cleaned, clauses, predictions, classifier.threshold, None)
    assert reading.intent is Intent.INVOICE_REQUEST
    assert reading.confidence >= classifier.threshold
    assert Intent.REFUND_REQUEST not in reading.secondary_intents


def test_given_the_model_when_card_link_and_invoice_then_both_asks_card_first(classifier) -> None:  # type: ignore[no-untyped-def]
    from services.router.handlers import classify_message, read_contact

    cleaned, clauses, predictions = classify_message(
        classifier, "Hi, can you send me a new card link and last month's invoice? Thanks, Bo"
    )
    reading = read_contact(cleaned, clauses, predictions, classifier.threshold, None)
    assert reading.intent in {Intent.CARD_EXPIRING, Intent.PAYMENT_FAILED}
    assert reading.secondary_intents == (Intent.INVOICE_REQUEST,)


def test_given_the_model_when_a_red_customer_cannot_get_into_the_dashboard_then_payment_fix(
    classifier,
) -> None:  # type: ignore[no-untyped-def]
    from services.router.handlers import classify_message, read_contact

    cleaned, clauses, predictions = classify_message(classifier, "why can't I get into my dashboard")
    reading = read_contact(cleaned, clauses, predictions, classifier.threshold, _red(RootCause.CARD_EXPIRED))
    assert reading.intent is Intent.PAYMENT_FAILED
    visa = read_contact(
        *classify_message(classifier, "do I need a visa for Korea"),
        classifier.threshold,
        _red(RootCause.CARD_EXPIRED),
    )
    assert visa.intent is not Intent.PAYMENT_FAILED
    assert visa.reason != "vague_with_red_diagnosis"
