"""What the Stripe mirror and the subscription store know about one customer: the billing snapshot.

Plain records (no I/O): the mirror (:mod:`tierline.billing.mirror`) loads them from Postgres, the
diagnosis (services/diagnostics/domain.py) decides from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PaymentMethodRecord:
    id: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    detached: bool = False


@dataclass(frozen=True, slots=True)
class InvoiceRecord:
    id: str
    status: str
    amount_due_cents: int
    amount_paid_cents: int = 0
    attempt_count: int = 0
    hosted_invoice_url: str | None = None
    link_expires_at: datetime | None = None
    last_decline_code: str | None = None
    charge_id: str | None = None
    payment_intent_id: str | None = None
    subscription_id: str | None = None
    created: datetime | None = None
    next_payment_attempt: datetime | None = None


@dataclass(frozen=True, slots=True)
class PaymentIntentRecord:
    id: str
    status: str
    amount_cents: int
    invoice_id: str | None = None
    last_decline_code: str | None = None
    created: datetime | None = None


@dataclass(frozen=True, slots=True)
class ChargeRecord:
    id: str
    amount_cents: int
    status: str
    created: datetime
    amount_refunded_cents: int = 0
    invoice_id: str | None = None
    payment_intent_id: str | None = None
    failure_code: str | None = None
    decline_code: str | None = None
    payment_method_id: str | None = None
    disputed: bool = False
    description: str | None = None


@dataclass(frozen=True, slots=True)
class RefundRecord:
    id: str
    charge_id: str
    amount_cents: int
    status: str
    created: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class DisputeRecord:
    id: str
    charge_id: str
    amount_cents: int
    status: str
    created: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PlanRecord:
    id: str
    name: str
    tier: str
    price_usd: float
    seat_limit: int | None
    included_usage: dict[str, float] = field(default_factory=dict)
    overage_unit_usd: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    id: str
    status: str
    plan_id: str
    seats: int
    price_usd: float
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False
    canceled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class UsageFigures:
    """One metric's usage, as the usage store reports it."""

    metric: str
    period_units: float
    last_30d: float
    prev_30d: float
    forecast: float
    period_cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class BillingSnapshot:
    """Everything the three sources know about one customer at one moment."""

    customer_id: str
    customer_known: bool = True
    email: str | None = None
    name: str | None = None
    deleted: bool = False
    default_payment_method_id: str | None = None
    payment_methods: tuple[PaymentMethodRecord, ...] = ()
    invoices: tuple[InvoiceRecord, ...] = ()
    payment_intents: tuple[PaymentIntentRecord, ...] = ()
    charges: tuple[ChargeRecord, ...] = ()
    refunds: tuple[RefundRecord, ...] = ()
    disputes: tuple[DisputeRecord, ...] = ()
    subscriptions: tuple[SubscriptionRecord, ...] = ()
    plans: dict[str, PlanRecord] = field(default_factory=dict)
    seats_in_use: int | None = None
    usage: tuple[UsageFigures, ...] | None = None
    missing_sources: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)
