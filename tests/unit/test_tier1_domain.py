"""Tier 1 decisions without a broker: tenant check, fixes offered, request parsing, what follows a fix."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import Action, EscalationReason, HealthStatus, RootCause
from schemas.messages import DiagnosisView, Sender
from services.tier1_selfheal import domain
from tierline.actions import ActionOutcome

pytestmark = pytest.mark.unit


def diag(
    cause: RootCause,
    *,
    status: HealthStatus = HealthStatus.RED,
    self_serve: bool = True,
    evidence: dict[str, Any] | None = None,
) -> DiagnosisView:
    return DiagnosisView(
        customer_id="cus_A",
        status=status,
        root_cause=cause,
        explanation=f"because {cause}",
        self_serve_eligible=self_serve,
        evidence=evidence or {},
    )


INVOICE = {"invoice": {"id": "in_1", "amount_due_usd": 49.0, "status": "open"}}

# ------------------------------------------------------------------------------ tenant check


@pytest.mark.parametrize(
    ("source", "sender", "allowed"),
    [
        ("dashboard", Sender(kind="customer_session", subject="cus_A"), True),
        ("dashboard", Sender(kind="customer_session", subject="cus_B"), False),
        ("api", Sender(kind="customer_session", subject=None), False),
        ("dashboard", Sender(kind="email", email="a@b.c"), False),
        ("api", Sender(kind="system"), True),
        ("dashboard", Sender(kind="agent"), True),
        ("router", Sender(kind="email", email="a@b.c"), True),
    ],
)
def test_given_sender_when_authorizing_then_only_own_account_or_staff(
    source: str, sender: Sender, allowed: bool
) -> None:
    assert domain.authorize(source, sender, "cus_A").allowed is allowed


# ------------------------------------------------------------------------------ fixes offered


def actions_of(d: DiagnosisView) -> list[Action]:
    return [f.action for f in domain.fixes_for(d)]


def test_given_soft_decline_when_listing_fixes_then_retry_first_then_update_card_then_human() -> None:
    fixes = domain.fixes_for(diag(RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS, evidence=INVOICE))
    assert [f.action for f in fixes] == [Action.RETRY_PAYMENT, Action.SEND_UPDATE_CARD_LINK, Action.ESCALATE]
    assert fixes[0].primary
    assert fixes[0].params == {"invoice_id": "in_1"}
    assert "$49.00" in fixes[0].description


def test_given_hard_decline_when_listing_fixes_then_no_retry() -> None:
    acts = actions_of(diag(RootCause.CARD_DECLINED_HARD, evidence=INVOICE))
    assert Action.RETRY_PAYMENT not in acts
    assert acts[0] is Action.SEND_UPDATE_CARD_LINK
    assert acts[-1] is Action.ESCALATE


def test_given_expired_link_when_listing_fixes_then_regenerate() -> None:
    assert actions_of(diag(RootCause.INVOICE_LINK_EXPIRED, status=HealthStatus.AMBER, evidence=INVOICE)) == [
        Action.REGENERATE_INVOICE_LINK,
        Action.ESCALATE,
    ]


@pytest.mark.parametrize(
    "cause", [RootCause.DISPUTE_OPEN, RootCause.CARD_DECLINED_FRAUD, RootCause.SUBSCRIPTION_MISSING]
)
def test_given_blocked_state_when_listing_fixes_then_only_a_human(cause: RootCause) -> None:
    assert actions_of(diag(cause, self_serve=False, evidence=INVOICE)) == [Action.ESCALATE]


@pytest.mark.parametrize("cause", list(RootCause))
def test_given_any_diagnosis_when_listing_fixes_then_talk_to_a_human_is_always_offered(
    cause: RootCause,
) -> None:
    assert actions_of(diag(cause))[-1] is Action.ESCALATE


# ------------------------------------------------------------------------------ request parsing


def test_given_billing_details_with_valid_vat_when_parsed_then_normalised() -> None:
    fix = domain.parse_fix(
        Action.UPDATE_BILLING_DETAILS,
        {
            "billing_email": "ap@acme.io",
            "company_name": "Acme GmbH",
            "address": {"line1": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "de"},
            "tax_id": "de 136695976",
        },
    )
    assert fix.email == "ap@acme.io"
    assert fix.name == "Acme GmbH"
    assert fix.address is not None
    assert fix.address["country"] == "DE"
    assert fix.tax_id is not None
    assert (fix.tax_id.stripe_type, fix.tax_id.value) == ("eu_vat", "DE136695976")


def test_given_bare_number_when_parsed_then_address_country_is_used() -> None:
    fix = domain.parse_fix(
        Action.UPDATE_BILLING_DETAILS, {"tax_id": "51824753556", "address": {"country": "AU"}}
    )
    assert fix.tax_id is not None
    assert fix.tax_id.stripe_type == "au_abn"


@pytest.mark.parametrize(
    ("action", "params", "message"),
    [
        (Action.UPDATE_BILLING_DETAILS, {"tax_id": "DE12345"}, "DE136695976"),
        (Action.UPDATE_BILLING_DETAILS, {"billing_email": "not-an-email"}, "not an email"),
        (Action.UPDATE_BILLING_DETAILS, {}, "nothing to update"),
        (Action.UPDATE_BILLING_DETAILS, {"address": {"planet": "Mars"}}, "planet"),
        (Action.RETRY_PAYMENT, {"invoice_id": "in_1; DROP TABLE"}, "invoice_id"),
        (Action.RETRY_PAYMENT, {"amount": 900}, "unexpected parameter"),
        (Action.CHANGE_PLAN, {"plan": "pro", "seats": 0}, "seats"),
        (Action.CHANGE_PLAN, {"plan": "pro", "preview_only": "yes"}, "preview_only"),
        (Action.CHANGE_PLAN, {}, "plan"),
        (Action.REFUND, {}, "not a Tier 1 fix"),
    ],
)
def test_given_bad_params_when_parsed_then_invalid_request(
    action: Action, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(domain.InvalidFixRequest, match=message):
        domain.parse_fix(action, params)


def test_given_plan_preview_when_parsed_then_preview_only() -> None:
    fix = domain.parse_fix(Action.CHANGE_PLAN, {"plan": "business", "seats": 20, "preview_only": True})
    assert (fix.plan, fix.seats, fix.preview_only) == ("business", 20, True)


# ------------------------------------------------------------------------------ after a fix


def test_given_retry_paid_when_deciding_then_resolved_with_recovered_amount() -> None:
    out = ActionOutcome(
        Action.RETRY_PAYMENT,
        "succeeded",
        target="in_1",
        amount_usd=49.0,
        data={"invoice": "in_1", "status": "paid", "recovered_usd": 49.0},
    )
    decision = domain.decide_after_fix(
        out, diag(RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS, evidence=INVOICE)
    )
    assert isinstance(decision, domain.Resolve)
    assert decision.recovered_usd == 49.0
    assert "in_1" in decision.summary


def test_given_retry_declined_when_deciding_then_tier2_with_reason() -> None:
    out = ActionOutcome(Action.RETRY_PAYMENT, "failed", "the card was declined again (insufficient_funds)")
    decision = domain.decide_after_fix(out, diag(RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS))
    assert isinstance(decision, domain.HandToTier2)
    assert "declined again" in decision.reason


def test_given_policy_denial_when_deciding_then_tier2() -> None:
    out = ActionOutcome(
        Action.RETRY_PAYMENT, "denied", "hard_decline", escalation_reason=EscalationReason.POLICY_DENIED
    )
    decision = domain.decide_after_fix(out, diag(RootCause.CARD_DECLINED_HARD))
    assert isinstance(decision, domain.HandToTier2)
    assert "policy denied retry_payment" in decision.reason


@pytest.mark.parametrize("reason", [EscalationReason.DISPUTE, EscalationReason.FRAUD])
def test_given_needs_human_or_hard_stop_when_deciding_then_tier3_with_that_reason(
    reason: EscalationReason,
) -> None:
    for status in ("needs_human", "denied"):
        out = ActionOutcome(Action.RETRY_PAYMENT, status, "blocked", escalation_reason=reason)  # type: ignore[arg-type]
        decision = domain.decide_after_fix(out, diag(RootCause.DISPUTE_OPEN))
        assert isinstance(decision, domain.EscalateToHuman)
        assert decision.reason is reason


def test_given_fix_that_does_not_address_the_cause_when_deciding_then_tier2() -> None:
    out = ActionOutcome(Action.EXPLAIN_CHARGE, "succeeded", data={"explanation": "..."})
    decision = domain.decide_after_fix(out, diag(RootCause.DUPLICATE_CHARGE, status=HealthStatus.AMBER))
    assert isinstance(decision, domain.HandToTier2)
    assert "duplicate_charge" in decision.reason


@pytest.mark.parametrize(
    ("action", "cause"),
    [
        (Action.SEND_UPDATE_CARD_LINK, RootCause.CARD_DECLINED_HARD),
        (Action.REGENERATE_INVOICE_LINK, RootCause.INVOICE_LINK_EXPIRED),
        (Action.EXPLAIN_CHARGE, RootCause.PAYMENT_PENDING),
        (Action.EXPLAIN_CHARGE, RootCause.REFUND_PENDING),
        (Action.UPDATE_BILLING_DETAILS, RootCause.DUPLICATE_CHARGE),  # account changes resolve what was asked
        (Action.SEND_INVOICE, RootCause.HEALTHY),
    ],
)
def test_given_fix_that_addresses_the_request_when_deciding_then_resolved(
    action: Action, cause: RootCause
) -> None:
    decision = domain.decide_after_fix(ActionOutcome(action, "succeeded"), diag(cause))
    assert isinstance(decision, domain.Resolve)
    assert decision.recovered_usd == 0.0


def test_given_cancel_when_summarised_then_period_end_and_retention_offer() -> None:
    d = diag(
        RootCause.HEALTHY,
        status=HealthStatus.GREEN,
        evidence={"subscription": {"current_period_end": "2031-03-01T00:00:00+00:00"}},
    )
    decision = domain.decide_after_fix(
        ActionOutcome(Action.CANCEL_SUBSCRIPTION, "succeeded"), d, retention_offer="Stay and get 20% off."
    )
    assert isinstance(decision, domain.Resolve)
    assert "01 Mar 2031" in decision.summary
    assert decision.summary.endswith("Stay and get 20% off.")


def test_given_plan_preview_when_summarised_then_proration_figures_and_nothing_changed() -> None:
    out = ActionOutcome(
        Action.CHANGE_PLAN,
        "succeeded",
        "proration preview",
        data={
            "preview": {
                "new_plan_id": "tl_business",
                "new_seats": 20,
                "credit_cents": 2450,
                "charge_cents": 14950,
                "net_cents": 12500,
            },
            "preview_only": True,
        },
    )
    summary = domain.summarize(out, None)
    assert "nothing has changed" in summary
    assert "$125.00" in summary
    assert "$24.50" in summary
