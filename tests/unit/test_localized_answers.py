"""Answers in the customer's language (tier 1 and tier 2) and the route for a language tierline does
not read (router). Pure decisions with the planner's in-memory billing world; no broker."""

from __future__ import annotations

import pytest

from schemas.messages import DiagnosisView
from schemas.vocab import Action, EscalationReason, HealthStatus, Intent, RootCause, Tier
from services.router.domain import NEUTRAL_GATES, UNSUPPORTED_LANGUAGE, decide_route, route_for_language
from services.tier1_selfheal import domain as tier1
from tests.unit.test_planner import FakeBilling, ask, run
from tierline.actions import ActionOutcome
from tierline.language import detect_language

pytestmark = pytest.mark.unit


# --------------------------------------------------------------------------- router


def test_given_a_japanese_invoice_request_when_routed_then_a_person_gets_it_for_its_language() -> None:
    decision = decide_route(Intent.INVOICE_REQUEST, 0.95, NEUTRAL_GATES, None, None, 0.7)
    assert decision.tier is Tier.TIER1

    routed = route_for_language(decision, detect_language("請求書を送ってください").supported)

    assert routed.tier is Tier.TIER3
    assert routed.reason == UNSUPPORTED_LANGUAGE
    assert routed.escalation_reason is EscalationReason.OUT_OF_SCOPE


@pytest.mark.parametrize("text", ["Mi tarjeta fue rechazada", "Bitte die Rechnung", "My card was declined"])
def test_given_a_supported_language_when_routed_then_the_decision_is_unchanged(text: str) -> None:
    decision = decide_route(Intent.PAYMENT_FAILED, 0.95, NEUTRAL_GATES, None, None, 0.7)
    assert route_for_language(decision, detect_language(text).supported) == decision


def test_given_a_tier3_route_when_the_language_is_unsupported_then_its_own_reason_is_kept() -> None:
    decision = decide_route(Intent.HUMAN_AGENT, 0.95, NEUTRAL_GATES, None, None, 0.7)
    assert route_for_language(decision, False) == decision
    assert decision.escalation_reason is EscalationReason.CUSTOMER_ASKED


# --------------------------------------------------------------------------- tier 2 planner


async def test_given_a_spanish_invoice_request_when_planned_then_the_answer_is_in_spanish() -> None:
    world = FakeBilling(plan="pro", charges=[(49.0, 3)])

    result = await run(
        world, ask("¿me envían la factura del mes pasado?", Intent.INVOICE_REQUEST, language="es")
    )

    assert result.resolved
    assert world.effect_names() == ["send_invoice"]
    assert detect_language(result.final_answer).code == "es"


async def test_given_a_german_soft_decline_when_planned_then_the_retry_is_reported_in_german() -> None:
    world = FakeBilling(failed_invoice={"decline_code": "insufficient_funds", "amount_usd": 49.0})

    result = await run(world, ask("Meine Karte wurde abgelehnt", Intent.PAYMENT_FAILED, language="de"))

    assert world.effect_names() == ["retry_payment"]
    assert detect_language(result.final_answer).code == "de"
    assert "$49.00" in result.final_answer


@pytest.mark.parametrize(
    ("language", "expected"), [("fr", "fr"), ("pt", "pt"), (None, "en"), ("en", "en"), ("ja", "en")]
)
async def test_given_an_expired_card_when_planned_then_the_card_link_answer_follows_the_language(
    language: str | None, expected: str
) -> None:
    world = FakeBilling(failed_invoice={"decline_code": "expired_card"})

    result = await run(world, ask("card declined", Intent.PAYMENT_FAILED, language=language))

    assert world.effect_names() == ["send_update_card_link"]
    assert detect_language(result.final_answer).code == expected


async def test_given_a_portuguese_request_for_a_person_when_planned_then_the_handoff_is_in_portuguese() -> (
    None
):
    world = FakeBilling()

    result = await run(world, ask("quero falar com uma pessoa", Intent.HUMAN_AGENT, language="pt"))

    assert result.escalation is not None
    assert result.escalation.reason is EscalationReason.CUSTOMER_ASKED
    assert detect_language(result.final_answer).code == "pt"


async def test_given_an_explanation_when_planned_in_spanish_then_the_english_explanation_is_kept() -> None:
    spanish = await run(
        FakeBilling(charges=[(49.0, 3)]),
        ask("¿qué es este cobro?", Intent.UNRECOGNIZED_CHARGE, language="es"),
    )
    english = await run(
        FakeBilling(charges=[(49.0, 3)]), ask("what is this charge?", Intent.UNRECOGNIZED_CHARGE)
    )

    assert spanish.resolved
    assert spanish.final_answer == english.final_answer  # no template for explanations: English as before


# --------------------------------------------------------------------------- tier 1


def _diagnosis(amount_due: float = 49.0) -> DiagnosisView:
    return DiagnosisView(
        customer_id="cus_1",
        status=HealthStatus.RED,
        root_cause=RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS,
        explanation="declined",
        recommended_action=Action.RETRY_PAYMENT,
        self_serve_eligible=True,
        evidence={"invoice": {"id": "in_1", "amount_due_usd": amount_due}},
    )


@pytest.mark.parametrize(
    ("action", "language"),
    [
        (Action.SEND_INVOICE, "de"),
        (Action.SEND_UPDATE_CARD_LINK, "es"),
        (Action.RETRY_PAYMENT, "fr"),
        (Action.REGENERATE_INVOICE_LINK, "pt"),
        (Action.CANCEL_SUBSCRIPTION, "es"),
        (Action.UPDATE_BILLING_DETAILS, "de"),
    ],
)
def test_given_a_resolved_fix_when_localized_then_the_summary_is_in_the_customers_language(
    action: Action, language: str
) -> None:
    outcome = ActionOutcome(action=action, status="succeeded", target="in_1", amount_usd=49.0)
    english = tier1.decide_after_fix(outcome, _diagnosis())
    assert isinstance(english, tier1.Resolve)

    localized = tier1.localize_decision(english, outcome, _diagnosis(), language)

    assert isinstance(localized, tier1.Resolve)
    assert detect_language(localized.summary).code == language
    assert localized.recovered_usd == english.recovered_usd
    if action is Action.RETRY_PAYMENT:
        assert "$49.00" in localized.summary


@pytest.mark.parametrize("language", [None, "en", "pl"])
def test_given_english_or_unsupported_when_localized_then_tier1_keeps_its_own_summary(
    language: str | None,
) -> None:
    outcome = ActionOutcome(action=Action.SEND_INVOICE, status="succeeded", target="in_1")
    english = tier1.decide_after_fix(outcome, _diagnosis())
    assert tier1.localize_decision(english, outcome, _diagnosis(), language) == english


def test_given_a_retry_on_an_already_paid_invoice_when_localized_then_the_english_fact_is_kept() -> None:
    outcome = ActionOutcome(
        action=Action.RETRY_PAYMENT, status="succeeded", target="in_1", data={"already_paid": True}
    )
    english = tier1.decide_after_fix(outcome, _diagnosis())
    assert tier1.localize_decision(english, outcome, _diagnosis(), "es") == english
