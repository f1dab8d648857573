"""Approvals (issue 18): the policy rule that asks for a second person, and the approval state machine."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from schemas.vocab import Action, EscalationReason
from services.tier3_handoff import approvals
from services.tier3_handoff.approvals import (
    Approval,
    ApprovalConflict,
    ApprovalForbidden,
    ApprovalStatus,
)
from tierline.billing.policy import (
    DEFAULT_POLICY_PATH,
    Allow,
    ApprovalFacts,
    ChargeFacts,
    NeedsHuman,
    PolicyContext,
    PolicyEngine,
    PolicyRules,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine.from_yaml()


def human_refund(
    plan: str | None, amount: float, *, approval: ApprovalFacts | None = None, charge_usd: float = 2000.0
) -> PolicyContext:
    return PolicyContext(
        actor="human",
        customer_id="cus_A",
        plan=plan,
        charge=ChargeFacts(
            id="ch_1", customer_id="cus_A", amount_usd=charge_usd, created_at=NOW - timedelta(days=3)
        ),
        requested_amount_usd=amount,
        approval=approval,
        now=NOW,
    )


def approved(amount: float, **overrides: Any) -> ApprovalFacts:
    base: dict[str, Any] = {
        "approval_id": "apr_0123456789abcdef0123",
        "requested_by": "agent:ana",
        "approved_by": "agent:lee",
        "charge_id": "ch_1",
        "amount_usd": amount,
    }
    return ApprovalFacts(**{**base, **overrides})


# --------------------------------------------------------------------------- the policy rule
@pytest.mark.parametrize(
    ("plan", "within", "over"),
    [("starter", 50.00, 50.01), ("pro", 100.00, 100.01), ("business", 250.00, 250.01)],
)
def test_given_an_agent_alone_when_refunding_over_the_automatic_cap_then_a_second_person_is_needed(
    engine: PolicyEngine, plan: str, within: float, over: float
) -> None:
    assert engine.check(Action.REFUND, human_refund(plan, within)) == Allow(rule="refund.human.within_limits")

    verdict = engine.check(Action.REFUND, human_refund(plan, over))

    assert isinstance(verdict, NeedsHuman)
    assert verdict.rule == "refund.human.needs_approval"
    assert verdict.reason is EscalationReason.REFUND_OVER_POLICY
    assert "request approval" in verdict.detail


def test_given_a_leads_approval_of_this_refund_when_checked_then_allowed_up_to_the_human_cap(
    engine: PolicyEngine,
) -> None:
    assert engine.check(Action.REFUND, human_refund("pro", 300.0, approval=approved(300.0))) == Allow(
        rule="refund.human.approved"
    )
    over_cap = engine.check(Action.REFUND, human_refund("pro", 1200.0, approval=approved(1200.0)))
    assert isinstance(over_cap, NeedsHuman)
    assert over_cap.rule == "refund.human.cap_usd"


@pytest.mark.parametrize(
    "approval",
    [
        approved(299.99),  # approved less than is refunded
        approved(300.0, charge_id="ch_other"),  # another charge
        approved(300.0, approved_by="agent:ana"),  # the requester approving their own request
    ],
    ids=["less-than-asked", "other-charge", "own-request"],
)
def test_given_an_approval_that_does_not_cover_this_refund_when_checked_then_approval_still_needed(
    engine: PolicyEngine, approval: ApprovalFacts
) -> None:
    verdict = engine.check(Action.REFUND, human_refund("pro", 300.0, approval=approval))

    assert isinstance(verdict, NeedsHuman)
    assert verdict.rule == "refund.human.needs_approval"


def test_given_an_enterprise_refund_when_a_lead_approved_it_then_allowed(engine: PolicyEngine) -> None:
    alone = engine.check(Action.REFUND, human_refund("enterprise", 50.0))
    assert isinstance(alone, NeedsHuman)
    assert alone.rule == "refund.human.lead_required_plans"

    assert engine.check(Action.REFUND, human_refund("enterprise", 50.0, approval=approved(50.0))) == Allow(
        rule="refund.human.approved"
    )


def test_given_an_automatic_actor_with_an_approval_when_over_its_cap_then_still_a_person_decides(
    engine: PolicyEngine,
) -> None:
    ctx = human_refund("pro", 300.0, approval=approved(300.0)).model_copy(update={"actor": "ai"})

    verdict = engine.check(Action.REFUND, ctx)

    assert isinstance(verdict, NeedsHuman)
    assert verdict.rule == "refund.automatic.cap_usd_by_plan"


def test_given_a_policy_file_without_the_approval_rule_when_loaded_then_agents_refund_alone_to_the_cap() -> (
    None
):
    raw: dict[str, Any] = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    del raw["refund"]["human"]["needs_approval_over_usd_by_plan"]
    older = PolicyEngine(PolicyRules.model_validate(raw))

    assert older.check(Action.REFUND, human_refund("pro", 300.0)) == Allow(rule="refund.human.within_limits")


def test_given_a_recorded_context_from_before_approvals_when_read_again_then_it_has_no_approval() -> None:
    recorded = human_refund("pro", 80.0).model_dump(mode="json")
    del recorded["approval"]

    assert PolicyContext.model_validate(recorded).approval is None


# --------------------------------------------------------------------------- the state machine
def pending(**overrides: Any) -> Approval:
    base = Approval(
        approval_id="apr_0123456789abcdef0123",
        case_id="case_0123456789abcdef0123",
        contact_id="c-1",
        customer_id="cus_A",
        charge_id="ch_1",
        amount_usd=300.0,
        note="duplicate confirmed",
        requested_by="ana",
        requested_at=NOW,
        status=ApprovalStatus.PENDING,
    )
    return replace(base, **overrides)


def test_given_a_pending_request_when_a_lead_approves_then_approve_and_later_clicks_run_again() -> None:
    assert approvals.decide_approve(pending(), "lee", approver=True) == "approve"
    done = pending(status=ApprovalStatus.APPROVED, decided_by="lee")
    assert approvals.decide_approve(done, "lee", approver=True) == "run_again"
    assert approvals.decide_approve(done, "max", approver=True) == "run_again"  # a racing lead


def test_given_a_request_when_its_requester_or_a_non_approver_decides_then_forbidden() -> None:
    with pytest.raises(ApprovalForbidden, match="approver role"):
        approvals.decide_approve(pending(), "bob", approver=False)
    with pytest.raises(ApprovalForbidden, match="second person"):
        approvals.decide_approve(pending(), "ana", approver=True)
    with pytest.raises(ApprovalForbidden, match="second person"):
        approvals.decide_deny(pending(), "ana", approver=True)
    with pytest.raises(ApprovalForbidden):
        approvals.decide_deny(pending(), "bob", approver=False)


def test_given_a_decided_request_when_decided_the_other_way_then_conflict() -> None:
    denied = pending(status=ApprovalStatus.DENIED, decided_by="lee")
    with pytest.raises(ApprovalConflict, match="denied"):
        approvals.decide_approve(denied, "max", approver=True)
    assert approvals.decide_deny(denied, "max", approver=True) is False  # already denied: nothing to do
    assert approvals.decide_deny(pending(), "lee", approver=True) is True
    with pytest.raises(ApprovalConflict, match="approved"):
        approvals.decide_deny(pending(status=ApprovalStatus.APPROVED, decided_by="lee"), "max", approver=True)


def test_given_an_approval_when_read_as_a_policy_fact_then_only_an_approved_one_with_both_names() -> None:
    with pytest.raises(ApprovalConflict):
        pending().facts()

    facts = pending(status=ApprovalStatus.APPROVED, decided_by="lee").facts()

    assert (facts.requested_by, facts.approved_by) == ("agent:ana", "agent:lee")
    assert (facts.charge_id, facts.amount_usd) == ("ch_1", 300.0)


@pytest.mark.parametrize(("charge", "amount"), [("", 10.0), ("ch_1", 0.0), ("ch_1", -5.0)])
def test_given_a_request_without_a_charge_or_a_positive_amount_when_checked_then_refused(
    charge: str, amount: float
) -> None:
    with pytest.raises(ValueError, match="charge_id|positive"):
        approvals.check_request(charge, amount)
    assert approvals.check_request(" ch_1 ", 120.004) == ("ch_1", 120.0)
