"""The account history page in headless Chromium on the real stack: a teammate changes the billing email
in the portal, and the customer's history page shows who, when and before → after."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
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
    svc = create_service(infra.model_copy(update={"http_port": free_port()}), diagnostics=diagnostics)
    await svc.start()
    yield svc
    await svc.stop()


async def test_given_billing_email_changed_when_customer_opens_history_then_page_shows_who_and_before_after(
    tier1: Any, infra: Any, unique: str, test_output: Path
) -> None:
    from playwright.async_api import async_playwright

    executable = ensure_chromium()
    # Given a customer whose billing email a teammate changed in the portal
    old, new = f"old-{unique}@acme.test", f"new-{unique}@acme.test"
    world = await build_world({"customer": {"email": old}}, StripeActions(infra), label=f"br-hist-{unique}")
    token = issue_session_token(infra.customer_token_keyset(), world.customer_id, 600)
    base = f"http://127.0.0.1:{tier1.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        headers = {"Authorization": f"Bearer {token}"}
        resp = await http.post(
            "/v1/health-meter/fixes",
            headers=headers,
            json={"action": "update_billing_details", "params": {"billing_email": new}},
        )
        assert resp.status_code == 202, resp.text
        contact = resp.json()["contact_id"]
        deadline = time.monotonic() + 60
        status: dict[str, Any] = {}
        while time.monotonic() < deadline and status.get("status") != "resolved":
            status = (await http.get(f"/v1/health-meter/contacts/{contact}", headers=headers)).json()
            await asyncio.sleep(0.3)
        assert status.get("status") == "resolved", status

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 900, "height": 900})
            # When the customer signs in on the history page
            await page.goto(f"{base}/billing/history")
            await page.fill("#token-input", token)
            await page.click("#signin-form button[type=submit]")
            # Then the change is listed with who made it and the address before → after
            event = page.locator(".event[data-change=billing_email]")
            await event.wait_for(timeout=30_000)
            assert await event.locator(".title").inner_text() == "Billing email changed"
            assert "Someone on your team" in await event.locator(".who").inner_text()
            row = event.locator("tr[data-field=email]")
            assert await row.locator(".before").inner_text() == old
            assert await row.locator(".after").inner_text() == new
            await page.screenshot(path=str(test_output / "portal_history.png"), full_page=True)
        finally:
            await browser.close()
