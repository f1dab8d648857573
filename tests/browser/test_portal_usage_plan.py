"""The portal's usage, plan and "my requests" pages (issue 21) in headless Chromium on the real stack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.diagnostics.adapters.clickhouse import UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician
from services.diagnostics.settings import DiagnosticsSettings
from services.tier1_selfheal.app import create_service
from services.tier1_selfheal.auth import issue_session_token
from tests.browser.chromium import ARGS, ensure_chromium
from tests.integration.test_portal_usage_plan import open_case, plan_of, usage_door, write_usage
from tierline.billing.mirror import MirrorStore
from tierline.diagnostics_client import InProcessDiagnostics
from tierline.stripe_adapter import StripeActions
from tierline_tools.stack.procs import free_port
from tierline_tools.world import build_world

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture(scope="module")
async def tier1(infra: Any, pg_pool: Any) -> AsyncIterator[Any]:
    usage = UsageStore(infra.resolved_clickhouse_dsn())
    await usage.ensure_schema()
    reader = StripeLiveReader(infra.stripe_api_key.get_secret_value(), infra.stripe_api_base, emulated=True)
    diagnostician = Diagnostician(
        MirrorStore(pg_pool), reader, usage, None, DiagnosticsSettings(mirror_max_age_s=0, audit=False)
    )
    svc = create_service(
        infra.model_copy(update={"http_port": free_port()}),
        diagnostics=InProcessDiagnostics(diagnostician),
        usage=usage_door(diagnostician, usage),
    )
    await svc.start()
    svc.state["usage_store"] = usage
    await asyncio.sleep(4)  # consumer group join
    yield svc
    await svc.stop()


async def browser() -> Any:
    from playwright.async_api import async_playwright

    pw = await async_playwright().start()
    launched = await pw.chromium.launch(executable_path=ensure_chromium(), args=ARGS, headless=True)
    return pw, launched


async def test_given_heavy_usage_when_the_usage_page_opens_then_share_chart_and_upgrade_are_shown(
    tier1: Any, infra: Any, unique: str, test_output: Path
) -> None:
    # Given a Pro customer (500K included) who used 750K api_calls in the last 30 days
    world = await build_world({"customer": {"plan": "pro"}}, StripeActions(infra), label=f"br-pu-{unique}")
    await write_usage(tier1.state["usage_store"], world.customer_id, datetime.now(UTC))
    token = issue_session_token(infra.customer_token_keyset(), world.customer_id, 600)
    pw, chromium = await browser()
    try:
        page = await chromium.new_page(viewport={"width": 900, "height": 1000})
        # When they open the usage page
        await page.goto(f"http://127.0.0.1:{tier1.http_port}/billing/usage#token={token}")
        await page.wait_for_selector("#period-card:not([hidden])", timeout=30_000)
        # Then the share of the limit reads like the plan ("… of 500K, N%"), with 30 bars and the forecast
        share = await page.inner_text("#share")
        assert " of 500K, " in share
        assert share.endswith("%")
        assert await page.locator("#chart rect").count() == 30
        assert "over your limit" in await page.inner_text("#forecast")
        # and the upgrade prompt carries the proration preview
        assert await page.is_visible("#upgrade")
        assert "Moving to business" in await page.inner_text("#upgrade-text")
        # When they switch to 12 months, Then 12 bars
        await page.click("#w12")
        await page.wait_for_selector("#chart[data-window='12m']", timeout=15_000)
        assert await page.locator("#chart rect").count() == 12
        await page.screenshot(path=str(test_output / "portal_usage.png"), full_page=True)
    finally:
        await chromium.close()
        await pw.stop()


async def test_given_a_pro_customer_when_previewing_and_confirming_business_then_the_plan_changes(
    tier1: Any, infra: Any, unique: str, test_output: Path
) -> None:
    stripe_actions = StripeActions(infra)
    world = await build_world({"customer": {"plan": "pro"}}, stripe_actions, label=f"br-pp-{unique}")
    token = issue_session_token(infra.customer_token_keyset(), world.customer_id, 600)
    pw, chromium = await browser()
    try:
        page = await chromium.new_page(viewport={"width": 900, "height": 1000})
        await page.goto(f"http://127.0.0.1:{tier1.http_port}/billing/plan?plan=business#token={token}")
        await page.wait_for_selector("#change-card:not([hidden])", timeout=30_000)
        assert await page.inner_text("#current") == "Pro plan, 1 seat, $49.00 a month"
        assert await page.input_value("#plan-select") == "business"
        # When they preview the change
        await page.click("#preview-button")
        await page.wait_for_selector("#preview:not([hidden])", timeout=30_000)
        # Then the old and new price and the proration are shown, and nothing has changed yet
        assert await page.inner_text("#old-price") == "$49.00 a month"
        assert await page.inner_text("#new-price") == "$299.00 a month"
        assert (await page.inner_text("#net")).startswith("$")
        before = plan_of(await stripe_actions.get_subscription(world.subscription_id or ""))
        assert before != await stripe_actions.ensure_plan("business", 299)
        # When they confirm on the page
        await page.click("#confirm-change")
        await page.wait_for_selector("#result[data-state=resolved]", timeout=60_000)
        # and the page shows the new plan and price
        await page.wait_for_selector("#current[data-plan=business]", timeout=15_000)
        assert await page.inner_text("#current") == "Business plan, 1 seat, $299.00 a month"
        await page.screenshot(path=str(test_output / "portal_plan.png"), full_page=True)
    finally:
        await chromium.close()
        await pw.stop()
    # Then Stripe has the new plan
    sub = await stripe_actions.get_subscription(world.subscription_id or "")
    assert plan_of(sub) == await stripe_actions.ensure_plan("business", 299)


async def test_given_an_open_case_when_my_requests_opens_then_it_says_a_person_is_on_it(
    tier1: Any, infra: Any, pg_pool: Any, unique: str, test_output: Path
) -> None:
    world = await build_world({}, StripeActions(infra), label=f"br-pr-{unique}")
    token = issue_session_token(infra.customer_token_keyset(), world.customer_id, 600)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{tier1.http_port}", timeout=30) as http:
        asked = await http.post(
            "/v1/health-meter/human",
            headers={"Authorization": f"Bearer {token}"},
            json={"text": "Please check my last invoice"},
        )
    await open_case(pg_pool, asked.json()["contact_id"], world.customer_id)
    pw, chromium = await browser()
    try:
        page = await chromium.new_page(viewport={"width": 900, "height": 1000})
        await page.goto(f"http://127.0.0.1:{tier1.http_port}/billing/requests#token={token}")
        await page.wait_for_selector("#cases .item", timeout=30_000)
        case = page.locator("#cases .item").first
        assert await case.get_attribute("data-state") == "with_human"
        text = await case.inner_text()
        assert "A person is on it" in text
        assert "expect an answer by" in text
        assert "resolved" not in text.lower()
        conversation = page.locator("#conversations .item").first
        assert "Please check my last invoice" in await conversation.inner_text()
        # the conversation of an open case is with a person too, whatever its last turn said
        assert await conversation.get_attribute("data-state") == "with_human"
        await page.screenshot(path=str(test_output / "portal_requests.png"), full_page=True)
    finally:
        await chromium.close()
        await pw.stop()
