"""Billing actions every tier shares: policy-checked, ledgered (once-only), audited.

Tier 1 fix executors, the Tier 2 agent's tools and Tier 3 human actions all call the same
``Actions`` port, with a different actor (``selfheal``, ``ai``, ``human``); the policy engine decides,
the action ledger guarantees once-only effects, and every decision and effect is audited.
Targets and amounts are resolved from verified records (the Stripe mirror / live Stripe), never from
what a customer or a model claims.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from schemas import Action, Envelope, EscalationReason, Tier
from schemas.messages import ActionRecord, DiagnosisView, PolicyDecisionRecord
from tierline.billing.policy import ApprovalFacts

ActorKind = Literal["system", "ai", "selfheal", "human"]
OutcomeStatus = Literal["succeeded", "failed", "denied", "needs_human"]


@dataclass(frozen=True)
class ActionContext:
    """Who acts, for which contact and customer, because of which message (the audit cause)."""

    contact_id: str
    customer_id: str
    tier: Tier
    actor: ActorKind
    actor_id: str
    cause: Envelope[Any]
    #: Verified facts the caller already holds, used instead of a diagnosis for targets and policy facts
    #: (tier 0: the signed Stripe event and the mirror). ``None``: the executor asks diagnostics.
    facts: DiagnosisView | None = None
    #: Guardrail findings on the contact's text (``tierline.guardrails.INJECTION_FLAG``): the policy
    #: refuses automatic money-moving actions for a flagged text (``guardrail`` rule).
    flags: tuple[str, ...] = ()
    #: A lead's approval of the refund this context runs (Tier 3 approvals): a policy fact, a key of its
    #: own for the refund (once per approval), and both names in the audit records.
    approval: ApprovalFacts | None = None
    #: The customer asked with a button that named the change (a Health Meter fix), not in free text.
    clicked: bool = False
    #: A price confirmation the customer confirmed on tier 1's signed page (verified again in its record).
    price_confirmation: str | None = None

    @property
    def approval_details(self) -> dict[str, Any]:
        """What the audit records carry about an approval: who asked and who approved."""
        if self.approval is None:
            return {}
        return {
            "approval_id": self.approval.approval_id,
            "requested_by": self.approval.requested_by,
            "approved_by": self.approval.approved_by,
        }

    @property
    def key_scope(self) -> str:
        """What idempotency keys are scoped by: the contact, and a human's actions apart from the machine's.

        A refund the AI was denied for a contact leaves a ``denied`` ledger row under the contact's key; the
        human who then takes the case acts under keys of its own, still once-only within the case.
        """
        return f"{self.contact_id}/human" if self.actor == "human" else self.contact_id


@dataclass
class ActionOutcome:
    action: Action
    status: OutcomeStatus
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    target: str | None = None
    amount_usd: float = 0.0
    idempotency_key: str = ""
    escalation_reason: EscalationReason | None = None
    policy: PolicyDecisionRecord | None = None
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def record(self, tier: Tier) -> ActionRecord:
        status = "denied" if self.status == "needs_human" else self.status
        return ActionRecord(
            action=self.action,
            tier=tier,
            status=status,
            idempotency_key=self.idempotency_key,
            detail=self.detail[:500],
            amount_usd=self.amount_usd,
            target=self.target,
        )


class Actions(Protocol):
    async def retry_payment(
        self, ctx: ActionContext, invoice_id: str | None = None, *, attempt: int | None = None
    ) -> ActionOutcome: ...

    async def send_update_card_link(
        self,
        ctx: ActionContext,
        *,
        return_url: str | None = None,
        subject: str | None = None,
        body: str | None = None,
    ) -> ActionOutcome: ...

    async def regenerate_invoice_link(
        self, ctx: ActionContext, invoice_id: str | None = None, *, notify: bool = True
    ) -> ActionOutcome: ...

    async def send_invoice(self, ctx: ActionContext, invoice_id: str | None = None) -> ActionOutcome: ...

    async def refund(
        self, ctx: ActionContext, charge_id: str | None, amount_usd: float | None, reason: str
    ) -> ActionOutcome: ...

    async def update_billing_details(
        self,
        ctx: ActionContext,
        *,
        email: str | None = None,
        name: str | None = None,
        address: dict[str, str] | None = None,
        tax_id: str | None = None,
        payment_method: str | None = None,
    ) -> ActionOutcome: ...

    async def cancel_subscription(self, ctx: ActionContext, at_period_end: bool = True) -> ActionOutcome: ...

    async def change_plan(
        self, ctx: ActionContext, plan: str, seats: int | None = None, *, preview_only: bool = False
    ) -> ActionOutcome: ...

    async def explain_charge(self, ctx: ActionContext, charge_id: str | None = None) -> ActionOutcome: ...

    async def product_action(
        self, ctx: ActionContext, name: str, params: dict[str, Any], *, requester: str | None = None
    ) -> ActionOutcome: ...

    async def send_nudge(
        self,
        ctx: ActionContext,
        *,
        template: str,
        subject: str,
        body: str,
        target: str | None = None,
        link: str | Callable[[], Awaitable[str | None]] | None = None,
        dedupe_key: str | None = None,
    ) -> ActionOutcome: ...


# =============================================================================== the executor
import asyncio  # noqa: E402
import hashlib  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

import asyncpg  # noqa: E402
import structlog  # noqa: E402
from faststream.kafka import KafkaBroker  # noqa: E402

from schemas.messages import NotificationRequestedPayload, NotificationRequestedV1  # noqa: E402
from tierline import account_changes, metrics  # noqa: E402
from tierline.billing import facts as billing_facts  # noqa: E402
from tierline.billing.facts import FactsRepository, PostgresFacts  # noqa: E402
from tierline.billing.policy import (  # noqa: E402
    PRICE_CONFIRMATION_RULE,
    Allow,
    NeedsHuman,
    PolicyContext,
    PolicyEngine,
    to_record,
)
from tierline.guardrails import INJECTION_FLAG  # noqa: E402
from tierline.ledger import ActionFailed, ActionLedger, LedgerResult, idempotency_key  # noqa: E402
from tierline.messaging import publish  # noqa: E402
from tierline.pipeline import audit  # noqa: E402
from tierline.settings import InfraSettings  # noqa: E402
from tierline.switches import (  # noqa: E402
    MONEY_PAUSED_RULE,
    MoneySwitch,
    breaker_trips,
    is_money_action,
    refunds_last_hour_usd,
    trip_breaker,
)

log = structlog.get_logger(__name__)

#: The purpose of the signed link to tier 1's price confirmation page, and how long it stays valid.
PRICE_CONFIRMATION_PURPOSE = "confirm_price"
PRICE_CONFIRMATION_TTL_S = 7 * 24 * 3600

#: Policy denials whose reason is itself an escalation reason keep it; anything else is policy_denied.
_REASONS = {r.value for r in EscalationReason}


def _iso(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


class ActionExecutor:
    """The one implementation of :class:`Actions` (Stripe + ledger + policy + audit + notifications)."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        broker: KafkaBroker,
        settings: InfraSettings,
        diagnostics: Any,
        stripe: Any = None,
        policy: Any = None,
        facts: FactsRepository | None = None,
    ) -> None:
        from tierline.stripe_adapter import StripeActions

        self.pool = pool
        self.broker = broker
        self.settings = settings
        self.diagnostics = diagnostics
        self.stripe = stripe or StripeActions(settings)
        self.policy = policy or PolicyEngine.from_yaml()
        self.ledger = ActionLedger(pool)
        self.facts: FactsRepository = facts or PostgresFacts(pool)
        self._cache: dict[str, tuple[float, DiagnosisView]] = {}
        self.money_switch = MoneySwitch(pool)

    #: How long one customer's diagnosis is reused while a contact is being handled. Any effect on the
    #: customer drops it, and money limits are counted from the ledger at decision time, not from it.
    DIAGNOSIS_TTL_S = 3.0

    # ------------------------------------------------------------------ facts (verified records only)
    #: How old a diagnosis that arrived with the request (the router's) may be and still be used instead
    #: of computing another: one computation per contact unless an effect ran since or it is older.
    CARRIED_DIAGNOSIS_MAX_AGE_S = 30.0

    async def diagnosis(self, ctx: ActionContext) -> DiagnosisView:
        if ctx.facts is not None:
            return ctx.facts
        now = asyncio.get_running_loop().time()
        cached = self._cache.get(ctx.customer_id)
        if cached is not None and now < cached[0]:
            return cached[1]
        result: DiagnosisView = await self.diagnostics.diagnose(ctx.customer_id, contact_id=ctx.contact_id)
        self._remember(ctx.customer_id, result, self.DIAGNOSIS_TTL_S)
        return result

    async def adopt(self, ctx: ActionContext, carried: DiagnosisView | None) -> bool:
        """Use the diagnosis the request carries instead of computing another, while it is fresh
        (``CARRIED_DIAGNOSIS_MAX_AGE_S``) and no effect on the customer ran after it was computed."""
        if carried is None or carried.computed_at is None or carried.customer_id != ctx.customer_id:
            return False
        age = (datetime.now(UTC) - carried.computed_at).total_seconds()
        if not 0 <= age < self.CARRIED_DIAGNOSIS_MAX_AGE_S:
            return False
        changed = await self.pool.fetchval(
            "SELECT 1 FROM action_ledger WHERE customer_id = $1 AND updated_at >= $2 LIMIT 1",
            ctx.customer_id,
            carried.computed_at,
        )
        if changed:
            return False
        self._remember(ctx.customer_id, carried, self.CARRIED_DIAGNOSIS_MAX_AGE_S - age)
        return True

    def _remember(self, customer_id: str, diagnosis: DiagnosisView, for_s: float) -> None:
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[customer_id] = (asyncio.get_running_loop().time() + for_s, diagnosis)

    def forget(self, customer_id: str) -> None:
        self._cache.pop(customer_id, None)

    async def policy_context(self, ctx: ActionContext, diagnosis: DiagnosisView, **extra: Any) -> Any:
        """The policy's facts: one read of the facts repository, derived with the billing core's rules
        (``tierline.billing.facts``: the same dispute and fraud rules as the router's gates)."""
        facts = await self.facts.load(
            ctx.customer_id, refund_window_days=self.policy.refund_history_window_days
        )
        return billing_facts.policy_context(
            self.policy,
            facts,
            diagnosis,
            actor=ctx.actor,
            now=datetime.now(UTC),
            instruction_flag=INJECTION_FLAG in ctx.flags,
            **extra,
        )

    @staticmethod
    def charge_facts(diagnosis: DiagnosisView, charge_id: str | None) -> Any:
        return billing_facts.charge_facts(diagnosis, charge_id)

    # ------------------------------------------------------------------ the one path every action takes
    async def _run(
        self,
        ctx: ActionContext,
        action: Action,
        target: str | None,
        pctx: Any,
        effect: Any,
        *,
        amount_usd: float = 0.0,
        reconcile: Any = None,
        key_target: str | None = None,
        decided: Any = None,
    ) -> ActionOutcome:

        key = idempotency_key(ctx.key_scope, action.value, key_target or target)
        done = await self.ledger.get(key)
        if done is not None and done.status in ("succeeded", "failed"):
            # A redelivered message or a second click: answer what happened, without asking the policy
            # again about a world the first execution already changed (a refunded charge has less left).
            log.info("action.replayed", action=action.value, target=target, status=done.status)
            if done.ok:  # republished identically (id from the key): a publish lost to a crash happens now
                await account_changes.publish_change(self.broker, ctx, action, key, done.result)
            return ActionOutcome(
                action=action,
                status="succeeded" if done.ok else "failed",
                detail=done.error or str(done.result.get("message", "")),
                data=done.result,
                target=target,
                idempotency_key=key,
                replayed=True,
                amount_usd=float(done.result.get("amount_usd", amount_usd)) if done.ok else 0.0,
            )
        if decided is not None:  # a verdict the caller's own rules reached (product actions)
            verdict = decided
        else:
            verdict = self.policy.check(action, pctx) if pctx is not None else Allow(rule="read_only")
        if isinstance(verdict, Allow) and pctx is not None:  # the operators' kill switch, the spend breaker
            verdict = await self._money_gate(ctx, action, pctx, amount_usd) or verdict
        record = to_record(action, verdict)
        metrics.POLICY_DECISIONS.labels(action.value, verdict.kind, verdict.rule).inc()
        if isinstance(pctx, PolicyContext):
            await self._record_decision(ctx, key, action, target, amount_usd, record, pctx)
        await audit(
            self.broker,
            cause=ctx.cause,
            actor=f"{ctx.tier.value}:{ctx.actor_id}",
            action=f"policy.{action.value}",
            target=target,
            decision=verdict.kind,
            details={
                "rule": verdict.rule,
                "reason": record.reason,
                "policy_version": self.policy.version,
                "amount_usd": amount_usd,
                **ctx.approval_details,
            },
        )
        if not isinstance(verdict, Allow):
            reason = verdict.reason.value if isinstance(verdict, NeedsHuman) else str(verdict.reason)
            escalation = EscalationReason(reason) if reason in _REASONS else EscalationReason.POLICY_DENIED
            await self.ledger.record_denied(
                key=key,
                contact_id=ctx.contact_id,
                customer_id=ctx.customer_id,
                action=action.value,
                target=target,
                tier=ctx.tier.value,
                actor=ctx.actor,
                reason=reason,
                amount_usd=amount_usd,
            )
            status: OutcomeStatus = "needs_human" if isinstance(verdict, NeedsHuman) else "denied"
            metrics.observe_action(action.value, ctx.tier.value, status, amount_usd, replayed=False)
            detail = verdict.detail if isinstance(verdict, NeedsHuman) else reason
            log.info(
                "action.refused", action=action.value, target=target, verdict=verdict.kind, reason=reason
            )
            return ActionOutcome(
                action=action,
                status=status,
                detail=detail,
                target=target,
                amount_usd=amount_usd,
                idempotency_key=key,
                escalation_reason=escalation,
                policy=record,
            )
        self.forget(ctx.customer_id)
        try:
            result: LedgerResult = await self.ledger.execute(
                key=key,
                contact_id=ctx.contact_id,
                customer_id=ctx.customer_id,
                action=action.value,
                target=target,
                tier=ctx.tier.value,
                actor=ctx.actor,
                effect=effect,
                amount_usd=amount_usd,
                reconcile=reconcile,
            )
        except Exception as exc:  # an unexpected error is a failed action, never a silent one
            log.error(
                "action.error", action=action.value, target=target, error=f"{type(exc).__name__}: {exc}"
            )
            metrics.observe_action(action.value, ctx.tier.value, "failed", amount_usd, replayed=False)
            await audit(
                self.broker,
                cause=ctx.cause,
                actor=f"{ctx.tier.value}:{ctx.actor_id}",
                action=action.value,
                target=target,
                decision="error",
                details={"error": f"{type(exc).__name__}: {exc}"[:500]},
            )
            return ActionOutcome(
                action=action,
                status="failed",
                detail=f"{type(exc).__name__}: {exc}",
                target=target,
                amount_usd=amount_usd,
                idempotency_key=key,
                policy=record,
                escalation_reason=EscalationReason.ERROR,
            )
        await audit(
            self.broker,
            cause=ctx.cause,
            actor=f"{ctx.tier.value}:{ctx.actor_id}",
            action=action.value,
            target=target,
            decision=result.status,
            details={
                "idempotency_key": key,
                "replayed": result.replayed,
                "amount_usd": amount_usd,
                "error": result.error,
                **ctx.approval_details,
            },
        )
        metrics.observe_action(
            action.value,
            ctx.tier.value,
            "succeeded" if result.ok else "failed",
            amount_usd,
            replayed=result.replayed,
        )
        if result.ok:  # an account change: email / Slack / timeline (billing.change.recorded.v1)
            await account_changes.publish_change(self.broker, ctx, action, key, result.result)
        return ActionOutcome(
            action=action,
            status="succeeded" if result.ok else "failed",
            detail=result.error or str(result.result.get("message", "")),
            data=result.result,
            target=target,
            amount_usd=amount_usd if result.ok else 0.0,
            idempotency_key=key,
            policy=record,
            replayed=result.replayed,
        )

    async def _money_gate(
        self, ctx: ActionContext, action: Action, pctx: Any, amount_usd: float
    ) -> NeedsHuman | None:
        """An automatic money action the policy allowed, held while money is paused (``tierline pause
        money``, or the spend breaker, which this refund may trip): a person decides (``money_paused``)."""
        increase = float(getattr(pctx, "price_increase_usd", 0.0) or 0.0)
        if not is_money_action(action, actor=ctx.actor, price_increase_usd=increase):
            return None
        state = await self.money_switch.state()
        breaker = getattr(getattr(self.policy, "rules", None), "breaker", None)
        limit = getattr(breaker, "refunds_per_hour_usd", None)
        if not state.paused and action is Action.REFUND and limit is not None:
            spent = await refunds_last_hour_usd(self.pool)
            if breaker_trips(spent, amount_usd, limit):
                state = await trip_breaker(
                    self.pool,
                    self.broker,
                    spent_usd=spent,
                    amount_usd=amount_usd,
                    limit_usd=limit,
                    customer_id=ctx.customer_id,
                    contact_id=ctx.contact_id,
                )
                self.money_switch.remember(state)
        if not state.paused:
            return None
        log.warning("action.money_paused", action=action.value, contact_id=ctx.contact_id, by=state.actor)
        return NeedsHuman(
            reason=EscalationReason.MONEY_PAUSED,
            rule=MONEY_PAUSED_RULE,
            detail=f"Automatic money actions are paused ({state.reason or state.actor}): a person decides.",
        )

    async def _record_decision(
        self,
        ctx: ActionContext,
        key: str,
        action: Action,
        target: str | None,
        amount_usd: float,
        record: PolicyDecisionRecord,
        pctx: PolicyContext,
    ) -> None:
        """Keep the decision with the verified facts it was made on, for `tierline policy simulate`
        (a redelivered message decided again replaces it: the latest decision is the one that took effect)."""
        await self.pool.execute(
            """INSERT INTO policy_decisions (idempotency_key, contact_id, customer_id, action, target, tier,
                   actor, amount_usd, verdict, reason, rule, policy_version, context)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)
               ON CONFLICT (idempotency_key) DO UPDATE SET verdict=EXCLUDED.verdict, reason=EXCLUDED.reason,
                   rule=EXCLUDED.rule, policy_version=EXCLUDED.policy_version, context=EXCLUDED.context,
                   amount_usd=EXCLUDED.amount_usd, decided_at=now()""",
            key,
            ctx.contact_id,
            ctx.customer_id,
            action.value,
            target,
            ctx.tier.value,
            ctx.actor,
            amount_usd,
            record.verdict,
            record.reason,
            record.rule,
            self.policy.version,
            pctx.model_dump(mode="json"),
        )

    async def _notify(
        self,
        ctx: ActionContext,
        *,
        template: str,
        subject: str,
        body: str,
        key: str,
        link: str | None = None,
        dedupe_key: str | None = None,
    ) -> str | None:
        """Ask the notifier to email the customer (deduplicated by the action's key, or ``dedupe_key``
        when one email must cover several contacts, e.g. one card's expiry seen by a webhook and a scan)."""
        email = await self.pool.fetchval("SELECT email FROM stripe_customers WHERE id=$1", ctx.customer_id)
        email = email or await self.pool.fetchval("SELECT email FROM customers WHERE id=$1", ctx.customer_id)
        email = email or await self._live_email(ctx.customer_id)
        if not email:
            return None
        await publish(
            self.broker,
            NotificationRequestedV1.build(
                NotificationRequestedPayload(
                    to=email,
                    template=template,
                    subject=subject,
                    body=body,
                    dedupe_key=dedupe_key or key,
                    link=link,
                ),
                contact_id=ctx.contact_id,
                customer_id=ctx.customer_id,
                cause=ctx.cause,
                role=f"notify:{key}",
            ),
        )
        return str(email)

    async def _billing_email(self, customer_id: str) -> str | None:
        """The customer's billing address on file (mirror, then store), for change notices."""
        email = await self.pool.fetchval("SELECT email FROM stripe_customers WHERE id=$1", customer_id)
        return email or await self.pool.fetchval("SELECT email FROM customers WHERE id=$1", customer_id)

    async def _live_email(self, customer_id: str) -> str | None:
        """Neither the mirror nor the store has an address yet: read the customer from Stripe."""
        get_customer = getattr(self.stripe, "get_customer", None)
        if get_customer is None:
            return None
        try:
            customer = await get_customer(customer_id)
        except Exception as exc:  # noqa: BLE001 - reported as "no address" (sent_to None) by the caller
            log.warning("action.customer.read_failed", customer_id=customer_id, error=type(exc).__name__)
            return None
        email = customer.get("email") if isinstance(customer, dict) else None
        return email if isinstance(email, str) and "@" in email else None

    async def record_effect(
        self,
        ctx: ActionContext,
        name: str,
        target: str | None,
        effect: Any,
        *,
        details: dict[str, Any] | None = None,
    ) -> LedgerResult:
        """A bookkeeping effect outside the action vocabulary (a risk flag, a retry schedule): nothing is
        done to the customer, so there is no policy verdict, but it is once-only in the ledger under the
        same keys and audited like every action."""
        key = idempotency_key(ctx.key_scope, name, target)
        result = await self.ledger.execute(
            key=key,
            contact_id=ctx.contact_id,
            customer_id=ctx.customer_id,
            action=name,
            target=target,
            tier=ctx.tier.value,
            actor=ctx.actor,
            effect=effect,
        )
        await audit(
            self.broker,
            cause=ctx.cause,
            actor=f"{ctx.tier.value}:{ctx.actor_id}",
            action=name,
            target=target,
            decision=result.status,
            details={
                **(details or {}),
                "idempotency_key": key,
                "replayed": result.replayed,
                "error": result.error,
            },
        )
        return result

    # ------------------------------------------------------------------ actions
    async def retry_payment(
        self, ctx: ActionContext, invoice_id: str | None = None, *, attempt: int | None = None
    ) -> ActionOutcome:
        """Pay an open invoice again. ``attempt`` numbers a scheduled retry (tier 0's dunning): each attempt
        has its own key, while the ledger target stays the invoice, so the policy counts them all."""
        diagnosis = await self.diagnosis(ctx)
        invoice = diagnosis.evidence.get("invoice") or {}
        target = invoice_id or invoice.get("id")
        if not target or (
            invoice_id
            and invoice.get("id") not in (None, invoice_id)
            and not await self._owns_invoice(ctx.customer_id, invoice_id)
        ):
            return ActionOutcome(Action.RETRY_PAYMENT, "failed", "no open invoice of this customer to retry")
        if invoice.get("status") == "paid":
            return ActionOutcome(Action.RETRY_PAYMENT, "failed", "the invoice is already paid", target=target)
        amount = float(invoice.get("amount_due_usd") or 0)
        pctx = await self.policy_context(ctx, diagnosis)

        async def effect() -> dict[str, Any]:
            from tierline.stripe_adapter import CardDeclined, InvoiceNotPayable

            try:
                paid = await self.stripe.retry_invoice(target, retry_key)
            except CardDeclined as exc:
                code = getattr(exc, "code", None)
                raise ActionFailed(f"the card was declined again ({code})", {"decline_code": code}) from exc
            except InvoiceNotPayable as exc:
                raise ActionFailed(str(exc), {**exc.result, "not_payable": True}) from exc
            if paid.status != "paid":
                raise ActionFailed(
                    f"the card was declined again ({paid.decline_code})", {"decline_code": paid.decline_code}
                )
            await self.pool.execute("UPDATE stripe_invoices SET status='paid' WHERE id=$1", target)
            recovered = 0.0 if paid.already_paid else paid.amount_cents / 100
            return {
                "invoice": target,
                "status": paid.status,
                "recovered_usd": recovered,
                "already_paid": bool(paid.already_paid),
                "charge": paid.charge_id,
                "message": f"Invoice {target} paid: ${recovered:.2f} recovered.",
            }

        async def reconcile() -> dict[str, Any] | None:
            prior = await self.stripe.find_invoice_retry(target, retry_key)
            if prior is None or prior.status != "paid":
                return None
            return {
                "invoice": target,
                "status": "paid",
                "recovered_usd": prior.amount_cents / 100,
                "reconciled": True,
            }

        key_target = f"{target}#{attempt}" if attempt is not None else None
        retry_key = idempotency_key(ctx.key_scope, Action.RETRY_PAYMENT.value, key_target or target)
        return await self._run(
            ctx,
            Action.RETRY_PAYMENT,
            target,
            pctx,
            effect,
            amount_usd=amount,
            reconcile=reconcile,
            key_target=key_target,
        )

    async def _owns_invoice(self, customer_id: str, invoice_id: str, *, live: bool = False) -> bool:
        """The invoice is the customer's in the mirror; ``live``: an invoice not mirrored yet is read from
        Stripe (the portal lists invoices from Stripe, so a click can name one the mirror has not seen)."""
        owner = await self.pool.fetchval("SELECT customer_id FROM stripe_invoices WHERE id=$1", invoice_id)
        get_invoice = getattr(self.stripe, "get_invoice", None)
        if owner is None and live and invoice_id.startswith("in_") and get_invoice is not None:
            from tierline.stripe_adapter import StripeActionError, ref_id

            try:
                owner = ref_id((await get_invoice(invoice_id)).get("customer"))
            except StripeActionError as exc:
                log.info("action.invoice.not_found", invoice=invoice_id, error=type(exc).__name__)
        return bool(owner == customer_id)

    async def send_update_card_link(
        self,
        ctx: ActionContext,
        *,
        return_url: str | None = None,
        subject: str | None = None,
        body: str | None = None,
    ) -> ActionOutcome:
        """Email a link to put in a new card; ``subject``/``body`` replace the default wording (the link is
        appended), ``return_url`` is where the card page returns to."""
        diagnosis = await self.diagnosis(ctx)
        pctx = await self.policy_context(ctx, diagnosis)
        key = idempotency_key(ctx.key_scope, Action.SEND_UPDATE_CARD_LINK.value, ctx.customer_id)

        async def effect() -> dict[str, Any]:
            signed = await self.stripe.update_card_link(
                ctx.customer_id, return_url or self.settings.public_base_url
            )
            link = signed.url
            sent_to = await self._notify(
                ctx,
                template="update_card",
                subject=subject or "Update your card",
                body=f"{body}\n\nUpdate your card: {link}"
                if body
                else f"Your payment method needs attention. Update it here: {link}",
                key=key,
                link=str(link),
            )
            return {"url": str(link), "sent_to": sent_to, "message": "An update-card link was sent."}

        return await self._run(ctx, Action.SEND_UPDATE_CARD_LINK, ctx.customer_id, pctx, effect)

    async def regenerate_invoice_link(
        self, ctx: ActionContext, invoice_id: str | None = None, *, notify: bool = True
    ) -> ActionOutcome:
        """A fresh payable link for an open invoice, emailed to the customer unless ``notify`` is False
        (tier 0 puts it in the message it sends anyway)."""
        diagnosis = await self.diagnosis(ctx)
        invoice = diagnosis.evidence.get("invoice") or {}
        target = invoice_id or invoice.get("id")
        if not target:
            return ActionOutcome(
                Action.REGENERATE_INVOICE_LINK, "failed", "no open invoice to regenerate a link for"
            )
        if (
            invoice_id
            and invoice.get("id") != invoice_id
            and not await self._owns_invoice(ctx.customer_id, invoice_id)
        ):
            return ActionOutcome(
                Action.REGENERATE_INVOICE_LINK, "failed", "invoice not found for this customer"
            )
        pctx = await self.policy_context(ctx, diagnosis)
        key = idempotency_key(ctx.key_scope, Action.REGENERATE_INVOICE_LINK.value, target)

        async def effect() -> dict[str, Any]:
            link = await self.stripe.regenerate_invoice_link(target, key)
            url = link.url
            expires = link.expires_at
            if not url:
                raise ActionFailed("no payable link for this invoice", {"invoice": target})
            await self.pool.execute(
                "UPDATE stripe_invoices SET hosted_invoice_url=$2, link_expires_at=$3 WHERE id=$1",
                target,
                url,
                _as_dt(expires),
            )
            sent_to = None
            if notify:
                sent_to = await self._notify(
                    ctx,
                    template="invoice_link",
                    subject="Your new payment link",
                    body=f"Here is a fresh link to pay invoice {target}: {url}",
                    key=key,
                    link=url,
                )
            return {
                "invoice": target,
                "url": url,
                "expires_at": str(expires),
                "sent_to": sent_to,
                "message": "A new payment link was generated and sent.",
            }

        return await self._run(ctx, Action.REGENERATE_INVOICE_LINK, target, pctx, effect)

    async def send_invoice(self, ctx: ActionContext, invoice_id: str | None = None) -> ActionOutcome:
        """Email an invoice of the customer: ``invoice_id`` (one of theirs; a charge id of a payment without
        an invoice sends that payment's receipt), else the latest paid invoice or payment."""
        target = invoice_id
        charge = None
        if target is not None and not await self._owns_invoice(ctx.customer_id, target, live=True):
            charge = await self.pool.fetchrow(
                """SELECT id, amount_cents, created FROM stripe_charges
                   WHERE id=$1 AND customer_id=$2 AND status='succeeded'""",
                target,
                ctx.customer_id,
            )
            target = None
        if target is None and charge is None:
            target = await self.pool.fetchval(
                """SELECT id FROM stripe_invoices WHERE customer_id=$1 AND status='paid'
                   ORDER BY created DESC NULLS LAST LIMIT 1""",
                ctx.customer_id,
            )
        if target is None and charge is None:
            charge = await self.pool.fetchrow(
                """SELECT id, amount_cents, created FROM stripe_charges
                   WHERE customer_id=$1 AND status='succeeded' ORDER BY created DESC LIMIT 1""",
                ctx.customer_id,
            )
            if charge is None:
                diagnosis = await self.diagnosis(ctx)  # live read fills the mirror on a miss
                charges = diagnosis.evidence.get("charges") or []
                if charges:
                    charge = {
                        "id": charges[0]["id"],
                        "amount_cents": int(round(charges[0]["amount_usd"] * 100)),
                        "created": _iso(charges[0].get("created_at")),
                    }
        if target is None and charge is None:
            return ActionOutcome(Action.SEND_INVOICE, "failed", "no paid invoice or payment found to send")
        doc_target = target or str(charge["id"])  # type: ignore[index]
        key = idempotency_key(ctx.key_scope, Action.SEND_INVOICE.value, doc_target)
        pctx = await self.policy_context(ctx, await self.diagnosis(ctx))  # daily sending limit

        async def effect() -> dict[str, Any]:
            if target is not None:
                info = await self.stripe.send_invoice(target)
                url = info.pdf_url or info.hosted_url
                online = f" (view it online: {info.hosted_url})" if info.hosted_url not in ("", url) else ""
                body = f"As requested, your invoice {info.number or target} as a PDF: {url}{online}"
            else:
                from tierline.stripe_adapter import receipt_url

                # tier 1's receipt page (on the emulator and real Stripe alike), signed for this payment
                url = receipt_url(
                    self.settings.public_base_url, self.settings.session_secret.get_secret_value(), doc_target
                )
                body = f"As requested, the receipt for your payment {doc_target}: {url}"
            sent_to = await self._notify(
                ctx,
                template="invoice",
                subject="Your invoice" if target is not None else "Your receipt",
                body=body,
                key=key,
                link=url,
            )
            return {
                "document": doc_target,
                "url": url,
                "sent_to": sent_to,
                "message": "The invoice was sent to the billing email.",
            }

        return await self._run(ctx, Action.SEND_INVOICE, doc_target, pctx, effect)

    async def refund(
        self, ctx: ActionContext, charge_id: str | None, amount_usd: float | None, reason: str
    ) -> ActionOutcome:
        diagnosis = await self.diagnosis(ctx)
        charges = diagnosis.evidence.get("charges") or []
        if charge_id is None and charges:
            charge_id = charges[0].get("id")
        facts = self.charge_facts(diagnosis, charge_id)
        remaining = (facts.amount_usd - facts.refunded_usd) if facts else 0.0
        amount = round(float(amount_usd if amount_usd is not None else remaining), 2)
        duplicate = diagnosis.evidence.get("duplicate") or {}
        twin = None
        if duplicate.get("charge_id") == charge_id:
            twin = self.charge_facts(diagnosis, duplicate.get("twin_charge_id"))
        pctx = await self.policy_context(
            ctx,
            diagnosis,
            charge=facts,
            requested_amount_usd=amount,
            duplicate_of=twin,
            approval=ctx.approval,
        )
        # an approved refund runs once per approval, under a key of its own (a refusal of the same refund
        # asked without approval must not shadow it)
        key_target = f"{charge_id}#approval:{ctx.approval.approval_id}" if ctx.approval else None
        key = idempotency_key(ctx.key_scope, Action.REFUND.value, key_target or charge_id)
        refunded = charge_id or ""  # the policy allows a refund only of a verified charge of the customer

        async def effect() -> dict[str, Any]:
            refund = await self.stripe.refund(refunded, int(round(amount * 100)), _refund_reason(reason), key)
            return {
                "refund": refund.refund_id,
                "charge": charge_id,
                "amount_usd": amount,
                "status": refund.status,
                "message": f"Refunded ${amount:.2f} for charge {charge_id}.",
            }

        async def reconcile() -> dict[str, Any] | None:
            found = await self.stripe.find_refund(refunded, key)
            if found is None:
                return None
            return {
                "refund": found.refund_id,
                "charge": charge_id,
                "amount_usd": found.amount_cents / 100,
                "reconciled": True,
            }

        return await self._run(
            ctx,
            Action.REFUND,
            charge_id,
            pctx,
            effect,
            amount_usd=amount,
            reconcile=reconcile,
            key_target=key_target,
        )

    async def update_billing_details(
        self,
        ctx: ActionContext,
        *,
        email: str | None = None,
        name: str | None = None,
        address: dict[str, str] | None = None,
        tax_id: str | None = None,
        payment_method: str | None = None,
    ) -> ActionOutcome:
        """Billing email, company name, address, a tax id and/or the default card (a payment method Stripe
        collected; card data never reaches tierline). All or nothing: Stripe is read first (unreachable →
        nothing written), a later step that fails undoes the earlier ones, and the mirror is written only
        once Stripe holds every change."""
        diagnosis = await self.diagnosis(ctx)
        pctx = await self.policy_context(ctx, diagnosis)
        changes = {
            k: v
            for k, v in {
                "email": email,
                "name": name,
                "address": address,
                "tax_id": tax_id,
                "payment_method": payment_method,
            }.items()
            if v
        }
        if not changes:
            return ActionOutcome(Action.UPDATE_BILLING_DETAILS, "failed", "nothing to update")
        target = ",".join(f"{k}={v}" for k, v in sorted((k, str(v)) for k, v in changes.items()))

        async def effect() -> dict[str, Any]:
            from tierline.billing.mirror import MirrorStore, now_ms

            key = idempotency_key(ctx.key_scope, "update_customer", target)
            before = await self.stripe.customer_with_tax_ids(ctx.customer_id)
            added_tax: str | None = None
            updated = False
            pm: dict[str, Any] | None = None
            try:
                if tax_id:
                    kind, _, value = tax_id.partition(":")
                    added = await self.stripe.add_tax_id(
                        ctx.customer_id, kind if value else "eu_vat", value or tax_id, key
                    )
                    added_tax = None if added.already_present else added.tax_id
                if email or name or address:
                    await self.stripe.update_customer(
                        ctx.customer_id,
                        idempotency_key=key,
                        email=email or None,
                        name=name or None,
                        address=address or None,
                    )
                    updated = True
                if payment_method:
                    pm = await self.stripe.set_default_payment_method(ctx.customer_id, payment_method, key)
            except Exception:
                await self._undo_details(ctx.customer_id, before, added_tax, updated, key)
                raise
            after = await self.stripe.customer_with_tax_ids(ctx.customer_id)
            mirror = MirrorStore(self.pool)
            if pm is not None:
                await mirror.upsert_object(pm, now_ms())
            await mirror.upsert_object(after, now_ms())
            result: dict[str, Any] = account_changes.stamp(
                ctx,
                {
                    "updated": sorted(changes),
                    "message": "Billing details updated.",
                    **account_changes.details_change(
                        before,
                        after,
                        changes,
                        previous_card=diagnosis.evidence.get("payment_method"),
                        card=(pm or {}).get("card"),
                    ),
                },
                notify=[before.get("email"), after.get("email")],
            )
            if pm is not None:
                card = pm.get("card") or {}
                result["card"] = {k: card.get(k) for k in ("brand", "last4", "exp_month", "exp_year")}
                result["message"] = "Your new card is now the default."
            return result

        return await self._run(
            ctx, Action.UPDATE_BILLING_DETAILS, ctx.customer_id, pctx, effect, key_target=target
        )

    async def _undo_details(
        self, customer_id: str, before: dict[str, Any], added_tax: str | None, updated: bool, key: str
    ) -> None:
        """Put back what a failed billing-details change already wrote to Stripe (best effort, logged)."""
        try:
            if updated:
                await self.stripe.update_customer(
                    customer_id,
                    idempotency_key=f"{key}:undo",
                    email=before.get("email") or "",
                    name=before.get("name") or "",
                    address={k: v or "" for k, v in (before.get("address") or {}).items()},
                )
            if added_tax is not None:
                await self.stripe.delete_tax_id(customer_id, added_tax)
            log.info("action.billing_details.undone", customer_id=customer_id)
        except Exception as exc:  # noqa: BLE001 - the original error is what the caller reports
            log.error(
                "action.billing_details.undo_failed",
                customer_id=customer_id,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def cancel_subscription(self, ctx: ActionContext, at_period_end: bool = True) -> ActionOutcome:
        diagnosis = await self.diagnosis(ctx)
        sub = diagnosis.evidence.get("subscription") or {}
        if not sub.get("id") or sub.get("status") == "canceled":
            return ActionOutcome(Action.CANCEL_SUBSCRIPTION, "failed", "no active subscription to cancel")
        pctx = await self.policy_context(ctx, diagnosis)
        key = idempotency_key(ctx.key_scope, Action.CANCEL_SUBSCRIPTION.value, sub["id"])

        async def effect() -> dict[str, Any]:
            await self.stripe.cancel_at_period_end(sub["id"], key)
            await self.pool.execute(
                "UPDATE subscriptions SET cancel_at_period_end=true WHERE id=$1", sub["id"]
            )
            end = sub.get("current_period_end")
            return account_changes.stamp(
                ctx,
                {
                    "subscription": sub["id"],
                    "at_period_end": True,
                    "message": f"Your subscription will end at the end of the current period ({end}).",
                    "before": {"status": sub.get("status"), "cancel_at_period_end": False},
                    "after": {"status": sub.get("status"), "cancel_at_period_end": True, "ends_at": end},
                },
                notify=[await self._billing_email(ctx.customer_id)],
            )

        return await self._run(ctx, Action.CANCEL_SUBSCRIPTION, sub["id"], pctx, effect)

    async def change_plan(
        self, ctx: ActionContext, plan: str, seats: int | None = None, *, preview_only: bool = False
    ) -> ActionOutcome:
        diagnosis = await self.diagnosis(ctx)
        sub = diagnosis.evidence.get("subscription") or {}
        row = await self.pool.fetchrow("SELECT id, price_usd, tier FROM plans WHERE id=$1 AND active", plan)
        if row is None or not sub.get("id"):
            return ActionOutcome(Action.CHANGE_PLAN, "failed", f"unknown plan {plan!r} or no subscription")
        stripe_plan_id = await self.stripe.ensure_plan(row["tier"], float(row["price_usd"]), "month")
        preview = (await self.stripe.preview_plan_change(sub["id"], stripe_plan_id, seats)).to_dict()
        if preview_only:
            return ActionOutcome(
                Action.CHANGE_PLAN,
                "succeeded",
                "proration preview",
                data={"preview": preview, "plan": plan, "seats": seats, "preview_only": True},
                target=sub["id"],
            )
        increase_cents = int(preview.get("new_amount_cents") or 0) - int(preview.get("old_amount_cents") or 0)
        confirmed = ctx.price_confirmation is not None and await self._price_confirmed(
            ctx, ctx.price_confirmation, sub["id"], plan, seats, int(preview.get("new_amount_cents") or 0)
        )
        pctx = await self.policy_context(
            ctx,
            diagnosis,
            price_increase_usd=max(0, increase_cents) / 100,
            price_confirmed=ctx.clicked or confirmed,
        )
        # a confirmed change runs once per confirmation, under a key of its own (the refusal that asked for
        # the confirmation must not shadow it)
        key_target = f"{sub['id']}:{plan}" + (f"#confirmation:{ctx.price_confirmation}" if confirmed else "")
        key = idempotency_key(ctx.key_scope, Action.CHANGE_PLAN.value, f"{sub['id']}:{plan}:{seats}")

        async def effect() -> dict[str, Any]:
            await self.stripe.change_plan(sub["id"], stripe_plan_id, seats, key)
            await self.pool.execute(
                "UPDATE subscriptions SET plan_id=$2, seats=COALESCE($3, seats) WHERE id=$1",
                sub["id"],
                plan,
                seats,
            )
            return account_changes.stamp(
                ctx,
                {
                    "subscription": sub["id"],
                    "plan": plan,
                    "seats": seats,
                    "preview": preview,
                    "message": f"Plan changed to {row['id']}.",
                    "before": {
                        "plan": sub.get("plan_id"),
                        "seats": sub.get("seats"),
                        "monthly_usd": int(preview.get("old_amount_cents") or 0) / 100,
                    },
                    "after": {
                        "plan": plan,
                        "seats": seats if seats is not None else sub.get("seats"),
                        "monthly_usd": int(preview.get("new_amount_cents") or 0) / 100,
                    },
                },
                notify=[await self._billing_email(ctx.customer_id)],
            )

        outcome = await self._run(ctx, Action.CHANGE_PLAN, sub["id"], pctx, effect, key_target=key_target)
        if outcome.policy is not None and outcome.policy.rule == PRICE_CONFIRMATION_RULE:
            return await self._ask_price_confirmation(ctx, outcome, sub["id"], plan, seats, preview)
        return outcome

    @staticmethod
    def price_confirmation_id(contact_id: str, subscription_id: str, plan: str, seats: int | None) -> str:
        """One confirmation per (contact, subscription, plan, seats): a redelivered request asks once."""
        raw = f"{contact_id}|{subscription_id}|{plan}|{seats}"
        return f"pc_{hashlib.sha256(raw.encode()).hexdigest()[:24]}"

    async def _price_confirmed(
        self,
        ctx: ActionContext,
        confirmation_id: str,
        subscription_id: str,
        plan: str,
        seats: int | None,
        new_amount_cents: int,
    ) -> bool:
        """The confirmation is the customer's, confirmed, for exactly this change at this price."""
        found = await self.pool.fetchval(
            """SELECT 1 FROM price_confirmations WHERE confirmation_id=$1 AND customer_id=$2
                 AND subscription_id=$3 AND plan=$4 AND seats IS NOT DISTINCT FROM $5
                 AND new_amount_cents=$6 AND status='confirmed'""",
            confirmation_id,
            ctx.customer_id,
            subscription_id,
            plan,
            seats,
            new_amount_cents,
        )
        return found is not None

    async def _ask_price_confirmation(
        self,
        ctx: ActionContext,
        refused: ActionOutcome,
        subscription_id: str,
        plan: str,
        seats: int | None,
        preview: dict[str, Any],
    ) -> ActionOutcome:
        """A higher price asked in text: record a pending confirmation and hand back a signed link to a page
        showing the old and the new price; nothing changes until the customer confirms there."""
        from tierline.stripe_adapter import sign_link_token

        confirmation_id = self.price_confirmation_id(ctx.contact_id, subscription_id, plan, seats)
        old_cents, new_cents = (
            int(preview.get("old_amount_cents") or 0),
            int(preview.get("new_amount_cents") or 0),
        )
        expires = datetime.now(UTC) + timedelta(seconds=PRICE_CONFIRMATION_TTL_S)
        await self.pool.execute(
            """INSERT INTO price_confirmations (confirmation_id, contact_id, customer_id, subscription_id,
                   plan, seats, old_amount_cents, new_amount_cents, expires_at)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)
               ON CONFLICT (confirmation_id) DO UPDATE SET old_amount_cents=EXCLUDED.old_amount_cents,
                   new_amount_cents=EXCLUDED.new_amount_cents, expires_at=EXCLUDED.expires_at
                 WHERE price_confirmations.status = 'pending'""",
            confirmation_id,
            ctx.contact_id,
            ctx.customer_id,
            subscription_id,
            plan,
            seats,
            old_cents,
            new_cents,
            expires,
        )
        token = sign_link_token(
            self.settings.session_secret.get_secret_value(),
            purpose=PRICE_CONFIRMATION_PURPOSE,
            subject=confirmation_id,
            expires_at=int(expires.timestamp()),
        )
        url = f"{self.settings.public_base_url.rstrip('/')}/confirm-price/{confirmation_id}?token={token}"
        what = f"the {plan} plan" + (f" with {seats} seats" if seats else "")
        message = (
            f"Moving to {what} changes your price from ${old_cents / 100:.2f} "
            f"to ${new_cents / 100:.2f} a month. "
            f"Nothing has changed yet: confirm the new price here and we'll make the change: {url}"
        )
        log.info("action.price_confirmation.asked", confirmation_id=confirmation_id, plan=plan, seats=seats)
        refused.detail = message
        refused.data = {
            **refused.data,
            "confirmation_id": confirmation_id,
            "confirm_url": url,
            "old_price_usd": old_cents / 100,
            "new_price_usd": new_cents / 100,
            "customer_message": message,
        }
        return refused

    async def explain_charge(self, ctx: ActionContext, charge_id: str | None = None) -> ActionOutcome:
        diagnosis = await self.diagnosis(ctx)
        text = explain(diagnosis, charge_id)
        target = charge_id or ((diagnosis.evidence.get("charges") or [{}])[0].get("id")) or ctx.customer_id

        async def effect() -> dict[str, Any]:
            return {"explanation": text, "message": text}

        return await self._run(ctx, Action.EXPLAIN_CHARGE, target, None, effect)

    async def send_nudge(
        self,
        ctx: ActionContext,
        *,
        template: str,
        subject: str,
        body: str,
        target: str | None = None,
        link: Any = None,
        dedupe_key: str | None = None,
    ) -> ActionOutcome:
        """A proactive email. ``target`` is what it is about (default: the template); ``link`` a URL, or
        an async callable making one only when the nudge is really sent; the policy's daily limit applies."""
        about = target or template
        key = idempotency_key(ctx.key_scope, Action.SEND_NUDGE.value, about)
        pctx = await self.policy_context(ctx, await self.diagnosis(ctx))

        async def effect() -> dict[str, Any]:
            url = (await link()) if callable(link) else link
            text = f"{body}\n\n{url}" if url and url not in body else body
            sent_to = await self._notify(
                ctx,
                template=template,
                subject=subject,
                body=text,
                key=key,
                link=url,
                dedupe_key=dedupe_key,
            )
            return {"template": template, "sent_to": sent_to, "link": url, "message": "Nudge sent."}

        return await self._run(ctx, Action.SEND_NUDGE, about, pctx, effect)

    # ------------------------------------------------------------------ product actions (issue 23)
    def product_connector(self) -> Any:
        """The product connector (``TIERLINE_PRODUCT_*`` settings), made on first use."""
        if getattr(self, "product", None) is None:
            from tierline.product_connector import ProductConnector

            self.product = ProductConnector.from_settings(self.settings)
        return self.product

    async def product_action(
        self, ctx: ActionContext, name: str, params: dict[str, Any], *, requester: str | None = None
    ) -> ActionOutcome:
        """One action of the product connector (``tierline/billing/product_actions.yaml``), once per request.

        The asking person (``requester``, else the account's billing email) must hold the action's role in
        the product (else ``denied`` with the admins to ask, in ``data["admins"]``); the policy's
        ``product_actions`` rules decide; the ledger keeps it once-only under a key derived from the
        request; the product gets an Idempotency-Key derived from the request too, so a retry by anyone
        later does not act twice. A product that is down or refuses leaves a ``failed`` ledger row and an
        ``error`` escalation reason with a message for the customer; the product's own transaction means
        nothing is half-done. Fields the YAML marks secret are in the outcome's data only, never stored.
        """
        from tierline.product_connector import (
            ROLE_GRANTS,
            InvalidParameters,
            ProductCallFailed,
            request_key,
        )

        connector = self.product_connector()
        try:
            spec = connector.spec.action(name)
            values = spec.validated(params)
        except InvalidParameters as exc:
            log.info("product.action.invalid", action=name, error=str(exc))
            return ActionOutcome(
                action=Action.PRODUCT_ACTION,
                status="denied",
                detail=str(exc),
                target=name,
                escalation_reason=EscalationReason.POLICY_DENIED,
                data={"customer_message": f"We couldn't do that: {exc}."},
            )
        target = spec.render_target(values)
        product_key = request_key(ctx.customer_id, name, values)
        unavailable = (
            "We couldn't reach our product's system to do this right now. Nothing was changed; "
            "a person on our team has your request and will finish it."
        )
        try:
            members = await connector.members(ctx.customer_id)
        except ProductCallFailed as exc:
            log.warning("product.members.unavailable", action=name, error=exc.detail)
            await audit(
                self.broker,
                cause=ctx.cause,
                actor=f"{ctx.tier.value}:{ctx.actor_id}",
                action=Action.PRODUCT_ACTION.value,
                target=target,
                decision="error",
                details={"error": exc.detail, "step": "read_members", "changed": False},
            )
            return ActionOutcome(
                action=Action.PRODUCT_ACTION,
                status="failed",
                detail=exc.detail,
                target=target,
                escalation_reason=EscalationReason.ERROR,
                data={"customer_message": unavailable, "product_error": exc.detail},
            )
        who = (requester or await self._billing_email(ctx.customer_id) or "").strip().lower()
        roles = {str(m.get("email")).lower(): m.get("role") for m in members if m.get("status") == "active"}
        admins = sorted(e for e, r in roles.items() if r in ("owner", "admin"))
        role = roles.get(who)
        if ctx.actor != "human" and role not in ROLE_GRANTS[spec.required_role]:
            who_may = "owner" if spec.required_role == "owner" else "owner or admin"
            message = (
                f"Only an {who_may} of your workspace can {spec.title.lower()}. "
                f"Please ask your admin: {', '.join(admins) or 'your account owner'}."
            )
            await audit(
                self.broker,
                cause=ctx.cause,
                actor=f"{ctx.tier.value}:{ctx.actor_id}",
                action=f"policy.{Action.PRODUCT_ACTION.value}",
                target=target,
                decision="deny",
                details={"rule": "product.role", "requester_role": role, "required_role": spec.required_role},
            )
            log.info("product.action.role_refused", action=name, requester_role=role)
            return ActionOutcome(
                action=Action.PRODUCT_ACTION,
                status="denied",
                detail=message,
                target=target,
                data={"admins": admins, "customer_message": message, "requester_role": role},
            )
        done_today = int(
            await self.pool.fetchval(
                """SELECT count(*) FROM action_ledger WHERE customer_id=$1 AND action=$2
                     AND status='succeeded' AND target LIKE $3 AND created_at >= date_trunc('day', now())""",
                ctx.customer_id,
                Action.PRODUCT_ACTION.value,
                f"{name}:%",
            )
        )
        verdict = self.policy.check_product(
            name, actor=ctx.actor, instruction_flag=INJECTION_FLAG in ctx.flags, done_today=done_today
        )
        shown_once: dict[str, Any] = {}

        async def effect() -> dict[str, Any]:
            try:
                answer = await connector.call(
                    spec, ctx.customer_id, values, idempotency_key=product_key, acting_user=who or None
                )
            except ProductCallFailed as exc:
                message = (
                    unavailable
                    if exc.kind == "unavailable"
                    else f"Our product refused this change: {exc.detail}. Nothing was changed; "
                    "a person on our team will look at it."
                )
                raise ActionFailed(
                    exc.detail,
                    {"product_error": exc.detail, "product_status": exc.status, "customer_message": message},
                ) from exc
            shown_once.update({k: answer[k] for k in spec.secret_fields if k in answer})
            public = spec.public(answer)
            message = spec.confirm(values, public)
            await self._notify(
                ctx, template=f"product_{name}", subject=spec.title, body=message, key=product_key
            )
            return {
                "product_action": name,
                "params": values,
                "requested_by": who or None,
                "answer": public,
                "message": message,
                "customer_message": message,
                # the customer's timeline (tierline.account_changes.account_history)
                "before": {},
                "after": {"product_action": name, "title": spec.title, **values},
                "changed_by": account_changes.changed_by(ctx),
                "changed_at": datetime.now(UTC).isoformat(),
            }

        outcome = await self._run(
            ctx,
            Action.PRODUCT_ACTION,
            target,
            None,
            effect,
            key_target=f"{target}:{product_key}",
            decided=verdict,
        )
        if outcome.status == "failed":
            outcome.escalation_reason = outcome.escalation_reason or EscalationReason.ERROR
        if outcome.ok and shown_once:  # only to the caller that asked, this once
            outcome.data = {**outcome.data, "shown_once": shown_once}
        return outcome


def explain(diagnosis: DiagnosisView, charge_id: str | None = None) -> str:
    """A usage- and record-backed explanation of what the customer was charged (no guessing)."""
    ev = diagnosis.evidence
    parts: list[str] = []
    charges = ev.get("charges") or []
    charge = next((c for c in charges if c.get("id") == charge_id), charges[0] if charges else None)
    if charge:
        when = str(charge.get("created_at", ""))[:10]
        parts.append(
            f"The charge of ${float(charge.get('amount_usd') or 0):.2f} on {when} (id {charge.get('id')})."
        )
    plan = ev.get("plan") or {}
    if plan:
        parts.append(
            f"Your {plan.get('name', plan.get('id', 'current'))} plan costs "
            f"${float(plan.get('monthly_usd') or 0):.2f} a month."
        )
    usage = ev.get("usage") or {}
    if usage and float(usage.get("overage_units") or 0) > 0:
        last_30d, prev_30d = int(float(usage.get("last_30d") or 0)), int(float(usage.get("prev_30d") or 0))
        limit, over = int(float(usage.get("limit") or 0)), int(float(usage["overage_units"]))
        parts.append(
            f"You used {last_30d:,} {usage.get('metric', 'units')} in the last 30 days "
            f"against {limit:,} included (previous 30 days: {prev_30d:,}); the {over:,} over the limit "
            f"cost ${float(usage.get('overage_usd') or 0):.2f}."
        )
    if plan and plan.get("seat_limit") and int(plan.get("seats") or 0) > int(plan["seat_limit"]):
        parts.append(f"You have {plan['seats']} seats against {plan['seat_limit']} included.")
    parts.append(diagnosis.explanation)
    return " ".join(p for p in parts if p)


def _refund_reason(reason: str) -> str:
    """Stripe's refund reasons: duplicate | fraudulent | requested_by_customer."""
    return (
        reason if reason in ("duplicate", "fraudulent", "requested_by_customer") else "requested_by_customer"
    )


def _get(obj: Any, name: str, default: Any) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _as_dt(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return _iso(value)


__all__ = ["ActionContext", "ActionExecutor", "ActionOutcome", "Actions", "explain"]
_ = (asyncio, timedelta)
