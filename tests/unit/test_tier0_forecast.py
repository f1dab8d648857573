"""The forecast nudge's pure decisions (issue 21): which metric passes its limit, the period it is counted
in, the email's words, and which customers the sweep still watches."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.tier0_prevent.forecast import (
    UsageWatch,
    customers_of,
    forecast_email,
    forecast_over_limit,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)


def answer(**forecasts: float) -> dict[str, object]:
    return {
        "period_start": "2026-11-20T00:00:00+00:00",
        "period_end": "2026-12-20T00:00:00+00:00",
        "metrics": [
            {"metric": m, "period_units": f / 2, "forecast": f} for m, f in sorted(forecasts.items())
        ],
    }


def test_given_a_forecast_past_the_limit_when_read_then_it_is_over_in_the_period_of_its_start() -> None:
    reading = forecast_over_limit(
        "cus_1", answer(api_calls=750_000.0), {"api_calls": 500_000.0}, threshold=1.0, now=NOW
    )

    assert reading is not None
    assert (reading.metric, reading.limit, reading.forecast, reading.percent) == (
        "api_calls",
        500_000.0,
        750_000.0,
        150,
    )
    assert reading.contact_id == "forecast:cus_1:api_calls:2026-11-20"


def test_given_forecasts_under_the_limit_or_unlimited_metrics_when_read_then_no_nudge() -> None:
    limits = {"api_calls": 500_000.0}

    assert forecast_over_limit("c", answer(api_calls=500_000.0), limits, threshold=1.0, now=NOW) is None
    assert forecast_over_limit("c", answer(storage_gb=9e9), limits, threshold=1.0, now=NOW) is None
    assert forecast_over_limit("c", answer(api_calls=9e9), {}, threshold=1.0, now=NOW) is None


def test_given_a_lower_threshold_when_read_then_a_forecast_near_the_limit_nudges() -> None:
    reading = forecast_over_limit(
        "c", answer(api_calls=460_000.0), {"api_calls": 500_000.0}, threshold=0.9, now=NOW
    )

    assert reading is not None
    assert reading.percent == 92


def test_given_two_metrics_over_when_read_then_the_one_furthest_over_is_named() -> None:
    reading = forecast_over_limit(
        "c",
        answer(api_calls=600_000.0, seats_hours=3_000.0),
        {"api_calls": 500_000.0, "seats_hours": 1_000.0},
        threshold=1.0,
        now=NOW,
    )

    assert reading is not None
    assert reading.metric == "seats_hours"


def test_given_no_known_period_when_read_then_the_month_is_the_period() -> None:
    reading = forecast_over_limit(
        "c", {"metrics": [{"metric": "api_calls", "forecast": 2.0}]}, {"api_calls": 1.0}, threshold=1, now=NOW
    )

    assert reading is not None
    assert reading.contact_id == "forecast:c:api_calls:2026-12"


def test_given_a_reading_when_the_email_is_written_then_it_says_usage_forecast_limit_and_the_way_out() -> (
    None
):
    reading = forecast_over_limit(
        "c", answer(api_calls=750_000.0), {"api_calls": 500_000.0}, threshold=1.0, now=NOW
    )
    assert reading is not None

    email = forecast_email(reading, upgrade="business", link="https://x.test/billing/usage")

    assert email.subject == "Your api calls are on track to pass your plan's limit"
    for words in ("375,000", "750,000", "500,000", "150%", "2026-12-20", "business", "/billing/usage"):
        assert words in email.body


def test_given_a_proration_preview_when_the_email_is_written_then_it_prices_the_upgrade() -> None:
    reading = forecast_over_limit(
        "c", answer(api_calls=750_000.0), {"api_calls": 500_000.0}, threshold=1.0, now=NOW
    )
    assert reading is not None
    preview = {"old_amount_cents": 4900, "new_amount_cents": 19900, "net_cents": 7500}

    email = forecast_email(reading, upgrade="business", link=None, preview=preview)

    assert "$199.00 a month instead of $49.00" in email.body
    assert "adds $75.00 (prorated) to your next invoice" in email.body


def test_given_usage_events_when_marked_then_customers_stay_watched_until_read_after_settling() -> None:
    clock = [100.0]
    watch = UsageWatch(clock=lambda: clock[0])
    bodies = [json.dumps({"customer_id": "cus_a"}).encode(), b"not json", json.dumps({"x": 1}).encode()]

    watch.mark(customers_of(bodies))
    watch.evaluated("cus_a", started=150.0, settle_s=120.0)  # read too soon: a late event may be unwritten
    assert watch.due() == ["cus_a"]
    watch.evaluated("cus_a", started=221.0, settle_s=120.0)
    assert watch.due() == []
