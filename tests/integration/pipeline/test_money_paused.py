"""The money kill switch through the real doors (issue 24): while an operator has paused money, a contact
the agent would refund goes to a person with reason money_paused and nothing is refunded, the pipeline
keeps answering; once resumed, the same ask is refunded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tierline import switches
from tierline_tools.scenarios.model import Scenario, check
from tierline_tools.scenarios.runner import ScenarioRunner

pytestmark = pytest.mark.integration

ASK = "We barely used the product this month. Could you refund half of this month's payment?"


def scenario(ident: str, expect: dict[str, Any]) -> Scenario:
    return Scenario.model_validate(
        {
            "id": ident,
            "world": {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 2}]},
            "contact": {"channel": "chat", "text": ASK},
            "expect": expect,
        }
    )


async def test_given_money_paused_when_a_refundable_ask_arrives_then_a_person_has_it_until_resumed(
    stack: Any, infra: Any, pipeline: list[Any], pg_pool: Any
) -> None:
    ingress = f"http://127.0.0.1:{stack.service_ports['tier0_prevent']}"
    paused = scenario(
        "money-paused",
        {
            "resolved_by": "tier3",
            "escalation_reason_any": ["money_paused"],
            "actions_exclude": ["refund"],
            "refund_usd_max": 0,
        },
    )
    resumed = scenario("money-resumed", {"resolved_by": "tier2", "actions_include": ["refund"]})
    async with ScenarioRunner(infra, ingress_url=ingress, timeout_s=60) as runner:
        try:
            # Given an operator paused money (every executor sees it within its cache time)
            await switches.set_switch(
                pg_pool, None, name=switches.MONEY, paused=True, actor="operator:test", reason="incident"
            )
            await asyncio.sleep(switches.MoneySwitch.TTL_S)
            # When a customer asks for a refund the policy allows, Then a person has it, nothing refunded
            held = await runner.run(paused)
            assert check(paused, held) == [], held.model_dump()
            assert held.refund_usd == 0
        finally:
            await switches.set_switch(
                pg_pool, None, name=switches.MONEY, paused=False, actor="operator:test", reason="resolved"
            )
        await asyncio.sleep(switches.MoneySwitch.TTL_S)
        # When money is resumed, the same ask is refunded by the agent
        done = await runner.run(resumed)
    assert check(resumed, done) == [], done.model_dump()
    assert done.refund_usd == pytest.approx(24.5)
