"""The money kill switch and the spend breaker (issue 24) on the real stack: the executor every tier uses,
Postgres, the broker, the Stripe emulator. `tierline pause money` holds automatic refunds (the contact goes
to a person with reason money_paused, nothing is refunded) and `tierline resume money` lets them run again;
automatic refunds over the hour's limit trip the same pause and raise ops.alert.raised.v1."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import KafkaBroker

from schemas import Channel, EscalationReason, Tier
from schemas.messages import ContactReceivedPayload, ContactReceivedV1, Sender
from services.diagnostics.adapters.clickhouse import UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician
from services.diagnostics.settings import DiagnosticsSettings
from tests.helpers import read_topic
from tierline import switches
from tierline.actions import ActionContext, ActionExecutor
from tierline.billing.mirror import MirrorStore
from tierline.billing.policy import BreakerRules, PolicyEngine
from tierline.diagnostics_client import InProcessDiagnostics
from tierline.stripe_adapter import StripeActions
from tierline_tools.world import build_world

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
async def diagnostics(infra: Any, pg_pool: Any) -> Any:
    usage = UsageStore(infra.resolved_clickhouse_dsn())
    await usage.ensure_schema()
    reader = StripeLiveReader(infra.stripe_api_key.get_secret_value(), infra.stripe_api_base, emulated=True)
    return InProcessDiagnostics(
        Diagnostician(
            MirrorStore(pg_pool), reader, usage, None, DiagnosticsSettings(mirror_max_age_s=0, audit=False)
        )
    )


@pytest.fixture
async def broker(infra: Any, pg_pool: Any) -> AsyncIterator[KafkaBroker]:
    broker = KafkaBroker(infra.kafka_bootstrap, logger=None, enable_idempotence=False)
    await broker.start()
    try:
        yield broker
    finally:
        # the switch is global: whatever a test did, money runs again for the tests after it
        await switches.set_switch(
            pg_pool, broker, name=switches.MONEY, paused=False, actor="test:teardown", reason="test done"
        )
        await broker.stop()


async def customer_with_a_charge(infra: Any, label: str) -> Any:
    return await build_world(
        {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49.0, "days_ago": 2}]},
        StripeActions(infra),
        label=label,
    )


def context(customer_id: str, contact_id: str) -> ActionContext:
    cause = ContactReceivedV1.build(
        ContactReceivedPayload(
            text="Please refund my last payment, we did not use it.",
            channel=Channel.CHAT,
            sender=Sender(kind="customer_session", subject=customer_id),
        ),
        contact_id=contact_id,
        customer_id=customer_id,
    )
    return ActionContext(contact_id, customer_id, Tier.TIER2, "ai", "agent", cause)


async def refunded_cents(infra: Any, charge_id: str) -> int:
    return int((await StripeActions(infra).get_charge(charge_id))["amount_refunded"] or 0)


async def cli(infra: Any, *args: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "TIERLINE_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "TIERLINE_POSTGRES_DSN": infra.postgres_dsn,
        "TIERLINE_DATA_DIR": str(infra.data_dir),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tierline.cli", *args, cwd=REPO_ROOT, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_given_money_paused_when_a_refundable_contact_comes_then_a_person_decides_until_resumed(
    infra: Any, pg_pool: Any, diagnostics: Any, broker: KafkaBroker, unique: str
) -> None:
    world = await customer_with_a_charge(infra, f"ks-{unique}")
    [charge] = world.charge_ids
    executor = ActionExecutor(pool=pg_pool, broker=broker, settings=infra, diagnostics=diagnostics)
    operator = f"operator:oncall-{unique}"

    # Given an operator paused money
    code, out = await cli(infra, "pause", "money", "--reason", f"incident {unique}", "--by", operator)
    assert code == 0, out
    code, out = await cli(infra, "pause", "status")
    assert (code, '"paused": true' in out, operator in out) == (0, True, True), out

    # When the agent would refund a refundable charge
    held = await executor.refund(context(world.customer_id, f"ct-ks1-{unique}"), charge, None, "requested")

    # Then nothing is refunded and the contact goes to a person with the reason
    assert held.status == "needs_human", held
    assert held.escalation_reason is EscalationReason.MONEY_PAUSED
    assert held.policy is not None
    assert held.policy.rule == switches.MONEY_PAUSED_RULE
    assert await refunded_cents(infra, charge) == 0

    # When the operator resumes, the next such contact is refunded
    code, out = await cli(infra, "resume", "money", "--by", operator)
    assert (code, '"paused": false' in out) == (0, True), out
    await asyncio.sleep(executor.money_switch.TTL_S)  # the executor's cached view of the switch expires
    done = await executor.refund(context(world.customer_id, f"ct-ks2-{unique}"), charge, None, "requested")
    assert done.status == "succeeded", done
    assert await refunded_cents(infra, charge) == 4900

    # and both changes are audited with who did them
    audits = await read_topic(
        infra.kafka_bootstrap,
        "audit.event.recorded.v1",
        lambda b: b["payload"]["actor"] == operator,
        min_count=2,
    )
    assert sorted(a["payload"]["action"] for a in audits) == ["ops.money.paused", "ops.money.resumed"]
    assert any(a["payload"]["details"].get("reason") == f"incident {unique}" for a in audits)


async def test_given_refunds_over_the_hours_limit_when_the_next_would_pass_it_then_breaker_pauses_and_alerts(
    infra: Any, pg_pool: Any, diagnostics: Any, broker: KafkaBroker, unique: str
) -> None:
    first_world = await customer_with_a_charge(infra, f"br1-{unique}")
    second_world = await customer_with_a_charge(infra, f"br2-{unique}")
    # a limit $60 over what was refunded automatically in the last hour (other tests share the stack)
    limit = await switches.refunds_last_hour_usd(pg_pool) + Decimal("60")
    rules = PolicyEngine.from_yaml().rules
    policy = PolicyEngine(rules.model_copy(update={"breaker": BreakerRules(refunds_per_hour_usd=limit)}))
    executor = ActionExecutor(
        pool=pg_pool, broker=broker, settings=infra, diagnostics=diagnostics, policy=policy
    )

    # Given one automatic refund of $49 within the limit
    first = await executor.refund(
        context(first_world.customer_id, f"ct-br1-{unique}"), first_world.charge_ids[0], None, "requested"
    )
    assert first.status == "succeeded", first

    # When the next $49 would take the hour past it
    second_contact = f"ct-br2-{unique}"
    second = await executor.refund(
        context(second_world.customer_id, second_contact), second_world.charge_ids[0], None, "requested"
    )

    # Then it is not refunded, a person decides, and money is paused for everyone by the breaker
    assert second.status == "needs_human"
    assert second.escalation_reason is EscalationReason.MONEY_PAUSED
    assert await refunded_cents(infra, second_world.charge_ids[0]) == 0
    state = await switches.read(pg_pool)
    assert state.paused
    assert state.actor == switches.BREAKER_ACTOR
    fresh = ActionExecutor(pool=pg_pool, broker=broker, settings=infra, diagnostics=diagnostics)
    retried = await fresh.refund(
        context(second_world.customer_id, f"ct-br3-{unique}"), second_world.charge_ids[0], 5.0, "requested"
    )
    assert retried.escalation_reason is EscalationReason.MONEY_PAUSED  # any executor, any amount

    # and an alert is raised, and the pause is audited
    [alert] = await read_topic(
        infra.kafka_bootstrap,
        "ops.alert.raised.v1",
        lambda b: b["payload"]["details"].get("contact_id") == second_contact,
    )
    assert alert["payload"]["kind"] == "spend_breaker"
    assert alert["payload"]["threshold"] == pytest.approx(float(limit))
    audits = await read_topic(
        infra.kafka_bootstrap,
        "audit.event.recorded.v1",
        lambda b: (
            b["payload"]["action"] == "ops.money.paused"
            and b["payload"]["details"].get("contact_id") == second_contact
        ),
    )
    assert [a["payload"]["actor"] for a in audits] == [switches.BREAKER_ACTOR]
