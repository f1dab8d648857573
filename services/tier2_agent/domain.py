"""Tier 2's pure decisions: what the agent's run means for the contact (no I/O)."""

from __future__ import annotations

from schemas import Action, Tier
from schemas.messages import ActionRecord, PolicyDecisionRecord
from services.tier2_agent.ports import AgentResult
from services.tier2_agent.tools import TOOL_SPECS


def action_of(tool: str) -> Action | None:
    """The vocabulary action an effect tool stands for (reads and escalation are not actions tried)."""
    spec = TOOL_SPECS.get(tool)
    if spec is None or spec.action in (None, Action.ESCALATE, Action.ANSWER_FROM_KNOWLEDGE):
        return None
    return spec.action


def packet_records(
    result: AgentResult, prior: list[ActionRecord]
) -> tuple[list[ActionRecord], list[PolicyDecisionRecord]]:
    """Everything tried (before and by the agent) and every policy decision, for the human's packet."""
    tried = list(prior)
    decisions: list[PolicyDecisionRecord] = []
    for taken in result.actions:
        action = action_of(taken.tool)
        if action is None:
            continue
        data = taken.result.data or {}
        status = "succeeded" if taken.result.ok else ("denied" if taken.result.policy_refused else "failed")
        target = str(taken.args.get("charge_id") or taken.args.get("invoice_id") or "") or None
        tried.append(
            ActionRecord(
                action=action,
                tier=Tier.TIER2,
                status=status,
                idempotency_key=str(data.get("idempotency_key", "")),
                detail=(taken.result.error or str(data.get("customer_message", "")))[:500],
                amount_usd=float(data.get("amount_usd") or 0) if taken.result.ok else 0.0,
                target=target,
            )
        )
        if taken.result.verdict is not None:
            decisions.append(
                PolicyDecisionRecord(
                    action=action, verdict=taken.result.verdict, reason=taken.result.error or "", rule=""
                )
            )
    return tried, decisions


def amount_at_stake(result: AgentResult) -> float:
    """The largest refund the agent proposed (it drives the human case's priority)."""
    return max(
        (float(a.args.get("amount_usd") or 0) for a in result.actions if a.tool == "refund"), default=0.0
    )
