"""Tier 2's packet for humans: what was tried and what the policy said, from an agent run."""

from __future__ import annotations

import pytest

from schemas import Action, EscalationReason, Tier
from schemas.messages import ActionRecord
from services.tier2_agent.domain import action_of, amount_at_stake, packet_records
from services.tier2_agent.ports import ActionTaken, AgentResult, Escalation, ToolResult

pytestmark = pytest.mark.unit


def _run(*taken: ActionTaken) -> AgentResult:
    return AgentResult(
        resolved=False,
        final_answer="",
        actions=list(taken),
        escalation=Escalation(reason=EscalationReason.REFUND_OVER_POLICY, note="over cap"),
    )


def test_given_reads_and_escalation_when_mapped_then_they_are_not_actions_tried() -> None:
    assert action_of("get_billing_diagnosis") is None
    assert action_of("search_knowledge") is None
    assert action_of("escalate") is None
    assert action_of("refund") is Action.REFUND
    assert action_of("no_such_tool") is None


def test_given_a_refused_refund_when_packet_built_then_denied_with_zero_amount_and_a_policy_record() -> None:
    refused = ActionTaken(
        tool="refund",
        args={"charge_id": "ch_1", "amount_usd": 228.0, "reason": "requested_by_customer"},
        result=ToolResult(
            ok=False,
            error="refund_over_policy",
            verdict="needs_human",
            escalation_reason=EscalationReason.REFUND_OVER_POLICY,
        ),
    )
    read = ActionTaken(tool="get_billing_diagnosis", args={}, result=ToolResult(ok=True, data={}))
    prior = [
        ActionRecord(action=Action.RETRY_PAYMENT, tier=Tier.TIER1, status="failed", idempotency_key="k1")
    ]
    tried, decisions = packet_records(_run(read, refused), prior)
    assert [t.action for t in tried] == [Action.RETRY_PAYMENT, Action.REFUND]
    assert tried[1].status == "denied"
    assert tried[1].amount_usd == 0.0
    assert tried[1].target == "ch_1"
    assert [(d.action, d.verdict) for d in decisions] == [(Action.REFUND, "needs_human")]
    assert amount_at_stake(_run(read, refused)) == 228.0


def test_given_no_refund_proposed_when_amount_asked_then_zero() -> None:
    link = ActionTaken(tool="send_update_card_link", args={}, result=ToolResult(ok=True, terminal=True))
    assert amount_at_stake(_run(link)) == 0.0
    tried, _ = packet_records(_run(link), [])
    assert [(t.action, t.status) for t in tried] == [(Action.SEND_UPDATE_CARD_LINK, "succeeded")]
