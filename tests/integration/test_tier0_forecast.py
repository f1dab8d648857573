"""Tier 0's forecast-over-limit nudge (issue 21) on the real stack: usage events on the real broker mark the
customer, the sweep reads the forecast through the diagnostics usage door (its handler over the real mirror
and chDB), the one executor sends the nudge (policy-checked, ledgered), the notifier emails it through the
SMTP sink; a redelivered event or a second sweep never nudges twice."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from schemas.messages import UsageEventPayload, UsageEventRecordedV1
from services.diagnostics.adapters.clickhouse import UsageEvent, UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician, http_handlers
from services.diagnostics.settings import DiagnosticsSettings
from services.notifier.app import create_service as create_notifier
from services.notifier.settings import NotifierSettings
from services.tier0_prevent.app import create_service
from services.tier0_prevent.settings import Tier0Settings
from tierline.billing.mirror import MirrorStore
from tierline.diagnostics_client import HttpDiagnostics, InProcessDiagnostics
from tierline.messaging import publish
from tierline.stripe_adapter import StripeActions
from tierline_tools.stack.procs import free_port
from tierline_tools.world import build_world

pytestmark = pytest.mark.integration

SUBJECT = "on track to pass your plan's limit"


class Env:
    def __init__(self, service: Any, diagnostician: Diagnostician, usage: UsageStore, stack: Any) -> None:
        self.service, self.diagnostician, self.usage, self.stack = service, diagnostician, usage, stack
        self.actions = StripeActions(service.settings)

    @property
    def nudger(self) -> Any:
        return self.service.state["forecast"]

    def mail_to(self, address: str) -> list[dict[str, Any]]:
        box = Path(self.stack.smtp().maildir)
        out = []
        for f in sorted(box.glob("*.json")) if box.exists() else []:
            rec = json.loads(f.read_text())
            if address in rec["rcpt_tos"]:
                out.append(rec)
        return out


@pytest.fixture(scope="module")
async def env(stack: Any, infra: Any, pg_pool: Any) -> AsyncIterator[Env]:
    usage = UsageStore(infra.resolved_clickhouse_dsn())
    await usage.ensure_schema()
    reader = StripeLiveReader(infra.stripe_api_key.get_secret_value(), infra.stripe_api_base, emulated=True)
    diagnostician = Diagnostician(
        MirrorStore(pg_pool), reader, usage, None, DiagnosticsSettings(mirror_max_age_s=0, audit=False)
    )
    handler = http_handlers(diagnostician, usage)["usage"]
    door = HttpDiagnostics(
        "http://diagnostics",
        transport=httpx.ASGITransport(
            app=Starlette(routes=[Route("/v1/customers/{customer_id}/usage", handler, methods=["GET"])])
        ),
    )
    service = create_service(
        infra.model_copy(update={"http_port": free_port()}),
        tier0=Tier0Settings(forecast_settle_s=0),
        diagnostics=InProcessDiagnostics(diagnostician),
        usage=door,
        background=False,
    )
    notifier = create_notifier(
        infra.model_copy(update={"http_port": free_port()}),
        notifier=NotifierSettings(notify_max_per_customer=5),
    )
    await service.start()
    await notifier.start()
    try:
        yield Env(service, diagnostician, usage, stack)
    finally:
        await notifier.stop()
        await service.stop()


async def customer_with_usage(env: Env, unique: str, daily_units: float) -> Any:
    """A Pro customer (500K api_calls included) the mirror knows, with ``daily_units`` a day for 30 days."""
    world = await build_world(
        {"customer": {"plan": "pro", "email": f"t0f-{unique}@example.test"}},
        env.actions,
        label=f"t0f-{unique}",
    )
    await env.diagnostician.diagnose(world.customer_id)  # the mirror holds the subscription (as webhooks do)
    now = datetime.now(UTC)
    events = [
        UsageEvent(
            world.customer_id,
            "api_calls",
            now - timedelta(days=i, minutes=1),
            daily_units,
            0.0002,
            f"{unique}-{i}",
        )
        for i in range(30)
    ]
    assert await env.usage.write(events) == len(events)
    return world


def usage_message(customer_id: str, unique: str) -> UsageEventRecordedV1:
    return UsageEventRecordedV1.build(
        UsageEventPayload(event_id=f"{unique}-now", metric="api_calls", units=1.0, ts=datetime.now(UTC)),
        contact_id=f"usage:{unique}",
        customer_id=customer_id,
    )


async def watched(env: Env, customer_id: str) -> None:
    async with asyncio.timeout(60):
        while True:
            if customer_id in env.nudger.watch.last_seen:
                return
            await asyncio.sleep(0.1)


async def mails(env: Env, address: str, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(30):
        while True:
            found = env.mail_to(address)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.1)


async def test_given_forecast_over_the_limit_when_usage_arrives_and_the_sweep_runs_then_one_nudge_per_period(
    env: Env, pg_pool: Any, unique: str
) -> None:
    # Given a Pro customer using 40K api_calls a day (a forecast far past the 500K included)
    world = await customer_with_usage(env, unique, 40_000.0)
    message = usage_message(world.customer_id, unique)

    # When a usage event for them arrives on the topic and the sweep runs
    await publish(env.service.broker, message)
    await watched(env, world.customer_id)
    assert await env.nudger.sweep() >= 1

    # Then the customer gets one email through the notifier, with the forecast and the usage page
    [mail] = await mails(env, world.email, 1)
    parsed = email.message_from_string(mail["data"], policy=email.policy.default)
    assert SUBJECT in str(parsed["Subject"])
    text = " ".join(parsed.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]
    assert "/billing/usage" in text
    assert "500,000" in text
    # with the plan that fits and its proration preview (the executor's read-only plan change)
    assert "The business plan includes enough for this pace: $" in text
    # and the nudge went through the executor (ledgered once, actor system) with one Tier 0 outcome
    ledger = await pg_pool.fetch(
        "SELECT action, status, actor FROM action_ledger WHERE customer_id=$1 AND action='send_nudge'",
        world.customer_id,
    )
    assert [(r["action"], r["status"], r["actor"]) for r in ledger] == [("send_nudge", "succeeded", "system")]
    outcome = await pg_pool.fetchrow(
        "SELECT contact_id, resolved_by FROM outcomes WHERE customer_id=$1 AND contact_id LIKE 'forecast:%'",
        world.customer_id,
    )
    assert outcome["resolved_by"] == "tier0"
    assert outcome["contact_id"].startswith(f"forecast:{world.customer_id}:api_calls:")

    # When the same event is redelivered and the forecast evaluated again
    await publish(env.service.broker, message)
    await watched(env, world.customer_id)
    await env.nudger.sweep()
    assert await env.nudger.evaluate(world.customer_id) is False

    # Then nothing more is sent: still one email, one ledger row, one outcome
    assert len(env.mail_to(world.email)) == 1
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM action_ledger WHERE customer_id=$1 AND action='send_nudge'",
            world.customer_id,
        )
        == 1
    )


async def test_given_forecast_under_the_limit_when_the_sweep_runs_then_no_nudge_and_the_customer_is_released(
    env: Env, pg_pool: Any, unique: str
) -> None:
    # Given a Pro customer using 5K api_calls a day (about 150K in a month, under the 500K included)
    world = await customer_with_usage(env, unique, 5_000.0)

    # When a usage event arrives and the sweep runs
    await publish(env.service.broker, usage_message(world.customer_id, unique))
    await watched(env, world.customer_id)
    await env.nudger.sweep()

    # Then no nudge is sent or ledgered, and the customer is no longer watched
    assert await env.nudger.evaluate(world.customer_id) is False
    assert not await pg_pool.fetchval(
        "SELECT count(*) FROM action_ledger WHERE customer_id=$1 AND action='send_nudge'", world.customer_id
    )
    assert world.customer_id not in env.nudger.watch.last_seen
    assert env.mail_to(world.email) == []
