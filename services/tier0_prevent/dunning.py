"""The dunning worker: executes due retries exactly once, however many replicas run.

A claim is a committed ``SELECT ... FOR UPDATE SKIP LOCKED`` + ``status='running'`` (another replica
skips the row); the Stripe call itself goes through the action ledger with a key per invoice and
attempt, so even a claim taken over after a crash never charges twice.
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

from schemas import Action, Intent, RootCause, Tier, derived_id
from schemas.messages import OutcomeRecordedPayload, StripeEventReceivedV1
from services.tier0_prevent import domain
from services.tier0_prevent.adapters.postgres import ClaimedAttempt, Tier0Store
from services.tier0_prevent.adapters.stripe import CardDeclined, InvoiceNotPayable, as_record, url_of
from services.tier0_prevent.domain import RetryVerdict
from services.tier0_prevent.handlers import ACTOR, Notifications, Tier0Deps, utc_now
from services.tier0_prevent.ports import BillingActions, DeclineClassifier
from tierline.ledger import ActionFailed, ActionLedger, idempotency_key
from tierline.pipeline import audit, record_outcome, start_contact

log = structlog.get_logger(__name__)


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
        self.ledger: ActionLedger = deps.ledger
        self.billing: BillingActions = deps.billing
        self.classify: DeclineClassifier = deps.classify
        self.broker: KafkaBroker = deps.broker
        self.pool: asyncpg.Pool = deps.pool
        self.clock: Callable[[], datetime] = deps.clock
        self.notify = Notifications(deps)

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

    async def execute(self, claim: ClaimedAttempt) -> AttemptResult:
        invoice = claim.invoice_id
        cause = StripeEventReceivedV1.model_validate(claim.cause)
        target = f"{invoice}#{claim.attempt_no}"
        key = idempotency_key(f"dunning:{invoice}", Action.RETRY_PAYMENT.value, target)

        async def effect() -> dict[str, Any]:
            try:
                result = as_record(await self.billing.retry_invoice(invoice, key))
            except CardDeclined as exc:
                raise ActionFailed(
                    f"declined: {exc.code}", {**exc.result, "paid": False, "decline_code": exc.code}
                ) from exc
            except InvoiceNotPayable as exc:
                raise ActionFailed(str(exc), {**exc.result, "paid": False, "not_payable": True}) from exc
            return {**result, "paid": result.get("status", "paid") == "paid"}

        async def reconcile() -> dict[str, Any] | None:
            find = getattr(self.billing, "find_invoice_retry", None)
            if find is None:
                return None
            prior = await find(invoice, key)
            if prior is None:
                return None
            record = as_record(prior)
            return {**record, "paid": record.get("status") == "paid", "reconciled": True}

        outcome = await self.ledger.execute(
            key=key,
            contact_id=claim.contact_id,
            customer_id=claim.customer_id,
            action=Action.RETRY_PAYMENT.value,
            target=target,
            tier=Tier.TIER0.value,
            actor=f"{ACTOR}.dunning:{self.worker_id}",
            effect=effect,
            amount_usd=domain.usd(claim.amount_due_cents),
            reconcile=reconcile,
        )
        paid = bool(outcome.ok and outcome.result.get("paid"))
        code = outcome.result.get("decline_code") if not paid else None
        decline = self.classify(code) if code else None
        verdict = domain.after_retry(
            paid=paid,
            decline=decline,
            attempts_left=claim.attempts_left,
            payable=not outcome.result.get("not_payable"),
        )
        await self.store.finish_attempt(
            invoice,
            claim.attempt_no,
            "succeeded" if paid else "failed",
            decline_code=code,
            result=outcome.result,
        )
        log.info(
            "tier0.dunning.attempted",
            invoice=invoice,
            attempt=claim.attempt_no,
            verdict=verdict.value,
            worker=self.worker_id,
            replayed=outcome.replayed,
        )
        await audit(
            self.broker,
            cause=cause,
            actor=ACTOR,
            action=Action.RETRY_PAYMENT.value,
            target=target,
            decision=verdict.value,
            details={"decline_code": code, "idempotency_key": key},
        )
        recovery = cause.model_copy(
            update={"contact_id": f"dunning:{invoice}", "message_id": derived_id("dunning", invoice)}
        )
        if verdict is RetryVerdict.RECOVERED:
            already = bool(outcome.result.get("already_paid"))
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
                    [Action.RETRY_PAYMENT],
                    amount,
                    f"dunning retry #{claim.attempt_no} of {invoice} paid ${amount:.2f}",
                )
        elif verdict is RetryVerdict.NOT_PAYABLE:
            await self.store.close_schedule(invoice, "canceled", f"not payable: {outcome.error}")
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
                sent = await self.notify.send(
                    recovery,
                    action=Action.SEND_UPDATE_CARD_LINK,
                    target=claim.customer_id,
                    email=email,
                    link=lambda: self._card_url(claim.customer_id),
                )
                actions = [Action.RETRY_PAYMENT] + ([Action.SEND_UPDATE_CARD_LINK] if sent.ok else [])
                await self._outcome(
                    recovery,
                    actions,
                    0.0,
                    f"dunning {status} for {invoice} after {claim.attempt_no} retries ({code}); "
                    f"update-card link {'sent' if sent.ok else 'not sent: ' + str(sent.error)}",
                )
        return AttemptResult(invoice, claim.attempt_no, verdict, outcome.replayed, self.worker_id)

    async def _card_url(self, customer_id: str) -> str:
        return url_of(await self.billing.update_card_link(customer_id, self.d.return_url)) or ""

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


__all__ = ["AttemptResult", "DunningWorker", "utc_now"]
