"""Tier 2: redact, guard, let the agent (LLM or offline planner) act through policy-checked tools,
then either record the resolution or hand the whole case to a human."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from schemas import Action, EscalationReason, Tier
from schemas.messages import (
    AgentRequestedV1,
    EscalationOpenedPayload,
    KnowledgeArticlePublishedV1,
    OutcomeRecordedPayload,
    Turn,
)
from schemas.vocab import MONEY_ASKS, SIDE_ASK_ACTIONS
from services.tier2_agent import quality
from services.tier2_agent.adapters.tools import ExecutorTools
from services.tier2_agent.domain import amount_at_stake, packet_records
from services.tier2_agent.guardrails import INJECTION_FLAG, detect_injection, redact
from services.tier2_agent.ports import AgentRequest, AgentResult, Escalation
from services.tier2_agent.tools import performed_actions, refunded_usd
from tierline import conversations
from tierline.actions import ActionContext, ActionOutcome, Actions
from tierline.billing.asks import side_ask_invoices
from tierline.clarify_words import CLARIFY_SUMMARY_PREFIX
from tierline.experiments import Experiment, choose_answer
from tierline.guardrails import merge_flags
from tierline.messaging import Inbox
from tierline.pipeline import audit, escalate, record_outcome, start_contact
from tierline.textprep import clean_text

log = structlog.get_logger(__name__)

#: Escalations after which nothing else is done automatically: the person takes the whole message.
_NO_SECONDARY_AFTER = frozenset(
    {
        EscalationReason.FRAUD,
        EscalationReason.DISPUTE,
        EscalationReason.POLICY_DENIED,
        EscalationReason.CUSTOMER_ASKED,
    }
)


@dataclass
class AgentDeps:
    pool: asyncpg.Pool
    broker: KafkaBroker
    actions: Actions
    diagnostics: Any
    knowledge: Any
    agent: Any
    inbox: Inbox
    #: answer template A/B experiments that run (TIERLINE_EXPERIMENTS; none by default)
    experiments: tuple[Experiment, ...] = ()


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
    text = redact(clean_text(msg.payload.text))  # the customer's new words (guardrails read the original)
    finding = detect_injection(msg.payload.text) or detect_injection(text)
    flags = merge_flags(msg.payload.flags, [INJECTION_FLAG] if finding is not None else [])
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
        flags=tuple(flags),
    )
    adopt = getattr(deps.actions, "adopt", None)  # the router's diagnosis, while fresh: no second one
    if adopt is not None:
        await adopt(ctx, msg.payload.diagnosis)
    tools = ExecutorTools(deps.actions, ctx, deps.diagnostics, deps.knowledge)
    request = AgentRequest.from_payload(msg.payload, redacted_text=text, flags=flags)
    result: AgentResult = await deps.agent.run(request, tools)
    extras = await run_secondary(deps.actions, ctx, msg, result)
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
    await finish(deps, msg, result, flags, extras=extras)
    await deps.inbox.mark(msg.message_id)


async def run_secondary(
    actions: Actions, ctx: ActionContext, msg: AgentRequestedV1, result: AgentResult
) -> list[ActionOutcome]:
    """The further asks of the same message (the router's ``secondary_actions``) the agent did not do.

    Only actions that send or explain, through the same executor and policy; none after an escalation
    that hands the whole message to a person (fraud, dispute, a denied sender, a person asked for).
    """
    if result.escalation is not None and result.escalation.reason in _NO_SECONDARY_AFTER:
        return []
    if result.question is not None:  # nothing is done before the customer says what they want
        return []
    done = set(performed_actions(result))
    outcomes: list[ActionOutcome] = []
    for action in msg.payload.secondary_actions:
        if action not in SIDE_ASK_ACTIONS or action in done:
            continue
        # an invoice asked on the side: the period the words name ("and the March invoice"), else the latest
        if action is Action.SEND_INVOICE:
            sent = [await actions.send_invoice(ctx, i) for i in side_invoice_ids(msg)]
            log.info("tier2.secondary.done", action=action.value, status=[o.status for o in sent])
            done.add(action)
            outcomes.extend(sent)
            continue
        elif action is Action.SEND_UPDATE_CARD_LINK:
            outcome = await actions.send_update_card_link(ctx)
        elif action is Action.REGENERATE_INVOICE_LINK:
            outcome = await actions.regenerate_invoice_link(ctx, None)
        else:
            outcome = await actions.explain_charge(ctx, None)
        log.info("tier2.secondary.done", action=action.value, status=outcome.status)
        done.add(action)
        outcomes.append(outcome)
    return outcomes


def side_invoice_ids(msg: AgentRequestedV1) -> list[str | None]:
    """The invoices a side ask sends: the named period's, the latest (``None``) when none is named."""
    evidence = msg.payload.diagnosis.evidence if msg.payload.diagnosis is not None else {}
    return side_ask_invoices(msg.payload.text, evidence, datetime.now(UTC))


def _secondary_summary(extras: list[ActionOutcome]) -> str:
    said = {
        Action.SEND_INVOICE: "I've also emailed you the invoice.",
        Action.SEND_UPDATE_CARD_LINK: "I've also emailed you a secure link to update your card.",
        Action.REGENERATE_INVOICE_LINK: "I've also sent you a fresh link to pay the invoice.",
    }
    parts = []
    for e in extras:
        message = e.data.get("customer_message") or e.data.get("explanation")
        if e.ok:
            parts.append(message if isinstance(message, str) and message else said.get(e.action, ""))
    return " ".join(p for p in parts if p)


async def finish(
    deps: AgentDeps,
    msg: AgentRequestedV1,
    result: AgentResult,
    flags: list[str] | None = None,
    *,
    extras: list[ActionOutcome] | None = None,
) -> None:
    extras = extras or []
    tier_path = [*msg.payload.tier_path, Tier.TIER2]
    diagnosis = msg.payload.diagnosis
    root_cause = diagnosis.root_cause if diagnosis else None
    if result.question is not None:
        await ask_question(deps, msg, result, tier_path)
        return
    money_asks = [i for i in msg.payload.secondary_intents if i in MONEY_ASKS and i is not msg.payload.intent]
    if result.resolved and money_asks:
        # a further ask that moves money is never done on the side: a person decides it
        did = ", ".join(a.value for a in [*performed_actions(result), *(e.action for e in extras if e.ok)])
        result = result.model_copy(
            update={
                "resolved": False,
                "escalation": Escalation(
                    reason=EscalationReason.LOW_CONFIDENCE,
                    note=f"Done automatically: {did or 'nothing'}. The customer also asked for "
                    f"{', '.join(i.value for i in money_asks)} in the same message: not done on the side; "
                    "decide it and reply.",
                ),
            }
        )
    variant: str | None = None
    if result.resolved and deps.experiments:  # the customer's variant of an A/B answer template, checked too
        said, variant = choose_answer(deps.experiments, msg.customer_id, result.final_answer)
        result = result.model_copy(update={"final_answer": said})
    variant_text = result.final_answer
    if result.resolved:
        result = await check_answer_before_saying(deps, msg, result, extras)
    if result.resolved:
        if variant is not None and result.final_answer != variant_text:
            variant = None  # the quality check rewrote the variant's text: the customer did not read it
        answer = f"{result.final_answer} {_secondary_summary(extras)}".strip()
        recorded = await record_outcome(
            deps.pool,
            deps.broker,
            cause=msg,
            payload=OutcomeRecordedPayload(
                resolved_by=Tier.TIER2,
                tier_path=tier_path,
                intent=msg.payload.intent,
                root_cause=root_cause,
                actions=[*performed_actions(result), *(e.action for e in extras if e.ok)],
                refund_usd=refunded_usd(result),
                channel=msg.payload.channel,
                trigger="contact",
                summary=answer[:1000],
                variant=variant,
            ),
        )
        if recorded.payload.resolved_by is Tier.TIER2:  # another stage's outcome came first: it speaks
            await tell_answer(deps, msg, answer, variant=recorded.payload.variant)
        return
    assert result.escalation is not None
    tried, decisions = packet_records(result, [*msg.payload.tried, *(e.record(Tier.TIER2) for e in extras)])
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
            transcript=[*msg.payload.history, *result.transcript],  # the whole thread for the person
            actions_tried=tried,
            policy_decisions=decisions,
            suggested_next_step=result.escalation.suggested_next_step or result.escalation.note,
            tier_path=tier_path,
            contact_started_at=None,
            flags=merge_flags(msg.payload.flags, flags),
            language=msg.payload.language,
            conversation_id=msg.payload.conversation_id,
        ),
    )


async def ask_question(
    deps: AgentDeps, msg: AgentRequestedV1, result: AgentResult, tier_path: list[Tier]
) -> None:
    """The agent's clarifying question: the contact's outcome is the question (an automated reply, no
    action), said in the conversation with its choices; the customer's answer is a contact of its own,
    which the router reads against this question (the conversation's last turn)."""
    assert result.question is not None
    diagnosis = msg.payload.diagnosis
    offered = [c.value for c in result.question.choices]
    await audit(
        deps.broker,
        cause=msg,
        actor="tier2_agent",
        action="clarify.asked",
        decision="asked",
        details={"offered": offered, "language": msg.payload.language, "engine": result.engine},
    )
    recorded = await record_outcome(
        deps.pool,
        deps.broker,
        cause=msg,
        payload=OutcomeRecordedPayload(
            resolved_by=Tier.TIER2,
            tier_path=tier_path,
            intent=msg.payload.intent,
            root_cause=diagnosis.root_cause if diagnosis else None,
            actions=[],
            channel=msg.payload.channel,
            trigger="contact",
            summary=f"{CLARIFY_SUMMARY_PREFIX} {result.final_answer}"[:1000],
        ),
    )
    if recorded.payload.resolved_by is not Tier.TIER2:
        return  # another stage's outcome came first: it speaks
    await conversations.say(
        deps.broker,
        deps.pool,
        contact_id=msg.contact_id,
        customer_id=msg.customer_id,
        kind="clarifying_question",
        text=result.final_answer,
        author="tier2_agent",
        cause=msg,
        choices=list(result.question.choices),
        language=msg.payload.language,
    )


async def check_answer_before_saying(
    deps: AgentDeps, msg: AgentRequestedV1, result: AgentResult, extras: list[ActionOutcome]
) -> AgentResult:
    """The quality check: an answer whose amounts, dates, ids, plans or promises the facts do not back is
    rewritten from the facts or, when that is not possible, never said (a person takes the contact).
    Each stopped answer is audited (``answer.quality_stopped``, its causes as the target) and counted."""
    draft = f"{result.final_answer} {_secondary_summary(extras)}".strip()
    facts = quality.facts_for(msg.payload, result, extras)
    decision = quality.decide_answer(draft, facts, quality.template_answer(result, extras))
    if not decision.stopped:
        return result
    causes = decision.verdict.causes
    log.warning("tier2.answer.stopped", causes=causes, outcome=decision.outcome, engine=result.engine)
    await audit(
        deps.broker,
        cause=msg,
        actor="tier2_agent",
        action=quality.STOPPED_ACTION,
        target=",".join(causes),
        decision=decision.outcome,
        details={
            "causes": list(causes),
            "findings": [{"cause": f.cause, "value": f.value} for f in decision.verdict.findings[:20]],
            "engine": result.engine,
            "draft": draft[:2000],
        },
    )
    if decision.answer is not None:  # the tools' own words: extras are appended again by the caller
        return result.model_copy(update={"final_answer": quality.template_answer(result, [])})
    return result.model_copy(
        update={
            "resolved": False,
            "escalation": quality.stopped_escalation(decision),
            "transcript": [*result.transcript, Turn(role="system", text=f"stopped draft: {draft[:2000]}")],
        }
    )


async def tell_answer(
    deps: AgentDeps, msg: AgentRequestedV1, answer: str, *, variant: str | None = None
) -> None:
    """The customer hears tier 2's answer in their conversation (once per request: the turn's id derives
    from it); nothing for a contact without a conversation."""
    await conversations.say(
        deps.broker,
        deps.pool,
        contact_id=msg.contact_id,
        customer_id=msg.customer_id,
        kind="answer",
        text=answer,
        author="tier2_agent",
        cause=msg,
        language=msg.payload.language,
        variant=variant,
    )


async def on_article_published(knowledge: Any, msg: KnowledgeArticlePublishedV1) -> None:
    """Human-written (KCS) articles become searchable without a restart."""
    p = msg.payload
    n = await knowledge.aindex_article(p.article_id, p.title, p.body_markdown, tags=p.tags, source=p.source)
    log.info("knowledge.article_indexed", article_id=p.article_id, passages=n)
