"""A higher price asked in text needs the customer's explicit confirmation (issue 18): the policy rule, and
the agent answering with the confirmation instead of escalating or claiming a change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from schemas.vocab import Action, EscalationReason, Intent
from services.tier2_agent.ports import ToolResult
from tests.unit.test_planner import FakeBilling, ask, run
from tierline.actions import ActionExecutor
from tierline.billing.policy import (
    DEFAULT_POLICY_PATH,
    PRICE_CONFIRMATION_RULE,
    Allow,
    Deny,
    PolicyContext,
    PolicyEngine,
    PolicyRules,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine.from_yaml()


def plan_change(**facts: Any) -> PolicyContext:
    return PolicyContext(**{"actor": "ai", "customer_id": "cus_A", "plan": "pro", "now": NOW, **facts})


@pytest.mark.parametrize("actor", ["ai", "selfheal", "system"])
def test_given_a_higher_price_asked_in_text_when_not_confirmed_then_refused_for_a_confirmation(
    engine: PolicyEngine, actor: str
) -> None:
    verdict = engine.check(Action.CHANGE_PLAN, plan_change(actor=actor, price_increase_usd=250.0))

    assert verdict == Deny(reason="price_confirmation_required", rule=PRICE_CONFIRMATION_RULE)


def test_given_the_customer_confirmed_the_new_price_when_checked_then_the_change_is_allowed(
    engine: PolicyEngine,
) -> None:
    confirmed = plan_change(price_increase_usd=250.0, price_confirmed=True)

    assert engine.check(Action.CHANGE_PLAN, confirmed) == Allow(rule="change_plan.allowed")


@pytest.mark.parametrize("increase", [0.0, 0.004])
def test_given_a_change_that_does_not_raise_the_price_when_checked_then_no_confirmation_is_needed(
    engine: PolicyEngine, increase: float
) -> None:
    assert engine.check(Action.CHANGE_PLAN, plan_change(price_increase_usd=increase)) == Allow(
        rule="change_plan.allowed"
    )


def test_given_a_human_agent_when_raising_the_price_then_not_held_to_the_customer_confirmation(
    engine: PolicyEngine,
) -> None:
    assert isinstance(
        engine.check(Action.CHANGE_PLAN, plan_change(actor="human", price_increase_usd=9.0)), Allow
    )


def test_given_a_policy_file_without_the_rule_when_loaded_then_a_higher_price_runs_as_before() -> None:
    raw: dict[str, Any] = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    del raw["change_plan"]
    older = PolicyEngine(PolicyRules.model_validate(raw))

    assert isinstance(older.check(Action.CHANGE_PLAN, plan_change(price_increase_usd=250.0)), Allow)


def test_given_the_same_change_asked_twice_when_a_confirmation_id_is_derived_then_it_is_the_same() -> None:
    first = ActionExecutor.price_confirmation_id("c-1", "sub_1", "business", None)

    assert first == ActionExecutor.price_confirmation_id("c-1", "sub_1", "business", None)
    assert first != ActionExecutor.price_confirmation_id("c-1", "sub_1", "business", 10)
    assert first.startswith("pc_")
    assert len(first) == 27


class ConfirmingBilling(FakeBilling):
    """The executor's answer to an upgrade asked in text: refused, with a confirmation link."""

    async def change_plan(self, plan: str, seats: int | None = None) -> ToolResult:
        self.calls.append("change_plan")
        message = (
            "Moving to the business plan changes your price from $49.00 to $299.00 a month. Confirm: URL"
        )
        return ToolResult(
            ok=False,
            error=message,
            verdict="deny",
            escalation_reason=EscalationReason.POLICY_DENIED,
            data={
                "confirm_url": "https://meter.example/confirm-price/pc_1?token=t",
                "customer_message": message,
            },
        )


async def test_given_an_upgrade_in_text_when_the_price_needs_confirming_then_the_agent_sends_the_link() -> (
    None
):
    world = ConfirmingBilling(plan="pro")

    result = await run(world, ask("Please upgrade us to the business plan", Intent.PLAN_CHANGE))

    assert result.resolved
    assert world.effects == []
    assert "$299.00" in result.final_answer
    assert "Confirm" in result.final_answer
