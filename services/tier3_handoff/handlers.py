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
)
from schemas.vocab import Action, EscalationReason
from services.tier3_handoff import domain
from services.tier3_handoff.adapters.postgres import PostgresCaseStore
from services.tier3_handoff.ports import Case, HumanActionDenied, HumanActions
from services.tier3_handoff.settings import Tier3Settings
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
        self.actions = actions
        self.settings = settings
        self.costs = costs or CostModel()

    # ------------------------------------------------------------------ consumers
    async def on_escalation_opened(self, msg: EscalationOpenedV1) -> Case:
        """Open the case (once per contact), then record the contact's terminal outcome."""
        packet = msg.payload
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
        return stored

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

    async def resolve(
        self,
        case_id: str,
        agent_id: str,
        agent_queues: frozenset[str],
        *,
        note: str,
        article: tuple[str, str, list[str]] | None = None,
    ) -> CaseResolvedV1:
        """Resolve a held case: tier3.case.resolved.v1, and optionally a KCS knowledge article."""
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
