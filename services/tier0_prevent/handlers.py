"""Tier 0 consumers: a verified Stripe event in; actions out through the shared executor (policy-checked,
once in the ledger, audited, actor ``system``) and one outcome."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from schemas import Action, EscalationReason, Intent, RootCause, Tier, derived_id
from schemas.messages import (
    ActionRecord,
    DiagnosisView,
    EscalationOpenedPayload,
    OutcomeRecordedPayload,
    StripeEventReceivedPayload,
    StripeEventReceivedV1,
)
from services.tier0_prevent import domain
from services.tier0_prevent.adapters.postgres import ExpiringCard, Tier0Store
from services.tier0_prevent.adapters.stripe import url_of
from services.tier0_prevent.domain import DeclineKind, Handling
from services.tier0_prevent.ports import (
    BillingActions,
    DeclineClassifier,
    Diagnostics,
    MirrorSink,
    Tier0Actions,
)
from services.tier0_prevent.settings import Tier0Settings
from tierline.actions import ActionContext, ActionOutcome
from tierline.messaging import Inbox
from tierline.pipeline import audit, escalate, record_outcome, start_contact

log = structlog.get_logger(__name__)

ACTOR = "tier0_prevent"
#: Tier 0's own decisions (classification, dunning verdicts, escalations) are audited as the executor
#: audits its actions: ``<tier>:<actor id>``.
AUDIT_ACTOR = f"{Tier.TIER0.value}:{ACTOR}"


class InvalidStripeObject(ValueError):
    """A verified event whose object Tier 0 cannot act on (poison: retried, then dead-lettered)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Tier0Deps:
    pool: asyncpg.Pool
    broker: KafkaBroker
    settings: Tier0Settings
    diagnostics: Diagnostics
    classify: DeclineClassifier
    billing: BillingActions
    actions: Tier0Actions
    return_url: str
    clock: Callable[[], datetime] = utc_now
    store: Tier0Store = field(init=False)

    def __post_init__(self) -> None:
        self.store = Tier0Store(self.pool)

    def context(
        self, cause: StripeEventReceivedV1, facts: DiagnosisView, *, actor_id: str = ACTOR
    ) -> ActionContext:
        """Who acts for Tier 0: the system, for the event's contact, on the facts Tier 0 verified."""
        return ActionContext(
            contact_id=cause.contact_id,
            customer_id=cause.customer_id,
            tier=Tier.TIER0,
            actor="system",
            actor_id=actor_id,
            cause=cause,
            facts=facts,
        )

    async def facts(
        self,
        customer_id: str,
        root_cause: RootCause,
        invoice: dict[str, Any] | None = None,
        *,
        found: dict[str, Any] | None = None,
    ) -> DiagnosisView:
        """The policy's facts from the event and the mirror (one query), not a diagnosis computation."""
        found = found if found is not None else await self.store.policy_facts(customer_id)
        return domain.facts_view(
            customer_id,
            root_cause=root_cause,
            invoice=invoice,
            disputes=found["disputes"],
            plan_tier=found["plan_tier"],
            at=self.clock(),
        )

    def retry_budget(self) -> int:
        """The policy's automatic retry budget for the ``system`` actor."""
        rules = self.actions.policy.rules
        return rules.retry.max_attempts[rules.actors["system"]]

    async def update_card_url(self, customer_id: str) -> str:
        return url_of(await self.billing.update_card_link(customer_id, self.return_url)) or ""


class EffectInterrupted(RuntimeError):
    """An effect neither ran nor was refused (Stripe or the broker unreachable): the event is redelivered
    and retried (the ledger holds no row for it), then dead-lettered and handed to a person."""


def settled(outcome: ActionOutcome) -> ActionOutcome:
    """The outcome, unless the executor hit an unexpected error: that one is retried by redelivery."""
    if outcome.status == "failed" and outcome.escalation_reason is EscalationReason.ERROR:
        raise EffectInterrupted(f"{outcome.action.value} on {outcome.target}: {outcome.detail}")
    return outcome


def reached(outcome: ActionOutcome) -> bool:
    """The effect ran and its email went to an address (the executor reports ``sent_to``)."""
    return outcome.ok and bool(outcome.data.get("sent_to"))


def why_not(outcome: ActionOutcome) -> tuple[EscalationReason, str]:
    """Why an effect that should have reached the customer did not: the policy's reason, or an error."""
    if not outcome.ok:
        return outcome.escalation_reason or EscalationReason.ERROR, outcome.detail or outcome.status
    return EscalationReason.ERROR, "no email address on file"


class Tier0Handlers:
    def __init__(self, deps: Tier0Deps, inbox_consumer: str = ACTOR) -> None:
        self.d = deps
        self.inbox = Inbox(deps.pool, inbox_consumer)

    # ------------------------------------------------------------------ entry point
    async def on_stripe_event(self, msg: StripeEventReceivedV1) -> None:
        if await self.inbox.seen(msg.message_id):
            log.info("tier0.event.duplicate", event_id=msg.payload.event_id)
            return
        handling = domain.route_event(msg.payload.event_type)
        structlog.contextvars.bind_contextvars(contact_id=msg.contact_id)
        try:
            if handling is Handling.FAILED_PAYMENT:
                await self.failed_payment(msg)
            elif handling is Handling.INVOICE_PAID:
                await self.invoice_paid(msg)
            elif handling is Handling.INVOICE_CHANGED:
                await self.invoice_changed(msg)
            elif handling is Handling.SOURCE_EXPIRING:
                await self.source_expiring(msg)
            elif handling is Handling.INVOICE_UPCOMING:
                await self.invoice_upcoming(msg)
            elif handling is Handling.DISPUTE_OPENED:
                await self.dispute_opened(msg)
            await self.inbox.mark(msg.message_id)
        finally:
            structlog.contextvars.unbind_contextvars("contact_id")
        log.info(
            "tier0.event.handled",
            event_id=msg.payload.event_id,
            event_type=msg.payload.event_type,
            handling=handling.value,
        )

    # ------------------------------------------------------------------ failed payments
    async def failed_payment(self, msg: StripeEventReceivedV1) -> None:
        obj = msg.payload.object
        invoice_id = _object_id(obj, "in_")
        now = self.d.clock()
        await self._start(msg)
        diagnosis = await self._diagnose(msg.customer_id)  # context for a person, if it comes to one
        evidence = _invoice_evidence(diagnosis, invoice_id)
        code = (
            domain.decline_code_of(obj)
            or _text(evidence.get("decline_code"))
            or await self.d.store.decline_code_for_invoice(invoice_id)
            or await self._fetched_decline(invoice_id)
        )
        attempt_count = int(obj.get("attempt_count") or evidence.get("attempt_count") or 1)
        decline = self.d.classify(code, attempt_count=attempt_count)  # type: ignore[call-arg]
        policy = self.d.actions.policy
        plan = domain.plan_failed_payment(
            decline,
            now=now,
            offsets_days=self.d.settings.dunning_offsets_days,
            max_attempts=domain.retry_budget(self.d.retry_budget(), self.d.settings.dunning_max_attempts),
            link_expired=bool(evidence.get("link_expired")) or domain.invoice_link_expired(obj, now),
            policy_retryable=policy.decline_class(code, attempt_count) == "soft",
        )
        amount = domain.usd(obj.get("amount_due"))
        log.info(
            "tier0.failed_payment.planned",
            invoice=invoice_id,
            decline_code=plan.decline_code,
            kind=plan.kind.value,
            retries=len(plan.retry_at),
        )
        await audit(
            self.d.broker,
            cause=msg,
            actor=AUDIT_ACTOR,
            action="classify_decline",
            target=invoice_id,
            decision=plan.kind.value,
            details={
                "decline_code": plan.decline_code,
                "attempt_count": attempt_count,
                "retries_planned": len(plan.retry_at),
                "policy_version": policy.version,
            },
        )
        invoice = domain.invoice_facts(
            invoice_id,
            status=_text(obj.get("status")),
            amount_due_cents=obj.get("amount_due"),
            decline_code=plan.decline_code,
            attempt_count=attempt_count,
            hosted_invoice_url=_text(obj.get("hosted_invoice_url")),
        )
        ctx = self.d.context(msg, await self.d.facts(msg.customer_id, plan.root_cause, invoice))

        if plan.kind is DeclineKind.FRAUD:
            await self._fraud(msg, ctx, invoice_id, plan.decline_code, amount, diagnosis)
            return
        tried: list[ActionRecord] = []
        if plan.kind is DeclineKind.HARD:
            await self.d.store.close_schedule(invoice_id, "hard_decline", f"hard decline {plan.decline_code}")

        link = _text(obj.get("hosted_invoice_url")) or _text(evidence.get("hosted_invoice_url"))
        if plan.regenerate_link:
            regen = settled(await self.d.actions.regenerate_invoice_link(ctx, invoice_id, notify=False))
            tried.append(regen.record(Tier.TIER0))
            link = _text(regen.data.get("url")) or link

        summary: str
        if plan.kind is DeclineKind.SOFT:
            scheduled = await self._schedule(msg, ctx, invoice_id, plan.decline_code, obj, plan.retry_at)
            dates = ", ".join(d[:10] for d in scheduled.get("retry_at", []))
            email = domain.email_for(
                Action.SEND_NUDGE,
                amount_usd=amount,
                invoice_id=invoice_id,
                link=link,
                retry_at=plan.retry_at[0] if plan.retry_at else None,
            )
            sent = settled(
                await self.d.actions.send_nudge(
                    ctx,
                    template=email.template,
                    subject=email.subject,
                    body=email.body,
                    target=invoice_id,
                    link=email.link,
                )
            )
            summary = (
                f"soft decline ({plan.decline_code}) on {invoice_id} for ${amount:.2f}: nudge sent; "
                f"{len(scheduled.get('retry_at', []))} retries scheduled ({dates})"
            )
        else:
            email = domain.email_for(Action.SEND_UPDATE_CARD_LINK, amount_usd=amount, invoice_id=invoice_id)
            sent = settled(
                await self.d.actions.send_update_card_link(
                    ctx, return_url=self.d.return_url, subject=email.subject, body=email.body
                )
            )
            summary = f"hard decline ({plan.decline_code}) on {invoice_id}: no retry; update-card link sent"
        tried.append(sent.record(Tier.TIER0))

        if not reached(sent):
            reason, detail = why_not(sent)
            await self._escalate(
                msg,
                reason,
                amount,
                diagnosis,
                tried,
                f"Tier 0 could not reach the customer ({detail}); contact them about {invoice_id}.",
                intent=Intent.PAYMENT_FAILED,
            )
            return
        actions = [r.action for r in tried if r.status == "succeeded"]
        await self._outcome(msg, actions, plan.root_cause, Intent.PAYMENT_FAILED, summary)

    async def _fraud(
        self,
        msg: StripeEventReceivedV1,
        ctx: ActionContext,
        invoice_id: str,
        code: str | None,
        amount: float,
        diagnosis: DiagnosisView | None,
    ) -> None:
        await self.d.store.close_schedule(invoice_id, "canceled", f"fraud decline {code}")

        async def flag() -> dict[str, Any]:
            flags = await self.d.store.flag_risk(
                msg.customer_id,
                "card_fraud",
                {
                    "decline_code": code,
                    "invoice_id": invoice_id,
                    "event_id": msg.payload.event_id,
                    "at": self.d.clock().isoformat(),
                },
            )
            return {"risk_flags": sorted(flags)}

        flagged = await self.d.actions.record_effect(
            ctx, "flag_risk", msg.customer_id, flag, details={"decline_code": code, "invoice_id": invoice_id}
        )
        tried = [
            ActionRecord(
                action=Action.ESCALATE,
                tier=Tier.TIER0,
                status="skipped",
                idempotency_key=flagged.key,
                detail=f"no retry: {code} is a fraud/compromised-card decline",
                target=invoice_id,
            )
        ]
        await self._escalate(
            msg,
            EscalationReason.FRAUD,
            amount,
            diagnosis,
            tried,
            f"Card reported {code}: confirm with the customer, keep retries off, ask for a new card.",
            intent=Intent.FRAUD_COMPROMISED,
        )

    async def _schedule(
        self,
        msg: StripeEventReceivedV1,
        ctx: ActionContext,
        invoice_id: str,
        code: str | None,
        obj: dict[str, Any],
        retry_at: list[datetime],
    ) -> dict[str, Any]:
        """The retry schedule, once per contact and invoice (a bookkeeping effect: each retry itself is
        policy-checked by the executor when it falls due)."""

        async def effect() -> dict[str, Any]:
            return await self.d.store.create_schedule(
                invoice_id=invoice_id,
                customer_id=msg.customer_id,
                contact_id=msg.contact_id,
                decline_code=code,
                amount_due_cents=int(obj.get("amount_due") or 0),
                retry_at=retry_at,
                cause=msg.model_dump(mode="json"),
            )

        result = await self.d.actions.record_effect(
            ctx,
            "schedule_retry",
            invoice_id,
            effect,
            details={"retry_at": [t.isoformat() for t in retry_at]},
        )
        return result.result

    async def _fetched_decline(self, invoice_id: str) -> str | None:
        """The decline asked of Stripe: a current-version invoice event names no payment, and the charge
        and payment intent events (which no longer name the invoice) may come later or not at all."""
        try:
            code = await self.d.billing.invoice_decline_code(invoice_id)
        except Exception as exc:  # noqa: BLE001 - unknown decline: classified as generic, retried as soft
            log.warning("tier0.decline.fetch_failed", invoice=invoice_id, error=type(exc).__name__)
            return None
        log.info("tier0.decline.fetched", invoice=invoice_id, decline_code=code)
        return code

    # ------------------------------------------------------------------ paid, links
    async def invoice_paid(self, msg: StripeEventReceivedV1) -> None:
        invoice_id = _object_id(msg.payload.object, "in_")
        closed = await self.d.store.close_schedule(invoice_id, "canceled", f"paid ({msg.payload.event_type})")
        if closed:
            log.info("tier0.dunning.canceled", invoice=invoice_id, reason=msg.payload.event_type)
            await audit(
                self.d.broker,
                cause=msg,
                actor=AUDIT_ACTOR,
                action="cancel_dunning",
                target=invoice_id,
                decision="canceled",
                details={"reason": msg.payload.event_type},
            )

    async def invoice_changed(self, msg: StripeEventReceivedV1) -> None:
        obj = msg.payload.object
        if not domain.event_link_expired(obj, msg.payload.previous_attributes, self.d.clock()):
            return
        invoice_id = _object_id(obj, "in_")
        await self._start(msg)
        invoice = domain.invoice_facts(
            invoice_id,
            status=_text(obj.get("status")),
            amount_due_cents=obj.get("amount_due"),
            decline_code=domain.decline_code_of(obj),
            attempt_count=int(obj.get("attempt_count") or 0),
        )
        ctx = self.d.context(
            msg, await self.d.facts(msg.customer_id, RootCause.INVOICE_LINK_EXPIRED, invoice)
        )
        # and emails the new link
        regen = settled(await self.d.actions.regenerate_invoice_link(ctx, invoice_id))
        amount = domain.usd(obj.get("amount_due"))
        if not reached(regen):
            reason, detail = why_not(regen)
            await self._escalate(
                msg,
                reason,
                amount,
                None,
                [regen.record(Tier.TIER0)],
                f"Invoice {invoice_id}'s link expired and could not be re-sent automatically ({detail}).",
                intent=Intent.INVOICE_REQUEST,
            )
            return
        await self._outcome(
            msg,
            [Action.REGENERATE_INVOICE_LINK],
            RootCause.INVOICE_LINK_EXPIRED,
            Intent.INVOICE_REQUEST,
            f"expired link on {invoice_id} regenerated and re-sent",
        )

    # ------------------------------------------------------------------ proactive nudges
    async def source_expiring(self, msg: StripeEventReceivedV1) -> None:
        obj = msg.payload.object
        card_id = _object_id(obj, "")
        card = ExpiringCard(
            card_id,
            msg.customer_id,
            _text(obj.get("brand")),
            _text(obj.get("last4")),
            int(obj.get("exp_month") or 0),
            int(obj.get("exp_year") or 0),
        )
        if not card.exp_month or not card.exp_year:
            raise InvalidStripeObject(f"{msg.payload.event_type} without exp_month/exp_year")
        await self.nudge_expiring(msg, card, reason="customer.source.expiring")

    async def invoice_upcoming(self, msg: StripeEventReceivedV1) -> None:
        obj = msg.payload.object
        card = await self.d.store.default_card(msg.customer_id)
        if card is None:
            diagnosis = await self._diagnose(msg.customer_id)
            pm = (diagnosis.evidence.get("payment_method") if diagnosis else None) or {}
            if isinstance(pm, dict) and pm.get("exp_month") and pm.get("exp_year"):
                card = ExpiringCard(
                    str(pm.get("id") or "default"),
                    msg.customer_id,
                    _text(pm.get("brand")),
                    _text(pm.get("last4")),
                    int(pm["exp_month"]),
                    int(pm["exp_year"]),
                )
        if card is None:
            return
        charge_at = domain.timestamp_of(obj.get("next_payment_attempt")) or domain.timestamp_of(
            obj.get("period_end")
        )
        if not domain.card_expiring(
            card.exp_month,
            card.exp_year,
            now=self.d.clock(),
            window_days=self.d.settings.expiry_window_days,
            before=charge_at,
        ):
            return
        await self.nudge_expiring(msg, card, reason="invoice.upcoming on an expiring card")

    async def nudge_expiring(self, cause: StripeEventReceivedV1, card: ExpiringCard, *, reason: str) -> None:
        await self._start(cause)
        expiry = f"{card.exp_year:04d}-{card.exp_month:02d}"
        label = " ".join(
            p for p in (card.brand and card.brand.title(), card.last4 and f"ending {card.last4}") if p
        )
        email = domain.email_for(
            Action.SEND_NUDGE,
            card=label or None,
            expires=domain.card_expires_at(card.exp_month, card.exp_year).strftime("%B %Y"),
        )
        ctx = self.d.context(cause, await self.d.facts(cause.customer_id, RootCause.CARD_EXPIRING))
        sent = settled(
            await self.d.actions.send_nudge(
                ctx,
                template=email.template,
                subject=email.subject,
                body=email.body,
                target=f"{card.payment_method_id}:{expiry}",
                link=lambda: self.d.update_card_url(cause.customer_id),
                dedupe_key=f"card_expiring:{card.payment_method_id}:{expiry}",
            )
        )
        if not reached(sent):
            why, detail = why_not(sent)
            await self._escalate(
                cause,
                why,
                0.0,
                None,
                [sent.record(Tier.TIER0)],
                f"Card {label} expires {expiry} and the customer could not be nudged ({detail}).",
                intent=Intent.CARD_EXPIRING,
            )
            return
        await self._outcome(
            cause,
            [Action.SEND_NUDGE],
            RootCause.CARD_EXPIRING,
            Intent.CARD_EXPIRING,
            f"card {card.payment_method_id} expires {expiry}: nudge sent ({reason})",
        )

    async def scan_expiring_cards(self) -> int:
        """The daily scan of the mirror: one nudge per card and expiry month (later scans skip it)."""
        now = self.d.clock()
        until = now + timedelta(days=self.d.settings.expiry_window_days)
        nudged = 0
        for card in await self.d.store.expiring_cards(until, now):
            expiry = f"{card.exp_year:04d}-{card.exp_month:02d}"
            contact = f"expiry:{card.payment_method_id}:{expiry}"
            if await self.d.pool.fetchval("SELECT 1 FROM outcomes WHERE contact_id=$1", contact):
                continue
            cause = StripeEventReceivedV1.build(
                StripeEventReceivedPayload(
                    event_id=f"scan:{card.payment_method_id}:{expiry}",
                    event_type="tierline.card_expiry_scan",
                    created=int(now.timestamp()),
                    object={
                        "id": card.payment_method_id,
                        "object": "payment_method",
                        "customer": card.customer_id,
                        "card": {
                            "brand": card.brand,
                            "last4": card.last4,
                            "exp_month": card.exp_month,
                            "exp_year": card.exp_year,
                        },
                    },
                ),
                contact_id=contact,
                customer_id=card.customer_id,
                message_id=derived_id("expiry-scan", contact),
            )
            await self.nudge_expiring(cause, card, reason="daily expiry scan")
            nudged += 1
        log.info("tier0.expiry_scan.done", nudged=nudged)
        return nudged

    # ------------------------------------------------------------------ disputes
    async def dispute_opened(self, msg: StripeEventReceivedV1) -> None:
        obj = msg.payload.object
        dispute_id = _object_id(obj, "")
        await self._start(msg)
        diagnosis = await self._diagnose(msg.customer_id)
        amount = domain.usd(obj.get("amount"))
        await audit(
            self.d.broker,
            cause=msg,
            actor=AUDIT_ACTOR,
            action="dispute_opened",
            target=dispute_id,
            decision="escalate",
            details={"charge": domain.charge_of(obj), "reason": obj.get("reason")},
        )
        await self._escalate(
            msg,
            EscalationReason.DISPUTE,
            amount,
            diagnosis,
            [],
            f"Dispute {dispute_id} ({obj.get('reason') or 'no reason'}) "
            f"on charge {domain.charge_of(obj)} for "
            f"${amount:.2f}: gather evidence and respond before the deadline; no automatic financial action.",
            intent=Intent.UNRECOGNIZED_CHARGE,
        )

    # ------------------------------------------------------------------ shared steps
    async def _start(self, msg: StripeEventReceivedV1) -> None:
        await start_contact(
            self.d.pool,
            contact_id=msg.contact_id,
            customer_id=msg.customer_id,
            trigger="stripe_event",
            channel=None,
        )

    async def _diagnose(self, customer_id: str) -> DiagnosisView | None:
        try:
            return await self.d.diagnostics.diagnose(customer_id)
        except Exception as exc:  # noqa: BLE001 - Tier 0 proceeds on the event and the mirror
            log.warning(
                "tier0.diagnosis.unavailable", customer_id=customer_id, error=f"{type(exc).__name__}: {exc}"
            )
            return None

    async def _outcome(
        self,
        msg: StripeEventReceivedV1,
        actions: list[Action],
        root_cause: RootCause | None,
        intent: Intent,
        summary: str,
        recovered_usd: float = 0.0,
    ) -> None:
        await record_outcome(
            self.d.pool,
            self.d.broker,
            cause=msg,
            payload=OutcomeRecordedPayload(
                resolved_by=Tier.TIER0,
                tier_path=[Tier.TIER0],
                intent=intent,
                root_cause=root_cause,
                actions=actions,
                recovered_usd=recovered_usd,
                trigger="stripe_event",
                summary=summary[:1000],
            ),
        )

    async def _escalate(
        self,
        msg: StripeEventReceivedV1,
        reason: EscalationReason,
        amount: float,
        diagnosis: DiagnosisView | None,
        tried: list[ActionRecord],
        next_step: str,
        intent: Intent | None = None,
    ) -> None:
        started = await self.d.pool.fetchval(
            "SELECT started_at FROM contacts WHERE contact_id=$1", msg.contact_id
        )
        await escalate(
            self.d.broker,
            cause=msg,
            payload=EscalationOpenedPayload(
                reason=reason,
                opened_by=Tier.TIER0,
                intent=intent,
                amount_usd=amount,
                diagnosis=diagnosis,
                actions_tried=tried,
                suggested_next_step=next_step,
                tier_path=[Tier.TIER0],
                contact_started_at=started,
                text=f"Stripe event {msg.payload.event_type} ({msg.payload.event_id})",
            ),
        )
        await audit(
            self.d.broker,
            cause=msg,
            actor=AUDIT_ACTOR,
            action=Action.ESCALATE.value,
            target=msg.customer_id,
            decision=reason.value,
            details={"event_type": msg.payload.event_type},
        )


class MirrorSync:
    """Every verified Stripe event into the mirror (version-checked: any order converges)."""

    def __init__(self, mirror: MirrorSink) -> None:
        self.mirror = mirror

    async def on_stripe_event(self, msg: StripeEventReceivedV1) -> None:
        await self.mirror.apply_stripe_event(msg.payload.event_type, msg.payload.object, msg.payload.created)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _object_id(obj: dict[str, Any], prefix: str) -> str:
    value = obj.get("id")
    if not isinstance(value, str) or not value.startswith(prefix) or len(value) <= len(prefix):
        raise InvalidStripeObject(f"data.object.id {value!r} is not a {prefix or 'Stripe'} id")
    return value


def _invoice_evidence(diagnosis: DiagnosisView | None, invoice_id: str) -> dict[str, Any]:
    if diagnosis is None:
        return {}
    inv = diagnosis.evidence.get("invoice")
    if isinstance(inv, dict) and inv.get("id") == invoice_id:
        return inv
    return {}
