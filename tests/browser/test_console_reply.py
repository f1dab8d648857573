"""Humans reply, in headless Chromium on the real stack: a customer asks for a person on the Billing Health
Meter and sees the honest status (a person has it, with the time they answer by); an agent signs in to the
Tier 3 console, opens the case, finds a reply drafted from the diagnosis, sends it, and the thread shows it;
the customer's page then shows the person's reply."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.diagnostics.adapters.clickhouse import UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician
from services.diagnostics.settings import DiagnosticsSettings
from services.tier1_selfheal.app import create_service as create_tier1
from services.tier1_selfheal.auth import issue_session_token
from services.tier3_handoff.app import create_service as create_tier3
from services.tier3_handoff.auth import issue_agent_token
from tests.browser.chromium import ARGS, CHROMIUM
from tierline.billing.mirror import MirrorStore
from tierline.diagnostics_client import InProcessDiagnostics
from tierline.stripe_adapter import StripeActions
from tierline_tools.stack.procs import free_port
from tierline_tools.world import build_world

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture(scope="module")
async def services(infra: Any, pg_pool: Any) -> AsyncIterator[tuple[Any, Any]]:
    usage = UsageStore(infra.resolved_clickhouse_dsn())
    await usage.ensure_schema()
    reader = StripeLiveReader(infra.stripe_api_key.get_secret_value(), infra.stripe_api_base, emulated=True)
    diagnostics = InProcessDiagnostics(
        Diagnostician(
            MirrorStore(pg_pool), reader, usage, None, DiagnosticsSettings(mirror_max_age_s=0, audit=False)
        )
    )
    tier3 = create_tier3(infra.model_copy(update={"http_port": free_port()}), diagnostics=diagnostics)
    tier1 = create_tier1(infra.model_copy(update={"http_port": free_port()}), diagnostics=diagnostics)
    await tier3.start()
    await tier1.start()
    yield tier1, tier3
    await tier1.stop()
    await tier3.stop()


async def wait_case(pg_pool: Any, customer_id: str) -> Any:
    for _ in range(300):
        row = await pg_pool.fetchrow("SELECT * FROM cases WHERE customer_id=$1", customer_id)
        if row:
            return row
        await asyncio.sleep(0.2)
    raise AssertionError(f"no case for {customer_id}")


async def test_given_a_customer_asking_for_a_person_when_an_agent_replies_in_the_console_then_both_see_it(
    services: tuple[Any, Any], infra: Any, pg_pool: Any, unique: str, test_output: Path
) -> None:
    from playwright.async_api import async_playwright

    tier1, tier3 = services
    world = await build_world({"customer": {"plan": "pro"}}, StripeActions(infra), label=f"br-reply-{unique}")
    session = issue_session_token(infra.customer_token_keyset(), world.customer_id, 3600)
    agent = f"ana-{unique}"
    token = issue_agent_token(infra.agent_token_keyset(), agent, ["billing", "enterprise"])

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            meter = await browser.new_page(viewport={"width": 900, "height": 1000})
            # Given a customer who asks for a person on the Health Meter
            await meter.goto(f"http://127.0.0.1:{tier1.http_port}/health-meter#token={session}")
            await meter.wait_for_selector("#human")
            await meter.click("#human")
            # Then the page says the truth: a person has it, with the time they answer by
            await meter.wait_for_selector("#cases .case[data-state=with_human]", timeout=60_000)
            status = await meter.inner_text("#cases")
            assert "A person on our billing team is looking at this; expect an answer by" in status
            assert re.search(r"expect an answer by \d{1,2} \w{3} \d{4}, \d{2}:\d{2} UTC", status)
            assert "Resolved" not in status
            await meter.screenshot(path=str(test_output / "health_meter_with_human.png"), full_page=True)

            case = await wait_case(pg_pool, world.customer_id)
            # make it the first case of the shared session database's queue
            old = datetime(2001, 1, 1, tzinfo=UTC)
            await pg_pool.execute(
                "UPDATE cases SET priority=1, opened_at=$2, sla_due_at=$3, sla_alerted_at=now() "
                "WHERE case_id=$1",
                case["case_id"],
                old,
                old + timedelta(hours=1),
            )

            # When an agent signs in to the console and opens the case
            console = await browser.new_page(viewport={"width": 1400, "height": 1200})
            await console.goto(f"http://127.0.0.1:{tier3.http_port}/console")
            await console.fill("#token", token)
            await console.click("#signin-button")
            row = console.locator(f"tr.case-row[data-case-id='{case['case_id']}']")
            await row.wait_for()
            await row.click()
            await console.wait_for_selector("#detail-body:not(.hidden)")
            # Then the whole thread is there, and the reply box holds a customer-facing draft
            await console.wait_for_selector("#thread .turn.customer")
            assert "Asked for a person from the Health Meter." in await console.inner_text("#thread")
            draft = await console.input_value("#reply-text")
            assert draft.startswith("Hello,")
            assert "reviewed your account" in draft
            assert (await console.inner_text("#next-step")) not in draft
            # When the agent claims the case, edits the draft and sends it
            await console.click("#claim")
            await console.wait_for_function(
                "document.getElementById('claim-status').textContent.includes('you')"
            )
            reply = draft + f"\n\nThere is a single charge this month ({unique}); nothing was taken twice."
            await console.fill("#reply-text", reply)
            await console.click("#reply-button")
            await console.wait_for_function("document.getElementById('reply-status').textContent === 'sent'")
            # Then the thread shows the reply as the agent's
            await console.wait_for_selector("#thread .turn.agent[data-kind=human_reply]")
            assert f"single charge this month ({unique})" in await console.inner_text("#thread")
            await console.screenshot(path=str(test_output / "console_reply.png"), full_page=True)

            # And the customer's page shows the person's reply, the case still with the person
            await meter.reload()
            await meter.wait_for_selector("#cases .case[data-state=with_human] .reply")
            assert f"single charge this month ({unique})" in await meter.inner_text("#cases .reply")
        finally:
            await browser.close()

    turns = await pg_pool.fetch(
        """SELECT kind, author FROM conversation_turns t
           JOIN contacts c ON c.conversation_id = t.conversation_id
           WHERE c.contact_id=$1 AND t.kind='human_reply'""",
        case["contact_id"],
    )
    assert [(t["kind"], t["author"]) for t in turns] == [("human_reply", f"agent:{agent}")]
