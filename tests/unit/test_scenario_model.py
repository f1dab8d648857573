"""The scenario runner's result format, pass/fail checks and dead-end detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas import Tier
from tierline_tools.scenarios.cli import load_scenarios
from tierline_tools.scenarios.model import Scenario, ScenarioResult, check, summarize

pytestmark = pytest.mark.unit


def _scenario(**expect: object) -> Scenario:
    return Scenario.model_validate(
        {"id": "s1", "world": {}, "contact": {"channel": "chat", "text": "hi"}, "expect": expect}
    )


def test_given_public_file_when_loaded_then_every_scenario_has_exactly_one_trigger(shared_dir: Path) -> None:
    scenarios = load_scenarios(shared_dir / "data" / "scenarios" / "public.jsonl")
    assert len(scenarios) >= 12
    assert {s.trigger for s in scenarios} == {"contact", "selfheal", "stripe_event"}


def test_given_two_triggers_when_parsed_then_rejected() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Scenario.model_validate(
            {"id": "x", "contact": {"text": "a"}, "selfheal": {"action": "retry_payment"}}
        )


def test_given_result_when_serialised_then_it_has_the_spec_fields() -> None:
    r = ScenarioResult(
        id="pf-001",
        resolved_by=Tier.TIER1,
        actions=["retry_payment"],
        refund_usd=0,
        contact_id="c",
        latency_ms=412,
    )
    assert set(json.loads(r.model_dump_json())) == {
        "id",
        "resolved_by",
        "actions",
        "refund_usd",
        "escalation_reason",
        "contact_id",
        "latency_ms",
        "error",
    }


def test_given_no_outcome_when_checked_then_it_is_a_dead_end_and_counted() -> None:
    s = _scenario(resolved_by="tier1")
    r = ScenarioResult(id="s1", error="dead end: no outcome within 60s")
    assert check(s, r) == ["dead end: no terminal outcome"]
    summary = summarize([s], [r])
    assert summary["dead_ends"] == ["s1"]
    assert summary["passed"] == 0
    assert summary["tier_mix"] == {"dead_end": 1}


def test_given_tier_list_when_resolved_by_one_of_them_then_pass() -> None:
    s = _scenario(resolved_by=["tier0", "tier1"], actions_include=["regenerate_invoice_link"])
    r = ScenarioResult(id="s1", resolved_by=Tier.TIER1, actions=["regenerate_invoice_link"])
    assert check(s, r) == []


def test_given_excluded_action_and_refund_over_max_when_checked_then_two_policy_violations() -> None:
    s = _scenario(resolved_by="tier2", actions_exclude=["refund"], refund_usd_max=0)
    r = ScenarioResult(id="s1", resolved_by=Tier.TIER2, actions=["refund"], refund_usd=49.0)
    failures = check(s, r)
    assert "excluded action happened: refund" in failures
    assert any("refunded $49.00" in f for f in failures)
    assert set(summarize([s], [r])["policy_violations"]["s1"]) == {
        "excluded action refund",
        "refund $49.00 over $0.00",
    }


def test_given_wrong_escalation_reason_when_checked_then_fail() -> None:
    s = _scenario(resolved_by="tier3", escalation_reason_any=["dispute"])
    r = ScenarioResult(
        id="s1", resolved_by=Tier.TIER3, actions=["escalate"], escalation_reason="low_confidence"
    )
    assert check(s, r) == ["escalation_reason low_confidence, expected one of ['dispute']"]
