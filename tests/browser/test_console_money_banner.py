"""The Tier 3 console shows the operators' kill switch (issue 24): while money is paused, a banner says
since when, by whom and why; once resumed and refreshed, it is gone. The switch's door needs a token."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.tier3_handoff.app import create_service
from services.tier3_handoff.auth import issue_agent_token
from tests.browser.chromium import ARGS, CHROMIUM
from tierline import switches

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
async def console(infra: Any) -> AsyncIterator[Any]:
    settings = infra.model_copy(update={"http_port": free_port()})
    service = create_service(settings)
    await service.start()
    yield service
    await service.stop()


async def test_given_money_paused_when_an_agent_opens_the_console_then_a_banner_says_who_and_why(
    console: Any, infra: Any, pg_pool: Any, unique: str, test_output: Any
) -> None:
    from playwright.async_api import async_playwright

    base = f"http://127.0.0.1:{console.http_port}"
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/v1/ops/switches")).status_code == 401
    operator = f"operator:oncall-{unique}"
    token = issue_agent_token(infra.agent_token_keyset(), f"ana-{unique}", ["billing"])
    try:
        await switches.set_switch(
            pg_pool,
            None,
            name=switches.MONEY,
            paused=True,
            actor=operator,
            reason=f"stripe incident {unique}",
        )
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(f"{base}/console")
            await page.fill("#token", token)
            await page.click("#signin-button")
            await page.wait_for_selector("#money-banner:not(.hidden)")
            banner = await page.inner_text("#money-banner")
            assert "PAUSED" in banner
            assert operator in banner
            assert f"stripe incident {unique}" in banner
            await page.screenshot(path=str(test_output / "console_money_paused.png"))

            await switches.set_switch(
                pg_pool, None, name=switches.MONEY, paused=False, actor=operator, reason="resolved"
            )
            await page.click("#refresh")
            await page.wait_for_selector("#money-banner.hidden", state="attached")
            await browser.close()
    finally:
        await switches.set_switch(
            pg_pool, None, name=switches.MONEY, paused=False, actor="test:teardown", reason="test done"
        )
