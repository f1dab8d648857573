"""Router: validate, classify, diagnose, decide (a table), hand on. Never acts itself."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from schemas import HealthStatus, Intent, Tier
from schemas.messages import (
    AgentRequestedPayload,
    AgentRequestedV1,
    Choice,
    ContactReceivedV1,
    DiagnosisView,
    EscalationOpenedPayload,
    EscalationOpenedV1,
    IntentCandidate,
    OutcomeRecordedPayload,
    SelfhealRequestedPayload,
    SelfhealRequestedV1,
    Turn,
)
from schemas.vocab import Action, EscalationReason, RootCause
from services.router.clarify import (
    PendingQuestion,
    clarifying_question,
    question_intents,
    read_reply,
    unclear_after_question,
)
from services.router.domain import (
    ClauseReading,
    Gates,
    MessageReading,
    decide_route,
    read_message,
    reading_for_choice,
    reading_threshold,
    route_for_language,
    secondary_actions,
)
from services.router.ports import Classifier, Diagnostics
from tierline.billing.facts import (
    CustomerFacts,
    FactsRepository,
    PostgresFacts,
    dispute_open,
    fraud_signal,
    load_many,
    plan_of,
)
from tierline.clarify_words import CLARIFY_SUMMARY_PREFIX
from tierline.conversations import (
    ConversationMismatch,
    attach_contact,
    get_conversation,
    history,
    open_conversation,
    record_customer_turn,
    say,
)
from tierline.guardrails import INJECTION_FLAG, detect_injection
from tierline.language import LanguageGuess, detect_language
from tierline.messaging import DeadLetterRouter, Inbox, PendingPublishes, publish, run_in_key_order
from tierline.pipeline import audit, escalate, record_outcome, set_contact_intent, start_contact
from tierline.textprep import clean_text, split_asks

log = structlog.get_logger(__name__)

#: A clarifying question's outcome summary starts with this (the report and the demo count them by it).


@dataclass
class RouterDeps:
    pool: asyncpg.Pool
    broker: KafkaBroker
    classifier: Classifier
    diagnostics: Diagnostics
    inbox: Inbox
    repeat_window_days: int = 7
    #: The customer's policy facts (one query); ``None``: the billing core's Postgres repository on ``pool``.
    facts: FactsRepository | None = None


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
    """The router's gates: one read of the billing core's facts repository, derived with the same dispute
    and fraud rules as the policy's context (``tierline.billing.facts``)."""
    return gates_from_facts(msg, await _facts_of(deps, msg), diagnosis)


async def _facts_of(deps: RouterDeps, msg: ContactReceivedV1) -> CustomerFacts:
    repository = deps.facts if deps.facts is not None else PostgresFacts(deps.pool)
    return await repository.load(
        msg.customer_id, contact_id=msg.contact_id, repeat_window_days=deps.repeat_window_days
    )


def gates_from_facts(msg: ContactReceivedV1, facts: CustomerFacts, diagnosis: DiagnosisView | None) -> Gates:
    plan = plan_of(facts, diagnosis)
    return Gates(
        customer_found=diagnosis is not None,
        sender_authorized=sender_authorized(msg, facts.email),
        plan=plan,
        dispute_open=dispute_open(facts, diagnosis),
        fraud_signal=fraud_signal(facts, diagnosis),
        repeat_contacts_7d=facts.repeat_contacts,
        enterprise=plan == "enterprise",
    )


async def diagnose_or_none(deps: RouterDeps, customer_id: str, contact_id: str) -> DiagnosisView | None:
    try:
        return await deps.diagnostics.diagnose(customer_id, contact_id=contact_id)
    except LookupError:
        return None


#: A subject that only answers an earlier message ("Re: charged twice") names the thread's old topic.
_REPLY_SUBJECT = re.compile(
    r"^\s*(?:re|aw|sv|vs|r|rif|res|fw|fwd|wg|tr|enc)\s*(?:\[\d+\])?\s*:", re.IGNORECASE
)


def customer_words(msg: ContactReceivedV1) -> str:
    """What the router reads: the text, behind a new email's subject ("Invoice for March" over "Hi, see
    the subject. Thanks"). A reply's or forward's subject names an earlier topic and is left out."""
    subject = " ".join((msg.payload.subject_line or "").split())
    if not subject or _REPLY_SUBJECT.match(subject) or subject.lower() in msg.payload.text.lower():
        return msg.payload.text
    stop = "" if subject[-1] in ".?!" else "."
    return f"{subject}{stop}\n\n{msg.payload.text}"


def classify_message(classifier: Classifier, text: str) -> tuple[str, list[str], list[Any]]:
    """The cleaned text, its clauses, and the classifier's reading of each (one batched call)."""
    return classify_messages(classifier, [text])[0]


def classify_messages(classifier: Classifier, texts: Sequence[str]) -> list[tuple[str, list[str], list[Any]]]:
    """Each text's cleaned form, its clauses and the classifier's reading of each: ONE classifier call
    (one encoder pass) for all the texts of a batch."""
    parts: list[tuple[str, list[str]]] = []
    inputs: list[str] = []
    for text in texts:
        cleaned = clean_text(text)  # the customer's new words: no quotes, signature, greeting
        clauses = split_asks(cleaned)
        parts.append((cleaned, clauses))
        inputs.extend([cleaned, *clauses])
    predictions = list(classifier.predict(inputs)) if inputs else []
    out: list[tuple[str, list[str], list[Any]]] = []
    start = 0
    for cleaned, clauses in parts:
        end = start + 1 + len(clauses)
        out.append((cleaned, clauses, predictions[start:end]))
        start = end
    return out


def acting_threshold(deps: RouterDeps, reading: MessageReading) -> float:
    """The confidence ``reading`` needs to be acted on: a money-moving intent's own calibrated threshold
    (``intent_thresholds`` in the model's meta.json), else the model's."""
    own: dict[Intent, float] = getattr(deps.classifier, "intent_thresholds", {})  # fakes may have none
    return reading_threshold(reading.intent, reading.reason, deps.classifier.threshold, own)


def read_contact(
    cleaned: str,
    clauses: list[str],
    predictions: list[Any],
    threshold: float,
    diagnosis: DiagnosisView | None,
) -> MessageReading:
    """The main intent and the further asks, with the diagnosis for a vague text."""
    whole = predictions[0]
    return read_message(
        cleaned,
        whole.intent,
        float(whole.confidence),
        [
            ClauseReading(text=t, intent=p.intent, confidence=float(p.confidence))
            for t, p in zip(clauses, predictions[1:], strict=True)
        ],
        threshold,
        diagnosis_red=bool(diagnosis and diagnosis.status == HealthStatus.RED),
        root_cause=diagnosis.root_cause if diagnosis else None,
    )


@dataclass(frozen=True)
class Prepared:
    """What a batch's prologue read for one contact: its text's reading (one encoder pass for the whole
    batch) and its customer's facts (one statement for the whole batch)."""

    cleaned: str
    clauses: list[str]
    predictions: list[Any]
    facts: CustomerFacts


async def on_contact_received(deps: RouterDeps, msg: ContactReceivedV1) -> None:
    """One contact: a batch of one (errors propagate to the caller's retry)."""
    await on_contacts_received(deps, [(msg, None)])


async def on_contacts_received(
    deps: RouterDeps,
    items: Sequence[tuple[ContactReceivedV1, Any]],
    dead_letters: DeadLetterRouter | None = None,
) -> int:
    """A batch of contacts (each with its Kafka record, or ``None``), in log order.

    One statement finds the contacts handled already (the inbox), one classifier call reads every text,
    one statement reads every customer's facts; then each customer's contacts are routed one after the
    other in log order and different customers at the same time. The batch's publishes are awaited
    together, then one statement marks the batch in the inbox, then the caller commits the offsets: a
    crash anywhere before redelivers the batch, which publishes identical messages (derived ids).
    With ``dead_letters``, a contact that keeps failing is dead-lettered alone and the rest go on.
    Returns the number of contacts routed."""
    first: dict[Any, tuple[ContactReceivedV1, Any]] = {}
    for msg, raw in items:
        if msg.message_id in first:
            log.info("router.duplicate_skipped", contact_id=msg.contact_id)
        first.setdefault(msg.message_id, (msg, raw))
    seen = await deps.inbox.seen_many(list(first))
    for message_id in seen:
        log.info("router.duplicate_skipped", contact_id=first[message_id][0].contact_id)
    todo = [item for message_id, item in first.items() if message_id not in seen]
    if not todo:
        return 0
    readings = await asyncio.to_thread(
        classify_messages, deps.classifier, [customer_words(msg) for msg, _ in todo]
    )
    facts = await batch_facts(deps, [msg for msg, _ in todo])
    prepared = {
        msg.message_id: Prepared(cleaned, clauses, predictions, facts[msg.message_id])
        for (msg, _), (cleaned, clauses, predictions) in zip(todo, readings, strict=True)
    }
    routed: list[Any] = []

    async def one(item: tuple[ContactReceivedV1, Any]) -> None:
        msg, raw = item

        async def run() -> None:
            with structlog.contextvars.bound_contextvars(contact_id=msg.contact_id):
                await route_contact(deps, msg, prepared[msg.message_id])

        if dead_letters is None:
            await run()
            routed.append(msg.message_id)
        elif await dead_letters.handle_one(raw, run):
            routed.append(msg.message_id)

    async with PendingPublishes() as pending:
        await run_in_key_order(todo, lambda item: item[0].customer_id, one)
        await pending.confirm()
    await deps.inbox.mark_many(routed)
    return len(routed)


async def batch_facts(deps: RouterDeps, messages: Sequence[ContactReceivedV1]) -> dict[Any, CustomerFacts]:
    """Each contact's customer facts, read for the whole batch in one statement. A repeat contact is one
    of the customer's other contacts in the window, as if the batch were handled one contact at a time:
    the ones on record before the batch and the batch's earlier ones."""
    repository = deps.facts if deps.facts is not None else PostgresFacts(deps.pool)
    by_customer = await load_many(
        repository,
        [m.customer_id for m in messages],
        contact_ids=[m.contact_id for m in messages],
        repeat_window_days=deps.repeat_window_days,
    )
    window_start = datetime.now(UTC) - timedelta(days=deps.repeat_window_days)
    earlier: dict[str, set[str]] = {}
    out: dict[Any, CustomerFacts] = {}
    for m in messages:
        before = earlier.setdefault(m.customer_id, set())
        base = by_customer[m.customer_id]
        out[m.message_id] = (
            replace(base, repeat_contacts=base.repeat_contacts + len(before - {m.contact_id}))
            if before
            else base
        )
        if m.occurred_at > window_start:
            before.add(m.contact_id)
    return out


async def route_contact(deps: RouterDeps, msg: ContactReceivedV1, prepared: Prepared) -> None:
    """Route one contact whose batch's prologue read its text and its facts (see ``on_contacts_received``)."""
    await start_contact(
        deps.pool,
        contact_id=msg.contact_id,
        customer_id=msg.customer_id,
        trigger="contact",
        channel=msg.payload.channel.value,
        started_at=msg.occurred_at,
    )
    conversation_id, earlier = await join_conversation(deps, msg)
    if await held_by_person(deps, conversation_id):
        await follow_up_to_person(deps, msg, conversation_id, earlier)
        return
    question = await pending_question(deps.pool, conversation_id, msg.contact_id)
    cleaned, clauses, predictions = prepared.cleaned, prepared.clauses, prepared.predictions
    prediction = predictions[0]
    diagnosis = await diagnose_or_none(deps, msg.customer_id, msg.contact_id)
    facts = prepared.facts
    if diagnosis is not None and not (facts.in_store or facts.in_mirror):
        # the batch read the facts before this diagnosis; a customer the mirror did not know yet is in it
        # now (the diagnosis read Stripe live): read again, or an email from the address on file is refused
        facts = await _facts_of(deps, msg)
    gates = gates_from_facts(msg, facts, diagnosis)
    root_cause = diagnosis.root_cause if diagnosis else None
    recommended = diagnosis.recommended_action if diagnosis else None
    reading = read_contact(cleaned, clauses, predictions, deps.classifier.threshold, diagnosis)
    reading = reading_for_choice(reading, msg.payload.choice)  # a clicked "talk to a human" is one
    replied = read_reply(question, msg.payload.choice, cleaned, reading, acting_threshold(deps, reading))
    reading = replied or reading  # None: a second unclear turn, a person takes it
    decision = (
        decide_route(
            reading.intent,
            reading.confidence,
            gates,
            root_cause,
            recommended,
            acting_threshold(deps, reading),
        )
        if replied is not None
        else unclear_after_question()
    )
    language = detect_language(cleaned)  # a language tierline does not read goes to a person
    decision = route_for_language(decision, language.supported)
    flags = await guard_text(deps, msg)
    offered = (
        question_intents(prediction.candidates, decision, reading, flagged=bool(flags))
        if question is None
        else ()  # never a second question: an unclear answer goes to a person
    )
    extra = secondary_actions(reading, decision.selfheal_action, root_cause, recommended)
    await set_contact_intent(deps.pool, msg.contact_id, reading.intent.value, float(reading.confidence))
    await audit(
        deps.broker,
        cause=msg,
        actor="router",
        action="route",
        target=decision.topic,
        decision=decision.tier.value,
        details={
            "intent": reading.intent.value,
            "confidence": round(float(reading.confidence), 4),
            "reason": decision.reason,
            "reading": reading.reason,
            "secondary_intents": [i.value for i in reading.secondary_intents],
            "secondary_actions": [a.value for a in extra],
            "language": language.code,
            "gates": gates.model_dump(),
            "clarify": [i.value for i in offered],
            "answers_question": question is not None,
        },
    )
    log.info(
        "router.routed",
        intent=reading.intent.value,
        confidence=round(float(reading.confidence), 3),
        tier=decision.tier.value,
        reason=decision.reason,
        reading=reading.reason,
        secondary_intents=[i.value for i in reading.secondary_intents],
        language=language.code,
    )
    if offered:
        await ask_question(deps, msg, offered, reading, root_cause, language)
        return
    await hand_on(
        deps,
        msg,
        prediction,
        diagnosis,
        decision,
        reading,
        extra,
        flags=flags,
        language=language,
        conversation_id=conversation_id,
        earlier=earlier,
        answers_question=question is not None,
    )


async def pending_question(
    pool: asyncpg.Pool, conversation_id: str, contact_id: str
) -> PendingQuestion | None:
    """The clarifying question this contact's message answers: the conversation's last turn before the
    message, when that turn is a question (a customer turn in between means it was answered already)."""
    row = await pool.fetchrow(
        """SELECT kind, choices FROM conversation_turns
           WHERE conversation_id = $1 AND seq < coalesce(
               (SELECT min(seq) FROM conversation_turns
                 WHERE conversation_id = $1 AND contact_id = $2 AND role = 'customer'),
               9223372036854775807)
           ORDER BY seq DESC LIMIT 1""",
        conversation_id,
        contact_id,
    )
    if row is None or row["kind"] != "clarifying_question":
        return None
    raw = json.loads(row["choices"]) if isinstance(row["choices"], str) else list(row["choices"] or [])
    return PendingQuestion(choices=tuple(Choice.model_validate(c) for c in raw))


async def ask_question(
    deps: RouterDeps,
    msg: ContactReceivedV1,
    offered: tuple[Intent, ...],
    reading: MessageReading,
    root_cause: RootCause | None,
    language: LanguageGuess,
) -> None:
    """Ask the customer which ask it is (one question, with choices). The contact's outcome is that answer:
    an automated reply (no action), so nothing waits on it; the customer's reply is a contact of its own."""
    text, choices = clarifying_question(offered, language.code)
    await say(
        deps.broker,
        deps.pool,
        contact_id=msg.contact_id,
        customer_id=msg.customer_id,
        kind="clarifying_question",
        text=text,
        author="router",
        cause=msg,
        choices=choices,
        language=language.code,
    )
    await audit(
        deps.broker,
        cause=msg,
        actor="router",
        action="clarify.asked",
        decision="asked",
        details={"offered": [i.value for i in offered], "language": language.code},
    )
    log.info("router.clarify.asked", offered=[i.value for i in offered], language=language.code)
    await record_outcome(
        deps.pool,
        deps.broker,
        cause=msg,
        payload=OutcomeRecordedPayload(
            resolved_by=Tier.TIER2,
            tier_path=[],
            intent=reading.intent,
            root_cause=root_cause,
            actions=[],
            channel=msg.payload.channel,
            trigger="contact",
            summary=f"{CLARIFY_SUMMARY_PREFIX} {text}"[:1000],
        ),
    )


async def join_conversation(deps: RouterDeps, msg: ContactReceivedV1) -> tuple[str, list[Turn]]:
    """The conversation the message continues (or a new one named after the contact), with the customer's
    message stored as a turn and the turns before it. A conversation id of another customer is never
    joined: the message starts a conversation of its own."""
    wanted = msg.payload.conversation_id or msg.contact_id
    sender_email = msg.payload.sender.email if msg.payload.sender.kind == "email" else None
    try:
        conversation = await open_conversation(
            deps.pool,
            conversation_id=wanted,
            customer_id=msg.customer_id,
            channel=msg.payload.channel,
            subject=msg.payload.subject_line,
            customer_email=sender_email,
        )
    except ConversationMismatch:
        log.warning("router.conversation_mismatch", conversation_id=wanted)
        conversation = await open_conversation(
            deps.pool,
            conversation_id=msg.contact_id,
            customer_id=msg.customer_id,
            channel=msg.payload.channel,
            subject=msg.payload.subject_line,
            customer_email=sender_email,
        )
    cid = conversation.conversation_id
    await attach_contact(deps.pool, contact_id=msg.contact_id, conversation_id=cid)
    await record_customer_turn(
        deps.pool,
        conversation_id=cid,
        message_id=msg.message_id,
        contact_id=msg.contact_id,
        text=msg.payload.text,
    )
    earlier = await history(deps.pool, cid, before_contact=msg.contact_id)
    return cid, earlier


async def held_by_person(deps: RouterDeps, conversation_id: str) -> bool:
    """A person holds the conversation (an open case: its status is ``with_human``)."""
    conversation = await get_conversation(deps.pool, conversation_id)
    return conversation is not None and conversation.status == "with_human"


async def follow_up_to_person(
    deps: RouterDeps, msg: ContactReceivedV1, conversation_id: str, earlier: list[Turn]
) -> None:
    """A follow-up in a conversation a person holds goes to that person, not through the tiers again.

    The router says so with an escalation of reason ``customer_asked`` that names the conversation;
    tier 3 finds the conversation's open case and adds the message to it (a ``customer_reply`` action
    and the transcript) instead of opening another. If the case was resolved meanwhile, tier 3 opens
    one for this contact: never a dead end."""
    flags = await guard_text(deps, msg)
    language = detect_language(clean_text(msg.payload.text))
    await audit(
        deps.broker,
        cause=msg,
        actor="router",
        action="route",
        target=EscalationOpenedV1.TOPIC,
        decision=Tier.TIER3.value,
        details={"reason": "follow_up_with_human", "conversation_id": conversation_id},
    )
    log.info("router.follow_up_to_person", conversation_id=conversation_id)
    await escalate(
        deps.broker,
        cause=msg,
        payload=EscalationOpenedPayload(
            reason=EscalationReason.CUSTOMER_ASKED,
            opened_by="router",
            text=msg.payload.text,
            transcript=[*earlier, Turn(role="customer", text=msg.payload.text)],
            suggested_next_step="The customer followed up in a conversation you hold: reply there.",
            tier_path=[],
            contact_started_at=msg.occurred_at,
            flags=flags,
            language=language.code,
            conversation_id=conversation_id,
        ),
    )


async def guard_text(deps: RouterDeps, msg: ContactReceivedV1) -> list[str]:
    """The guardrail's flags for the whole text as received (quotes and signature included), computed
    where it enters; every tier request and escalation carries them to the policy."""
    finding = detect_injection(msg.payload.text)
    if finding is None:
        return []
    log.warning("router.guardrail.flagged", category=finding.category, rule=finding.rule)
    await audit(
        deps.broker,
        cause=msg,
        actor="router",
        action="guardrail.injection_detected",
        decision="flagged",
        details={"category": finding.category, "rule": finding.rule},
    )
    return [INJECTION_FLAG]


async def hand_on(
    deps: RouterDeps,
    msg: ContactReceivedV1,
    prediction: Any,
    diagnosis: DiagnosisView | None,
    decision: Any,
    reading: MessageReading | None = None,
    extra: list[Action] | None = None,
    *,
    flags: list[str] | None = None,
    language: LanguageGuess | None = None,
    conversation_id: str | None = None,
    earlier: list[Turn] | None = None,
    answers_question: bool = False,
) -> None:
    code = language.code if language is not None else None
    intent: Intent = reading.intent if reading is not None else prediction.intent
    confidence = float(reading.confidence if reading is not None else prediction.confidence)
    secondary = list(reading.secondary_intents) if reading is not None else []
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
                    secondary_intents=secondary,
                    secondary_actions=list(extra or []),
                    flags=list(flags or []),
                    language=code,
                    conversation_id=conversation_id,
                    history=list(earlier or []),
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
                    confidence=confidence,
                    candidates=candidates,
                    diagnosis=diagnosis,
                    handoff_reason=decision.reason,
                    tier_path=[],
                    answers_question=answers_question,
                    secondary_intents=secondary,
                    secondary_actions=list(extra or []),
                    flags=list(flags or []),
                    language=code,
                    conversation_id=conversation_id,
                    history=list(earlier or []),
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
                transcript=[*(earlier or []), Turn(role="customer", text=msg.payload.text)],
                suggested_next_step=_next_step(decision.escalation_reason.value, diagnosis, language),
                tier_path=[],
                contact_started_at=msg.occurred_at,
                flags=list(flags or []),
                language=code,
                conversation_id=conversation_id,
            ),
        )


def _next_step(reason: str, diagnosis: DiagnosisView | None, language: LanguageGuess | None = None) -> str:
    steps = {
        "customer_asked": "The customer asked for a person: reply personally; the diagnosis is attached.",
        "fraud": "Possible fraud or compromised card: verify identity, block the card, "
        "no retries or refunds.",
        "dispute": "An open dispute blocks financial actions: respond through the dispute process.",
        "out_of_scope": "Not a billing question: hand on to general support.",
        "policy_denied": "The sender could not be verified for this account: verify identity before acting.",
        "account_access": "Sign-in, password, 2FA or account email: verify the person's identity, then "
        "help them in the product's admin tools; never change the login on an unverified request.",
    }
    base = steps.get(reason, "Review the case.")
    if language is not None and not language.supported:
        base = (
            f"Written in {language.name}, a language tierline does not read: have it read "
            f"and reply in {language.name}."
        ) + ("" if reason == "out_of_scope" else f" {base}")
    if diagnosis is not None and diagnosis.recommended_action not in (None, Action.ESCALATE):
        base += f" Diagnosis suggests: {diagnosis.recommended_action.value}."
    return base
