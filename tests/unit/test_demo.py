"""The demo's pure parts: the synthetic month it plans and the report it prints (no stack needed)."""

from __future__ import annotations

import io
import random
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from tierline.conversation_metrics import summarise
from tierline.pipeline import CostModel
from tierline_tools.demo import (
    ARCHETYPES,
    customer_reaction,
    month_report,
    percentile,
    plan_month,
    plot,
    print_report,
    world_for,
)
from tierline_tools.world import WorldSpec

pytestmark = pytest.mark.unit


def outcome(tier: str, *, cost: float, latency: float, reason: str | None = None, **money: float) -> dict:
    return {
        "payload": {
            "resolved_by": tier,
            "cost_usd": cost,
            "latency_ms": latency,
            "escalation_reason": reason,
            **money,
        }
    }


@pytest.mark.parametrize("arch", [a.name for a in ARCHETYPES])
def test_every_archetype_builds_a_world_the_scenario_model_accepts(arch: str) -> None:
    # Given / When
    world = WorldSpec.model_validate(world_for(arch, random.Random(7), 3))
    # Then the world says what the archetype is about
    if arch in ("soft_decline", "hard_decline", "fraud_decline", "expired_link", "recovered_card"):
        assert world.subscription.status == "past_due"
        assert world.failed_invoice is not None
    if arch == "duplicate":
        assert len(world.charges) == 2
        assert world.charges[0] == world.charges[1]
    if arch == "overage":
        assert world.usage is not None
        assert world.usage.last_30d > world.usage.limit
    if arch == "dispute":
        assert world.dispute_open
    if arch == "healthy":
        assert world.subscription.status == "active"
        assert world.failed_invoice is None


def test_same_seed_plans_the_same_month_and_another_seed_a_different_one() -> None:
    a = plan_month(random.Random(1), 200, 150)
    b = plan_month(random.Random(1), 200, 150)
    c = plan_month(random.Random(2), 200, 150)
    assert a == b
    assert a != c


def test_planned_month_has_the_requested_contacts_and_a_trigger_for_every_event_archetype() -> None:
    # Given
    archetypes, triggers = plan_month(random.Random(11), 400, 300)
    kinds = Counter(t.kind for t in triggers)
    # Then: exactly the contacts asked for, each on a known customer with an intent
    assert len(archetypes) == 400
    assert kinds["contact"] == 300
    assert all(0 <= t.customer_index < 400 for t in triggers)
    assert all(t.intent for t in triggers if t.kind == "contact")
    # every customer whose archetype carries a Stripe event gets exactly one such event
    by_name = {a.name: a for a in ARCHETYPES}
    expect_events = sorted(i for i, n in enumerate(archetypes) if by_name[n].stripe_event)
    got_events = sorted(t.customer_index for t in triggers if t.kind == "stripe_event")
    assert got_events == expect_events
    # and problem customers write about their own problem, not the healthy mix
    for t in triggers:
        if t.kind == "contact" and archetypes[t.customer_index] == "duplicate":
            assert t.intent == "duplicate_charge"
    assert kinds["selfheal"] >= 1


def test_percentile_picks_nearest_rank_and_handles_empty() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([5.0], 99) == 5.0
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 51.0  # round(0.5 * 99) = 50 -> index 50
    assert percentile(values, 99) == 99.0
    assert percentile(list(reversed(values)), 0) == 1.0


def test_month_report_on_a_hand_computed_month() -> None:
    # Given five contacts (one of six expected never resolved) at the default costs
    costs = CostModel(tier0=0.0, tier1=0.1, tier2=0.2, tier3=8.0)
    outcomes = [
        outcome("tier0", cost=0.0, latency=100, recovered_usd=49.0),
        outcome("tier1", cost=0.1, latency=200, recovered_usd=19.0),
        outcome("tier2", cost=0.3, latency=3000, refund_usd=20.0),
        outcome("tier3", cost=8.2, latency=5000, reason="refund_over_policy"),
        outcome("tier3", cost=8.0, latency=7000, reason="refund_over_policy"),
    ]
    # When
    report = month_report(outcomes, expected=6, costs=costs)
    # Then
    assert report["contacts"] == 6
    assert report["outcomes"] == 5
    assert report["dead_ends"] == 1
    assert report["tier_mix"]["tier3"] == {"count": 2, "share": 0.4}
    assert report["automated_resolution_rate"] == 0.6
    assert report["cost_usd_month"] == 16.6
    assert report["cost_per_contact_usd"] == 3.32
    assert report["all_human_baseline_usd_month"] == 40.0
    assert report["saving_vs_baseline"] == 0.585  # 1 - 16.6 / 40
    assert report["recovered_revenue_usd"] == 68.0
    assert report["refunded_usd"] == 20.0
    # nearest rank: index round(0.5 * 1) = 0 (half to even), round(0.99 * 1) = 1
    assert report["time_to_resolution_ms"]["tier3"] == {"p50": 5000.0, "p99": 7000.0, "mean": 6000.0}
    assert report["escalation_reasons"] == {"refund_over_policy": 2}


def test_month_report_with_no_outcomes_reports_every_contact_as_a_dead_end() -> None:
    report = month_report([], expected=3, costs=CostModel())
    assert report["dead_ends"] == 3
    assert report["automated_resolution_rate"] == 0.0
    assert report["saving_vs_baseline"] == 0.0


def test_printed_report_and_chart_carry_the_figures(tmp_path: Path) -> None:
    # Given
    report = month_report(
        [outcome("tier1", cost=0.1, latency=150), outcome("tier3", cost=8.0, latency=900, reason="dispute")],
        expected=2,
        costs=CostModel(),
    )
    buf = io.StringIO()
    # When
    print_report(Console(file=buf, width=120, color_system=None), report)
    plot(report, tmp_path / "month.png")
    # Then
    text = buf.getvalue()
    assert "50.0%" in text  # automated resolution rate
    assert "$8.10" in text  # cost this month
    assert "dispute" in text
    png = (tmp_path / "month.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 5000


def test_given_answers_when_simulated_customers_react_then_a_few_say_it_failed_and_under_half_rate() -> None:
    rng = random.Random(3)
    automated = {"payload": {"resolved_by": "tier2"}}
    reactions = [customer_reaction(rng, automated) for _ in range(4000)]
    not_fixed = [r for r in reactions if r[0]]
    rated = [r for r in reactions if r[1] is not None]
    assert 0.05 < len(not_fixed) / len(reactions) < 0.09
    assert all(r[2] is False and r[1] is not None and r[1] <= 3 for r in not_fixed)
    assert 0.38 < len(rated) / len(reactions) < 0.5
    assert customer_reaction(rng, {"payload": {"resolved_by": "tier3"}}) == (False, None, None)


def test_given_support_figures_when_printed_then_first_response_csat_and_fcr_show() -> None:
    report = month_report([outcome("tier2", cost=0.2, latency=800)], expected=1, costs=CostModel())
    report["support"] = summarise([("answer", 1200.0)], [(5, True)], [(1, "tier2", True)])
    report["follow_ups_not_fixed"] = 0
    buf = io.StringIO()
    print_report(Console(file=buf, width=140, color_system=None), report)
    text = buf.getvalue()
    assert "1.2 s / 1.2 s" in text  # first response p50 / p99
    assert "5.00 from 1 ratings" in text
    assert "resolved on first contact" in text
    assert "100.0%" in text
