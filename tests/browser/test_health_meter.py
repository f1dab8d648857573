"""The Billing Health Meter page in headless Chromium on the real stack: a customer signs in, sees a
declined payment, clicks retry and sees it resolved."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.tier1_selfheal.auth import issue_session_token
from tests.browser.chromium import ARGS, ensure_chromium
from tests.cards import attach_default_card
from tests.tier1_service import started_tier1
from tierline.stripe_adapter import StripeActions
from tierline_tools.world import build_world

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture(scope="module")
async def tier1(infra: Any, pg_pool: Any) -> AsyncIterator[Any]:
    async with started_tier1(infra, pg_pool) as svc:
        yield svc


async def test_given_declined_payment_when_customer_clicks_retry_then_page_shows_it_resolved(
    tier1: Any, infra: Any, unique: str, test_output: Path
) -> None:
    from playwright.async_api import async_playwright

    executable = ensure_chromium()
    # Given a customer whose $49 invoice was declined (insufficient funds), with funds available again
    stripe_actions = StripeActions(infra)
    world = await build_world(
        {
            "card": "declined_insufficient_funds",
            "failed_invoice": {"amount_usd": 49, "decline_code": "insufficient_funds"},
        },
        stripe_actions,
        label=f"br-t1-{unique}",
    )
    await attach_default_card(stripe_actions, world.customer_id)
    token = issue_session_token(infra.customer_token_keyset(), world.customer_id, 600)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 900, "height": 900})
            # When the customer signs in through the form
            await page.goto(f"http://127.0.0.1:{tier1.http_port}/health-meter")
            await page.fill("#token-input", token)
            await page.click("#signin-form button[type=submit]")
            # Then the meter is red and explains the declined payment, with a retry and a human on offer
            await page.wait_for_selector("#meter[data-status=red]", timeout=30_000)
            assert "declined" in (await page.inner_text("#explanation")).lower()
            assert "$49.00" in await page.inner_text("#explanation")
            assert await page.is_visible("#human")
            await page.screenshot(path=str(test_output / "health_meter_before.png"), full_page=True)
            # When they click retry
            await page.click("#fixes button[data-action=retry_payment]")
            # Then the live status shows the payment resolved by Tier 1, and the meter is no longer red
            await page.wait_for_selector("#status[data-state=resolved]", timeout=60_000)
            assert "went through" in await page.inner_text("#status-text")
            await page.wait_for_function(
                "document.querySelector('#meter').dataset.status !== 'red'", timeout=30_000
            )
            await page.screenshot(path=str(test_output / "health_meter.png"), full_page=True)
        finally:
            await browser.close()
    assert (await stripe_actions.get_invoice(world.failed_invoice_id or ""))["status"] == "paid"
