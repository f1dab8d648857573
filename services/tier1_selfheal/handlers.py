"""Tier 1 consumer: validate, check the tenant, diagnose, run the fix, then resolve / hand on / escalate."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from schemas import Action, Channel, EscalationReason, Tier
from schemas.messages import (
    ActionRecord,
    AgentRequestedPayload,
    AgentRequestedV1,
    DiagnosisView,
    EscalationOpenedPayload,
    OutcomeRecordedPayload,
    SelfhealRequestedV1,
    Turn,
)
from schemas.vocab import MONEY_ASKS, SIDE_ASK_ACTIONS
from services.tier1_selfheal import domain
from services.tier1_selfheal.ports import Actions, Diagnostics, RequestStore
from tierline import conversations
from tierline.actions import ActionContext, ActionOutcome
from tierline.billing.asks import side_ask_invoices
from tierline.followups import did_not_work
from tierline.guardrails import injection_flags, merge_flags
from tierline.ledger import idempotency_key
from tierline.messaging import Inbox, publish
from tierline.pipeline import audit, escalate, record_outcome, start_contact

log = structlog.get_logger(__name__)

ACTOR = "tier1_selfheal"


@dataclass
class SelfhealDeps:
    pool: asyncpg.Pool
    broker: KafkaBroker
    actions: Actions
    diagnostics: Diagnostics
    inbox: Inbox
    requests: RequestStore
    retention_offer: str = ""


def is_selfheal_source(msg: SelfhealRequestedV1) -> bool:
    return msg.payload.source in ("dashboard", "api")


async def on_selfheal_requested(deps: SelfhealDeps, msg: SelfhealRequestedV1) -> None:
    if await deps.inbox.seen(msg.message_id):
        log.info("tier1.duplicate_skipped", contact_id=msg.contact_id)
        return
    structlog.contextvars.bind_contextvars(contact_id=msg.contact_id)
    p = msg.payload
    if is_selfheal_source(msg):
        await start_contact(
            deps.pool,
            contact_id=msg.contact_id,
            customer_id=msg.customer_id,
            trigger="selfheal",
            channel=Channel.DASHBOARD.value,
            started_at=msg.occurred_at,
        )
    await deps.requests.record(msg.contact_id, msg.customer_id, p.action.value, p.params)

    verdict = domain.authorize(p.source, p.sender, msg.customer_id)
    if not verdict.allowed:
        log.warning("tier1.tenant_denied", source=p.source, sender_kind=p.sender.kind, reason=verdict.reason)
        await audit(
            deps.broker,
            cause=msg,
            actor=ACTOR,
            action="tenant_check",
            target=msg.customer_id,
            decision="deny",
            details={"reason": verdict.reason, "requested": p.action.value},
        )
        await _escalate(
            deps,
            msg,
            EscalationReason.POLICY_DENIED,
            None,
            [],
            f"Tenant check failed ({verdict.reason}); nothing was done. Verify who asked before acting.",
        )
        await deps.inbox.mark(msg.message_id)
        return

    if p.action is Action.ESCALATE:
        diagnosis = await _diagnose_or(deps, msg)
        await _escalate(
            deps, msg, EscalationReason.CUSTOMER_ASKED, diagnosis, [], domain.human_next_step(diagnosis)
        )
        await deps.inbox.mark(msg.message_id)
        return

    diagnosis = await _diagnose_or(deps, msg)
    if diagnosis is None:
        await _escalate(
            deps,
            msg,
            EscalationReason.POLICY_DENIED,
            None,
            [],
            f"No customer {msg.customer_id} in billing: check the account before acting.",
        )
        await deps.inbox.mark(msg.message_id)
        return

    if await not_repeated(deps, msg, diagnosis):
        await deps.inbox.mark(msg.message_id)
        return
    outcome = await run_fix(deps, msg, diagnosis)
    decision = domain.decide_after_fix(outcome, diagnosis, retention_offer=deps.retention_offer)
    decision = domain.localize_decision(decision, outcome, diagnosis, p.language)
    log.info("tier1.fix.done", action=p.action.value, status=outcome.status, decision=type(decision).__name__)
    extras: list[ActionOutcome] = []
    if isinstance(decision, domain.Resolve):
        extras = [*await run_period_rest(deps, msg, diagnosis), *await run_secondary(deps, msg, diagnosis)]
        decision = money_asks_to_person(msg, decision, [outcome, *extras])
    await settle(deps, msg, diagnosis, outcome, decision, extras)
    await deps.inbox.mark(msg.message_id)


async def _diagnose_or(deps: SelfhealDeps, msg: SelfhealRequestedV1) -> DiagnosisView | None:
    """A fresh diagnosis; the one the router attached if the customer is unknown to diagnostics now."""
    try:
        reader = getattr(deps.actions, "diagnosis", None)  # the executor's short-lived cache, when it has one
        if reader is not None:
            adopt = getattr(deps.actions, "adopt", None)  # the router's diagnosis, while fresh
            if adopt is not None:
                await adopt(context(msg), msg.payload.diagnosis)
            return await reader(context(msg))  # type: ignore[no-any-return]
        return await deps.diagnostics.diagnose(msg.customer_id)
    except LookupError:
        return msg.payload.diagnosis


def context(msg: SelfhealRequestedV1) -> ActionContext:
    sender = msg.payload.sender
    actor_id = f"customer:{sender.subject}" if sender.kind == "customer_session" and sender.subject else ACTOR
    return ActionContext(
        contact_id=msg.contact_id,
        customer_id=msg.customer_id,
        tier=Tier.TIER1,
        actor="selfheal",
        actor_id=actor_id,
        cause=msg,
        flags=tuple(text_flags(msg)),
        clicked=is_selfheal_source(msg),  # a Health Meter button named the change; not free text
    )


def text_flags(msg: SelfhealRequestedV1) -> list[str]:
    """The router's guardrail flags, and the guardrail's own reading of the text this request carries
    (a producer that left ``flags`` out cannot get a flagged text acted on)."""
    return merge_flags(msg.payload.flags, injection_flags(msg.payload.text))


async def run_fix(deps: SelfhealDeps, msg: SelfhealRequestedV1, diagnosis: DiagnosisView) -> ActionOutcome:
    """Validate the params (nothing happens on bad input) and call the shared, policy-checked action."""
    action = msg.payload.action
    if action not in domain.TIER1_ACTIONS:
        return ActionOutcome(
            action,
            "failed",
            f"{action.value} is not a Tier 1 self-serve fix",
            idempotency_key=idempotency_key(msg.contact_id, action.value, "not_tier1"),
        )
    try:
        fix = domain.parse_fix(action, dict(msg.payload.params))
    except domain.InvalidFixRequest as exc:
        await audit(
            deps.broker,
            cause=msg,
            actor=ACTOR,
            action=action.value,
            decision="invalid_request",
            details={"error": str(exc)},
        )
        return ActionOutcome(
            action,
            "failed",
            f"invalid request: {exc}",
            idempotency_key=idempotency_key(msg.contact_id, action.value, "invalid"),
        )
    if action is Action.SEND_INVOICE and fix.invoice_id is None:
        period = domain.period_invoices(msg.payload.text, diagnosis, datetime.now(UTC))
        if period is not None:
            asked, documents = period
            if not documents:
                log.info("tier1.invoice.period_not_found", period=asked.label)
                return ActionOutcome(
                    action,
                    "failed",
                    f"no invoice for {asked.label} on record",
                    idempotency_key=idempotency_key(msg.contact_id, action.value, "no_period_invoice"),
                )
            fix = replace(fix, invoice_id=documents[0].id)
    return await execute(deps.actions, context(msg), fix, diagnosis)


async def run_period_rest(
    deps: SelfhealDeps, msg: SelfhealRequestedV1, diagnosis: DiagnosisView
) -> list[ActionOutcome]:
    """The further invoices of a period that names several months ("the invoices for Q3"): each is sent,
    after the first (which ``run_fix`` sent)."""
    if msg.payload.action is not Action.SEND_INVOICE or msg.payload.params.get("invoice_id"):
        return []
    period = domain.period_invoices(msg.payload.text, diagnosis, datetime.now(UTC))
    if period is None:
        return []
    done = []
    for document in period[1][1:]:
        fix = domain.FixRequest(Action.SEND_INVOICE, invoice_id=document.id)
        done.append(await execute(deps.actions, context(msg), fix, diagnosis))
    return done


async def run_secondary(
    deps: SelfhealDeps, msg: SelfhealRequestedV1, diagnosis: DiagnosisView
) -> list[ActionOutcome]:
    """The further asks of the same message (the router's ``secondary_actions``), after the main fix.

    Only actions that send or explain; anything else in the list is skipped, never done on the side.
    """
    done: list[ActionOutcome] = []
    for action in msg.payload.secondary_actions:
        if action not in SIDE_ASK_ACTIONS or action is msg.payload.action:
            log.warning("tier1.secondary.skipped", action=action.value)
            continue
        # an invoice asked on the side: the period the words name ("and the March invoice"), else the latest
        if action is Action.SEND_INVOICE:
            evidence = diagnosis.evidence if diagnosis is not None else {}
            for invoice_id in side_ask_invoices(msg.payload.text, evidence, datetime.now(UTC)):
                done.append(await deps.actions.send_invoice(context(msg), invoice_id))
            log.info("tier1.secondary.done", action=action.value, status=[o.status for o in done])
            continue
        outcome = await execute(deps.actions, context(msg), domain.parse_fix(action, {}), diagnosis)
        log.info("tier1.secondary.done", action=action.value, status=outcome.status)
        done.append(outcome)
    return done


def money_asks_to_person(
    msg: SelfhealRequestedV1, decision: domain.Resolve, done: list[ActionOutcome]
) -> domain.Decision:
    """A further ask that moves money (a refund, a cancellation) is never done on the side: once the
    safe asks are done, a person decides it, with what was done in the packet."""
    asks = [i for i in msg.payload.secondary_intents if i in MONEY_ASKS and i is not msg.payload.intent]
    if not asks:
        return decision
    did = ", ".join(o.action.value for o in done if o.ok) or "nothing"
    wanted = ", ".join(i.value for i in asks)
    log.info("tier1.secondary.money_ask_to_person", asks=wanted)
    return domain.EscalateToHuman(
        EscalationReason.LOW_CONFIDENCE,
        f"Done automatically: {did}. The customer also asked for {wanted} in the same message: "
        "not done on the side; decide it and reply.",
    )


async def execute(
    actions: Actions, ctx: ActionContext, fix: domain.FixRequest, diagnosis: DiagnosisView | None
) -> ActionOutcome:
    a = fix.action
    if a is Action.RETRY_PAYMENT:
        return await actions.retry_payment(ctx, fix.invoice_id)
    if a is Action.SEND_UPDATE_CARD_LINK:
        return await actions.send_update_card_link(ctx)
    if a is Action.REGENERATE_INVOICE_LINK:
        return await actions.regenerate_invoice_link(ctx, fix.invoice_id)
    if a is Action.SEND_INVOICE:
        return await actions.send_invoice(ctx, fix.invoice_id)
    if a is Action.UPDATE_BILLING_DETAILS:
        return await actions.update_billing_details(
            ctx,
            email=fix.email,
            name=fix.name,
            address=fix.address,
            tax_id=f"{fix.tax_id.stripe_type}:{fix.tax_id.value}" if fix.tax_id else None,
        )
    if a is Action.CANCEL_SUBSCRIPTION:
        return await actions.cancel_subscription(ctx, at_period_end=True)
    if a is Action.CHANGE_PLAN:
        plan, seats = fix.plan, fix.seats
        if plan is None:
            suggested, current_seats = domain.suggested_plan(diagnosis)
            plan, seats = suggested, seats or current_seats
        if plan is None:
            return ActionOutcome(
                a,
                "failed",
                "no plan given and none to suggest",
                idempotency_key=idempotency_key(ctx.contact_id, a.value, "no_plan"),
            )
        outcome = await actions.change_plan(ctx, plan, seats, preview_only=fix.preview_only)
        if fix.preview_only:
            outcome.data.setdefault("preview_only", True)
        return outcome
    if a is Action.EXPLAIN_CHARGE:
        return await actions.explain_charge(ctx, fix.charge_id)
    raise AssertionError(f"unhandled Tier 1 action {a}")  # pragma: no cover - TIER1_ACTIONS is closed


async def settle(
    deps: SelfhealDeps,
    msg: SelfhealRequestedV1,
    diagnosis: DiagnosisView | None,
    outcome: ActionOutcome,
    decision: domain.Decision,
    extras: list[ActionOutcome] | None = None,
) -> None:
    """Write the one consequence of the decision: an outcome, a Tier 2 request, or an escalation."""
    p = msg.payload
    extras = extras or []
    tried = [*p.tried, outcome.record(Tier.TIER1), *(e.record(Tier.TIER1) for e in extras)]
    summary = " ".join(
        [
            decision.summary if isinstance(decision, domain.Resolve) else "",
            *(domain.summarize_in(e, diagnosis, p.language) for e in extras if e.ok),
            *(f"{e.action.value} did not go through: {e.detail}" for e in extras if not e.ok),
        ]
    ).strip()
    if isinstance(decision, domain.Resolve):
        channel = await deps.pool.fetchval("SELECT channel FROM contacts WHERE contact_id=$1", msg.contact_id)
        recorded = await record_outcome(
            deps.pool,
            deps.broker,
            cause=msg,
            payload=OutcomeRecordedPayload(
                resolved_by=Tier.TIER1,
                tier_path=[Tier.TIER1],
                intent=p.intent or domain.ACTION_INTENT.get(p.action),
                root_cause=diagnosis.root_cause if diagnosis else None,
                actions=[outcome.action, *(e.action for e in extras if e.ok)],
                recovered_usd=decision.recovered_usd,
                channel=Channel(channel) if channel in {c.value for c in Channel} else None,
                trigger="selfheal" if is_selfheal_source(msg) else "contact",
                summary=summary[:2000],
            ),
        )
        await deps.requests.set_state(msg.contact_id, "resolved", None)
        if recorded.payload.resolved_by is Tier.TIER1:  # another stage's outcome came first: it speaks
            await confirm_fix(deps, msg, summary)
    elif isinstance(decision, domain.HandToTier2):
        await hand_to_tier2(deps, msg, diagnosis, tried, decision.reason)
    else:
        await _escalate(deps, msg, decision.reason, diagnosis, tried, decision.next_step, outcome)


async def hand_to_tier2(
    deps: SelfhealDeps,
    msg: SelfhealRequestedV1,
    diagnosis: DiagnosisView | None,
    tried: list[ActionRecord],
    reason: str,
) -> None:
    p = msg.payload
    await publish(
        deps.broker,
        AgentRequestedV1.build(
            AgentRequestedPayload(
                text=p.text or _describe_request(msg),
                channel=Channel.DASHBOARD if is_selfheal_source(msg) else Channel.CHAT,
                intent=p.intent or domain.ACTION_INTENT.get(p.action),
                confidence=1.0,
                diagnosis=diagnosis,
                tried=tried,
                handoff_reason=reason[:1000],
                tier_path=[Tier.TIER1],
                secondary_intents=list(p.secondary_intents),
                secondary_actions=list(p.secondary_actions),
                flags=text_flags(msg),
                language=p.language,
                conversation_id=p.conversation_id,
                history=list(p.history),
            ),
            contact_id=msg.contact_id,
            customer_id=msg.customer_id,
            cause=msg,
            role="tier1:handoff",
        ),
    )
    await deps.requests.set_state(msg.contact_id, "handed_to_tier2", reason[:1000])
    log.info("tier1.handed_to_tier2", reason=reason[:200])


async def not_repeated(deps: SelfhealDeps, msg: SelfhealRequestedV1, diagnosis: DiagnosisView) -> bool:
    """A follow-up saying the earlier automated answer did not work ("that didn't work") after a contact
    of the same conversation: the fix is not repeated; tier 2 gets it, with the history and the skipped
    fix in ``tried``. True when handed on."""
    p = msg.payload
    earlier = None if is_selfheal_source(msg) else did_not_work(p.text or "", p.history)
    if earlier is None:
        return False
    skipped = ActionRecord(
        action=p.action,
        tier=Tier.TIER1,
        status="skipped",
        idempotency_key=idempotency_key(msg.contact_id, p.action.value, "follow_up_not_repeated"),
        detail="not repeated: the customer says the earlier answer did not work",
    )
    reason = f"the customer says the earlier answer did not work: {earlier[:300]}"
    log.info("tier1.follow_up.not_repeated", action=p.action.value)
    await hand_to_tier2(deps, msg, diagnosis, [*p.tried, skipped], reason)
    return True


async def _escalate(
    deps: SelfhealDeps,
    msg: SelfhealRequestedV1,
    reason: EscalationReason,
    diagnosis: DiagnosisView | None,
    tried: list[Any],
    next_step: str,
    outcome: ActionOutcome | None = None,
) -> None:
    p = msg.payload
    transcript = [*p.history, *([Turn(role="customer", text=p.text)] if p.text else [])]
    await escalate(
        deps.broker,
        cause=msg,
        payload=EscalationOpenedPayload(
            reason=reason,
            opened_by=Tier.TIER1,
            intent=p.intent or domain.ACTION_INTENT.get(p.action),
            text=p.text or _describe_request(msg),
            plan=((diagnosis.evidence.get("plan") or {}).get("tier") if diagnosis else None),
            amount_usd=outcome.amount_usd if outcome else 0.0,
            diagnosis=diagnosis,
            transcript=transcript,
            actions_tried=tried,
            policy_decisions=[outcome.policy] if outcome and outcome.policy else [],
            suggested_next_step=next_step[:2000],
            tier_path=[Tier.TIER1],
            flags=text_flags(msg),
            language=p.language,
            conversation_id=p.conversation_id,
        ),
    )
    await deps.requests.set_state(msg.contact_id, "escalated", reason.value)


async def confirm_fix(deps: SelfhealDeps, msg: SelfhealRequestedV1, summary: str) -> None:
    """The customer hears what was done ("We sent you a secure link to update your card...") in the
    conversation the contact came in (once per request: the turn's id derives from it). A click in the
    Health Meter has no conversation: the page shows the result itself."""
    if not summary:
        return
    await conversations.say(
        deps.broker,
        deps.pool,
        contact_id=msg.contact_id,
        customer_id=msg.customer_id,
        kind="fix_confirmation",
        text=summary,
        author=ACTOR,
        cause=msg,
        language=msg.payload.language,
    )


def _describe_request(msg: SelfhealRequestedV1) -> str:
    p = msg.payload
    shown = {k: v for k, v in p.params.items() if k != "tax_id"}
    extra = f" with {shown}" if shown else ""
    return f"Customer clicked '{p.action.value}'{extra} in the Billing Health Meter ({p.source})."
