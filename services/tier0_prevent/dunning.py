"""The dunning worker: executes due retries exactly once, however many replicas run.

A claim is a committed ``SELECT ... FOR UPDATE SKIP LOCKED`` + ``status='running'`` (another replica
skips the row); the retry itself is the shared executor's ``retry_payment`` with the actor ``system``: the
policy decides (its automatic retry budget, counted from the ledger's attempts on the invoice, and its
hard-decline rules), and the ledger key per invoice and attempt keeps it once-only, even for a claim taken
over after a crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from schemas import Action, EscalationReason, Intent, RootCause, Tier, derived_id
from schemas.messages import EscalationOpenedPayload, OutcomeRecordedPayload, StripeEventReceivedV1
from services.tier0_prevent import domain
from services.tier0_prevent.adapters.postgres import ClaimedAttempt, Tier0Store
from services.tier0_prevent.domain import RetryVerdict
from services.tier0_prevent.handlers import AUDIT_ACTOR, Tier0Deps, reached, utc_now, why_not
from services.tier0_prevent.ports import DeclineClassifier, Tier0Actions
from tierline.actions import ActionContext, ActionOutcome
from tierline.pipeline import audit, escalate, record_outcome, start_contact

log = structlog.get_logger(__name__)


class DunningAttemptError(RuntimeError):
    """The retry neither ran nor was refused (e.g. Stripe unreachable): the claim is left to its lease
    and taken again, under the same once-only key."""


@dataclass(frozen=True)
class AttemptResult:
    invoice_id: str
    attempt_no: int
    verdict: RetryVerdict
    replayed: bool
    worker: str


class DunningWorker:
    def __init__(self, deps: Tier0Deps, worker_id: str) -> None:
        self.d = deps
        self.worker_id = worker_id
        self.store: Tier0Store = deps.store
        self.actions: Tier0Actions = deps.actions
        self.classify: DeclineClassifier = deps.classify
        self.broker: KafkaBroker = deps.broker
        self.pool: asyncpg.Pool = deps.pool
        self.clock: Callable[[], datetime] = deps.clock

    async def run_once(self) -> list[AttemptResult]:
        s = self.d.settings
        claims = await self.store.claim_due(
            self.worker_id, limit=s.dunning_claim_batch, lease_s=s.dunning_lease_s, now=self.clock()
        )
        results = []
        for claim in claims:
            results.append(await self.execute(claim))
        return results

    async def run_forever(self, _service: Any = None) -> None:
        while True:
            try:
                done = await self.run_once()
                if done:
                    log.info("tier0.dunning.tick", worker=self.worker_id, executed=len(done))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the loop survives; the claim lease covers the rest
                log.error(
                    "tier0.dunning.tick_failed", worker=self.worker_id, error=f"{type(exc).__name__}: {exc}"
                )
            await asyncio.sleep(self.d.settings.dunning_poll_s)

    async def _context(self, claim: ClaimedAttempt, cause: StripeEventReceivedV1) -> ActionContext:
        found = await self.store.policy_facts(claim.customer_id, claim.invoice_id)
        invoice = domain.dunning_invoice_facts(
            claim.invoice_id,
            claim.amount_due_cents,
            mirrored=found["invoice"],
            last_decline=found["dunning_decline"],
            tried=found["dunning_tried"],
        )
        facts = await self.d.facts(claim.customer_id, RootCause.CARD_DECLINED_SOFT, invoice, found=found)
        return self.d.context(cause, facts, actor_id=f"dunning:{self.worker_id}")

    async def execute(self, claim: ClaimedAttempt) -> AttemptResult:
        invoice = claim.invoice_id
        origin = StripeEventReceivedV1.model_validate(claim.cause)
        # the dunning contact (one outcome per invoice); each attempt its own cause, so its audit records
        # are distinct messages
        recovery = origin.model_copy(
            update={"contact_id": f"dunning:{invoice}", "message_id": derived_id("dunning", invoice)}
        )
        attempt_cause = recovery.model_copy(
            update={"message_id": derived_id("dunning", invoice, claim.attempt_no)}
        )
        ctx = await self._context(claim, attempt_cause)
        outcome = await self.actions.retry_payment(ctx, invoice, attempt=claim.attempt_no)
        verdict, code = self._verdict(claim, outcome)
        tried = outcome.status in ("succeeded", "failed")
        await self.store.finish_attempt(
            invoice,
            claim.attempt_no,
            ("succeeded" if outcome.ok else "failed") if tried else "canceled",
            decline_code=code,
            result={**outcome.data, "status": outcome.status, "detail": outcome.detail[:300]},
        )
        log.info(
            "tier0.dunning.attempted",
            invoice=invoice,
            attempt=claim.attempt_no,
            status=outcome.status,
            verdict=verdict.value,
            worker=self.worker_id,
            replayed=outcome.replayed,
        )
        await audit(
            self.broker,
            cause=attempt_cause,
            actor=AUDIT_ACTOR,
            action="dunning_attempt",
            target=f"{invoice}#{claim.attempt_no}",
            decision=verdict.value,
            details={
                "status": outcome.status,
                "decline_code": code,
                "idempotency_key": outcome.idempotency_key,
                "policy_rule": outcome.policy.rule if outcome.policy else None,
            },
        )
        retried = [Action.RETRY_PAYMENT] if tried else []
        if verdict is RetryVerdict.RECOVERED:
            already = bool(outcome.data.get("already_paid"))
            status, reason = (
                ("canceled", "paid elsewhere") if already else ("recovered", f"retry #{claim.attempt_no}")
            )
            closed = await self.store.close_schedule(
                invoice, status, reason, recovered_cents=0 if already else claim.amount_due_cents
            )
            if closed and not already:
                amount = domain.usd(claim.amount_due_cents)
                await self._outcome(
                    recovery,
                    retried,
                    amount,
                    f"dunning retry #{claim.attempt_no} of {invoice} paid ${amount:.2f}",
                )
        elif verdict is RetryVerdict.NOT_PAYABLE:
            await self.store.close_schedule(invoice, "canceled", f"not payable: {outcome.detail}")
        elif verdict is RetryVerdict.NEEDS_HUMAN:
            if await self.store.close_schedule(invoice, "canceled", f"policy: {outcome.detail}"):
                await self._escalate(recovery, claim, outcome)
        elif verdict in (RetryVerdict.HARD, RetryVerdict.EXHAUSTED):
            status = "hard_decline" if verdict is RetryVerdict.HARD else "exhausted"
            if await self.store.close_schedule(
                invoice, status, f"{verdict.value} after retry #{claim.attempt_no}"
            ):
                email = domain.email_for(
                    Action.SEND_UPDATE_CARD_LINK,
                    amount_usd=domain.usd(claim.amount_due_cents),
                    invoice_id=invoice,
                )
                link_ctx = self.d.context(
                    recovery,
                    ctx.facts or await self.d.facts(claim.customer_id, RootCause.CARD_DECLINED_SOFT),
                    actor_id=f"dunning:{self.worker_id}",
                )
                sent = await self.actions.send_update_card_link(
                    link_ctx, return_url=self.d.return_url, subject=email.subject, body=email.body
                )
                ok = reached(sent)
                actions = retried + ([Action.SEND_UPDATE_CARD_LINK] if ok else [])
                await self._outcome(
                    recovery,
                    actions,
                    0.0,
                    f"dunning {status} for {invoice} after {claim.attempt_no} retries "
                    f"({code or outcome.detail}); "
                    f"update-card link {'sent' if ok else 'not sent: ' + why_not(sent)[1]}",
                )
        return AttemptResult(invoice, claim.attempt_no, verdict, outcome.replayed, self.worker_id)

    def _verdict(self, claim: ClaimedAttempt, outcome: ActionOutcome) -> tuple[RetryVerdict, str | None]:
        """What the attempt means for the schedule (and the decline it saw, if any)."""
        if outcome.status in ("denied", "needs_human"):
            reason = outcome.policy.reason if outcome.policy is not None else outcome.detail
            return (
                domain.after_refusal(
                    reason=reason,
                    needs_human=outcome.status == "needs_human",
                    attempts_left=claim.attempts_left,
                ),
                None,
            )
        if outcome.status == "failed" and outcome.escalation_reason is EscalationReason.ERROR:
            raise DunningAttemptError(f"retry of {claim.invoice_id}#{claim.attempt_no}: {outcome.detail}")
        code = None if outcome.ok else _text(outcome.data.get("decline_code"))
        verdict = domain.after_retry(
            paid=outcome.ok,
            decline=self.classify(code) if code else None,
            attempts_left=claim.attempts_left,
            payable=not outcome.data.get("not_payable"),
        )
        return verdict, code

    async def _escalate(
        self, cause: StripeEventReceivedV1, claim: ClaimedAttempt, outcome: ActionOutcome
    ) -> None:
        await start_contact(
            self.pool,
            contact_id=cause.contact_id,
            customer_id=cause.customer_id,
            trigger="stripe_event",
            channel=None,
        )
        reason = outcome.escalation_reason or EscalationReason.POLICY_DENIED
        await escalate(
            self.broker,
            cause=cause,
            payload=EscalationOpenedPayload(
                reason=reason,
                opened_by=Tier.TIER0,
                intent=Intent.PAYMENT_FAILED,
                amount_usd=domain.usd(claim.amount_due_cents),
                actions_tried=[outcome.record(Tier.TIER0)],
                suggested_next_step=f"Dunning of {claim.invoice_id} stopped: {outcome.detail}",
                tier_path=[Tier.TIER0],
                text=f"dunning retry #{claim.attempt_no} of {claim.invoice_id}",
            ),
        )
        await audit(
            self.broker,
            cause=cause,
            actor=AUDIT_ACTOR,
            action=Action.ESCALATE.value,
            target=cause.customer_id,
            decision=reason.value,
            details={"invoice": claim.invoice_id, "attempt": claim.attempt_no},
        )

    async def _outcome(
        self,
        cause: StripeEventReceivedV1,
        actions: list[Action],
        recovered: float,
        summary: str,
    ) -> None:
        await start_contact(
            self.pool,
            contact_id=cause.contact_id,
            customer_id=cause.customer_id,
            trigger="stripe_event",
            channel=None,
        )
        await record_outcome(
            self.pool,
            self.broker,
            cause=cause,
            payload=OutcomeRecordedPayload(
                resolved_by=Tier.TIER0,
                tier_path=[Tier.TIER0],
                intent=Intent.PAYMENT_FAILED,
                root_cause=RootCause.CARD_DECLINED_SOFT,
                actions=actions,
                recovered_usd=recovered,
                trigger="stripe_event",
                summary=summary,
            ),
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


__all__ = ["AttemptResult", "DunningAttemptError", "DunningWorker", "utc_now"]
