"""The router's routing table: tier, reason and self-heal action for every kind of contact."""

from __future__ import annotations

import itertools

import pytest

from schemas.vocab import Action, EscalationReason, Intent, RootCause, Tier
from services.router.domain import (
    MONEY_INTENTS,
    NEUTRAL_GATES,
    ROUTING_TABLE,
    SELFHEAL_TABLE,
    TIER1_INTENTS,
    TIER2_INTENTS,
    TOPIC_BY_TIER,
    Gates,
    RouteDecision,
    decide_route,
)

pytestmark = pytest.mark.unit

THRESHOLD = 0.6
HIGH = 0.95
LOW = 0.40


def gates(**overrides: object) -> Gates:
    return NEUTRAL_GATES.model_copy(update=overrides)


def route(
    intent: Intent,
    confidence: float = HIGH,
    g: Gates = NEUTRAL_GATES,
    root_cause: RootCause | None = None,
    recommended: Action | None = None,
) -> RouteDecision:
    return decide_route(intent, confidence, g, root_cause, recommended, THRESHOLD)


# --------------------------------------------------------------------------- tier 3 at once


def test_given_a_confident_request_for_a_person_when_routed_then_tier3_customer_asked() -> None:
    decision = route(Intent.HUMAN_AGENT)
    assert decision.tier is Tier.TIER3
    assert decision.escalation_reason is EscalationReason.CUSTOMER_ASKED
    assert decision.topic == "tier3.escalation.opened.v1"
    assert decision.selfheal_action is None


@pytest.mark.parametrize(
    "g",
    [
        gates(customer_found=False),
        gates(sender_authorized=False),
        gates(dispute_open=True),
        gates(fraud_signal=True),
        gates(enterprise=True),
    ],
)
def test_given_any_gate_when_customer_asks_for_a_person_then_they_still_get_a_human(g: Gates) -> None:
    decision = route(Intent.HUMAN_AGENT, g=g)
    assert decision.tier is Tier.TIER3
    assert decision.escalation_reason is EscalationReason.CUSTOMER_ASKED


def test_given_a_reported_stolen_card_when_routed_then_tier3_fraud_without_action() -> None:
    decision = route(Intent.FRAUD_COMPROMISED)
    assert (decision.tier, decision.escalation_reason) == (Tier.TIER3, EscalationReason.FRAUD)
    assert decision.selfheal_action is None


@pytest.mark.parametrize("intent", sorted(TIER1_INTENTS | TIER2_INTENTS))
def test_given_a_fraud_signal_when_any_billing_intent_then_tier3_fraud(intent: Intent) -> None:
    decision = route(intent, g=gates(fraud_signal=True), root_cause=RootCause.CARD_DECLINED_SOFT)
    assert (decision.tier, decision.escalation_reason) == (Tier.TIER3, EscalationReason.FRAUD)


def test_given_a_fraud_decline_in_the_diagnosis_when_payment_failed_then_no_retry_but_fraud_escalation() -> (
    None
):
    decision = route(Intent.PAYMENT_FAILED, root_cause=RootCause.CARD_DECLINED_FRAUD)
    assert (decision.tier, decision.escalation_reason) == (Tier.TIER3, EscalationReason.FRAUD)


def test_given_a_confident_out_of_scope_text_when_routed_then_handed_on_never_acted_on() -> None:
    decision = route(Intent.OUT_OF_SCOPE, root_cause=RootCause.CARD_DECLINED_SOFT)
    assert decision.tier is Tier.TIER3
    assert decision.escalation_reason is EscalationReason.OUT_OF_SCOPE
    assert decision.reason == "out_of_scope"
    assert decision.selfheal_action is None


@pytest.mark.parametrize("intent", sorted(set(Intent) - {Intent.HUMAN_AGENT}))
@pytest.mark.parametrize("g", [gates(customer_found=False), gates(sender_authorized=False)])
def test_given_an_unknown_or_unauthorised_sender_when_routed_then_policy_denied_and_never_acted(
    intent: Intent, g: Gates
) -> None:
    decision = route(intent, g=g, root_cause=RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS)
    assert (decision.tier, decision.escalation_reason) == (Tier.TIER3, EscalationReason.POLICY_DENIED)
    assert decision.selfheal_action is None


@pytest.mark.parametrize("intent", sorted(MONEY_INTENTS))
@pytest.mark.parametrize("confidence", [HIGH, LOW])
def test_given_an_open_dispute_when_a_money_intent_then_tier3_dispute(
    intent: Intent, confidence: float
) -> None:
    decision = route(intent, confidence, gates(dispute_open=True), RootCause.CARD_DECLINED_SOFT)
    assert (decision.tier, decision.escalation_reason) == (Tier.TIER3, EscalationReason.DISPUTE)


def test_given_dispute_only_in_the_diagnosis_when_refund_requested_then_tier3_dispute() -> None:
    decision = route(Intent.REFUND_REQUEST, root_cause=RootCause.DISPUTE_OPEN)
    assert decision.escalation_reason is EscalationReason.DISPUTE


def test_given_an_open_dispute_when_an_invoice_is_requested_then_the_invoice_is_still_sent() -> None:
    decision = route(Intent.INVOICE_REQUEST, g=gates(dispute_open=True))
    assert (decision.tier, decision.selfheal_action) == (Tier.TIER1, Action.SEND_INVOICE)


# --------------------------------------------------------------------------- low confidence


@pytest.mark.parametrize("intent", sorted(set(Intent)))
def test_given_confidence_below_threshold_when_no_gate_then_tier2_and_never_an_action(intent: Intent) -> None:
    decision = route(intent, LOW, root_cause=RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS)
    assert decision.tier is Tier.TIER2
    assert decision.reason == "low_confidence"
    assert decision.selfheal_action is None
    assert decision.escalation_reason is None


def test_given_confidence_exactly_at_threshold_when_routed_then_it_counts_as_confident() -> None:
    decision = decide_route(Intent.INVOICE_REQUEST, THRESHOLD, NEUTRAL_GATES, None, None, THRESHOLD)
    assert decision.tier is Tier.TIER1


def test_given_a_confidence_outside_0_1_when_routed_then_value_error() -> None:
    with pytest.raises(ValueError, match="confidence"):
        decide_route(Intent.INVOICE_REQUEST, 1.5, NEUTRAL_GATES, None, None, THRESHOLD)


# --------------------------------------------------------------------------- tier 1 self-heal


@pytest.mark.parametrize(
    ("intent", "root_cause", "recommended", "action"),
    [
        (Intent.PAYMENT_FAILED, RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS, None, Action.RETRY_PAYMENT),
        (Intent.PAYMENT_FAILED, RootCause.CARD_DECLINED_SOFT, None, Action.RETRY_PAYMENT),
        (Intent.PAYMENT_FAILED, RootCause.CARD_DECLINED_HARD, None, Action.SEND_UPDATE_CARD_LINK),
        (Intent.PAYMENT_FAILED, RootCause.CARD_EXPIRED, Action.RETRY_PAYMENT, Action.SEND_UPDATE_CARD_LINK),
        (Intent.PAYMENT_FAILED, RootCause.NO_PAYMENT_METHOD, None, Action.SEND_UPDATE_CARD_LINK),
        (Intent.PAYMENT_FAILED, RootCause.UNKNOWN, Action.RETRY_PAYMENT, Action.RETRY_PAYMENT),
        (Intent.PAYMENT_FAILED, RootCause.INVOICE_LINK_EXPIRED, None, Action.REGENERATE_INVOICE_LINK),
        (Intent.INVOICE_REQUEST, RootCause.INVOICE_LINK_EXPIRED, None, Action.REGENERATE_INVOICE_LINK),
        (Intent.PAYMENT_PENDING, RootCause.INVOICE_LINK_EXPIRED, None, Action.REGENERATE_INVOICE_LINK),
        (Intent.CARD_EXPIRING, RootCause.INVOICE_LINK_EXPIRED, None, Action.REGENERATE_INVOICE_LINK),
        (Intent.INVOICE_REQUEST, None, None, Action.SEND_INVOICE),
        (Intent.INVOICE_REQUEST, RootCause.HEALTHY, None, Action.SEND_INVOICE),
        (Intent.CARD_EXPIRING, RootCause.CARD_EXPIRING, None, Action.SEND_UPDATE_CARD_LINK),
        (Intent.CARD_EXPIRING, None, None, Action.SEND_UPDATE_CARD_LINK),
        (Intent.PAYMENT_PENDING, RootCause.PAYMENT_PENDING, None, Action.EXPLAIN_CHARGE),
        (Intent.REFUND_STATUS, RootCause.REFUND_PENDING, None, Action.EXPLAIN_CHARGE),
        (Intent.REFUND_STATUS, None, None, Action.EXPLAIN_CHARGE),
        (Intent.UPDATE_BILLING_DETAILS, None, None, Action.UPDATE_BILLING_DETAILS),
        (Intent.CANCEL_SUBSCRIPTION, RootCause.HEALTHY, None, Action.CANCEL_SUBSCRIPTION),
        (Intent.PLAN_CHANGE, RootCause.SEATS_OVER_PLAN, None, Action.CHANGE_PLAN),
    ],
)
def test_given_a_tier1_intent_and_diagnosis_when_routed_then_tier1_with_that_action(
    intent: Intent, root_cause: RootCause | None, recommended: Action | None, action: Action
) -> None:
    decision = route(intent, root_cause=root_cause, recommended=recommended)
    assert decision.tier is Tier.TIER1
    assert decision.topic == "tier1.selfheal.requested.v1"
    assert decision.selfheal_action is action
    assert decision.escalation_reason is None


@pytest.mark.parametrize(
    ("intent", "root_cause", "recommended"),
    [
        (Intent.PAYMENT_FAILED, None, None),  # no diagnosis: retry or new card is unknowable
        (Intent.PAYMENT_FAILED, RootCause.HEALTHY, None),  # nothing failed: explain, don't act
        (Intent.PAYMENT_FAILED, RootCause.UNKNOWN, Action.REFUND),  # a recommendation Tier 1 must not run
        (Intent.CANCEL_SUBSCRIPTION, RootCause.SUBSCRIPTION_CANCELED, None),
        (Intent.PLAN_CHANGE, RootCause.SUBSCRIPTION_MISSING, None),
    ],
)
def test_given_a_tier1_intent_without_an_executable_action_when_routed_then_tier2(
    intent: Intent, root_cause: RootCause | None, recommended: Action | None
) -> None:
    decision = route(intent, root_cause=root_cause, recommended=recommended)
    assert (decision.tier, decision.reason) == (Tier.TIER2, "no_selfheal_action")
    assert decision.selfheal_action is None


@pytest.mark.parametrize("intent", [Intent.CANCEL_SUBSCRIPTION, Intent.PLAN_CHANGE, Intent.REFUND_STATUS])
def test_given_an_expired_invoice_link_when_intent_has_its_own_fix_then_that_fix_wins(intent: Intent) -> None:
    decision = route(intent, root_cause=RootCause.INVOICE_LINK_EXPIRED)
    assert decision.selfheal_action is not Action.REGENERATE_INVOICE_LINK


def test_given_an_expired_link_when_customer_asks_how_to_pay_then_a_fresh_link_not_an_agent() -> None:
    decision = route(Intent.PAYMENT_METHODS_QUESTION, root_cause=RootCause.INVOICE_LINK_EXPIRED)
    assert (decision.tier, decision.selfheal_action) == (Tier.TIER1, Action.REGENERATE_INVOICE_LINK)


def test_given_repeat_contacts_when_a_tier1_intent_then_tier2_instead_of_another_selfheal() -> None:
    decision = route(
        Intent.PAYMENT_FAILED, g=gates(repeat_contacts_7d=3), root_cause=RootCause.CARD_DECLINED_SOFT
    )
    assert (decision.tier, decision.reason) == (Tier.TIER2, "repeat_contacts")
    assert route(
        Intent.PAYMENT_FAILED, g=gates(repeat_contacts_7d=2), root_cause=RootCause.CARD_DECLINED_SOFT
    ).tier is (Tier.TIER1)


# --------------------------------------------------------------------------- tier 2


@pytest.mark.parametrize("intent", sorted(TIER2_INTENTS))
def test_given_a_tier2_intent_when_routed_then_tier2_agent(intent: Intent) -> None:
    decision = route(intent, root_cause=RootCause.USAGE_OVERAGE)
    assert decision.tier is Tier.TIER2
    assert decision.topic == "tier2.agent.requested.v1"
    assert decision.selfheal_action is None


@pytest.mark.parametrize("intent", sorted(MONEY_INTENTS))
@pytest.mark.parametrize("g", [gates(enterprise=True), gates(plan="enterprise"), gates(plan="Enterprise")])
def test_given_an_enterprise_customer_when_a_money_intent_then_tier2_for_policy(
    intent: Intent, g: Gates
) -> None:
    decision = route(intent, g=g, root_cause=RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS)
    assert decision.tier is Tier.TIER2
    assert decision.selfheal_action is None


def test_given_an_enterprise_customer_when_invoice_requested_then_self_heal_still_applies() -> None:
    decision = route(Intent.INVOICE_REQUEST, g=gates(enterprise=True))
    assert (decision.tier, decision.selfheal_action) == (Tier.TIER1, Action.SEND_INVOICE)


def test_given_prompt_injection_read_as_refund_request_when_routed_then_tier2_policy_not_an_action() -> None:
    decision = route(Intent.REFUND_REQUEST, 0.99, root_cause=RootCause.HEALTHY, recommended=Action.REFUND)
    assert decision.tier is Tier.TIER2
    assert decision.selfheal_action is None


# --------------------------------------------------------------------------- table-wide properties


def _all_inputs() -> itertools.product[tuple[Intent, float, Gates, RootCause | None]]:
    gate_variants = [
        NEUTRAL_GATES,
        gates(customer_found=False),
        gates(dispute_open=True),
        gates(fraud_signal=True),
        gates(enterprise=True),
        gates(repeat_contacts_7d=5),
    ]
    return itertools.product(list(Intent), [HIGH, LOW], gate_variants, [None, *RootCause])


def test_given_every_input_combination_when_routed_then_exactly_one_consistent_route() -> None:
    seen_tiers: set[Tier] = set()
    for intent, confidence, g, root_cause in _all_inputs():
        decision = route(intent, confidence, g, root_cause, Action.RETRY_PAYMENT)
        seen_tiers.add(decision.tier)
        assert decision.topic == TOPIC_BY_TIER[decision.tier]
        assert (decision.tier is Tier.TIER1) == (decision.selfheal_action is not None)
        assert (decision.tier is Tier.TIER3) == (decision.escalation_reason is not None)
    assert seen_tiers == {Tier.TIER1, Tier.TIER2, Tier.TIER3}


def test_given_every_input_combination_when_tier1_then_never_a_money_moving_action() -> None:
    for intent, confidence, g, root_cause in _all_inputs():
        decision = route(intent, confidence, g, root_cause, Action.REFUND)
        assert decision.selfheal_action not in {Action.REFUND, Action.ESCALATE}
        if decision.tier is Tier.TIER1:
            assert intent in TIER1_INTENTS or root_cause is RootCause.INVOICE_LINK_EXPIRED
            assert confidence >= THRESHOLD
            assert g.customer_found
            assert g.sender_authorized
            assert not g.fraud_signal


def test_given_the_same_inputs_when_routed_twice_then_the_same_decision() -> None:
    args = (Intent.PAYMENT_FAILED, HIGH, NEUTRAL_GATES, RootCause.CARD_EXPIRED, None, THRESHOLD)
    assert decide_route(*args) == decide_route(*args)


def test_given_the_tables_when_inspected_then_they_are_data_rows_with_unique_names() -> None:
    names = [rule.name for rule in ROUTING_TABLE]
    assert len(names) == len(set(names))
    assert all(row.intents for row in SELFHEAL_TABLE)
    covered = set().union(*(row.intents for row in SELFHEAL_TABLE))
    assert covered >= TIER1_INTENTS


def test_given_a_route_decision_with_a_foreign_topic_when_built_then_rejected() -> None:
    with pytest.raises(ValueError, match="topic"):
        RouteDecision(tier=Tier.TIER2, topic="tier3.escalation.opened.v1", reason="x")
