"""Router: validate, classify, diagnose, decide (a table), hand on. Never acts itself."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from schemas import Intent, Tier
from schemas.messages import (
    AgentRequestedPayload,
    AgentRequestedV1,
    ContactReceivedV1,
    DiagnosisView,
    EscalationOpenedPayload,
    IntentCandidate,
    SelfhealRequestedPayload,
    SelfhealRequestedV1,
    Turn,
)
from schemas.vocab import Action, RootCause
from services.router.domain import Gates, decide_route
from services.router.ports import Classifier, Diagnostics
from tierline.messaging import Inbox, publish
from tierline.pipeline import audit, escalate, set_contact_intent, start_contact
from tierline.risk import fraud_flagged

log = structlog.get_logger(__name__)

FRAUD_CAUSES = {RootCause.CARD_DECLINED_FRAUD}


@dataclass
class RouterDeps:
    pool: asyncpg.Pool
    broker: KafkaBroker
    classifier: Classifier
    diagnostics: Diagnostics
    inbox: Inbox
    repeat_window_days: int = 7


def sender_authorized(msg: ContactReceivedV1, customer_email: str | None) -> bool:
    """The sender may act for the contact's customer: its own session, its email on file, or staff/system."""
    sender = msg.payload.sender
    if sender.kind in ("agent", "system"):
        return True
    if sender.kind == "customer_session":
        return sender.subject == msg.customer_id
    if sender.kind == "email":
        return bool(
            sender.email and customer_email and sender.email.strip().lower() == customer_email.lower()
        )
    return False


async def gather_gates(deps: RouterDeps, msg: ContactReceivedV1, diagnosis: DiagnosisView | None) -> Gates:
    row = await deps.pool.fetchrow(
        "SELECT email, plan_tier, risk_flags FROM customers WHERE id = $1", msg.customer_id
    )
    mirror_email = await deps.pool.fetchval(
        "SELECT email FROM stripe_customers WHERE id = $1", msg.customer_id
    )
    email = (row["email"] if row else None) or mirror_email
    plan = (diagnosis.evidence.get("plan") or {}).get("tier") if diagnosis else None
    plan = plan or (row["plan_tier"] if row else None)
    risk = (row["risk_flags"] if row else None) or {}
    repeats = await deps.pool.fetchval(
        """SELECT count(*) FROM contacts WHERE customer_id=$1 AND contact_id <> $2
           AND started_at > now() - make_interval(days => $3)""",
        msg.customer_id,
        msg.contact_id,
        deps.repeat_window_days,
    )
    dispute_open = bool(
        diagnosis
        and (
            diagnosis.root_cause == RootCause.DISPUTE_OPEN
            or RootCause.DISPUTE_OPEN in diagnosis.secondary_causes
        )
    )
    fraud = fraud_flagged(risk) or bool(diagnosis and diagnosis.root_cause in FRAUD_CAUSES)
    return Gates(
        customer_found=diagnosis is not None,
        sender_authorized=sender_authorized(msg, email),
        plan=plan,
        dispute_open=dispute_open,
        fraud_signal=fraud,
        repeat_contacts_7d=int(repeats or 0),
        enterprise=plan == "enterprise",
    )


async def diagnose_or_none(deps: RouterDeps, customer_id: str, contact_id: str) -> DiagnosisView | None:
    try:
        return await deps.diagnostics.diagnose(customer_id, contact_id=contact_id)
    except LookupError:
        return None


async def on_contact_received(deps: RouterDeps, msg: ContactReceivedV1) -> None:
    if await deps.inbox.seen(msg.message_id):
        log.info("router.duplicate_skipped", contact_id=msg.contact_id)
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
    prediction: Any = (await asyncio.to_thread(deps.classifier.predict, [msg.payload.text]))[0]
    diagnosis = await diagnose_or_none(deps, msg.customer_id, msg.contact_id)
    gates = await gather_gates(deps, msg, diagnosis)
    decision = decide_route(
        prediction.intent,
        prediction.confidence,
        gates,
        diagnosis.root_cause if diagnosis else None,
        diagnosis.recommended_action if diagnosis else None,
        deps.classifier.threshold,
    )
    await set_contact_intent(deps.pool, msg.contact_id, prediction.intent.value, float(prediction.confidence))
    await audit(
        deps.broker,
        cause=msg,
        actor="router",
        action="route",
        target=decision.topic,
        decision=decision.tier.value,
        details={
            "intent": prediction.intent.value,
            "confidence": round(float(prediction.confidence), 4),
            "reason": decision.reason,
            "gates": gates.model_dump(),
        },
    )
    log.info(
        "router.routed",
        intent=prediction.intent.value,
        confidence=round(float(prediction.confidence), 3),
        tier=decision.tier.value,
        reason=decision.reason,
    )
    await hand_on(deps, msg, prediction, diagnosis, decision)
    await deps.inbox.mark(msg.message_id)


async def hand_on(
    deps: RouterDeps, msg: ContactReceivedV1, prediction: Any, diagnosis: DiagnosisView | None, decision: Any
) -> None:
    intent: Intent = prediction.intent
    candidates = [IntentCandidate(intent=i, confidence=float(c)) for i, c in prediction.candidates]
    if decision.tier == Tier.TIER1 and decision.selfheal_action is not None:
        await publish(
            deps.broker,
            SelfhealRequestedV1.build(
                SelfhealRequestedPayload(
                    action=decision.selfheal_action,
                    source="router",
                    sender=msg.payload.sender,
                    intent=intent,
                    text=msg.payload.text,
                    diagnosis=diagnosis,
                ),
                contact_id=msg.contact_id,
                customer_id=msg.customer_id,
                cause=msg,
            ),
        )
    elif decision.tier in (Tier.TIER1, Tier.TIER2):
        await publish(
            deps.broker,
            AgentRequestedV1.build(
                AgentRequestedPayload(
                    text=msg.payload.text,
                    channel=msg.payload.channel,
                    intent=intent,
                    confidence=float(prediction.confidence),
                    candidates=candidates,
                    diagnosis=diagnosis,
                    handoff_reason=decision.reason,
                    tier_path=[],
                ),
                contact_id=msg.contact_id,
                customer_id=msg.customer_id,
                cause=msg,
            ),
        )
    else:
        assert decision.escalation_reason is not None
        await escalate(
            deps.broker,
            cause=msg,
            payload=EscalationOpenedPayload(
                reason=decision.escalation_reason,
                opened_by="router",
                intent=intent,
                text=msg.payload.text,
                plan=(diagnosis.evidence.get("plan") or {}).get("tier") if diagnosis else None,
                diagnosis=diagnosis,
                transcript=[Turn(role="customer", text=msg.payload.text)],
                suggested_next_step=_next_step(decision.escalation_reason.value, diagnosis),
                tier_path=[],
                contact_started_at=msg.occurred_at,
            ),
        )


def _next_step(reason: str, diagnosis: DiagnosisView | None) -> str:
    steps = {
        "customer_asked": "The customer asked for a person: reply personally; the diagnosis is attached.",
        "fraud": "Possible fraud or compromised card: verify identity, block the card, "
        "no retries or refunds.",
        "dispute": "An open dispute blocks financial actions: respond through the dispute process.",
        "out_of_scope": "Not a billing question: hand on to general support.",
        "policy_denied": "The sender could not be verified for this account: verify identity before acting.",
    }
    base = steps.get(reason, "Review the case.")
    if diagnosis is not None and diagnosis.recommended_action not in (None, Action.ESCALATE):
        base += f" Diagnosis suggests: {diagnosis.recommended_action.value}."
    return base
