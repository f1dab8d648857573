"""The router's product intents through the real doors (issue 23): a teammate or an API key goes to
Tier 2 with the intent named (its product tool reads ``intent``), a sign-in ask goes to a person with
the reason ``account_access``; a seat on the plan stays a plan change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.helpers import read_topic
from tierline_tools.scenarios.model import Scenario
from tierline_tools.scenarios.runner import ScenarioRunner, run_all

pytestmark = pytest.mark.integration

PAID: dict[str, Any] = {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 5}]}
TEAM_EMAIL = """Hi support,

We have a new analyst starting on Monday. Could you please add maria@acme.io to our workspace as an admin?

Thanks a lot,
Jonas Weber
Operations Lead | Acme GmbH
"""


@pytest.fixture(scope="module")
async def runner(stack: Any, infra: Any, pipeline: list[Any]) -> AsyncIterator[ScenarioRunner]:
    ingress = f"http://127.0.0.1:{stack.service_ports['tier0_prevent']}"
    async with ScenarioRunner(infra, ingress_url=ingress, timeout_s=90) as r:
        yield r


def scenario(sid: str, text: str, channel: str) -> Scenario:
    return Scenario.model_validate({"id": sid, "world": PAID, "contact": {"channel": channel, "text": text}})


async def test_given_product_asks_when_received_then_team_and_keys_reach_tier2_and_sign_in_a_person(
    runner: ScenarioRunner, infra: Any
) -> None:
    """Given a paying customer, When they email to add a teammate, write in chat that their API key leaked,
    and write that they cannot sign in since the reset email never came, Then the first two reach Tier 2
    (tier2.agent.requested.v1) carrying team_member and api_key, and the third is handed to a person with
    the reason account_access (no tier 2 request, no money moved); every contact gets its outcome."""
    scenarios = [
        scenario("product-team-member", TEAM_EMAIL, "email"),
        scenario("product-api-key", "our API key leaked in a public repo, please rotate it", "chat"),
        scenario("product-account-access", "I can't sign in, the password reset email never arrives", "chat"),
    ]
    results = await run_all(runner, scenarios, concurrency=3)
    assert all(r.error is None and r.contact_id for r in results), [r.model_dump() for r in results]
    team, key, access = (str(r.contact_id) for r in results)

    requests = await read_topic(
        infra.kafka_bootstrap,
        "tier2.agent.requested.v1",
        lambda m: m.get("contact_id") in {team, key, access},
        min_count=2,
        timeout=60,
        settle=2.0,
    )
    intents = {m["contact_id"]: m["payload"]["intent"] for m in requests}
    assert intents == {team: "team_member", key: "api_key"}
    for contact_id, intent in ((team, "team_member"), (key, "api_key"), (access, "account_access")):
        stored = await runner.db.fetchval("SELECT intent FROM contacts WHERE contact_id=$1", contact_id)
        assert stored == intent

    assert results[2].resolved_by == "tier3"
    assert results[2].escalation_reason == "account_access"
    assert results[2].refund_usd == 0
    case_reason = await runner.db.fetchval("SELECT reason FROM cases WHERE contact_id=$1", access)
    assert case_reason == "account_access"
    for result in results[:2]:
        assert result.resolved_by is not None  # never a dead end, whatever tier 2 makes of it
        assert "refund" not in result.actions
        assert "change_plan" not in result.actions
