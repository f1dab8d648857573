"""Tier 2: redact, guard, let the agent (LLM or offline planner) act through policy-checked tools,
then either record the resolution or hand the whole case to a human."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from schemas import Tier
from schemas.messages import (
    AgentRequestedV1,
    EscalationOpenedPayload,
    KnowledgeArticlePublishedV1,
    OutcomeRecordedPayload,
)
from services.tier2_agent.adapters.tools import ExecutorTools
from services.tier2_agent.domain import amount_at_stake, packet_records
from services.tier2_agent.guardrails import detect_injection, redact
from services.tier2_agent.ports import AgentRequest, AgentResult
from services.tier2_agent.tools import performed_actions, refunded_usd
from tierline.actions import ActionContext, Actions
from tierline.messaging import Inbox
from tierline.pipeline import audit, escalate, record_outcome, start_contact

log = structlog.get_logger(__name__)


@dataclass
class AgentDeps:
    pool: asyncpg.Pool
    broker: KafkaBroker
    actions: Actions
    diagnostics: Any
    knowledge: Any
    agent: Any
    inbox: Inbox


async def on_agent_requested(deps: AgentDeps, msg: AgentRequestedV1) -> None:
    if await deps.inbox.seen(msg.message_id):
        return
    structlog.contextvars.bind_contextvars(contact_id=msg.contact_id)
    await start_contact(
        deps.pool,
        contact_id=msg.contact_id,
        customer_id=msg.customer_id,
        trigger="contact",
        channel=msg.payload.channel.value,
        started_at=msg.occurred_at,
    )
    text = redact(msg.payload.text)
    finding = detect_injection(text)
    if finding is not None:
        log.warning("guardrail.injection_detected", category=getattr(finding, "category", "?"))
        await audit(
            deps.broker,
            cause=msg,
            actor="tier2_agent",
            action="guardrail.injection_detected",
            decision="flagged",
            details={
                "category": str(getattr(finding, "category", "")),
                "rule": str(getattr(finding, "rule", "")),
            },
        )
    ctx = ActionContext(
        contact_id=msg.contact_id,
        customer_id=msg.customer_id,
        tier=Tier.TIER2,
        actor="ai",
        actor_id=getattr(deps.agent, "name", type(deps.agent).__name__),
        cause=msg,
    )
    adopt = getattr(deps.actions, "adopt", None)  # the router's diagnosis, while fresh: no second one
    if adopt is not None:
        await adopt(ctx, msg.payload.diagnosis)
    tools = ExecutorTools(deps.actions, ctx, deps.diagnostics, deps.knowledge)
    request = AgentRequest.from_payload(msg.payload, redacted_text=text)
    result: AgentResult = await deps.agent.run(request, tools)
    await audit(
        deps.broker,
        cause=msg,
        actor="tier2_agent",
        action="agent.finished",
        decision="resolved" if result.resolved else "escalated",
        details={
            "engine": result.engine,
            "steps": result.steps,
            "tokens": result.tokens,
            "tools": [a.tool for a in result.actions],
            "flags": result.flags,
        },
    )
    await finish(deps, msg, result)
    await deps.inbox.mark(msg.message_id)


async def finish(deps: AgentDeps, msg: AgentRequestedV1, result: AgentResult) -> None:
    tier_path = [*msg.payload.tier_path, Tier.TIER2]
    diagnosis = msg.payload.diagnosis
    root_cause = diagnosis.root_cause if diagnosis else None
    if result.resolved:
        await record_outcome(
            deps.pool,
            deps.broker,
            cause=msg,
            payload=OutcomeRecordedPayload(
                resolved_by=Tier.TIER2,
                tier_path=tier_path,
                intent=msg.payload.intent,
                root_cause=root_cause,
                actions=performed_actions(result),
                refund_usd=refunded_usd(result),
                channel=msg.payload.channel,
                trigger="contact",
                summary=result.final_answer[:1000],
            ),
        )
        return
    assert result.escalation is not None
    tried, decisions = packet_records(result, list(msg.payload.tried))
    plan = ((diagnosis.evidence.get("plan") or {}).get("tier")) if diagnosis else None
    amount = amount_at_stake(result)
    await escalate(
        deps.broker,
        cause=msg,
        payload=EscalationOpenedPayload(
            reason=result.escalation.reason,
            opened_by=Tier.TIER2,
            intent=msg.payload.intent,
            text=msg.payload.text,
            plan=plan,
            amount_usd=amount,
            diagnosis=diagnosis,
            transcript=result.transcript,
            actions_tried=tried,
            policy_decisions=decisions,
            suggested_next_step=result.escalation.suggested_next_step or result.escalation.note,
            tier_path=tier_path,
            contact_started_at=None,
        ),
    )


async def on_article_published(knowledge: Any, msg: KnowledgeArticlePublishedV1) -> None:
    """Human-written (KCS) articles become searchable without a restart."""
    p = msg.payload
    n = await knowledge.aindex_article(p.article_id, p.title, p.body_markdown, tags=p.tags, source=p.source)
    log.info("knowledge.article_indexed", article_id=p.article_id, passages=n)
