"""The console's sign-in page in headless Chromium, with tokens minted by `tierline token`: an agent
token opens the console (roles shown, kept in this tab only, sign out), a customer token and a token
signed with a key that was removed from the agent key set are refused with 401."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from services.tier3_handoff.app import create_service
from tests.browser.chromium import ARGS, CHROMIUM

pytestmark = [pytest.mark.browser, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
OLD_KEY = "k1:the-agent-key-we-rotated-away-from-0123456789"
NEW_KEY = "k2:the-agent-key-in-use-after-the-rotation-0123456789"
CUSTOMER_KEY = "c1:the-customer-session-key-of-this-test-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
async def console(infra: Any) -> AsyncIterator[Any]:
    """Tier 3 after a key rotation: k1 has been removed from the agent keys, k2 signs."""
    settings = infra.model_copy(
        update={
            "http_port": free_port(),
            "agent_token_keys": SecretStr(NEW_KEY),
            "customer_token_keys": SecretStr(CUSTOMER_KEY),
        }
    )
    service = create_service(settings)
    await service.start()
    yield service
    await service.stop()


def mint(infra: Any, tmp_path: Path, *args: str, agent_keys: str = NEW_KEY) -> str:
    """`tierline token ...` as an operator runs it, with the stack's keys in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERLINE_")}
    env |= {
        "TIERLINE_STRIPE_API_BASE": str(infra.stripe_api_base),  # the embedded emulator
        "TIERLINE_AGENT_TOKEN_KEYS": agent_keys,
        "TIERLINE_CUSTOMER_TOKEN_KEYS": CUSTOMER_KEY,
    }
    done = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "tierline.cli", "--data-dir", str(tmp_path), "token", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


async def test_given_cli_tokens_when_signing_in_to_the_console_then_agent_opens_and_others_get_401(
    console: Any, infra: Any, tmp_path: Path, unique: str, test_output: Path
) -> None:
    from playwright.async_api import async_playwright

    lead = f"lea-{unique}"
    agent_token = mint(infra, tmp_path, "agent", lead, "--queues", "billing,risk", "--approver")
    customer_token = mint(infra, tmp_path, "customer", f"cus_{unique}")
    removed_kid_token = mint(infra, tmp_path, "agent", lead, "--queues", "billing", agent_keys=OLD_KEY)

    base = f"http://127.0.0.1:{console.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for refused in (customer_token, removed_kid_token):
            resp = await http.get("/v1/console/me", headers={"Authorization": f"Bearer {refused}"})
            assert resp.status_code == 401
        me = await http.get("/v1/console/me", headers={"Authorization": f"Bearer {agent_token}"})
        assert me.json() == {"agent_id": lead, "queues": ["billing", "risk"], "roles": ["approver"]}

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = await browser.new_page(viewport={"width": 1200, "height": 800})
        await page.goto(f"{base}/console")

        # a customer's session token is not an agent token
        await page.fill("#token", customer_token)
        await page.click("#signin-button")
        await page.wait_for_function("document.getElementById('signin-error').textContent.includes('failed')")
        assert await page.is_hidden("#app")
        assert await page.evaluate("sessionStorage.getItem('tierline.agentToken')") is None

        # a token signed with the key removed from the set
        await page.fill("#token", removed_kid_token)
        await page.click("#signin-button")
        await page.wait_for_function("document.getElementById('signin-error').textContent.includes('k1')")
        assert await page.is_hidden("#app")

        # the operator's agent token opens the console, roles shown, kept for this tab
        await page.fill("#token", agent_token)
        await page.click("#signin-button")
        await page.wait_for_selector("#app:not(.hidden)")
        who = await page.inner_text("#who")
        assert lead in who
        assert "approver" in who
        assert await page.evaluate("sessionStorage.getItem('tierline.agentToken')") == agent_token
        await page.reload()
        await page.wait_for_selector("#app:not(.hidden)")  # a reload keeps the tab signed in
        await page.screenshot(path=str(test_output / "console-signed-in.png"))

        # sign out: back to the sign-in page, the token forgotten
        await page.click("#signout")
        await page.wait_for_selector("#signin:not(.hidden)")
        assert await page.is_hidden("#app")
        assert await page.evaluate("sessionStorage.getItem('tierline.agentToken')") is None
        await page.reload()
        await page.wait_for_selector("#signin:not(.hidden)")
        assert await page.is_hidden("#app")
        await browser.close()
