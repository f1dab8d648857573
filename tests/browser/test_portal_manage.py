""" "Manage in Stripe" in headless Chromium on the real stack: the billing home's button creates a Customer
Portal session for the signed-in customer (on the embedded stack the emulator wrapper's portal page) and the
portal's link leads back to the billing home."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.diagnostics.adapters.clickhouse import UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician
from services.diagnostics.settings import DiagnosticsSettings
from services.tier1_selfheal.app import create_service
from services.tier1_selfheal.auth import issue_session_token
from tests.browser.chromium import ARGS, ensure_chromium
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
    diagnostics = InProcessDiagnostics(
        Diagnostician(
            MirrorStore(pg_pool), reader, usage, None, DiagnosticsSettings(mirror_max_age_s=0, audit=False)
        )
    )
    port = free_port()
    settings = infra.model_copy(update={"http_port": port, "public_base_url": f"http://127.0.0.1:{port}"})
    svc = create_service(settings, diagnostics=diagnostics)
    await svc.start()
    yield svc
    await svc.stop()


async def test_given_a_signed_in_customer_when_manage_in_stripe_pressed_then_the_portal_opens_and_leads_back(
    tier1: Any, infra: Any, unique: str, test_output: Path
) -> None:
    from playwright.async_api import async_playwright

    executable = ensure_chromium()
    world = await build_world({}, StripeActions(infra), label=f"br-manage-{unique}")
    token = issue_session_token(infra.customer_token_keyset(), world.customer_id, 600)
    base = f"http://127.0.0.1:{tier1.http_port}"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 900, "height": 900})
            # Given the customer on the billing home
            await page.goto(f"{base}/billing#token={token}")
            # When they press "Manage in Stripe"
            await page.click("#manage-stripe")
            # Then the portal session's page opens for them
            await page.wait_for_url("**/p/session/bps_*", timeout=30_000)
            assert await page.locator("#customer").inner_text() == world.customer_id
            await page.screenshot(path=str(test_output / "portal_manage.png"), full_page=True)
            # And its link returns to the billing home
            await page.click("#return")
            await page.wait_for_url(f"{base}/billing", timeout=30_000)
            assert await page.locator("#manage-stripe").is_visible()
        finally:
            await browser.close()
