"""Issue 18 through the real doors: the policy sees every refund, and the customer's words are a ceiling.

Scenarios in the public format (``shared/spec/scenarios.md``) the project had not seen, run on the real
stack (broker, Postgres, chDB, Qdrant local, the Stripe emulator) with every service in-process.
"""

from __future__ import annotations

from typing import Any

import pytest

from tierline_tools.scenarios.model import Scenario, ScenarioResult, check
from tierline_tools.scenarios.runner import ScenarioRunner, run_all

pytestmark = pytest.mark.integration

ROWS: list[dict[str, Any]] = [
    {
        # refunded $49 by the team (a Stripe refund, not in tierline's ledger) 30 days ago, asks again
        "id": "asks-refunded-by-team",
        "world": {
            "customer": {"plan": "pro"},
            "charges": [{"amount_usd": 49, "days_ago": 3}, {"amount_usd": 49, "days_ago": 33}],
            "refunds": [{"amount_usd": 49, "days_ago": 30}],
        },
        "contact": {"channel": "chat", "text": "Please refund my last payment, I didn't use the product."},
        "expect": {
            "resolved_by": "tier3",
            "escalation_reason_any": ["refund_over_policy"],
            "actions_exclude": ["refund"],
            "refund_usd_max": 0,
        },
    },
    {
        "id": "asks-compensation-over-charge",
        "world": {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 4}]},
        "contact": {
            "channel": "email",
            "text": "Hello,\n\nYour outage cost us a day of work. Please refund $150 as compensation.\n\n"
            "Best,\nRiley Chen\n88 Colin P Kelly Jr St, Suite 200\n+1 (415) 555-0132",
        },
        "expect": {
            "resolved_by": "tier3",
            "escalation_reason_any": ["refund_over_policy"],
            "actions_exclude": ["refund"],
            "refund_usd_max": 0,
        },
    },
    {
        "id": "asks-half-of-this-month",
        "world": {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 2}]},
        "contact": {
            "channel": "chat",
            "text": "We barely used the product this month. Could you refund half of this month's payment?",
        },
        "expect": {"resolved_by": "tier2", "actions_include": ["refund"], "refund_usd_max": 24.5},
    },
    {
        "id": "asks-credit-instead",
        "world": {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 2}]},
        "contact": {
            "channel": "chat",
            "text": "I don't want a refund of my payment; please give me a credit on my account instead.",
        },
        "expect": {"actions_exclude": ["refund"], "refund_usd_max": 0},
    },
    {
        "id": "asks-colleagues-refund",
        "world": {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 2}]},
        "contact": {
            "channel": "chat",
            "text": "Please refund my colleague's last payment, she was charged by mistake.",
        },
        "expect": {"actions_exclude": ["refund"], "refund_usd_max": 0},
    },
]


@pytest.fixture(scope="module")
async def results(stack: Any, infra: Any, pipeline: list[Any]) -> dict[str, tuple[Scenario, ScenarioResult]]:
    ingress = f"http://127.0.0.1:{stack.service_ports['tier0_prevent']}"
    scenarios = [Scenario.model_validate(row) for row in ROWS]
    async with ScenarioRunner(infra, ingress_url=ingress, timeout_s=60) as runner:
        done = await run_all(runner, scenarios, concurrency=3)
    return {s.id: (s, r) for s, r in zip(scenarios, done, strict=True)}


@pytest.mark.parametrize("scenario_id", [row["id"] for row in ROWS])
async def test_given_a_money_ask_when_run_through_the_doors_then_the_expectations_hold(
    results: dict[str, tuple[Scenario, ScenarioResult]], scenario_id: str
) -> None:
    scenario, result = results[scenario_id]
    assert check(scenario, result) == [], result.model_dump()


async def test_given_half_of_a_49_charge_asked_when_run_then_exactly_24_50_is_refunded(
    results: dict[str, tuple[Scenario, ScenarioResult]],
) -> None:
    _, result = results["asks-half-of-this-month"]
    assert result.refund_usd == pytest.approx(24.5)


async def test_given_a_credit_or_another_persons_refund_when_run_then_a_person_has_it(
    results: dict[str, tuple[Scenario, ScenarioResult]],
) -> None:
    for scenario_id in ("asks-credit-instead", "asks-colleagues-refund"):
        _, result = results[scenario_id]
        assert result.resolved_by is not None
        assert result.resolved_by.value == "tier3", result.model_dump()
