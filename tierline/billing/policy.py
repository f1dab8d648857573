"""Declarative billing policy: the rules live in YAML (``default_policy.yaml``), this module interprets them.

The LLM and every tier *propose* actions; :meth:`PolicyEngine.check` *disposes*. The engine is pure: it reads
only the :class:`PolicyContext` it is given (verified facts from records, never customer or model text) and
returns a :class:`Verdict`. The only I/O is loading the YAML in :meth:`PolicyEngine.from_yaml`.

Money is compared in whole cents; a charge's age is counted in whole days (floor), so a charge created
30 days and some hours ago is "30 days old"; the duplicate window is exact (48 h 0 s is inside).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.messages import PolicyDecisionRecord
from schemas.vocab import Action, EscalationReason

DEFAULT_POLICY_PATH = Path(__file__).with_name("default_policy.yaml")

ActorKind = Literal["system", "ai", "selfheal", "human"]
Profile = Literal["automatic", "human"]
DeclineClass = Literal["soft", "hard", "unknown"]


#: The denial of a price increase the customer has not confirmed: the caller asks them to confirm it.
PRICE_CONFIRMATION_REQUIRED = "price_confirmation_required"
PRICE_CONFIRMATION_RULE = "change_plan.price_increase_needs_confirmation"


class PolicyError(Exception):
    """The policy file is missing or malformed."""


# --------------------------------------------------------------------------- verdicts
class Allow(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: Literal["allow"] = "allow"
    rule: str


class Deny(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: Literal["deny"] = "deny"
    reason: str
    rule: str


class NeedsHuman(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: Literal["needs_human"] = "needs_human"
    reason: EscalationReason
    rule: str
    detail: str


Verdict = Allow | Deny | NeedsHuman


def to_record(action: Action, verdict: Verdict) -> PolicyDecisionRecord:
    """The verdict as carried in messages (``PolicyDecisionRecord``)."""
    reason = "" if isinstance(verdict, Allow) else str(verdict.reason)
    return PolicyDecisionRecord(action=action, verdict=verdict.kind, reason=reason, rule=verdict.rule)


# --------------------------------------------------------------------------- context (verified facts only)
def _aware(value: datetime | None) -> datetime | None:
    """Naive datetimes are taken as UTC so that ages can always be computed."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class ChargeFacts(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    customer_id: str
    amount_usd: float = Field(ge=0)
    created_at: datetime
    refunded_usd: float = Field(default=0.0, ge=0)
    status: str = "succeeded"

    _created_at_aware = field_validator("created_at")(_aware)


class RefundFact(BaseModel):
    """One refund the customer received, from Stripe's record (the mirror) or tierline's ledger."""

    model_config = ConfigDict(frozen=True)
    id: str
    charge_id: str | None = None
    created_at: datetime
    status: str = "succeeded"

    _created_at_aware = field_validator("created_at")(_aware)


class ApprovalFacts(BaseModel):
    """A second person's approval of one refund, read from the approvals record (never from text).

    It covers exactly this refund: the charge named and at most the amount approved; the approver is not
    the person who asked."""

    model_config = ConfigDict(frozen=True)
    approval_id: str
    requested_by: str
    approved_by: str
    charge_id: str
    amount_usd: float = Field(gt=0)


class PolicyContext(BaseModel):
    """Facts read from records (Stripe mirror, subscription store, audit counters). Never from free text."""

    model_config = ConfigDict(frozen=True)
    actor: ActorKind
    customer_id: str
    plan: str | None = None
    dispute_open: bool = False
    fraud_flag: bool = False
    charge: ChargeFacts | None = None
    requested_amount_usd: float | None = None
    duplicate_of: ChargeFacts | None = None
    refunds_last_90d: int = Field(default=0, ge=0)
    last_refund_at: datetime | None = None
    decline_code: str | None = None
    failed_attempts: int = Field(default=0, ge=0)
    retry_attempts: int = Field(default=0, ge=0)
    actions_today: dict[str, int] = Field(default_factory=dict)
    #: The guardrail flagged the contact's text as trying to instruct the system (a fact about the
    #: message, computed where it entered; never what the text claims about itself).
    instruction_flag: bool = False
    #: A lead's approval of this refund (human actors; ``refund.human.needs_approval_over_usd_by_plan``).
    approval: ApprovalFacts | None = None
    #: How much more a month a plan or seat change makes the customer pay (Stripe's preview; 0 when less).
    price_increase_usd: float = Field(default=0.0, ge=0)
    #: The customer confirmed this change at its new price (a confirmation record, or a button that named it).
    price_confirmed: bool = False
    now: datetime

    _times_aware = field_validator("now", "last_refund_at")(_aware)


# --------------------------------------------------------------------------- the rules file, typed
class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DisputeRules(_Rules):
    blocks_automatic: list[Action]
    blocks_human: list[Action]


class FraudRules(_Rules):
    decline_codes: list[str]
    blocks_automatic: list[Action]


class GuardrailRules(_Rules):
    """A text flagged as trying to instruct the system earns none of these actions automatically."""

    blocks_automatic: list[Action] = Field(default_factory=list)


class DuplicateRules(_Rules):
    window_hours: float = Field(gt=0)
    bypasses_refund_history: bool = True


class AutomaticRefundRules(_Rules):
    never_automatic_plans: list[str]
    cap_usd_by_plan: dict[str, Decimal]
    max_charge_age_days: int = Field(ge=0)
    history_window_days: int = Field(gt=0)
    max_refunds_in_window: int = Field(ge=0)
    #: Refund statuses that count in the window (failed and canceled refunds gave nothing back).
    history_statuses: list[str] = Field(default_factory=lambda: ["succeeded", "pending", "requires_action"])
    duplicate: DuplicateRules


class HumanRefundRules(_Rules):
    lead_required_plans: list[str]
    cap_usd: Decimal
    max_charge_age_days: int = Field(ge=0)
    #: Over this amount (per plan) a refund by an agent needs a second person's approval (a lead with the
    #: approver role); a plan not listed needs it for any amount. Absent: no approval rule (older files).
    needs_approval_over_usd_by_plan: dict[str, Decimal] | None = None


class RefundRules(_Rules):
    automatic: AutomaticRefundRules
    human: HumanRefundRules


class ChangePlanRules(_Rules):
    #: A plan or seat change that raises the price runs for an automatic actor only once the customer
    #: confirmed the new price (never on text alone). Absent: no such rule (older files).
    price_increase_needs_confirmation: bool = False


class RetryRules(_Rules):
    soft_decline_codes: list[str]
    hard_decline_codes: list[str]
    hard_after_failures: dict[str, int]
    missing_code_as: str
    unknown_code: Literal["deny", "allow"]
    max_attempts: dict[Profile, int]


class BreakerRules(_Rules):
    """The spend breaker (``tierline.switches``): automatic refunds of a rolling hour over this amount
    pause every automatic money action (reason ``money_paused``) and raise an alert. Absent: no breaker."""

    refunds_per_hour_usd: Decimal | None = Field(default=None, gt=0)


class ProductActionRules(_Rules):
    """The product connector's actions (``tierline.product_connector``), by their YAML name: ``forbidden``
    never run (deny); ``needs_human`` go to a person; ``guardrail_blocks_automatic``: a text flagged as
    instructing the system runs none of them automatically; ``daily_limit``: per customer and UTC day."""

    forbidden: list[str] = Field(default_factory=list)
    needs_human: list[str] = Field(default_factory=list)
    guardrail_blocks_automatic: bool = True
    daily_limit: dict[Profile, dict[str, int]] = Field(default_factory=dict)


class PolicyRules(_Rules):
    version: int
    actors: dict[ActorKind, Profile]
    financial_actions: list[Action]
    always_allowed: list[Action]
    dispute: DisputeRules
    fraud: FraudRules
    guardrail: GuardrailRules = GuardrailRules()
    change_plan: ChangePlanRules = ChangePlanRules()
    refund: RefundRules
    retry: RetryRules
    rate_limits_per_day: dict[Profile, dict[Action, int]]
    product_actions: ProductActionRules = ProductActionRules()
    breaker: BreakerRules = BreakerRules()


# --------------------------------------------------------------------------- engine
_CENT = Decimal("0.01")


def _cents(amount: float | Decimal) -> Decimal:
    return Decimal(str(amount)).quantize(_CENT, rounding=ROUND_HALF_UP)


def _usd(amount: Decimal) -> str:
    return f"${amount:.2f}"


class PolicyEngine:
    """Interprets :class:`PolicyRules`. Construct with :meth:`from_yaml` (default: the shipped file)."""

    def __init__(self, rules: PolicyRules) -> None:
        self.rules = rules

    @classmethod
    def from_yaml(cls, path: Path | None = None) -> PolicyEngine:
        source = path or DEFAULT_POLICY_PATH
        try:
            raw = yaml.safe_load(source.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"cannot read policy file {source}: {exc}") from exc
        try:
            return cls(PolicyRules.model_validate(raw))
        except ValidationError as exc:
            raise PolicyError(f"invalid policy file {source}: {exc}") from exc

    @property
    def version(self) -> str:
        return str(self.rules.version)

    @property
    def refund_history_window_days(self) -> int:
        """How far back callers must count refunds for ``PolicyContext.refunds_last_90d``."""
        return self.rules.refund.automatic.history_window_days

    def refund_history(
        self, refunds: Iterable[RefundFact], charges: Iterable[ChargeFacts], now: datetime
    ) -> tuple[int, datetime | None]:
        """``(refunds_last_90d, last_refund_at)``: every refund in the window, whoever issued it.

        Refunds are counted once by id (the mirror and the ledger overlap), pending ones too; failed or
        canceled ones and refunds of a verified duplicate charge (the newer of two succeeded charges of
        the same amount within the duplicate window) do not count.
        """
        rules = self.rules.refund.automatic
        since = now - timedelta(days=rules.history_window_days)
        window = timedelta(hours=rules.duplicate.window_hours)
        by_id = {c.id: c for c in charges}

        def duplicate(charge_id: str | None) -> bool:
            charge = by_id.get(charge_id or "")
            if charge is None:
                return False
            return any(
                twin.id != charge.id
                and twin.status == "succeeded"
                and _cents(twin.amount_usd) == _cents(charge.amount_usd)
                and (twin.created_at, twin.id) < (charge.created_at, charge.id)
                and charge.created_at - twin.created_at <= window
                for twin in by_id.values()
            )

        seen: dict[str, datetime] = {}
        for refund in refunds:
            if refund.id in seen or refund.status not in rules.history_statuses:
                continue
            if refund.created_at <= since or duplicate(refund.charge_id):
                continue
            seen[refund.id] = refund.created_at
        return len(seen), max(seen.values(), default=None)

    def profile(self, ctx: PolicyContext) -> Profile:
        return self.rules.actors[ctx.actor]

    # ------------------------------------------------------------------ entry point
    def check(self, action: Action, ctx: PolicyContext) -> Verdict:
        """Decide one proposed action. Order: always-allowed, dispute, fraud, daily limit, action rules."""
        action = Action(action)
        if action in self.rules.always_allowed:
            return Allow(rule="always_allowed")
        profile = self.profile(ctx)
        for gate in (self._dispute, self._fraud, self._guardrail, self._rate_limit):
            verdict = gate(action, ctx, profile)
            if verdict is not None:
                return verdict
        if action is Action.REFUND:
            return self._refund(ctx, profile)
        if action is Action.RETRY_PAYMENT:
            return self._retry(ctx, profile)
        if action is Action.CHANGE_PLAN:
            return self._change_plan(ctx, profile)
        return Allow(rule=f"{action.value}.allowed")

    def check_product(
        self, name: str, *, actor: ActorKind, instruction_flag: bool, done_today: int
    ) -> Verdict:
        """Decide one product connector action (``product_actions`` rules; the connector checked its role)."""
        rules, profile = self.rules.product_actions, self.rules.actors[actor]
        if name in rules.forbidden:
            return Deny(reason=f"product action {name} is forbidden by the policy", rule="product.forbidden")
        if profile == "automatic" and instruction_flag and rules.guardrail_blocks_automatic:
            return NeedsHuman(
                reason=EscalationReason.POLICY_DENIED,
                rule="product.guardrail",
                detail=f"the text tries to instruct the system; {name} needs a person",
            )
        if name in rules.needs_human and profile == "automatic":
            return NeedsHuman(
                reason=EscalationReason.POLICY_DENIED,
                rule="product.needs_human",
                detail=f"the policy hands {name} to a person",
            )
        limit = rules.daily_limit.get(profile, {}).get(name)
        if limit is not None and done_today >= limit:
            return NeedsHuman(
                reason=EscalationReason.POLICY_DENIED,
                rule="product.daily_limit",
                detail=f"{name} already ran {done_today} times today (limit {limit})",
            )
        return Allow(rule=f"product.{name}.allowed")

    def _change_plan(self, ctx: PolicyContext, profile: Profile) -> Verdict:
        if (
            profile == "automatic"
            and self.rules.change_plan.price_increase_needs_confirmation
            and _cents(ctx.price_increase_usd) > 0
            and not ctx.price_confirmed
        ):
            return Deny(reason=PRICE_CONFIRMATION_REQUIRED, rule=PRICE_CONFIRMATION_RULE)
        return Allow(rule="change_plan.allowed")

    # ------------------------------------------------------------------ gates
    def _dispute(self, action: Action, ctx: PolicyContext, profile: Profile) -> Verdict | None:
        if not ctx.dispute_open:
            return None
        if profile == "human":
            if action in self.rules.dispute.blocks_human:
                return Deny(reason="dispute_open", rule="dispute.blocks_human")
            return None
        if action in self.rules.dispute.blocks_automatic:
            return NeedsHuman(
                reason=EscalationReason.DISPUTE,
                rule="dispute.blocks_automatic",
                detail=f"an open dispute blocks {action.value}; a human must handle the account",
            )
        return None

    def _fraud_signal(self, ctx: PolicyContext) -> str | None:
        if ctx.fraud_flag:
            return "the account is flagged for fraud or a compromised card"
        if ctx.decline_code and ctx.decline_code in self.rules.fraud.decline_codes:
            return f"the card was declined as {ctx.decline_code}"
        return None

    def _fraud(self, action: Action, ctx: PolicyContext, profile: Profile) -> Verdict | None:
        if profile == "human" or action not in self.rules.fraud.blocks_automatic:
            return None
        signal = self._fraud_signal(ctx)
        if signal is None:
            return None
        return NeedsHuman(
            reason=EscalationReason.FRAUD,
            rule="fraud.blocks_automatic",
            detail=f"{signal}; {action.value} needs a human",
        )

    def _guardrail(self, action: Action, ctx: PolicyContext, profile: Profile) -> Verdict | None:
        if profile == "human" or not ctx.instruction_flag:
            return None
        if action not in self.rules.guardrail.blocks_automatic:
            return None
        return NeedsHuman(
            reason=EscalationReason.POLICY_DENIED,
            rule="guardrail.blocks_automatic",
            detail=f"the message was flagged as trying to instruct the system; {action.value} needs a human",
        )

    def _rate_limit(self, action: Action, ctx: PolicyContext, profile: Profile) -> Verdict | None:
        limit = self.rules.rate_limits_per_day.get(profile, {}).get(action)
        if limit is None:
            return None
        done = ctx.actions_today.get(action.value, 0)
        if done >= limit:
            return Deny(reason="rate_limited", rule=f"rate_limits_per_day.{profile}.{action.value}")
        return None

    # ------------------------------------------------------------------ refund
    def _refund(self, ctx: PolicyContext, profile: Profile) -> Verdict:
        charge = ctx.charge
        if charge is None:
            return Deny(reason="charge_not_found", rule="refund.charge_required")
        if charge.customer_id != ctx.customer_id:
            return Deny(reason="charge_not_owned", rule="refund.charge_owner")
        if charge.status != "succeeded":
            return Deny(reason="charge_not_succeeded", rule="refund.charge_succeeded")
        refundable = _cents(charge.amount_usd) - _cents(charge.refunded_usd)
        if refundable <= 0 and ctx.requested_amount_usd is None:
            return Deny(reason="charge_fully_refunded", rule="refund.refundable")
        amount = refundable if ctx.requested_amount_usd is None else _cents(ctx.requested_amount_usd)
        if amount <= 0:
            return Deny(reason="amount_not_positive", rule="refund.amount_positive")
        if amount > refundable:
            if profile == "human":
                return Deny(reason="amount_exceeds_refundable", rule="refund.refundable")
            # The customer's words are a ceiling, never the floor: more than the charge has left is
            # not cut down to what is left; a person decides (shared/spec/scenarios.md).
            return NeedsHuman(
                reason=EscalationReason.REFUND_OVER_POLICY,
                rule="refund.automatic.refundable",
                detail=f"{_usd(amount)} asked; the charge has {_usd(max(refundable, _CENT * 0))} left",
            )
        age_days = (ctx.now - charge.created_at).days
        if profile == "human":
            return self._human_refund(ctx, amount, age_days)
        return self._automatic_refund(ctx, amount, age_days)

    def approval_covers(self, ctx: PolicyContext, amount: Decimal) -> bool:
        """The context carries a second person's approval of exactly this refund (charge, at most the
        amount approved, approver not the requester)."""
        approval, charge = ctx.approval, ctx.charge
        return (
            approval is not None
            and charge is not None
            and approval.charge_id == charge.id
            and bool(approval.approved_by)
            and approval.approved_by != approval.requested_by
            and amount <= _cents(approval.amount_usd)
        )

    def needs_approval(self, plan: str | None, amount: Decimal) -> Decimal | None:
        """The approval threshold a human refund of ``amount`` on ``plan`` is over, or None when an agent
        may refund it alone (no approval rule, or within the plan's threshold)."""
        thresholds = self.rules.refund.human.needs_approval_over_usd_by_plan
        if thresholds is None:
            return None
        threshold = _cents(thresholds[plan]) if plan in thresholds else Decimal(0)
        return threshold if amount > threshold else None

    def _human_refund(self, ctx: PolicyContext, amount: Decimal, age_days: int) -> Verdict:
        rules = self.rules.refund.human
        approved = self.approval_covers(ctx, amount)
        if ctx.plan in rules.lead_required_plans and not approved:
            return NeedsHuman(
                reason=EscalationReason.REFUND_OVER_POLICY,
                rule="refund.human.lead_required_plans",
                detail=f"refunds on the {ctx.plan} plan need a team lead's approval",
            )
        if amount > _cents(rules.cap_usd):
            return NeedsHuman(
                reason=EscalationReason.REFUND_OVER_POLICY,
                rule="refund.human.cap_usd",
                detail=f"{_usd(amount)} is above the human limit of {_usd(rules.cap_usd)}, approved or not",
            )
        if age_days > rules.max_charge_age_days:
            return NeedsHuman(
                reason=EscalationReason.REFUND_OVER_POLICY,
                rule="refund.human.max_charge_age_days",
                detail=f"the charge is {age_days} days old (agent limit {rules.max_charge_age_days}); "
                "a team lead must approve",
            )
        if approved:
            return Allow(rule="refund.human.approved")
        threshold = self.needs_approval(ctx.plan, amount)
        if threshold is not None:
            return NeedsHuman(
                reason=EscalationReason.REFUND_OVER_POLICY,
                rule="refund.human.needs_approval",
                detail=f"{_usd(amount)} is over {_usd(threshold)} on the {ctx.plan or 'unknown'} plan: "
                "request approval from a lead (a second person)",
            )
        return Allow(rule="refund.human.within_limits")

    def _verified_duplicate(self, ctx: PolicyContext) -> bool:
        twin, charge = ctx.duplicate_of, ctx.charge
        if twin is None or charge is None:
            return False
        window = timedelta(hours=self.rules.refund.automatic.duplicate.window_hours)
        return (
            twin.id != charge.id
            and twin.customer_id == ctx.customer_id == charge.customer_id
            and twin.status == "succeeded"
            and _cents(twin.refunded_usd) == 0
            and _cents(twin.amount_usd) == _cents(charge.amount_usd)
            and abs(twin.created_at - charge.created_at) <= window
        )

    def _automatic_refund(self, ctx: PolicyContext, amount: Decimal, age_days: int) -> Verdict:
        rules = self.rules.refund.automatic
        plan = ctx.plan
        if plan is None or plan in rules.never_automatic_plans or plan not in rules.cap_usd_by_plan:
            return NeedsHuman(
                reason=EscalationReason.REFUND_OVER_POLICY,
                rule="refund.automatic.never_automatic_plans",
                detail=f"refunds on plan {plan or 'unknown'} are never automatic",
            )
        cap = _cents(rules.cap_usd_by_plan[plan])
        if amount > cap:
            return NeedsHuman(
                reason=EscalationReason.REFUND_OVER_POLICY,
                rule="refund.automatic.cap_usd_by_plan",
                detail=f"{_usd(amount)} is above the automatic cap of {_usd(cap)} for the {plan} plan",
            )
        if age_days > rules.max_charge_age_days:
            return NeedsHuman(
                reason=EscalationReason.REFUND_OVER_POLICY,
                rule="refund.automatic.max_charge_age_days",
                detail=f"the charge is {age_days} days old; automatic refunds only up to "
                f"{rules.max_charge_age_days} days",
            )
        if self._verified_duplicate(ctx) and rules.duplicate.bypasses_refund_history:
            return Allow(rule="refund.automatic.verified_duplicate")
        recent = ctx.refunds_last_90d
        if ctx.last_refund_at is not None and ctx.now - ctx.last_refund_at <= timedelta(
            days=rules.history_window_days
        ):
            recent = max(recent, 1)
        if recent >= rules.max_refunds_in_window:
            return NeedsHuman(
                reason=EscalationReason.REFUND_OVER_POLICY,
                rule="refund.automatic.max_refunds_in_window",
                detail=f"{recent} refund(s) in the last {rules.history_window_days} days; "
                f"at most {rules.max_refunds_in_window} may be automatic",
            )
        return Allow(rule="refund.automatic.within_cap")

    # ------------------------------------------------------------------ retry
    def decline_class(self, decline_code: str | None, failed_attempts: int = 0) -> DeclineClass:
        """Classify a decline code under this policy (usable by tier 0's dunning as well)."""
        rules = self.rules.retry
        code = decline_code or rules.missing_code_as
        threshold = rules.hard_after_failures.get(code)
        if threshold is not None:
            return "hard" if failed_attempts >= threshold else "soft"
        if code in rules.hard_decline_codes:
            return "hard"
        if code in rules.soft_decline_codes:
            return "soft"
        return "unknown"

    def _retry(self, ctx: PolicyContext, profile: Profile) -> Verdict:
        rules = self.rules.retry
        klass = self.decline_class(ctx.decline_code, ctx.failed_attempts)
        code = ctx.decline_code or rules.missing_code_as
        if klass == "hard":
            by_count = code in rules.hard_after_failures
            rule = "retry.hard_after_failures" if by_count else "retry.hard_decline_codes"
            return Deny(reason="hard_decline", rule=rule)
        if klass == "unknown" and rules.unknown_code == "deny":
            return Deny(reason="unknown_decline_code", rule="retry.unknown_code")
        budget = rules.max_attempts[profile]
        if ctx.retry_attempts >= budget:
            return Deny(reason="retry_budget_exhausted", rule=f"retry.max_attempts.{profile}")
        return Allow(rule="retry.soft_decline")
