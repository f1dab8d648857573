"""Tier 3 handlers: escalations and dead letters become cases; humans claim, act and resolve them.

Each handler reads like a sentence: validate, decide (domain), record (case store), publish.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from schemas import Tier, derived_id
from schemas.messages import (
    ActionRecord,
    AlertPayload,
    AlertRaisedV1,
    CaseResolvedPayload,
    CaseResolvedV1,
    DeadLetterRecordedV1,
    EscalationOpenedV1,
    KnowledgeArticlePayload,
    KnowledgeArticlePublishedV1,
    NotificationRequestedPayload,
    NotificationRequestedV1,
    OutcomeRecordedPayload,
    Turn,
)
from schemas.vocab import Action, EscalationReason
from services.tier3_handoff import approvals, domain
from services.tier3_handoff.adapters.approvals import PostgresApprovalStore
from services.tier3_handoff.adapters.postgres import PostgresCaseStore
from services.tier3_handoff.approvals import Approval, ApprovalStatus
from services.tier3_handoff.ports import Case, HumanActionDenied, HumanActions
from services.tier3_handoff.settings import Tier3Settings
from tierline import conversations, metrics
from tierline.messaging import publish
from tierline.pipeline import CostModel, audit, record_outcome

log = structlog.get_logger(__name__)

ACTOR = "tier3_handoff"


class Tier3Handoff:
    """The service's use cases, shared by the consumers, the console routes and the SLA job."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        broker: KafkaBroker,
        actions: HumanActions,
        settings: Tier3Settings,
        costs: CostModel | None = None,
    ) -> None:
        self.pool = pool
        self.broker = broker
        self.store = PostgresCaseStore(pool)
        self.approvals = PostgresApprovalStore(pool)
        self.actions = actions
        self.settings = settings
        self.costs = costs or CostModel()

    # ------------------------------------------------------------------ consumers
    async def on_escalation_opened(self, msg: EscalationOpenedV1) -> Case:
        """Open the case (once per contact), record the contact's terminal outcome and tell the customer a
        person has it, by when. A contact of a conversation that already has an open case (a follow-up)
        is added to that case instead: one open case per conversation, one handoff turn."""
        packet = msg.payload
        held = await self._held_case(msg)
        if held is not None:
            return await self._add_follow_up(held, msg)
        now = datetime.now(UTC)
        t = domain.triage(
            packet.reason.value,
            plan=packet.plan,
            amount_usd=packet.amount_usd,
            contact_started_at=packet.contact_started_at,
            now=now,
        )
        case = Case(
            case_id=domain.case_id_for(msg.contact_id),
            contact_id=msg.contact_id,
            customer_id=msg.customer_id,
            reason=packet.reason.value,
            priority=t.priority,
            sla_due_at=t.sla_due_at,
            status=domain.CaseStatus.OPEN,
            assignee=None,
            queue=t.queue.value,
            packet={**packet.model_dump(mode="json"), "triage_factors": list(t.factors)},
            source_message_id=str(msg.message_id),
            opened_at=now,
            claimed_at=None,
            resolved_at=None,
            resolution_note=None,
            sla_alerted_at=None,
        )
        inserted = await self.store.insert(case)
        if inserted:
            opened_by = getattr(packet.opened_by, "value", packet.opened_by)
            metrics.ESCALATIONS.labels(packet.reason.value, opened_by).inc()
            log.info(
                "tier3.case.opened",
                contact_id=msg.contact_id,
                case_id=case.case_id,
                priority=t.priority,
                queue=t.queue.value,
                reason=packet.reason.value,
            )
            await audit(
                self.broker,
                cause=msg,
                actor=ACTOR,
                action="case.opened",
                target=case.case_id,
                decision=f"P{t.priority}:{t.queue.value}",
            )
        else:
            log.info("tier3.case.duplicate_escalation", contact_id=msg.contact_id, case_id=case.case_id)
        await record_outcome(
            self.pool, self.broker, cause=msg, payload=domain.handoff_outcome(packet), costs=self.costs
        )
        stored = await self.store.get(case.case_id)
        assert stored is not None, "case vanished after insert"
        await conversations.say(  # once per case: a redelivered or second escalation says nothing new
            self.broker,
            self.pool,
            contact_id=msg.contact_id,
            customer_id=msg.customer_id,
            kind="handoff_status",
            text=domain.handoff_status_text(stored.sla_due_at, packet.language),
            author=ACTOR,
            key=stored.case_id,
            sla_due_at=stored.sla_due_at,
            language=packet.language,
        )
        return stored

    async def _held_case(self, msg: EscalationOpenedV1) -> Case | None:
        """The open case of another contact in this contact's conversation, unless this contact has its
        own case already (a redelivered escalation keeps its case). A note from the notifier (a reply that
        could not be delivered) is not the customer speaking: it opens its own case."""
        if msg.payload.opened_by == "notifier":
            return None
        if await self.store.get_by_contact(msg.contact_id) is not None:
            return None
        conversation_id = msg.payload.conversation_id
        if conversation_id is None:
            conversation = await conversations.conversation_for_contact(self.pool, msg.contact_id)
            conversation_id = conversation.conversation_id if conversation is not None else None
        if conversation_id is None:
            return None
        return await self.store.open_case_in_conversation(
            conversation_id, msg.customer_id, other_than_contact=msg.contact_id
        )

    async def _add_follow_up(self, case: Case, msg: EscalationOpenedV1) -> Case:
        """The customer's follow-up joins the case a person holds (its transcript and a ``customer_reply``
        action); the follow-up contact's outcome names that case. No new case, no second handoff turn."""
        packet = msg.payload
        text = packet.text or ""
        added = await self.store.add_customer_reply(
            case.case_id,
            contact_id=msg.contact_id,
            message_id=str(msg.message_id),
            text=text,
            turn=Turn(role="customer", text=text).model_dump(mode="json"),
        )
        if added:
            log.info("tier3.case.follow_up_added", case_id=case.case_id, contact_id=msg.contact_id)
            await audit(
                self.broker,
                cause=msg,
                actor=ACTOR,
                action="case.follow_up_added",
                target=case.case_id,
                decision=case.status,
            )
        await record_outcome(
            self.pool,
            self.broker,
            cause=msg,
            payload=domain.follow_up_outcome(packet, case.case_id),
            costs=self.costs,
        )
        latest = await self.store.get(case.case_id)
        assert latest is not None
        return latest

    async def on_dead_letter_recorded(self, msg: DeadLetterRecordedV1) -> Case | None:
        """A poison message reaches a human: one `ops` case per burst of the same (topic, error kind),
        counting its dead letters, not one case per record. None for a dead letter seen before."""
        dl = msg.payload
        now = datetime.now(UTC)
        t = domain.triage("dead_letter", plan=None, amount_usd=0.0, contact_started_at=None, now=now)
        contact_key = domain.dead_letter_case_contact(str(msg.message_id))
        burst_key = domain.dead_letter_burst_key(dl.original_topic, dl.error_kind or dl.error_type)
        case = Case(
            case_id=domain.case_id_for(contact_key),
            contact_id=contact_key,
            customer_id=msg.customer_id,
            reason="dead_letter",
            priority=t.priority,
            sla_due_at=t.sla_due_at,
            status=domain.CaseStatus.OPEN,
            assignee=None,
            queue=domain.Queue.OPS.value,
            packet={
                "reason": "dead_letter",
                "original_contact_id": msg.contact_id,
                "dead_letter": dl.model_dump(),
                "text": f"{dl.original_topic}: {dl.error_kind or dl.error_type} "
                f"(first at {dl.partition}:{dl.offset})",
                "suggested_next_step": domain.suggested_step_for_dead_letter(
                    dl.error_type, dl.original_topic
                ),
                "first_seen_at": now.isoformat(),
                "last_seen_at": now.isoformat(),
                "transcript": [],
                "actions_tried": [],
                "policy_decisions": [],
                "tier_path": [],
            },
            source_message_id=str(msg.message_id),
            opened_at=now,
            claimed_at=None,
            resolved_at=None,
            resolution_note=None,
            sla_alerted_at=None,
        )
        recorded = await self.store.record_dead_letter(
            case,
            burst_key=burst_key,
            window_s=self.settings.dead_letter_burst_window_s,
            message_id=str(msg.message_id),
            consumer=f"{ACTOR}.dead_letters",
            sample=domain.dead_letter_sample(dl, str(msg.message_id)),
        )
        if recorded is None:
            log.info("tier3.dead_letter.duplicate", message_id=str(msg.message_id))
            return None
        case_id, opened = recorded
        log.warning(
            "tier3.case.dead_letter_opened" if opened else "tier3.case.dead_letter_counted",
            case_id=case_id,
            topic=dl.original_topic,
            error_kind=dl.error_kind,
            error_type=dl.error_type,
        )
        if dl.original_topic in domain.CONTACT_FLOW_TOPICS and dl.headers.get("contact-id"):
            # The contact was waiting on the poisoned message: a human now owns it (never a dead end).
            await record_outcome(
                self.pool,
                self.broker,
                cause=msg,
                costs=self.costs,
                payload=OutcomeRecordedPayload(
                    resolved_by=Tier.TIER3,
                    tier_path=[Tier.TIER3],
                    actions=[Action.ESCALATE],
                    escalation_reason=EscalationReason.ERROR,
                    summary=f"poison message on {dl.original_topic}",
                ),
            )
        return await self.store.get(case_id)

    # ------------------------------------------------------------------ console use cases
    async def visible_case(self, case_id: str, agent_queues: frozenset[str]) -> Case:
        case = await self.store.get(case_id)
        if case is None:
            raise domain.CaseNotFound(case_id)
        domain.check_access(_view(case), agent_queues)
        return case

    async def claim(self, case_id: str, agent_id: str, agent_queues: frozenset[str]) -> Case:
        case = await self.visible_case(case_id, agent_queues)
        if domain.decide_claim(_view(case), agent_id, agent_queues):
            if not await self.store.claim(case_id, agent_id):
                latest = await self.store.get(case_id)
                assert latest is not None
                domain.decide_claim(_view(latest), agent_id, agent_queues)  # raises the conflict
            log.info("tier3.case.claimed", case_id=case_id, agent_id=agent_id)
            await audit(
                self.broker,
                cause=self._cause(case),
                actor=f"agent:{agent_id}",
                action="case.claimed",
                target=case_id,
            )
        latest = await self.store.get(case_id)
        assert latest is not None
        return latest

    async def act(
        self,
        case_id: str,
        agent_id: str,
        agent_queues: frozenset[str],
        *,
        kind: str,
        note: str,
        params: dict[str, Any],
    ) -> dict[str, Any]:
        """Record a human action on a held case (a note, or a tool call through the HumanActions port)."""
        case = await self.visible_case(case_id, agent_queues)
        domain.require_holder(_view(case), agent_id, agent_queues)
        record: ActionRecord | None = None
        decision = "noted"
        target = f"{case_id}/action/{len(await self.store.actions(case_id)) + 1}"
        try:
            if kind == "refund":
                record = await self.actions.refund(
                    case,
                    agent_id=agent_id,
                    charge_id=str(params["charge_id"]),
                    amount_usd=float(params["amount_usd"]),
                    note=note,
                )
            elif kind == "retry_payment":
                record = await self.actions.retry_payment(
                    case, agent_id=agent_id, invoice_id=str(params["invoice_id"]), note=note
                )
            elif kind == "send_update_card_link":
                record = await self.actions.send_update_card_link(case, agent_id=agent_id, note=note)
            elif kind != "note":
                raise UnknownHumanAction(kind)
        except HumanActionDenied as exc:
            decision = f"denied: {exc}"
            await self.store.add_action(
                case_id, agent_id, kind, note, {"status": "denied", "detail": str(exc)}
            )
            await audit(
                self.broker,
                cause=self._cause(case),
                actor=f"agent:{agent_id}",
                action=f"case.{kind}",
                target=target,
                decision="denied",
                details={"reason": str(exc)},
            )
            raise
        if record is not None:
            decision = record.status
        await self.store.add_action(
            case_id, agent_id, kind, note, record.model_dump(mode="json") if record else None
        )
        await audit(
            self.broker,
            cause=self._cause(case),
            actor=f"agent:{agent_id}",
            action=f"case.{kind}",
            target=target,
            decision=decision,
        )
        log.info("tier3.case.acted", case_id=case_id, agent_id=agent_id, kind=kind, decision=decision)
        return {
            "kind": kind,
            "note": note,
            "decision": decision,
            "record": record.model_dump(mode="json") if record else None,
        }

    async def conversation_of(self, case: Case) -> conversations.Conversation | None:
        """The case's conversation: its contact's, else the one its packet names (then the contact joins
        it, if it is the same customer's). None for a contact without one (a Stripe event, a dead letter)."""
        found = await conversations.conversation_for_contact(self.pool, case.contact_id)
        named = case.packet.get("conversation_id")
        if found is None and isinstance(named, str) and named:
            candidate = await conversations.get_conversation(self.pool, named)
            if candidate is not None and candidate.customer_id == case.customer_id:
                await conversations.attach_contact(
                    self.pool, contact_id=case.contact_id, conversation_id=named
                )
                found = await conversations.conversation_for_contact(self.pool, case.contact_id)
        return found

    async def thread(self, case: Case) -> dict[str, Any] | None:
        """The case's whole conversation for the console: every turn, oldest first."""
        conversation = await self.conversation_of(case)
        if conversation is None:
            return None
        return {
            "conversation_id": conversation.conversation_id,
            "channel": conversation.channel.value,
            "status": conversation.status,
            "turns": [
                {
                    "seq": t.seq,
                    "role": t.role,
                    "kind": t.kind,
                    "author": t.author,
                    "text": t.text,
                    "contact_id": t.contact_id,
                    "created_at": t.created_at.isoformat(),
                }
                for t in await conversations.turns(self.pool, conversation.conversation_id, limit=500)
            ],
        }

    async def reply(
        self,
        case_id: str,
        agent_id: str,
        agent_queues: frozenset[str],
        *,
        text: str,
        reply_id: str,
    ) -> dict[str, Any]:
        """A person's message to the customer in the case's conversation, on its channel: a human_reply
        turn, published once per ``reply_id`` (a retried send repeats the same turn), and a case action."""
        case = await self.visible_case(case_id, agent_queues)
        domain.require_holder(_view(case), agent_id, agent_queues)
        body = domain.check_reply(text)
        conversation = await self.conversation_of(case)
        if conversation is None:
            raise domain.NoConversation(f"case {case_id} has no conversation with the customer to reply in")
        sent = await conversations.say(
            self.broker,
            self.pool,
            contact_id=case.contact_id,
            customer_id=case.customer_id,
            kind="human_reply",
            text=body,
            author=f"agent:{agent_id}",
            key=f"reply:{reply_id}",
            language=case.packet.get("language"),
        )
        if sent is None:  # the conversation vanished between the two reads
            raise domain.NoConversation(f"case {case_id} has no conversation with the customer to reply in")
        record = {
            "status": "sent",
            "reply_id": reply_id,
            "message_id": str(sent.message_id),
            "conversation_id": conversation.conversation_id,
            "channel": conversation.channel.value,
        }
        new = await self.store.add_reply(case_id, agent_id, body, record)
        await audit(  # again on a retry: the id derives from the case and the reply id
            self.broker,
            cause=self._cause(case),
            actor=f"agent:{agent_id}",
            action="case.replied",
            target=f"{case_id}/reply/{reply_id}",
            decision="sent",
            details={"message_id": str(sent.message_id), "channel": conversation.channel.value},
        )
        log.info(
            "tier3.case.replied",
            case_id=case_id,
            agent_id=agent_id,
            conversation_id=conversation.conversation_id,
            message_id=str(sent.message_id),
            new=new,
        )
        return {**record, "case_id": case_id, "text": sent.payload.text}

    async def resolve(
        self,
        case_id: str,
        agent_id: str,
        agent_queues: frozenset[str],
        *,
        note: str,
        article: tuple[str, str, list[str]] | None = None,
        customer_message: str | None = None,
    ) -> CaseResolvedV1:
        """Resolve a held case: tier3.case.resolved.v1, optionally a KCS knowledge article, and the customer
        is told in their conversation (``customer_message``, or the resolution note) once: a retried resolve
        repeats the same turn (its id derives from the resolution) instead of adding one."""
        if customer_message is not None:
            customer_message = domain.check_reply(customer_message)
        case = await self.visible_case(case_id, agent_queues)
        if case.status == domain.CaseStatus.RESOLVED and case.assignee == agent_id:
            pass  # a retried resolve re-publishes the same messages (same ids)
        else:
            domain.require_holder(_view(case), agent_id, agent_queues)
            if not await self.store.resolve(case_id, agent_id, note):
                latest = await self.store.get(case_id)
                assert latest is not None
                domain.require_holder(_view(latest), agent_id, agent_queues)
        latest = await self.store.get(case_id)
        assert latest is not None
        case = latest
        records = [
            ActionRecord.model_validate(a["record"])
            for a in await self.store.actions(case_id)
            if a["record"] and "action" in a["record"]
        ]
        refund = round(
            sum(r.amount_usd for r in records if r.action is Action.REFUND and r.status == "succeeded"), 2
        )
        article_id = f"kb_{derived_id('kcs', case_id).hex[:16]}" if article else None
        resolved = CaseResolvedV1.build(
            CaseResolvedPayload(
                case_id=case_id,
                agent_id=agent_id,
                resolution_note=case.resolution_note or note,
                actions=records,
                refund_usd=refund,
                knowledge_article_id=article_id,
            ),
            contact_id=case.contact_id,
            customer_id=case.customer_id,
            message_id=derived_id("tier3-case-resolved", case_id),
        ).model_copy(update={"causation_id": _uuid(case.source_message_id)})
        await publish(self.broker, resolved)
        if await self.conversation_of(case) is not None:
            await conversations.say(
                self.broker,
                self.pool,
                contact_id=case.contact_id,
                customer_id=case.customer_id,
                kind="resolution",
                text=customer_message or domain.resolution_message(case.resolution_note or note),
                author=f"agent:{agent_id}",
                cause=resolved,
                language=case.packet.get("language"),
            )
        if article is not None and article_id is not None:
            title, body, tags = article
            kb = KnowledgeArticlePublishedV1.build(
                KnowledgeArticlePayload(
                    article_id=article_id,
                    title=title,
                    body_markdown=body,
                    tags=tags or [case.reason],
                    source="tier3",
                    author=agent_id,
                ),
                contact_id=case.contact_id,
                customer_id=case.customer_id,
                cause=resolved,
                role="kcs",
            )
            await publish(self.broker, kb)
            log.info("tier3.knowledge.published", case_id=case_id, article_id=article_id)
        await audit(
            self.broker,
            cause=resolved,
            actor=f"agent:{agent_id}",
            action="case.resolved",
            target=case_id,
            details={"knowledge_article_id": article_id} if article_id else {},
        )
        log.info("tier3.case.resolved", case_id=case_id, agent_id=agent_id, refund_usd=refund)
        return resolved

    # ------------------------------------------------------------------ approvals: a second person
    async def request_approval(
        self,
        case_id: str,
        agent_id: str,
        agent_queues: frozenset[str],
        *,
        charge_id: str,
        amount_usd: float,
        note: str,
    ) -> Approval:
        """The agent holding the case asks a lead to approve a refund (once per charge and amount while
        pending); recorded on the case and audited."""
        case = await self.visible_case(case_id, agent_queues)
        domain.require_holder(_view(case), agent_id, agent_queues)
        charge, amount = approvals.check_request(charge_id, amount_usd)
        asked = Approval(
            approval_id=approvals.new_approval_id(),
            case_id=case.case_id,
            contact_id=case.contact_id,
            customer_id=case.customer_id,
            charge_id=charge,
            amount_usd=amount,
            note=note,
            requested_by=agent_id,
            requested_at=datetime.now(UTC),
            status=ApprovalStatus.PENDING,
        )
        approval = await self.approvals.request(asked)
        if approval.approval_id == asked.approval_id:
            await self.store.add_action(
                case_id, agent_id, "approval_requested", note, {**approval.summary(), "status": "pending"}
            )
            await audit(
                self.broker,
                cause=self._cause(case),
                actor=f"agent:{agent_id}",
                action="case.approval_requested",
                target=approval.approval_id,
                decision="pending",
                details={"requested_by": f"agent:{agent_id}", "charge_id": charge, "amount_usd": amount},
            )
            log.info(
                "tier3.approval.requested",
                case_id=case_id,
                approval_id=approval.approval_id,
                agent_id=agent_id,
                amount_usd=amount,
            )
        return approval

    async def pending_approvals(self, agent_queues: frozenset[str], *, approver: bool) -> list[Approval]:
        if not approver:
            raise approvals.ApprovalForbidden("seeing pending approvals needs the approver role")
        return await self.approvals.pending(sorted(agent_queues))

    async def _decidable(self, approval_id: str, agent_queues: frozenset[str]) -> tuple[Approval, Case]:
        approval = await self.approvals.get(approval_id)
        if approval is None:
            raise approvals.ApprovalNotFound(approval_id)
        case = await self.visible_case(approval.case_id, agent_queues)
        return approval, case

    async def approve(
        self, approval_id: str, agent_id: str, agent_queues: frozenset[str], *, approver: bool, note: str = ""
    ) -> tuple[Approval, ActionRecord]:
        """A lead approves: the refund runs once through the executor (key derived from the approval), the
        case records it and the customer is told. A second click, a retried request or a lead racing
        another asks the executor again under the same key: the ledger answers with the one refund."""
        approval, case = await self._decidable(approval_id, agent_queues)
        step = approvals.decide_approve(approval, agent_id, approver=approver)
        if step == "approve" and await self.approvals.decide(
            approval_id, ApprovalStatus.APPROVED, agent_id, note
        ):
            await audit(
                self.broker,
                cause=self._cause(case),
                actor=f"agent:{agent_id}",
                action="case.approval_approved",
                target=approval_id,
                decision="approved",
                details={
                    "requested_by": f"agent:{approval.requested_by}",
                    "approved_by": f"agent:{agent_id}",
                    "charge_id": approval.charge_id,
                    "amount_usd": approval.amount_usd,
                },
            )
            log.info("tier3.approval.approved", approval_id=approval_id, agent_id=agent_id)
        latest = await self.approvals.get(approval_id)
        assert latest is not None
        approvals.decide_approve(latest, agent_id, approver=approver)  # denied meanwhile: the conflict
        approver_id = latest.decided_by or agent_id  # the lead whose approval took effect
        try:
            record = await self.actions.refund_approved(case, latest.facts(), note=latest.note)
        except HumanActionDenied as exc:
            await self._record_approved_refund(
                case, latest, {"status": "denied", "detail": str(exc)}, approver_id, refunded=None
            )
            raise
        await self._record_approved_refund(
            case, latest, record.model_dump(mode="json"), approver_id, refunded=record
        )
        final = await self.approvals.get(approval_id)
        assert final is not None
        return final, record

    async def _record_approved_refund(
        self,
        case: Case,
        approval: Approval,
        result: dict[str, Any],
        agent_id: str,
        *,
        refunded: ActionRecord | None,
    ) -> None:
        """The customer is told on every call (one message id per approval: the notifier sends it once, and
        a call that crashed before telling is completed by the next click); the first caller to finish
        records the result on the approval and the case, a replay finds it there."""
        if refunded is not None and refunded.status == "succeeded":
            await self.tell_customer_refund_approved(case, approval, refunded)
        if await self.approvals.record_result(approval.approval_id, result):
            await self.store.add_action(case.case_id, agent_id, "refund", approval.note, result)

    async def tell_customer_refund_approved(
        self, case: Case, approval: Approval, record: ActionRecord
    ) -> None:
        """The one place the customer hears about an approved refund: a turn in the case's conversation
        (delivered on its channel), or an email when the case has no conversation. Once per approval."""
        subject, body = approvals.customer_message(approval, record.amount_usd)
        if await self.conversation_of(case) is not None:
            await conversations.say(
                self.broker,
                self.pool,
                contact_id=case.contact_id,
                customer_id=case.customer_id,
                kind="human_reply",
                text=body,
                author=f"agent:{approval.requested_by}",
                key=f"refund_approved:{approval.approval_id}",
            )
            log.info("tier3.approval.customer_told", approval_id=approval.approval_id, channel="conversation")
            return
        email = await self.pool.fetchval("SELECT email FROM stripe_customers WHERE id=$1", case.customer_id)
        email = email or await self.pool.fetchval("SELECT email FROM customers WHERE id=$1", case.customer_id)
        if not email:
            log.warning("tier3.approval.customer_unreachable", approval_id=approval.approval_id)
            return
        await publish(
            self.broker,
            NotificationRequestedV1.build(
                NotificationRequestedPayload(
                    to=str(email),
                    template="refund_approved",
                    subject=subject,
                    body=body,
                    dedupe_key=f"refund_approved:{approval.approval_id}",
                ),
                contact_id=case.contact_id,
                customer_id=case.customer_id,
                message_id=derived_id("tier3-refund-approved", approval.approval_id),
            ),
        )
        log.info("tier3.approval.customer_told", approval_id=approval.approval_id)

    async def deny(
        self, approval_id: str, agent_id: str, agent_queues: frozenset[str], *, approver: bool, note: str = ""
    ) -> Approval:
        """A lead denies a pending request: recorded on the approval and the case, audited."""
        approval, case = await self._decidable(approval_id, agent_queues)
        if approvals.decide_deny(approval, agent_id, approver=approver):
            if await self.approvals.decide(approval_id, ApprovalStatus.DENIED, agent_id, note):
                await self.store.add_action(
                    case.case_id,
                    agent_id,
                    "approval_denied",
                    note,
                    {"approval_id": approval_id, "status": "denied", "detail": note},
                )
                await audit(
                    self.broker,
                    cause=self._cause(case),
                    actor=f"agent:{agent_id}",
                    action="case.approval_denied",
                    target=approval_id,
                    decision="denied",
                    details={
                        "requested_by": f"agent:{approval.requested_by}",
                        "denied_by": f"agent:{agent_id}",
                    },
                )
                log.info("tier3.approval.denied", approval_id=approval_id, agent_id=agent_id)
            else:
                latest = await self.approvals.get(approval_id)
                assert latest is not None
                approvals.decide_deny(latest, agent_id, approver=approver)  # approved meanwhile: conflict
        final = await self.approvals.get(approval_id)
        assert final is not None
        return final

    # ------------------------------------------------------------------ SLA
    async def sweep_sla(self, now: datetime | None = None) -> list[str]:
        """Announce each newly breached case once: an ops alert and a notification."""
        now = now or datetime.now(UTC)
        announced: list[str] = []
        for case in await self.store.due_for_sla_alert(now):
            breach = domain.sla_breach(
                case_id=case.case_id,
                status=case.status,
                sla_due_at=case.sla_due_at,
                opened_at=case.opened_at,
                alerted=case.sla_alerted_at is not None,
                now=now,
            )
            if breach is None:
                continue
            alert = AlertRaisedV1.build(
                AlertPayload(
                    kind="sla_breach",
                    subject=case.case_id,
                    observed=breach.overdue_minutes,
                    expected=0.0,
                    threshold=breach.sla_minutes,
                    details={
                        "queue": case.queue,
                        "priority": case.priority,
                        "status": case.status,
                        "assignee": case.assignee,
                        "sla_due_at": case.sla_due_at.isoformat(),
                    },
                ),
                contact_id=case.contact_id,
                customer_id=case.customer_id,
                message_id=derived_id("tier3-sla-breach", case.case_id),
            )
            note = NotificationRequestedV1.build(
                NotificationRequestedPayload(
                    to=self.settings.ops_email,
                    template="sla_breach",
                    subject=f"SLA breached: {case.case_id} (P{case.priority}, {case.queue})",
                    body=(
                        f"Case {case.case_id} ({case.reason}) was due {case.sla_due_at.isoformat()} and is "
                        f"{case.status}; {breach.overdue_minutes:.0f} min overdue."
                    ),
                    dedupe_key=f"sla_breach:{case.case_id}",
                    link=f"{self.settings.console_base_url}#case={case.case_id}",
                ),
                contact_id=case.contact_id,
                customer_id=case.customer_id,
                message_id=derived_id("tier3-sla-notification", case.case_id),
            )
            await publish(self.broker, alert)
            await publish(self.broker, note)
            await self.store.mark_sla_alerted(case.case_id)
            log.warning("tier3.sla.breached", case_id=case.case_id, overdue_min=breach.overdue_minutes)
            announced.append(case.case_id)
        return announced

    async def sla_loop(self) -> None:
        while True:
            try:
                await self.sweep_sla()
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("tier3.sla.sweep_failed", error=str(exc))
            await asyncio.sleep(self.settings.sla_check_interval_s)

    def _cause(self, case: Case) -> EscalationOpenedV1:
        """A stand-in cause for audit ids: the escalation that opened the case."""
        return case.cause()


class UnknownHumanAction(ValueError):
    pass


def _view(case: Case) -> domain.CaseView:
    return domain.CaseView(case.case_id, case.queue, domain.CaseStatus(case.status), case.assignee)


def _uuid(value: str | None) -> Any:
    import uuid

    return uuid.UUID(value) if value else None
