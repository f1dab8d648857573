"""Tier 3 decisions: triage (priority, SLA, queue), the terminal outcome of a handoff, case transitions.

Pure: no asyncpg, faststream or HTTP imports. Everything here returns values tests can assert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from schemas import Tier, derived_id
from schemas.messages import DeadLetterPayload, EscalationOpenedPayload, OutcomeRecordedPayload
from schemas.vocab import Action, EscalationReason


class Queue(StrEnum):
    BILLING = "billing"
    RISK = "risk"
    ENTERPRISE = "enterprise"
    OPS = "ops"


class CaseStatus(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"


# --------------------------------------------------------------------------- triage table
@dataclass(frozen=True)
class ReasonRule:
    """Base priority (1 = most urgent, 4 = least) and queue for an escalation reason."""

    priority: int
    queue: Queue


#: Escalation reason -> base priority and queue. Fraud and disputes are the most urgent and go to risk.
REASON_RULES: dict[str, ReasonRule] = {
    EscalationReason.FRAUD: ReasonRule(1, Queue.RISK),
    EscalationReason.DISPUTE: ReasonRule(1, Queue.RISK),
    EscalationReason.REFUND_OVER_POLICY: ReasonRule(2, Queue.BILLING),
    EscalationReason.ERROR: ReasonRule(2, Queue.BILLING),
    EscalationReason.POLICY_DENIED: ReasonRule(3, Queue.BILLING),
    EscalationReason.CUSTOMER_ASKED: ReasonRule(3, Queue.BILLING),
    EscalationReason.LOW_CONFIDENCE: ReasonRule(3, Queue.BILLING),
    EscalationReason.OUT_OF_SCOPE: ReasonRule(4, Queue.BILLING),
    # the automation would have moved money but operators paused it: the customer waits on a person
    EscalationReason.MONEY_PAUSED: ReasonRule(2, Queue.BILLING),
    "dead_letter": ReasonRule(2, Queue.OPS),
}

#: Plans whose contacts move up one priority step and (unless risk) to the enterprise queue.
PRIORITY_PLANS: frozenset[str] = frozenset({"enterprise", "business"})

#: (amount at or above, steps up). The first matching row applies.
AMOUNT_STEPS: tuple[tuple[float, int], ...] = ((1000.0, 2), (200.0, 1))

#: A contact already this old when it reaches a human moves up one step.
AGE_STEP_AFTER = timedelta(hours=24)

#: Priority -> time to resolution.
SLA_BY_PRIORITY: dict[int, timedelta] = {
    1: timedelta(hours=1),
    2: timedelta(hours=4),
    3: timedelta(hours=24),
    4: timedelta(hours=72),
}


@dataclass(frozen=True)
class Triage:
    priority: int
    queue: Queue
    sla_due_at: datetime
    factors: tuple[str, ...]


def triage(
    reason: str,
    *,
    plan: str | None,
    amount_usd: float,
    contact_started_at: datetime | None,
    now: datetime,
) -> Triage:
    """Priority, queue and SLA due time of a new case, from the data tables above."""
    rule = REASON_RULES.get(reason, ReasonRule(3, Queue.BILLING))
    priority, queue = rule.priority, rule.queue
    factors = [f"reason:{reason}=P{rule.priority}"]
    if plan and plan.lower() in PRIORITY_PLANS:
        priority -= 1
        factors.append(f"plan:{plan.lower()}")
        if queue is Queue.BILLING:
            queue = Queue.ENTERPRISE
    for threshold, steps in AMOUNT_STEPS:
        if amount_usd >= threshold:
            priority -= steps
            factors.append(f"amount>={threshold:g}")
            break
    if contact_started_at is not None and now - contact_started_at >= AGE_STEP_AFTER:
        priority -= 1
        factors.append("age>=24h")
    priority = max(1, min(4, priority))
    return Triage(priority, queue, now + SLA_BY_PRIORITY[priority], tuple(factors))


def case_id_for(contact_id: str) -> str:
    """The one case id of a contact (deterministic: a redelivered escalation maps to the same case)."""
    return f"case_{derived_id('tier3-case', contact_id).hex[:20]}"


# --------------------------------------------------------------------------- terminal outcome
def handoff_outcome(packet: EscalationOpenedPayload) -> OutcomeRecordedPayload:
    """The contact's terminal outcome once a human has it: resolved_by tier3, with what was done before."""
    succeeded = [a for a in packet.actions_tried if a.status == "succeeded"]
    actions = [a.action for a in succeeded if a.action is not Action.ESCALATE] + [Action.ESCALATE]
    refund = round(sum(a.amount_usd for a in succeeded if a.action is Action.REFUND), 2)
    tier_path = [t for t in packet.tier_path if t is not Tier.TIER3] + [Tier.TIER3]
    return OutcomeRecordedPayload(
        resolved_by=Tier.TIER3,
        tier_path=tier_path,
        intent=packet.intent,
        root_cause=packet.diagnosis.root_cause if packet.diagnosis else None,
        actions=actions,
        refund_usd=refund,
        escalation_reason=packet.reason,
        summary=f"handed to a human: {packet.reason.value}",
    )


# --------------------------------------------------------------------------- transitions
class CaseError(Exception):
    """Base of the case transition errors (each maps to one HTTP status in the console)."""


class CaseNotFound(CaseError):
    pass


class CaseForbidden(CaseError):
    """The agent is not a member of the case's queue."""


class CaseConflict(CaseError):
    """The case is claimed by someone else, or already resolved."""


@dataclass(frozen=True)
class CaseView:
    case_id: str
    queue: str
    status: CaseStatus
    assignee: str | None


def check_access(case: CaseView, agent_queues: frozenset[str]) -> None:
    if case.queue not in agent_queues:
        raise CaseForbidden(f"case {case.case_id} is in queue {case.queue!r}")


def decide_claim(case: CaseView, agent_id: str, agent_queues: frozenset[str]) -> bool:
    """True when the claim changes the case; False when the agent already holds it."""
    check_access(case, agent_queues)
    if case.status is CaseStatus.RESOLVED:
        raise CaseConflict(f"case {case.case_id} is resolved")
    if case.status is CaseStatus.CLAIMED:
        if case.assignee == agent_id:
            return False
        raise CaseConflict(f"case {case.case_id} is claimed by {case.assignee}")
    return True


def require_holder(case: CaseView, agent_id: str, agent_queues: frozenset[str]) -> None:
    """Acting on or resolving a case needs the agent to hold the claim."""
    check_access(case, agent_queues)
    if case.status is CaseStatus.RESOLVED:
        raise CaseConflict(f"case {case.case_id} is resolved")
    if case.status is not CaseStatus.CLAIMED or case.assignee != agent_id:
        raise CaseConflict(f"claim case {case.case_id} first (held by {case.assignee or 'nobody'})")


# --------------------------------------------------------------------------- SLA
@dataclass(frozen=True)
class SlaBreach:
    case_id: str
    overdue_minutes: float
    sla_minutes: float


def sla_breach(
    *, case_id: str, status: str, sla_due_at: datetime, opened_at: datetime, alerted: bool, now: datetime
) -> SlaBreach | None:
    """A breach to announce: unresolved, past due, not announced before."""
    if alerted or status == CaseStatus.RESOLVED or now <= sla_due_at:
        return None
    return SlaBreach(
        case_id=case_id,
        overdue_minutes=round((now - sla_due_at).total_seconds() / 60, 1),
        sla_minutes=round((sla_due_at - opened_at).total_seconds() / 60, 1),
    )


# --------------------------------------------------------------------------- dead letters
#: Topics whose poison messages leave a contact without an outcome unless a human takes it.
CONTACT_FLOW_TOPICS: frozenset[str] = frozenset(
    {
        "contact.received.v1",
        "tier1.selfheal.requested.v1",
        "tier2.agent.requested.v1",
        "tier3.escalation.opened.v1",
        "stripe.event.received.v1",
    }
)


def dead_letter_case_contact(dead_letter_message_id: str) -> str:
    """Dead-letter cases get their own contact key: a contact may already have a regular case."""
    return f"deadletter:{dead_letter_message_id}"


def dead_letter_burst_key(original_topic: str, kind: str) -> str:
    """Dead letters of one topic with one kind of error, close together, are one problem: one case."""
    return f"{original_topic}|{kind}"


def dead_letter_sample(dl: DeadLetterPayload, message_id: str) -> dict[str, Any]:
    """What a burst case keeps of each counted dead letter (the value stays on the dead-letter topic)."""
    return {
        "message_id": message_id,
        "partition": dl.partition,
        "offset": dl.offset,
        "key": dl.key,
        "consumer": dl.consumer,
        "error": dl.error[:300],
        "value_bytes": dl.value_bytes,
    }


def suggested_step_for_dead_letter(error_type: str, original_topic: str) -> str:
    return (
        f"A {original_topic} message could not be processed ({error_type}). Inspect the payload, fix or "
        "replay it, and follow up with the customer if a contact was waiting."
    )


def summarize_packet(packet: dict[str, Any]) -> str:
    """One line for list views."""
    text = (packet.get("text") or packet.get("suggested_next_step") or "").strip().replace("\n", " ")
    return text[:140]


# --------------------------------------------------------------------------- replies to the customer
#: The longest reply a human may send in one turn (a chat turn or an email body, not an essay).
MAX_REPLY_CHARS = 5000

#: What a person tells the customer they do next, per escalation reason (the draft's second paragraph).
NEXT_FOR_REASON: dict[str, str] = {
    EscalationReason.REFUND_OVER_POLICY: "I'm checking the refund you asked for and will confirm it here.",
    EscalationReason.DISPUTE: (
        "There is an open dispute on this payment, so I'm reviewing it before anything else changes."
    ),
    EscalationReason.FRAUD: (
        "For your safety nothing will be charged or retried on this card while I look into it."
    ),
    EscalationReason.POLICY_DENIED: "I'm reviewing your request myself and will confirm what I can do.",
    EscalationReason.CUSTOMER_ASKED: "I'm looking into this personally and will update you here.",
    EscalationReason.LOW_CONFIDENCE: "I'm looking into this personally and will update you here.",
    EscalationReason.OUT_OF_SCOPE: "I'm looking into this personally and will update you here.",
    EscalationReason.ERROR: "Something went wrong on our side; I'm fixing it and will update you here.",
    EscalationReason.MONEY_PAUSED: "I'm handling your request myself and will confirm it here.",
}


class NoConversation(CaseConflict):
    """The case's contact has no conversation to reply in (e.g. a case opened by a Stripe event)."""


class ReplyInvalid(ValueError):
    """A reply that cannot be sent: empty, or longer than `MAX_REPLY_CHARS`."""


def check_reply(text: str) -> str:
    """The reply as it will be sent (trimmed), or `ReplyInvalid`."""
    cleaned = text.strip()
    if not cleaned:
        raise ReplyInvalid("the reply is empty")
    if len(cleaned) > MAX_REPLY_CHARS:
        raise ReplyInvalid(f"the reply has {len(cleaned)} characters; at most {MAX_REPLY_CHARS}")
    return cleaned


def draft_reply(packet: dict[str, Any]) -> str:
    """A customer-facing first draft for the console's reply box, from the packet's diagnosis and reason.

    ``suggested_next_step`` is written for agents and never goes into it; the agent edits the draft."""
    diagnosis = packet.get("diagnosis") or {}
    explanation = str(diagnosis.get("explanation") or "").strip()
    reason = str(packet.get("reason") or "")
    lines = ["Hello,", "", "I'm from the billing team and I've reviewed your account."]
    if explanation:
        lines[-1] += f" {explanation}"
    lines += ["", NEXT_FOR_REASON.get(reason, "I'm looking into this personally and will update you here.")]
    return "\n".join(lines)


def resolution_message(note: str) -> str:
    """What the customer is told when a person resolves their case."""
    return f"Your request is resolved. {note.strip()}"


# --------------------------------------------------------------------------- the handoff status turn
#: "A person is looking at this, expect an answer by <when>", in the languages tierline answers in.
HANDOFF_STATUS: dict[str, str] = {
    "en": "A person from our billing team is looking at this now, with your account details. "
    "You can expect an answer here by {when}.",
    "es": "Una persona de nuestro equipo de facturación está revisando esto ahora, con los datos de su "
    "cuenta. Recibirá una respuesta aquí antes del {when}.",
    "de": "Eine Person aus unserem Abrechnungsteam kümmert sich jetzt darum, mit den Angaben zu Ihrem "
    "Konto. Sie erhalten hier bis {when} eine Antwort.",
    "fr": "Une personne de notre équipe facturation s'en occupe maintenant, avec les informations de votre "
    "compte. Vous aurez une réponse ici avant le {when}.",
    "pt": "Uma pessoa da nossa equipe de cobrança está cuidando disso agora, com os dados da sua conta. "
    "Você terá uma resposta aqui até {when}.",
}


def handoff_status_text(sla_due_at: datetime, language: str | None = None) -> str:
    """The customer's status turn once a person holds their contact: who, and the answer's latest time
    (the case's SLA due time, in UTC), in their language when tierline answers in it, else in English."""
    when = sla_due_at.astimezone(UTC).strftime("%d %b %Y, %H:%M UTC").lstrip("0")
    return HANDOFF_STATUS.get(language or "en", HANDOFF_STATUS["en"]).format(when=when)


def follow_up_outcome(packet: EscalationOpenedPayload, case_id: str) -> OutcomeRecordedPayload:
    """A follow-up added to the conversation's open case: the person holding the case answers it."""
    outcome = handoff_outcome(packet)
    return outcome.model_copy(update={"summary": f"follow-up added to open case {case_id}"})
