"""The pure diagnosis: every root cause from a hand-built snapshot, priority order, missing sources."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from schemas.vocab import Action, HealthStatus, RootCause
from services.diagnostics.domain import PRIORITY, UsageDay, diagnose, usage_figures
from tierline.billing.records import (
    BillingSnapshot,
    ChargeRecord,
    DisputeRecord,
    InvoiceRecord,
    PaymentIntentRecord,
    PaymentMethodRecord,
    PlanRecord,
    RefundRecord,
    SubscriptionRecord,
    UsageFigures,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
PRO = PlanRecord("pro", "Pro", "pro", 49.0, 15, {"api_calls": 500000.0}, {"api_calls": 0.0002})
VISA = PaymentMethodRecord("pm_1", "visa", "4242", 12, 2030)


def healthy(**changes: object) -> BillingSnapshot:
    base = BillingSnapshot(
        customer_id="cus_1",
        default_payment_method_id="pm_1",
        payment_methods=(VISA,),
        charges=(ChargeRecord("ch_1", 4900, "succeeded", NOW - timedelta(days=9)),),
        subscriptions=(
            SubscriptionRecord(
                "sub_1", "active", "pro", 5, 49.0, NOW - timedelta(days=9), NOW + timedelta(days=21)
            ),
        ),
        plans={"pro": PRO},
        usage=(UsageFigures("api_calls", 100000, 200000, 180000, 300000),),
        sources={"stripe": "mirror", "usage": "clickhouse"},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def failed_invoice(code: str | None, attempts: int = 1, **kw: object) -> InvoiceRecord:
    return InvoiceRecord(
        "in_9",
        "open",
        4900,
        attempt_count=attempts,
        last_decline_code=code,
        created=NOW - timedelta(days=1),
        **kw,
    )  # type: ignore[arg-type]


def test_healthy_customer_is_green_with_evidence() -> None:
    d = diagnose(healthy(), NOW)
    assert (d.status, d.root_cause, d.secondary_causes) == (HealthStatus.GREEN, RootCause.HEALTHY, [])
    assert "Visa ending in 4242" in d.explanation
    assert "$49.00" in d.explanation
    ev = d.evidence
    assert ev["payment_method"] == {
        "id": "pm_1",
        "brand": "visa",
        "last4": "4242",
        "exp_month": 12,
        "exp_year": 2030,
    }
    assert ev["plan"]["seat_limit"] == 15
    assert ev["plan"]["monthly_usd"] == 49.0
    assert ev["charges"][0]["id"] == "ch_1"
    assert ev["charges"][0]["amount_usd"] == 49.0
    assert ev["usage"]["limit"] == 500000
    assert ev["usage"]["last_30d"] == 200000
    assert "duplicate" not in ev
    assert "invoice" not in ev


@pytest.mark.parametrize(
    ("code", "cause", "action"),
    [
        ("insufficient_funds", RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS, Action.RETRY_PAYMENT),
        ("processing_error", RootCause.CARD_DECLINED_SOFT, Action.RETRY_PAYMENT),
        ("card_declined", RootCause.CARD_DECLINED_SOFT, Action.RETRY_PAYMENT),
        ("incorrect_number", RootCause.CARD_DECLINED_HARD, Action.SEND_UPDATE_CARD_LINK),
        ("expired_card", RootCause.CARD_DECLINED_HARD, Action.SEND_UPDATE_CARD_LINK),
        ("some_future_code", RootCause.CARD_DECLINED_HARD, Action.SEND_UPDATE_CARD_LINK),
        ("stolen_card", RootCause.CARD_DECLINED_FRAUD, Action.ESCALATE),
        ("lost_card", RootCause.CARD_DECLINED_FRAUD, Action.ESCALATE),
    ],
)
def test_declined_invoice_per_decline_class(code: str, cause: RootCause, action: Action) -> None:
    d = diagnose(healthy(invoices=(failed_invoice(code),)), NOW)
    assert d.status is HealthStatus.RED
    assert d.root_cause is cause
    assert d.recommended_action is action
    assert d.evidence["invoice"]["decline_code"] == code
    assert d.evidence["invoice"]["amount_due_usd"] == 49.0
    assert "$49.00" in d.explanation


def test_do_not_honor_after_two_attempts_is_hard() -> None:
    assert (
        diagnose(healthy(invoices=(failed_invoice("do_not_honor", 1),)), NOW).root_cause
        is RootCause.CARD_DECLINED_SOFT
    )
    assert (
        diagnose(healthy(invoices=(failed_invoice("do_not_honor", 2),)), NOW).root_cause
        is RootCause.CARD_DECLINED_HARD
    )


def test_decline_code_found_on_the_failed_charge_when_the_invoice_has_none() -> None:
    charge = ChargeRecord(
        "ch_f",
        4900,
        "failed",
        NOW - timedelta(days=1),
        invoice_id="in_9",
        failure_code="card_declined",
        decline_code="insufficient_funds",
    )
    d = diagnose(healthy(invoices=(failed_invoice(None),), charges=(charge,)), NOW)
    assert d.root_cause is RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS


def test_card_expired_and_expiring() -> None:
    expired = replace(VISA, exp_month=1, exp_year=2026)
    d = diagnose(healthy(payment_methods=(expired,)), NOW)
    assert d.root_cause is RootCause.CARD_EXPIRED
    assert d.status is HealthStatus.RED
    assert "01/2026" in d.explanation
    expiring = replace(VISA, exp_month=3, exp_year=2026)
    d = diagnose(healthy(payment_methods=(expiring,)), NOW)
    assert d.root_cause is RootCause.CARD_EXPIRING
    assert d.status is HealthStatus.AMBER
    assert d.recommended_action is Action.SEND_UPDATE_CARD_LINK
    assert (
        diagnose(healthy(payment_methods=(replace(VISA, exp_month=6, exp_year=2026),)), NOW).root_cause
        is RootCause.HEALTHY
    )


def test_invoice_link_expired() -> None:
    inv = InvoiceRecord(
        "in_5",
        "open",
        4900,
        attempt_count=0,
        hosted_invoice_url="https://pay/x",
        link_expires_at=NOW - timedelta(days=2),
        created=NOW - timedelta(days=40),
    )
    d = diagnose(healthy(invoices=(inv,)), NOW)
    assert d.root_cause is RootCause.INVOICE_LINK_EXPIRED
    assert d.recommended_action is Action.REGENERATE_INVOICE_LINK
    assert d.evidence["invoice"]["link_expired"] is True


def test_payment_pending_from_charge_and_from_intent() -> None:
    pending = ChargeRecord("ch_p", 4900, "pending", NOW - timedelta(hours=3))
    assert diagnose(healthy(charges=(pending,)), NOW).root_cause is RootCause.PAYMENT_PENDING
    pi = PaymentIntentRecord("pi_1", "requires_action", 2500, created=NOW - timedelta(hours=1))
    d = diagnose(healthy(payment_intents=(pi,)), NOW)
    assert d.root_cause is RootCause.PAYMENT_PENDING
    assert "$25.00" in d.explanation


def test_usage_overage() -> None:
    d = diagnose(healthy(usage=(UsageFigures("api_calls", 400000, 650000, 200000, 700000),)), NOW)
    assert d.root_cause is RootCause.USAGE_OVERAGE
    assert d.evidence["usage"]["overage_units"] == 150000
    assert d.evidence["usage"]["overage_usd"] == 30.0
    assert "650,000" in d.explanation
    assert "$30.00" in d.explanation


def test_seats_over_plan() -> None:
    sub = SubscriptionRecord("sub_1", "active", "pro", 18, 49.0)
    d = diagnose(healthy(subscriptions=(sub,)), NOW)
    assert d.root_cause is RootCause.SEATS_OVER_PLAN
    assert d.recommended_action is Action.CHANGE_PLAN
    assert d.evidence["plan"]["seats"] == 18


def test_duplicate_charge_within_48h_names_the_newer_twin() -> None:
    a = ChargeRecord("ch_a", 4900, "succeeded", NOW - timedelta(hours=30))
    b = ChargeRecord("ch_b", 4900, "succeeded", NOW - timedelta(hours=2))
    d = diagnose(healthy(charges=(a, b)), NOW)
    assert d.root_cause is RootCause.DUPLICATE_CHARGE
    assert d.recommended_action is Action.REFUND
    assert d.evidence["duplicate"] == {"charge_id": "ch_b", "twin_charge_id": "ch_a", "amount_usd": 49.0}
    assert [c["id"] for c in d.evidence["charges"]] == ["ch_b", "ch_a"]
    far = ChargeRecord("ch_a", 4900, "succeeded", NOW - timedelta(hours=60))
    assert diagnose(healthy(charges=(far, b)), NOW).root_cause is RootCause.HEALTHY
    refunded = replace(b, amount_refunded_cents=4900)
    assert diagnose(healthy(charges=(a, refunded)), NOW).root_cause is not RootCause.DUPLICATE_CHARGE


def test_refund_pending_and_succeeded() -> None:
    r = RefundRecord("re_1", "ch_1", 2000, "pending", NOW - timedelta(days=3))
    d = diagnose(healthy(refunds=(r,)), NOW)
    assert d.root_cause is RootCause.REFUND_PENDING
    assert "$20.00" in d.explanation
    assert d.evidence["charges"][0]["refunded_usd"] == 20.0
    d = diagnose(healthy(refunds=(replace(r, status="succeeded"),)), NOW)
    assert d.root_cause is RootCause.REFUND_SUCCEEDED
    assert d.status is HealthStatus.GREEN


def test_open_dispute_blocks_and_escalates() -> None:
    dp = DisputeRecord("dp_1", "ch_1", 4900, "needs_response", NOW - timedelta(days=1), "fraudulent")
    d = diagnose(healthy(disputes=(dp,), invoices=(failed_invoice("insufficient_funds"),)), NOW)
    assert d.root_cause is RootCause.DISPUTE_OPEN
    assert d.recommended_action is Action.ESCALATE
    assert RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS in d.secondary_causes
    assert diagnose(healthy(disputes=(replace(dp, status="won"),)), NOW).root_cause is RootCause.HEALTHY


def test_subscription_missing_and_canceled() -> None:
    d = diagnose(healthy(subscriptions=()), NOW)
    assert d.root_cause is RootCause.SUBSCRIPTION_MISSING
    assert d.status is HealthStatus.RED
    sub = SubscriptionRecord("sub_1", "canceled", "pro", 5, 49.0, canceled_at=NOW - timedelta(days=4))
    d = diagnose(healthy(subscriptions=(sub,)), NOW)
    assert d.root_cause is RootCause.SUBSCRIPTION_CANCELED
    assert "cancelled" in d.explanation


def test_no_payment_method() -> None:
    d = diagnose(healthy(payment_methods=(), default_payment_method_id=None), NOW)
    assert d.root_cause is RootCause.NO_PAYMENT_METHOD
    assert "$49.00" in d.explanation
    detached = diagnose(healthy(payment_methods=(replace(VISA, detached=True),)), NOW)
    assert detached.root_cause is RootCause.NO_PAYMENT_METHOD


def test_missing_source_is_never_green() -> None:
    d = diagnose(healthy(missing_sources=("usage",), usage=None), NOW)
    assert d.status is HealthStatus.AMBER
    assert d.root_cause is RootCause.UNKNOWN
    assert d.missing_sources == ["usage"]
    assert "usage" in d.explanation
    # a real problem is still reported, with the gap named
    d = diagnose(healthy(missing_sources=("stripe",), invoices=(failed_invoice("insufficient_funds"),)), NOW)
    assert d.root_cause is RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS
    assert "stripe" in d.explanation


def test_unknown_customer_with_sources_down_is_unknown_not_missing_subscription() -> None:
    snap = BillingSnapshot(
        customer_id="cus_x", customer_known=False, missing_sources=("stripe_mirror", "subscriptions")
    )
    d = diagnose(snap, NOW)
    assert d.root_cause is RootCause.UNKNOWN
    assert d.status is not HealthStatus.GREEN


def test_priority_is_explicit_data_covering_every_cause() -> None:
    assert set(PRIORITY) == set(RootCause) - {RootCause.UNKNOWN}
    assert PRIORITY.index(RootCause.DISPUTE_OPEN) < PRIORITY.index(RootCause.DUPLICATE_CHARGE)
    both = healthy(
        payment_methods=(replace(VISA, exp_month=3, exp_year=2026),),
        subscriptions=(SubscriptionRecord("sub_1", "active", "pro", 18, 49.0),),
    )
    d = diagnose(both, NOW)
    assert d.root_cause is RootCause.SEATS_OVER_PLAN
    assert d.secondary_causes == [RootCause.CARD_EXPIRING]


# ----------------------------------------------------------------------------- usage figures from daily rows


def _day(days_ago: int, units: float, metric: str = "api_calls", cost: float = 0.0) -> UsageDay:
    return UsageDay(metric, (NOW - timedelta(days=days_ago)).date(), units, cost)


def test_usage_figures_split_period_last_30_and_previous_30_days() -> None:
    days = [
        _day(0, 10, cost=1.0),
        _day(5, 20, cost=2.0),
        _day(29, 40),
        _day(30, 80),
        _day(59, 160),
        _day(60, 320),
    ]
    days += [_day(3, 7, metric="seats")]
    start, end = NOW - timedelta(days=10), NOW + timedelta(days=20)
    api, seats = usage_figures(days, start, end, NOW)
    assert (api.metric, seats.metric) == ("api_calls", "seats")
    assert api.period_units == 30
    assert api.period_cost_usd == 3.0
    assert api.last_30d == 70  # days 0..29
    assert api.prev_30d == 240  # days 30..59; day 60 is outside both windows
    assert api.forecast == pytest.approx(30 / (10 * 86400 + 12 * 3600) * 30 * 86400, rel=0.06)
    assert seats.period_units == 7


def test_usage_figures_sum_partial_rows_of_one_day_and_ignore_future_and_old_rows() -> None:
    days = [_day(1, 5), _day(1, 6), _day(-1, 1000), _day(200, 1000)]
    (api,) = usage_figures(days, None, None, NOW)
    assert api.period_units == 11
    assert api.last_30d == 11
    assert api.prev_30d == 0
    assert api.forecast == 11  # no period known: the trailing 30 days
    assert usage_figures([_day(200, 1000)], None, None, NOW) == ()
