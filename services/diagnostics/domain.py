"""The Billing Diagnosis as a pure function of what the stores know (no I/O here).

``diagnose(snapshot, now)`` looks for every known problem, orders the findings by the explicit
:data:`PRIORITY` list, and returns the first as the root cause and the rest as secondary causes. A
source that could not be read is listed in ``missing_sources`` and the status is never green.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from schemas.messages import DiagnosisView
from schemas.vocab import Action, HealthStatus, RootCause
from tierline.billing.declines import classify_decline
from tierline.billing.records import (
    BillingSnapshot,
    ChargeRecord,
    InvoiceRecord,
    PaymentMethodRecord,
    UsageFigures,
)

#: The diagnosis type every door returns: exactly the message schema.
Diagnosis = DiagnosisView

OPEN_DISPUTE_STATUSES = frozenset(
    {"warning_needs_response", "warning_under_review", "needs_response", "under_review"}
)
PENDING_PI_STATUSES = frozenset({"processing", "requires_action"})
LIVE_SUB_STATUSES = frozenset({"active", "trialing", "past_due", "unpaid", "incomplete"})
UNPAID_INVOICE_STATUSES = frozenset({"open", "uncollectible"})
DUPLICATE_WINDOW = timedelta(hours=48)
EXPIRING_WINDOW = timedelta(days=30)
RECENT_REFUND_WINDOW = timedelta(days=30)
RECENT_FAILED_CHARGE_WINDOW = timedelta(days=14)

# ----------------------------------------------------------------------------- the snapshot
# (the records of a customer's billing snapshot live in the billing core: tierline/billing/records.py)


@dataclass(frozen=True, slots=True)
class UsageDay:
    """One customer's usage of one metric on one UTC day (rows of the daily rollup, possibly partial)."""

    metric: str
    day: date
    units: float
    cost_usd: float


#: How far back a usage read goes: a year's billing period plus margin, so the read does not depend on the
#: subscription (and can run while the mirror is read). Older period starts are clamped to it.
USAGE_LOOKBACK_DAYS = 400


def forecast_units(
    period_units: float,
    period_start: datetime | None,
    period_end: datetime | None,
    now: datetime,
    last_30d: float,
) -> float:
    """Run-rate forecast of the period's usage at its end (the trailing 30 days when no period is known)."""
    if period_start is None or period_end is None or period_end <= period_start:
        return last_30d
    elapsed = max((now - period_start).total_seconds(), 86400.0)
    total = (period_end - period_start).total_seconds()
    if elapsed >= total:
        return period_units
    return period_units / elapsed * total


def usage_figures(
    days: tuple[UsageDay, ...] | list[UsageDay],
    period_start: datetime | None,
    period_end: datetime | None,
    now: datetime,
) -> tuple[UsageFigures, ...]:
    """Per metric: usage this period, the last 30 days vs the 30 before, and the period's forecast.

    Days are UTC dates; the period counts from its start day to today (30 days back when unknown).
    Rows for the same day are summed (a rollup may hold several partial rows per day).
    """
    today = now.astimezone(UTC).date()
    start = (period_start or (now - timedelta(days=30))).astimezone(UTC).date()
    d30, d60 = today - timedelta(days=30), today - timedelta(days=60)
    horizon = min(d60, start - timedelta(days=1))
    acc: dict[str, list[float]] = {}
    for d in days:
        if d.day > today or d.day <= horizon:
            continue
        a = acc.setdefault(d.metric, [0.0, 0.0, 0.0, 0.0])
        if d.day >= start:
            a[0] += d.units
            a[1] += d.cost_usd
        if d.day > d30:
            a[2] += d.units
        elif d.day > d60:
            a[3] += d.units
    return tuple(
        UsageFigures(
            metric=metric,
            period_units=a[0],
            last_30d=a[2],
            prev_30d=a[3],
            forecast=forecast_units(a[0], period_start, period_end, now, a[2]),
            period_cost_usd=round(a[1], 4),
        )
        for metric, a in sorted(acc.items())
    )


# ----------------------------------------------------------------------------- findings


@dataclass(frozen=True, slots=True)
class Finding:
    cause: RootCause
    status: HealthStatus
    explanation: str
    action: Action | None
    self_serve: bool


#: Which cause wins when several hold, most important first. Blocking and risky states outrank
#: money-at-risk states, which outrank informational ones. Data, not code: tests read it.
PRIORITY: tuple[RootCause, ...] = (
    RootCause.DISPUTE_OPEN,
    RootCause.CARD_DECLINED_FRAUD,
    RootCause.SUBSCRIPTION_MISSING,
    RootCause.CARD_EXPIRED,
    RootCause.CARD_DECLINED_HARD,
    # A soft-declined invoice whose pay link has expired: the customer's way to pay is the blocker.
    RootCause.INVOICE_LINK_EXPIRED,
    RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS,
    RootCause.CARD_DECLINED_SOFT,
    RootCause.NO_PAYMENT_METHOD,
    RootCause.DUPLICATE_CHARGE,
    RootCause.PAYMENT_PENDING,
    RootCause.SUBSCRIPTION_CANCELED,
    RootCause.REFUND_PENDING,
    RootCause.SEATS_OVER_PLAN,
    RootCause.USAGE_OVERAGE,
    RootCause.CARD_EXPIRING,
    RootCause.REFUND_SUCCEEDED,
    RootCause.HEALTHY,
)
_RANK = {cause: i for i, cause in enumerate(PRIORITY)}


def usd(cents: int | float) -> float:
    return round(float(cents) / 100.0, 2)


def money(amount_usd: float) -> str:
    return f"${amount_usd:,.2f}"


def day(ts: datetime | None) -> str:
    return ts.astimezone(UTC).strftime("%d %b %Y") if ts else "an unknown date"


def iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).isoformat() if ts else None


def card_label(pm: PaymentMethodRecord | None) -> str:
    if pm is None:
        return "your card"
    brand = (pm.brand or "card").replace("_", " ").title()
    if brand.lower() == "amex":
        brand = "American Express"
    return f"your {brand} ending in {pm.last4}" if pm.last4 else f"your {brand} card"


def card_expiry_end(pm: PaymentMethodRecord) -> datetime | None:
    """A card is valid through the last moment of its expiry month."""
    if not pm.exp_month or not pm.exp_year or not 1 <= pm.exp_month <= 12:
        return None
    last = calendar.monthrange(pm.exp_year, pm.exp_month)[1]
    return datetime(pm.exp_year, pm.exp_month, last, 23, 59, 59, tzinfo=UTC)


class _Context:
    """Derived views of the snapshot that several rules share."""

    def __init__(self, snap: BillingSnapshot, now: datetime) -> None:
        self.snap = snap
        self.now = now
        attached = [pm for pm in snap.payment_methods if not pm.detached]
        self.payment_methods = attached
        by_id = {pm.id: pm for pm in attached}
        self.default_pm = by_id.get(snap.default_payment_method_id or "") or (
            attached[0] if attached else None
        )
        self.charges = sorted(snap.charges, key=lambda c: c.created, reverse=True)
        self.charge_by_id = {c.id: c for c in snap.charges}
        self.pi_by_id = {p.id: p for p in snap.payment_intents}
        subs = sorted(
            snap.subscriptions,
            key=lambda s: (
                s.status in LIVE_SUB_STATUSES,
                s.current_period_end or datetime.min.replace(tzinfo=UTC),
            ),
            reverse=True,
        )
        self.subscription = subs[0] if subs else None
        self.plan = snap.plans.get(self.subscription.plan_id) if self.subscription else None
        self.unpaid_invoice = self._unpaid_invoice()

    def _unpaid_invoice(self) -> InvoiceRecord | None:
        unpaid = [
            i for i in self.snap.invoices if i.status in UNPAID_INVOICE_STATUSES and i.amount_due_cents > 0
        ]
        unpaid.sort(key=lambda i: i.created or datetime.min.replace(tzinfo=UTC), reverse=True)
        return unpaid[0] if unpaid else None

    def invoice_decline(self, inv: InvoiceRecord) -> str | None:
        """The issuer decline code behind an unpaid invoice, wherever the sources recorded it."""
        if inv.last_decline_code:
            return inv.last_decline_code
        charge = self.charge_by_id.get(inv.charge_id or "")
        if charge is None:
            failed = [
                c
                for c in self.charges
                if c.status == "failed"
                and (
                    c.invoice_id == inv.id
                    or (inv.payment_intent_id and c.payment_intent_id == inv.payment_intent_id)
                )
            ]
            charge = failed[0] if failed else None
        if charge is not None and charge.status == "failed":
            return charge.decline_code or charge.failure_code or "card_declined"
        pi = self.pi_by_id.get(inv.payment_intent_id or "")
        if pi is not None and pi.last_decline_code:
            return pi.last_decline_code
        return None

    def failed_charge_without_invoice(self) -> ChargeRecord | None:
        """A recent failed one-off charge not followed by a successful one."""
        for c in self.charges:
            if self.now - c.created > RECENT_FAILED_CHARGE_WINDOW:
                return None
            if c.status == "succeeded":
                return None
            if c.status == "failed" and not c.invoice_id:
                return c
        return None


# ----------------------------------------------------------------------------- rules


def _dispute(ctx: _Context) -> Finding | None:
    open_ = [d for d in ctx.snap.disputes if d.status in OPEN_DISPUTE_STATUSES]
    if not open_:
        return None
    d = max(open_, key=lambda x: x.created)
    charge = ctx.charge_by_id.get(d.charge_id) if d.charge_id else None
    charged = day(charge.created if charge is not None else d.created)
    return Finding(
        RootCause.DISPUTE_OPEN,
        HealthStatus.RED,
        f"There is an open dispute ({d.reason or 'no reason given'}) for {money(usd(d.amount_cents))} on the "
        f"charge of {charged}, "
        f"opened on {day(d.created)}. Billing changes and refunds are on hold until it is resolved; a person "
        "from our billing team will handle it.",
        Action.ESCALATE,
        False,
    )


def _decline(ctx: _Context) -> Finding | None:
    inv = ctx.unpaid_invoice
    code: str | None = None
    amount = 0
    attempts = 1
    when: datetime | None = None
    if inv is not None and inv.attempt_count > 0:
        code = ctx.invoice_decline(inv)
        amount, attempts, when = inv.amount_due_cents, inv.attempt_count, inv.created
    if code is None:
        charge = ctx.failed_charge_without_invoice()
        if charge is None:
            return None
        code = charge.decline_code or charge.failure_code or "card_declined"
        amount, when = charge.amount_cents, charge.created
    info = classify_decline(code, attempt_count=attempts)
    card = card_label(ctx.default_pm)
    what = f"The payment of {money(usd(amount))} on {day(when)} with {card} was declined ({info.code})"
    if info.fraud:
        return Finding(
            RootCause.CARD_DECLINED_FRAUD,
            HealthStatus.RED,
            f"{what}: the bank flagged the card as lost, stolen or at risk. {info.customer_message} "
            "For your safety we won't retry this card; a person from our billing team will help.",
            Action.ESCALATE,
            False,
        )
    if info.code == "expired_card":
        return Finding(
            RootCause.CARD_DECLINED_HARD,
            HealthStatus.RED,
            f"{what}. {info.customer_message}",
            Action.SEND_UPDATE_CARD_LINK,
            True,
        )
    if info.soft and info.retry_allowed:
        cause = (
            RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS
            if info.code == "insufficient_funds"
            else RootCause.CARD_DECLINED_SOFT
        )
        return Finding(
            cause, HealthStatus.RED, f"{what}. {info.customer_message}", Action.RETRY_PAYMENT, True
        )
    return Finding(
        RootCause.CARD_DECLINED_HARD,
        HealthStatus.RED,
        f"{what}. {info.customer_message} Retrying the same card won't help, so we'll send you a "
        "secure link to update it.",
        Action.SEND_UPDATE_CARD_LINK,
        True,
    )


def _card_expiry(ctx: _Context) -> Finding | None:
    pm = ctx.default_pm
    if pm is None:
        return None
    end = card_expiry_end(pm)
    if end is None:
        return None
    label = f"{pm.exp_month:02d}/{pm.exp_year}"
    if end < ctx.now:
        return Finding(
            RootCause.CARD_EXPIRED,
            HealthStatus.RED,
            f"{card_label(pm)[0].upper()}{card_label(pm)[1:]} expired at the end of {label}, so the next "
            "payment will fail. Please update your card.",
            Action.SEND_UPDATE_CARD_LINK,
            True,
        )
    if end - ctx.now <= EXPIRING_WINDOW:
        return Finding(
            RootCause.CARD_EXPIRING,
            HealthStatus.AMBER,
            f"{card_label(pm)[0].upper()}{card_label(pm)[1:]} expires at the end of {label} "
            f"({(end - ctx.now).days} days from now). Update it before then to avoid a failed payment.",
            Action.SEND_UPDATE_CARD_LINK,
            True,
        )
    return None


def _link_expired(ctx: _Context) -> Finding | None:
    inv = ctx.unpaid_invoice
    if inv is None or inv.link_expires_at is None or inv.link_expires_at > ctx.now:
        return None
    return Finding(
        RootCause.INVOICE_LINK_EXPIRED,
        HealthStatus.AMBER,
        f"The payment link for invoice {inv.id} ({money(usd(inv.amount_due_cents))}, issued "
        f"{day(inv.created)}) expired on {day(inv.link_expires_at)}. We can send you a fresh link.",
        Action.REGENERATE_INVOICE_LINK,
        True,
    )


def _no_payment_method(ctx: _Context) -> Finding | None:
    if ctx.payment_methods:
        return None
    sub = ctx.subscription
    paying = sub is not None and sub.status in LIVE_SUB_STATUSES and sub.price_usd > 0
    if not paying and ctx.unpaid_invoice is None:
        return None
    return Finding(
        RootCause.NO_PAYMENT_METHOD,
        HealthStatus.RED,
        "There is no card on file, so the next payment"
        + (f" of {money(sub.price_usd)}" if sub is not None and paying else "")
        + " can't be collected. Please add a card.",
        Action.SEND_UPDATE_CARD_LINK,
        True,
    )


def duplicate_pair(charges: list[ChargeRecord]) -> tuple[ChargeRecord, ChargeRecord] | None:
    """The newest (newer, older) pair of settled charges with the same amount within 48 hours."""
    settled = [c for c in charges if c.status == "succeeded" and c.amount_cents > 0]
    for i, newer in enumerate(settled):
        if newer.amount_refunded_cents >= newer.amount_cents:
            continue
        for older in settled[i + 1 :]:
            if newer.created - older.created > DUPLICATE_WINDOW:
                break
            if older.amount_cents == newer.amount_cents:
                return newer, older
    return None


def _duplicate(ctx: _Context) -> Finding | None:
    pair = duplicate_pair(ctx.charges)
    if pair is None:
        return None
    newer, older = pair
    hours = (newer.created - older.created).total_seconds() / 3600
    return Finding(
        RootCause.DUPLICATE_CHARGE,
        HealthStatus.AMBER,
        f"You were charged {money(usd(newer.amount_cents))} twice: on {day(older.created)} ({older.id}) and "
        f"again {hours:.0f} hours later on {day(newer.created)} ({newer.id}). The second charge "
        "looks like a duplicate and can be refunded.",
        Action.REFUND,
        True,
    )


def _pending(ctx: _Context) -> Finding | None:
    for c in ctx.charges:
        if c.status == "pending":
            return Finding(
                RootCause.PAYMENT_PENDING,
                HealthStatus.AMBER,
                f"Your payment of {money(usd(c.amount_cents))} from {day(c.created)} is still being "
                "processed by your bank. No action is needed; it usually settles within a few days.",
                Action.EXPLAIN_CHARGE,
                True,
            )
    for p in sorted(ctx.snap.payment_intents, key=lambda x: x.created or ctx.now, reverse=True):
        if p.status in PENDING_PI_STATUSES:
            needs = p.status == "requires_action"
            return Finding(
                RootCause.PAYMENT_PENDING,
                HealthStatus.AMBER,
                f"Your payment of {money(usd(p.amount_cents))} from {day(p.created)} is pending"
                + (
                    ": your bank is waiting for you to confirm it (3-D Secure)."
                    if needs
                    else " while your bank processes it. No action is needed."
                ),
                Action.EXPLAIN_CHARGE,
                True,
            )
    return None


def _subscription(ctx: _Context) -> Finding | None:
    sub = ctx.subscription
    if sub is None:
        return Finding(
            RootCause.SUBSCRIPTION_MISSING,
            HealthStatus.RED,
            "We can't find a subscription for this account, so no plan or features are active. "
            "A person from our billing team will check what happened.",
            Action.ESCALATE,
            False,
        )
    if sub.status == "canceled":
        return Finding(
            RootCause.SUBSCRIPTION_CANCELED,
            HealthStatus.AMBER,
            f"Your {ctx.plan.name if ctx.plan else sub.plan_id} subscription was cancelled"
            + (f" on {day(sub.canceled_at)}" if sub.canceled_at else "")
            + ". You can re-subscribe at any time.",
            Action.CHANGE_PLAN,
            True,
        )
    return None


def _seats(ctx: _Context) -> Finding | None:
    sub, plan = ctx.subscription, ctx.plan
    if sub is None or plan is None or plan.seat_limit is None:
        return None
    seats = max(sub.seats, ctx.snap.seats_in_use or 0)
    if seats <= plan.seat_limit:
        return None
    return Finding(
        RootCause.SEATS_OVER_PLAN,
        HealthStatus.AMBER,
        f"Your account has {seats} seats but the {plan.name} plan includes {plan.seat_limit}. "
        "Moving to a larger plan covers the extra seats.",
        Action.CHANGE_PLAN,
        True,
    )


def usage_evidence(ctx: _Context) -> dict[str, Any] | None:
    usage = ctx.snap.usage
    if not usage:
        return None
    plan = ctx.plan
    best: dict[str, Any] | None = None
    for u in usage:
        limit = plan.included_usage.get(u.metric) if plan else None
        over = max(0.0, u.last_30d - limit) if limit is not None else 0.0
        unit = plan.overage_unit_usd.get(u.metric, 0.0) if plan else 0.0
        item = {
            "metric": u.metric,
            "limit": limit,
            "last_30d": round(u.last_30d, 3),
            "prev_30d": round(u.prev_30d, 3),
            "period_units": round(u.period_units, 3),
            "overage_units": round(over, 3),
            "overage_usd": round(over * unit, 2),
            "forecast": round(u.forecast, 3),
            "forecast_over_limit": bool(limit is not None and u.forecast > limit),
        }
        if best is None or (item["overage_units"], item["last_30d"]) > (
            best["overage_units"],
            best["last_30d"],
        ):
            best = item
    return best


def _overage(ctx: _Context) -> Finding | None:
    u = usage_evidence(ctx)
    if u is None or u["limit"] is None or u["overage_units"] <= 0:
        return None
    metric = str(u["metric"]).replace("_", " ")
    growth = ""
    if u["prev_30d"] > 0:
        growth = f", {u['last_30d'] / u['prev_30d']:.1f}x the {u['prev_30d']:,.0f} of the 30 days before"
    return Finding(
        RootCause.USAGE_OVERAGE,
        HealthStatus.AMBER,
        f"Your {metric} in the last 30 days were {u['last_30d']:,.0f}{growth}, above the "
        f"{u['limit']:,.0f} included in your {ctx.plan.name if ctx.plan else ''} plan. The "
        f"{u['overage_units']:,.0f} extra are billed as overage ({money(u['overage_usd'])}).",
        Action.EXPLAIN_CHARGE,
        True,
    )


def _refunds(ctx: _Context) -> Finding | None:
    recent = sorted(
        (r for r in ctx.snap.refunds if ctx.now - r.created <= RECENT_REFUND_WINDOW),
        key=lambda r: r.created,
        reverse=True,
    )
    pending = next((r for r in recent if r.status in ("pending", "requires_action")), None)
    if pending is not None:
        return Finding(
            RootCause.REFUND_PENDING,
            HealthStatus.AMBER,
            f"Your refund of {money(usd(pending.amount_cents))} was issued on {day(pending.created)} and "
            "is on its way; refunds usually reach your statement within 5-10 business days.",
            Action.EXPLAIN_CHARGE,
            True,
        )
    done = next((r for r in recent if r.status == "succeeded"), None)
    if done is not None:
        return Finding(
            RootCause.REFUND_SUCCEEDED,
            HealthStatus.GREEN,
            f"Your refund of {money(usd(done.amount_cents))} was completed on {day(done.created)}. "
            "It can take 5-10 business days to show on your statement.",
            Action.EXPLAIN_CHARGE,
            True,
        )
    return None


RULES: tuple[Callable[[_Context], Finding | None], ...] = (
    _dispute,
    _decline,
    _card_expiry,
    _link_expired,
    _no_payment_method,
    _duplicate,
    _pending,
    _subscription,
    _seats,
    _overage,
    _refunds,
)

# ----------------------------------------------------------------------------- evidence


def build_evidence(ctx: _Context) -> dict[str, Any]:
    snap = ctx.snap
    refunded_by_charge: dict[str, int] = {}
    for r in snap.refunds:
        if r.status in ("succeeded", "pending"):
            refunded_by_charge[r.charge_id] = refunded_by_charge.get(r.charge_id, 0) + r.amount_cents
    evidence: dict[str, Any] = {
        "charges": [
            {
                "id": c.id,
                "amount_usd": usd(c.amount_cents),
                "created_at": iso(c.created),
                "refunded_usd": usd(max(c.amount_refunded_cents, refunded_by_charge.get(c.id, 0))),
                "status": c.status,
                "invoice_id": c.invoice_id,
            }
            for c in ctx.charges[:20]
        ],
        "refunds": [
            {
                "id": r.id,
                "charge_id": r.charge_id,
                "amount_usd": usd(r.amount_cents),
                "status": r.status,
                "created_at": iso(r.created),
                "reason": r.reason,
            }
            for r in sorted(snap.refunds, key=lambda r: r.created, reverse=True)[:20]
        ],
        "disputes": [
            {
                "id": d.id,
                "charge_id": d.charge_id,
                "amount_usd": usd(d.amount_cents),
                "status": d.status,
                "reason": d.reason,
                "created_at": iso(d.created),
                "open": d.status in OPEN_DISPUTE_STATUSES,
            }
            for d in sorted(snap.disputes, key=lambda d: d.created, reverse=True)
        ],
        "sources": dict(snap.sources),
    }
    pair = duplicate_pair(ctx.charges)
    if pair is not None:
        evidence["duplicate"] = {
            "charge_id": pair[0].id,
            "twin_charge_id": pair[1].id,
            "amount_usd": usd(pair[0].amount_cents),
        }
    inv = ctx.unpaid_invoice
    if inv is not None:
        evidence["invoice"] = {
            "id": inv.id,
            "status": inv.status,
            "amount_due_usd": usd(inv.amount_due_cents),
            "hosted_invoice_url": inv.hosted_invoice_url,
            "link_expired": bool(inv.link_expires_at is not None and inv.link_expires_at <= ctx.now),
            "link_expires_at": iso(inv.link_expires_at),
            "decline_code": ctx.invoice_decline(inv) if inv.attempt_count > 0 else None,
            "attempt_count": inv.attempt_count,
            "created_at": iso(inv.created),
        }
    usage = usage_evidence(ctx)
    if usage is not None:
        evidence["usage"] = usage
    if ctx.plan is not None:
        sub = ctx.subscription
        evidence["plan"] = {
            "id": ctx.plan.id,
            "name": ctx.plan.name,
            "tier": ctx.plan.tier,
            "monthly_usd": round(ctx.plan.price_usd, 2),
            "seats": max(sub.seats, snap.seats_in_use or 0) if sub else None,
            "seat_limit": ctx.plan.seat_limit,
        }
    if ctx.subscription is not None:
        s = ctx.subscription
        evidence["subscription"] = {
            "id": s.id,
            "status": s.status,
            "cancel_at_period_end": s.cancel_at_period_end,
            "current_period_end": iso(s.current_period_end),
            "plan_id": s.plan_id,
            "seats": s.seats,
            "price_usd": round(s.price_usd, 2),
        }
    if ctx.default_pm is not None:
        pm = ctx.default_pm
        evidence["payment_method"] = {
            "id": pm.id,
            "brand": pm.brand,
            "last4": pm.last4,
            "exp_month": pm.exp_month,
            "exp_year": pm.exp_year,
        }
    return evidence


# ----------------------------------------------------------------------------- the decision


def diagnose(snapshot: BillingSnapshot, now: datetime) -> Diagnosis:
    """One plain-language diagnosis from what is known; never green when a source is missing."""
    ctx = _Context(snapshot, now)
    findings = [f for f in (rule(ctx) for rule in RULES) if f is not None] if snapshot.customer_known else []
    # A subscription the store cannot read is unknown, not missing.
    if "subscriptions" in snapshot.missing_sources:
        findings = [f for f in findings if f.cause is not RootCause.SUBSCRIPTION_MISSING]
    findings.sort(key=lambda f: _RANK[f.cause])
    evidence = build_evidence(ctx)
    missing = list(dict.fromkeys(snapshot.missing_sources))
    if findings:
        top = findings[0]
        status, cause, explanation, action, self_serve = (
            top.status,
            top.cause,
            top.explanation,
            top.action,
            top.self_serve,
        )
    else:
        status, cause, action, self_serve = HealthStatus.GREEN, RootCause.HEALTHY, None, False
        plan = f" on the {ctx.plan.name} plan" if ctx.plan else ""
        pm = f", paid with {card_label(ctx.default_pm)}" if ctx.default_pm else ""
        last = ctx.charges[0] if ctx.charges else None
        paid = (
            f" Your last payment was {money(usd(last.amount_cents))} on {day(last.created)}."
            if last is not None and last.status == "succeeded"
            else ""
        )
        state = ctx.subscription.status if ctx.subscription else "active"
        explanation = f"Everything looks fine: your subscription is {state}{plan}{pm}.{paid}"
    if not snapshot.customer_known:
        status, cause, action, self_serve = HealthStatus.AMBER, RootCause.UNKNOWN, Action.ESCALATE, False
        explanation = (
            "We couldn't read this account's billing records right now ("
            + (", ".join(missing) or "no source")
            + " unavailable), so we can't say what is wrong."
        )
    elif missing and status is HealthStatus.GREEN:
        status = HealthStatus.AMBER
        if cause is RootCause.HEALTHY:
            cause = RootCause.UNKNOWN
            explanation = (
                "We couldn't check everything: " + ", ".join(missing) + " could not be read right now. "
                "Nothing we could see is wrong. " + explanation.removeprefix("Everything looks fine: ")
            )
    if missing and cause is not RootCause.UNKNOWN:
        explanation += f" (Not checked: {', '.join(missing)} could not be read right now.)"
    return Diagnosis(
        customer_id=snapshot.customer_id,
        status=status,
        root_cause=cause,
        explanation=explanation,
        recommended_action=action,
        self_serve_eligible=self_serve,
        evidence=evidence,
        missing_sources=missing,
        secondary_causes=[f.cause for f in findings[1:]],
        computed_at=now,
    )
