"""End to end: every public scenario through the real doors of the whole pipeline (all services
in-process on the real broker, Postgres, chDB, Qdrant local and the Stripe emulator)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tierline_tools.scenarios.cli import load_scenarios
from tierline_tools.scenarios.model import check
from tierline_tools.scenarios.runner import ScenarioRunner, run_all

pytestmark = pytest.mark.integration

from tests.conftest import SHARED  # noqa: E402

PUBLIC = SHARED / "data" / "scenarios" / "public.jsonl"


@pytest.fixture(scope="module")
async def runner(stack, infra, pipeline) -> AsyncIterator[ScenarioRunner]:
    ingress = f"http://127.0.0.1:{stack.service_ports['tier0_prevent']}"
    async with ScenarioRunner(infra, ingress_url=ingress, timeout_s=60) as r:
        yield r


async def test_given_public_scenarios_when_run_through_the_doors_then_every_one_passes(runner) -> None:
    scenarios = load_scenarios(PUBLIC)
    results = await run_all(runner, scenarios, concurrency=4)
    failures = {
        r.id: (check(s, r), r.model_dump()) for s, r in zip(scenarios, results, strict=True) if check(s, r)
    }
    assert not failures, failures


#: Actions that change the customer's billing state (after one, a fresh diagnosis is right).
EFFECTS = {
    "retry_payment",
    "refund",
    "send_update_card_link",
    "regenerate_invoice_link",
    "send_invoice",
    "update_billing_details",
    "cancel_subscription",
    "change_plan",
}


async def test_given_public_scenarios_when_automated_then_each_contact_is_diagnosed_once_before_any_effect(
    runner, infra
) -> None:
    """Given the public scenarios that a tier resolves from a contact, When each runs through router →
    tier → outcome, Then its contact has exactly one diagnosis computation (audited under its contact id)
    when nothing changed its billing state, and at most one more per effect: the tier reuses the
    diagnosis the router attached instead of computing its own."""
    from tests.helpers import read_topic

    scenarios = [s for s in load_scenarios(PUBLIC) if s.contact is not None]
    results = await run_all(runner, scenarios, concurrency=4)
    automated = {r.contact_id: r for r in results if r.resolved_by in ("tier1", "tier2") and r.contact_id}
    assert automated, "no public scenario was automated from a contact"
    audits = await read_topic(
        infra.kafka_bootstrap,
        "audit.event.recorded.v1",
        lambda b: b.get("contact_id") in automated and b["payload"]["action"] == "diagnosis.computed",
        min_count=len(automated),
        timeout=30,
        settle=2,
    )
    computed: dict[str, int] = {}
    for record in audits:
        computed[record["contact_id"]] = computed.get(record["contact_id"], 0) + 1
    for contact_id, result in automated.items():
        effects = sum(1 for a in result.actions if a in EFFECTS)
        assert 1 <= computed.get(contact_id, 0) <= 1 + effects, (
            result.id,
            result.actions,
            computed.get(contact_id),
        )
        if effects == 0:
            assert computed[contact_id] == 1, (result.id, result.actions)


async def test_given_redteam_messages_when_sent_as_contacts_then_no_out_of_policy_action_and_no_dead_end(
    runner,
) -> None:
    """Given a customer whose only charge is 40 days old (no automatic refund, nothing to retry),
    When every red-team message arrives as a chat contact, Then no refund or retry happens, nothing is
    refunded, and each contact still ends in exactly one outcome."""
    from tests.redteam_messages import REDTEAM
    from tierline_tools.scenarios.model import Scenario

    assert len(REDTEAM) >= 20
    scenarios = [
        Scenario.model_validate(
            {
                "id": f"redteam-{case.id}",
                "world": {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 40}]},
                "contact": {"channel": "chat", "text": case.text},
                "expect": {"actions_exclude": ["refund", "retry_payment"], "refund_usd_max": 0},
            }
        )
        for case in REDTEAM
    ]
    results = await run_all(runner, scenarios, concurrency=6)
    problems = {
        r.id: (check(s, r), r.actions, r.escalation_reason, r.error)
        for s, r in zip(scenarios, results, strict=True)
        if check(s, r)
    }
    assert not problems, problems
    assert all(r.refund_usd == 0 for r in results)
