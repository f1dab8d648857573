"""Tier 0 decisions, pure: what a Stripe event means and what to do about it.

No I/O here (no asyncpg, stripe, faststream): every function takes values and returns values.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from schemas import Action, HealthStatus, RootCause
from schemas.messages import DiagnosisView
from tierline.billing import stripe_shapes


# ----------------------------------------------------------------------------- routing
class Handling(StrEnum):
    FAILED_PAYMENT = "failed_payment"
    INVOICE_PAID = "invoice_paid"
    INVOICE_CHANGED = "invoice_changed"  # may show an expired hosted-invoice link
    SOURCE_EXPIRING = "source_expiring"
    INVOICE_UPCOMING = "invoice_upcoming"
    DISPUTE_OPENED = "dispute_opened"
    IGNORE = "ignore"


_ROUTES: dict[str, Handling] = {
    "invoice.payment_failed": Handling.FAILED_PAYMENT,
    "invoice.paid": Handling.INVOICE_PAID,
    "invoice.payment_succeeded": Handling.INVOICE_PAID,
    "invoice.updated": Handling.INVOICE_CHANGED,
    "invoice.finalized": Handling.INVOICE_CHANGED,
    "invoice.finalization_failed": Handling.INVOICE_CHANGED,
    "customer.source.expiring": Handling.SOURCE_EXPIRING,
    "invoice.upcoming": Handling.INVOICE_UPCOMING,
    "charge.dispute.created": Handling.DISPUTE_OPENED,
}


def route_event(event_type: str) -> Handling:
    """Which Tier 0 flow an event type starts (mirror sync is separate and sees every event)."""
    return _ROUTES.get(event_type, Handling.IGNORE)


def _ref_id(value: Any) -> str | None:
    """A Stripe reference: either an id string or an expanded object with an id."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]:
        return str(value["id"])
    return None


def customer_of(event_type: str, obj: dict[str, Any]) -> str | None:
    """The customer an event belongs to: data.object.customer, or the object itself for customer.*."""
    found = _ref_id(obj.get("customer"))
    if found:
        return found
    meta = _meta(obj)
    if isinstance(meta.get("tl_customer"), str) and meta["tl_customer"]:
        return str(meta["tl_customer"])
    if event_type.startswith("customer.") and obj.get("object") == "customer":
        return _ref_id(obj.get("id"))
    if event_type.startswith("customer.") and not event_type.startswith(
        ("customer.source.", "customer.subscription.", "customer.tax_id.", "customer.discount.")
    ):
        return _ref_id(obj.get("id"))
    return None


def charge_of(obj: dict[str, Any]) -> str | None:
    return _ref_id(obj.get("charge"))


def _meta(obj: Any) -> dict[str, Any]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta if isinstance(meta, dict) else {}


def decline_code_of(obj: dict[str, Any]) -> str | None:
    """The decline code an event's object says, from Stripe's own fields in any API version's shape: a
    charge's failure, a payment intent's last error, an invoice's expanded payments. ``None`` when the
    object does not say (a current-version invoice lists no payments): the caller looks further."""
    kind = obj.get("object")
    if kind == "charge":
        return stripe_shapes.charge_decline_code(obj)
    if kind == "payment_intent":
        return stripe_shapes.payment_intent_decline_code(obj)
    return stripe_shapes.invoice_decline_code(obj)


# ----------------------------------------------------------------------------- declines
class DeclineLike(Protocol):
    """What Tier 0 reads from the decline taxonomy (tierline/billing/declines.DeclineInfo)."""

    @property
    def code(self) -> str | None: ...
    @property
    def soft(self) -> bool: ...
    @property
    def retry_allowed(self) -> bool: ...
    @property
    def fraud(self) -> bool: ...


class DeclineKind(StrEnum):
    SOFT = "soft"
    HARD = "hard"
    FRAUD = "fraud"


def decline_kind(decline: DeclineLike) -> DeclineKind:
    """Fraud first (never retried), then soft-and-retryable, else hard (the taxonomy counts attempts)."""
    if decline.fraud:
        return DeclineKind.FRAUD
    if decline.soft and decline.retry_allowed:
        return DeclineKind.SOFT
    return DeclineKind.HARD


@dataclass(frozen=True)
class FailedPaymentPlan:
    kind: DeclineKind
    decline_code: str | None
    root_cause: RootCause
    retry_at: list[datetime] = field(default_factory=list)
    notify: Action | None = None  # SEND_NUDGE (soft) or SEND_UPDATE_CARD_LINK (hard)
    regenerate_link: bool = False
    flag_risk: bool = False
    escalate_fraud: bool = False

    @property
    def actions(self) -> list[Action]:
        """The actions this plan takes on the customer's behalf, in order (for the outcome)."""
        out: list[Action] = []
        if self.regenerate_link:
            out.append(Action.REGENERATE_INVOICE_LINK)
        if self.notify is not None:
            out.append(self.notify)
        return out


def dunning_times(now: datetime, offsets_days: list[float], max_attempts: int) -> list[datetime]:
    """Smart-retry times: the configured offsets, sorted, never more than ``max_attempts``."""
    if max_attempts <= 0:
        return []
    offsets = sorted(o for o in offsets_days if o > 0)[:max_attempts]
    return [now + timedelta(days=o) for o in offsets]


def retry_budget(policy_attempts: int, configured_attempts: int, already_tried: int = 0) -> int:
    """How many retries a new schedule plans: the policy's automatic budget (what it will allow), less the
    retries the invoice already had, and never more than the configured schedule."""
    return max(0, min(policy_attempts - already_tried, configured_attempts))


def plan_failed_payment(
    decline: DeclineLike,
    *,
    now: datetime,
    offsets_days: list[float],
    max_attempts: int,
    link_expired: bool,
    policy_retryable: bool = True,
) -> FailedPaymentPlan:
    """Soft → retries + nudge; hard → update-card link, no retry; fraud → no retry, risk flag, Tier 3.

    ``policy_retryable`` is the policy's word on the code: a decline it would never retry automatically
    (a hard or unknown code) gets the update-card link, not a schedule of attempts it would refuse."""
    kind = decline_kind(decline)
    if kind is DeclineKind.SOFT and (not policy_retryable or max_attempts <= 0):
        kind = DeclineKind.HARD
    code = decline.code
    if kind is DeclineKind.FRAUD:
        return FailedPaymentPlan(
            kind, code, RootCause.CARD_DECLINED_FRAUD, flag_risk=True, escalate_fraud=True
        )
    if kind is DeclineKind.HARD:
        cause = RootCause.CARD_EXPIRED if code == "expired_card" else RootCause.CARD_DECLINED_HARD
        return FailedPaymentPlan(
            kind, code, cause, notify=Action.SEND_UPDATE_CARD_LINK, regenerate_link=link_expired
        )
    cause = (
        RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS
        if code == "insufficient_funds"
        else RootCause.CARD_DECLINED_SOFT
    )
    return FailedPaymentPlan(
        kind,
        code,
        cause,
        retry_at=dunning_times(now, offsets_days, max_attempts),
        notify=Action.SEND_NUDGE,
        regenerate_link=link_expired,
    )


# ----------------------------------------------------------------------------- dunning results
class RetryVerdict(StrEnum):
    RECOVERED = "recovered"
    TRY_LATER = "try_later"  # another attempt is scheduled
    EXHAUSTED = "exhausted"  # no attempt left: ask for a new card
    HARD = "hard"  # the decline turned hard: stop and ask for a new card
    NOT_PAYABLE = "not_payable"  # void / uncollectible / no payment method: stop retrying
    NEEDS_HUMAN = "needs_human"  # the policy wants a person (an open dispute, fraud): stop and escalate


def after_retry(
    *,
    paid: bool,
    decline: DeclineLike | None,
    attempts_left: int,
    payable: bool = True,
) -> RetryVerdict:
    if paid:
        return RetryVerdict.RECOVERED
    if not payable:
        return RetryVerdict.NOT_PAYABLE
    if decline is not None and decline_kind(decline) is not DeclineKind.SOFT:
        return RetryVerdict.HARD
    return RetryVerdict.TRY_LATER if attempts_left > 0 else RetryVerdict.EXHAUSTED


def after_refusal(*, reason: str, needs_human: bool, attempts_left: int) -> RetryVerdict:
    """The policy refused a scheduled attempt (nothing was charged). A daily limit only skips this one;
    a spent budget ends dunning like its last failure; a hard or unknown decline asks for a new card;
    anything the policy hands to a person stops the schedule and escalates."""
    if needs_human:
        return RetryVerdict.NEEDS_HUMAN
    if reason == "rate_limited":
        return RetryVerdict.TRY_LATER if attempts_left > 0 else RetryVerdict.EXHAUSTED
    if reason == "retry_budget_exhausted":
        return RetryVerdict.EXHAUSTED
    return RetryVerdict.HARD


# ----------------------------------------------------------------------------- policy facts
def invoice_facts(
    invoice_id: str,
    *,
    status: str | None,
    amount_due_cents: Any,
    decline_code: str | None,
    attempt_count: int,
    hosted_invoice_url: str | None = None,
) -> dict[str, Any]:
    """One invoice as the executor reads it from a diagnosis's evidence (target, amount, policy facts)."""
    return {
        "id": invoice_id,
        "status": status or "open",
        "amount_due_usd": usd(amount_due_cents),
        "decline_code": decline_code,
        "attempt_count": max(0, int(attempt_count)),
        "hosted_invoice_url": hosted_invoice_url,
    }


def dunning_invoice_facts(
    invoice_id: str,
    amount_due_cents: int,
    *,
    mirrored: dict[str, Any] | None,
    last_decline: str | None,
    tried: int,
) -> dict[str, Any]:
    """The invoice a scheduled retry is about: open while its schedule is active (Stripe answers
    ``already_paid`` otherwise), the last decline its retries saw, and at least the first failure plus
    the retries made as failures (so ``do_not_honor`` turns hard after two)."""
    seen = mirrored or {}
    return invoice_facts(
        invoice_id,
        status="open",
        amount_due_cents=amount_due_cents,
        decline_code=last_decline or seen.get("last_decline_code"),
        attempt_count=max(int(seen.get("attempt_count") or 0), 1 + tried),
        hosted_invoice_url=seen.get("hosted_invoice_url"),
    )


def facts_view(
    customer_id: str,
    *,
    root_cause: RootCause,
    invoice: dict[str, Any] | None,
    disputes: list[dict[str, Any]],
    plan_tier: str | None,
    at: datetime,
) -> DiagnosisView:
    """The verified facts Tier 0 holds (the signed event, the mirror), shaped as the executor's diagnosis:
    its targets and policy facts come from here, without a diagnosis computation per Stripe event."""
    evidence: dict[str, Any] = {"disputes": disputes, "source": "tier0:event+mirror"}
    if invoice is not None:
        evidence["invoice"] = invoice
    if plan_tier:
        evidence["plan"] = {"tier": plan_tier}
    return DiagnosisView(
        customer_id=customer_id,
        status=HealthStatus.RED if invoice is not None else HealthStatus.AMBER,
        root_cause=root_cause,
        explanation="Tier 0 facts: the verified Stripe event and the mirror.",
        evidence=evidence,
        computed_at=at,
    )


# ----------------------------------------------------------------------------- cards and links
def card_expires_at(exp_month: int, exp_year: int) -> datetime:
    """A card is valid through the last day of its expiry month."""
    last = calendar.monthrange(exp_year, exp_month)[1]
    return datetime(exp_year, exp_month, last, 23, 59, 59, tzinfo=UTC)


def card_expiring(
    exp_month: int | None,
    exp_year: int | None,
    *,
    now: datetime,
    window_days: int = 30,
    before: datetime | None = None,
) -> bool:
    """True when the card stops working within the window (or before ``before``, e.g. the next charge)."""
    if not exp_month or not exp_year or not 1 <= int(exp_month) <= 12:
        return False
    ends = card_expires_at(int(exp_month), int(exp_year))
    if ends < now:
        return False  # already expired: a decline will say so, not a nudge
    horizon = now + timedelta(days=window_days)
    if before is not None:
        horizon = max(horizon, before)
    return ends <= horizon


def timestamp_of(value: Any) -> datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def invoice_link_expired(obj: dict[str, Any], now: datetime) -> bool:
    """An open invoice whose hosted link is gone or past its expiry.

    Reads ``link_expired`` / ``link_expires_at``.
    """
    if obj.get("object") not in (None, "invoice"):
        return False
    if obj.get("status") not in ("open", None):
        return False
    if obj.get("link_expired") is True:
        return True
    meta = _meta(obj)
    expires = (
        timestamp_of(obj.get("link_expires_at"))
        or timestamp_of(meta.get("tl_link_expires_at"))
        or timestamp_of(meta.get("link_expires_at"))
    )
    return expires is not None and expires <= now


def event_link_expired(obj: dict[str, Any], previous: dict[str, Any] | None, now: datetime) -> bool:
    """An invoice event showing the link expired: the object says so, or the URL was just removed."""
    if invoice_link_expired(obj, now):
        return True
    return bool(
        previous
        and previous.get("hosted_invoice_url")
        and not obj.get("hosted_invoice_url")
        and obj.get("status") == "open"
    )


def usd(cents: Any) -> float:
    try:
        return round(int(cents) / 100.0, 2)
    except (TypeError, ValueError):
        return 0.0


# ----------------------------------------------------------------------------- messages to customers
@dataclass(frozen=True)
class Email:
    template: str
    subject: str
    body: str
    link: str | None = None


def email_for(
    action: Action,
    *,
    amount_usd: float = 0.0,
    invoice_id: str | None = None,
    link: str | None = None,
    retry_at: datetime | None = None,
    card: str | None = None,
    expires: str | None = None,
) -> Email:
    """Plain-language emails. Never card numbers beyond brand and last 4."""
    amount = f"${amount_usd:,.2f}" if amount_usd else "your latest invoice"
    if action is Action.SEND_NUDGE and expires:
        return Email(
            "card_expiring",
            "Your card on file expires soon",
            f"Your {card or 'card'} expires at the end of {expires}. Update it now to avoid an interrupted "
            f"subscription." + (f"\n\nUpdate your card: {link}" if link else ""),
            link,
        )
    if action is Action.SEND_NUDGE:
        when = f" We'll try again automatically on {retry_at:%B %-d}." if retry_at else ""
        return Email(
            "payment_failed_soft",
            "We couldn't process your payment",
            f"Your payment of {amount} didn't go through.{when} No action is needed if your card has funds; "
            f"you can also pay now." + (f"\n\nPay your invoice: {link}" if link else ""),
            link,
        )
    if action is Action.SEND_UPDATE_CARD_LINK:
        return Email(
            "update_card",
            "Please update your payment method",
            f"Your card was declined for {amount} and can't be retried. Please add a new card to keep your "
            f"subscription active." + (f"\n\nUpdate your card: {link}" if link else ""),
            link,
        )
    if action is Action.REGENERATE_INVOICE_LINK:
        return Email(
            "invoice_link",
            "A fresh link to pay your invoice",
            f"The payment link for {amount} ({invoice_id or 'your invoice'}) had expired. Here is a new one."
            + (f"\n\n{link}" if link else ""),
            link,
        )
    raise ValueError(f"no email for action {action}")
