"""The portal's usage arithmetic (issue 21): per-day and per-month points, the share of the plan limit, the
forecast against the limit, the CSV export and the window a read needs."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest

from services.tier1_selfheal.portal_usage import (
    Point,
    PortalError,
    billed_metric,
    compact,
    daily_points,
    forecast_passes,
    limit_share,
    month_starts,
    monthly_points,
    parse_window,
    usage_csv,
    window_days,
)

pytestmark = pytest.mark.unit

TODAY = date(2026, 12, 3)


def row(metric: str, day: str, units: float) -> dict[str, object]:
    return {"metric": metric, "day": day, "units": units, "cost_usd": 0.0, "events": 1}


def test_given_450k_of_500k_when_shared_then_label_reads_like_the_plan_page() -> None:
    share = limit_share(450_000, 500_000)
    assert share.percent == 90.0
    assert share.label == "450K of 500K, 90%"


def test_given_usage_over_the_limit_when_shared_then_percent_passes_100() -> None:
    share = limit_share(1_250_000, 1_000_000)
    assert share.percent == 125.0
    assert share.label == "1.25M of 1M, 125%"


def test_given_no_limit_when_shared_then_no_percent_and_plain_label() -> None:
    share = limit_share(1234, None)
    assert share.percent is None
    assert share.label == "1.23K used (no limit on your plan)"


def test_given_numbers_when_compacted_then_short_units() -> None:
    assert [compact(999), compact(1500), compact(2_000_000), compact(0.5)] == ["999", "1.5K", "2M", "0.5"]


def test_given_forecast_when_compared_with_limit_then_only_strictly_over_passes() -> None:
    assert forecast_passes(500_001, 500_000)
    assert not forecast_passes(500_000, 500_000)
    assert not forecast_passes(10**9, None)
    assert not forecast_passes(None, 500_000)


def test_given_daily_rows_when_30_day_points_then_30_zero_filled_days_ending_today() -> None:
    rows = [
        row("api_calls", "2026-12-03", 5),
        row("api_calls", "2026-12-03", 7),  # a partial rollup row of the same day is summed
        row("api_calls", "2026-11-04", 11),  # the first day of the window
        row("api_calls", "2026-11-03", 1000),  # 30 days ago: outside
        row("seats", "2026-12-01", 99),  # another metric
    ]
    points = daily_points(rows, "api_calls", TODAY)
    assert len(points) == 30
    assert points[0] == Point("2026-11-04", 11)
    assert points[-1] == Point("2026-12-03", 12)
    assert sum(p.units for p in points) == 23


def test_given_today_when_month_starts_then_this_month_and_eleven_before() -> None:
    starts = month_starts(TODAY)
    assert starts[0] == date(2026, 1, 1)
    assert starts[-1] == date(2026, 12, 1)
    assert len(starts) == 12
    assert month_starts(date(2026, 2, 28))[0] == date(2025, 3, 1)


def test_given_daily_rows_when_monthly_points_then_calendar_month_totals() -> None:
    rows = [
        row("api_calls", "2026-12-01", 3),
        row("api_calls", "2026-12-03", 4),
        row("api_calls", "2026-01-31", 10),
        row("api_calls", "2025-12-31", 500),  # the 13th month back: outside
    ]
    points = monthly_points(rows, "api_calls", TODAY)
    assert [p.label for p in points][:2] == ["2026-01", "2026-02"]
    assert points[0].units == 10
    assert points[-1] == Point("2026-12", 7)
    assert sum(p.units for p in points) == 17


def test_given_a_window_when_days_to_read_then_covers_the_window_and_no_more_than_the_door_allows() -> None:
    assert window_days("30d", TODAY) == 30
    assert window_days("12m", TODAY) == (TODAY - date(2026, 1, 1)).days + 1
    assert window_days("12m", date(2026, 12, 31)) <= 366


def test_given_plan_limits_when_billed_metric_then_the_limited_metric_else_the_largest() -> None:
    rows = [row("storage_gb", "2026-12-01", 900), row("api_calls", "2026-12-01", 10)]
    assert billed_metric({"api_calls": 500_000}, rows) == "api_calls"
    assert billed_metric({}, rows) == "storage_gb"
    assert billed_metric({}, []) is None


def test_given_points_when_exported_then_csv_has_header_and_one_row_each() -> None:
    text = usage_csv("api_calls", "30d", [Point("2026-12-02", 10.0), Point("2026-12-03", 2.5)])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [
        ["day", "metric", "units"],
        ["2026-12-02", "api_calls", "10"],
        ["2026-12-03", "api_calls", "2.5"],
    ]
    assert usage_csv("api_calls", "12m", []).splitlines() == ["month,metric,units"]


def test_given_unknown_window_when_parsed_then_422() -> None:
    assert parse_window(None) == "30d"
    assert parse_window("12m") == "12m"
    with pytest.raises(PortalError) as err:
        parse_window("7d")
    assert err.value.status == 422


# ------------------------------------------------------------------------------------------ plan page


def test_given_a_subscription_when_monthly_price_then_its_own_price_else_seats_times_the_plan() -> None:
    from services.tier1_selfheal.portal_plan import monthly_price

    assert monthly_price({"monthly_usd": 49, "seats": 3}, {"price_usd": 120.0}) == 120.0
    assert monthly_price({"monthly_usd": 49, "seats": 3}, {"price_usd": 0}) == 147.0
    assert monthly_price({}, {}) is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_plan"),
        ({"plan": ["pro"]}, "invalid_plan"),
        ({"plan": "Pro Plan!"}, "invalid_plan"),
        ({"plan": "pro", "seats": 0}, "invalid_seats"),
        ({"plan": "pro", "seats": "9" * 400}, "invalid_seats"),
        ({"plan": "pro", "seats": True}, "invalid_seats"),
        ({"plan": "pro", "seats": 2.5}, "invalid_seats"),
    ],
)
def test_given_a_bad_change_when_parsed_then_422_with_the_field(body: dict[str, object], code: str) -> None:
    from services.tier1_selfheal.portal_plan import parse_change

    with pytest.raises(PortalError) as err:
        parse_change(body)
    assert (err.value.status, err.value.code) == (422, code)


def test_given_a_change_when_parsed_then_plan_and_optional_seats() -> None:
    from services.tier1_selfheal.portal_plan import parse_change

    assert parse_change({"plan": "business"}) == ("business", None)
    assert parse_change({"plan": "business", "seats": "12"}) == ("business", 12)


# ------------------------------------------------------------------------------------------ deflection


def test_given_monthly_rows_when_deflection_by_workflow_then_rate_and_change_from_the_month_before() -> None:
    from services.analytics.deflection import deflection_by_workflow

    rows = [
        {
            "month": "2026-11-01",
            "workflow": "plan_change",
            "contacts": 5,
            "portal": 4,
            "fixed": 0,
            "person": 1,
        },
        {
            "month": "2026-10-01",
            "workflow": "plan_change",
            "contacts": 4,
            "portal": 1,
            "fixed": 1,
            "person": 2,
        },
        {"month": "2026-11-01", "workflow": "refund", "contacts": 0, "portal": 0, "fixed": 0, "person": 0},
    ]
    out = deflection_by_workflow(rows)
    assert [(r["workflow"], r["month"], r["deflection_rate"], r["change"]) for r in out] == [
        ("plan_change", "2026-10", 0.5, None),
        ("plan_change", "2026-11", 0.8, 0.3),
        ("refund", "2026-11", 0.0, None),
    ]
