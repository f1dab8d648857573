"""The portal's Team and API keys page in headless Chromium (issue 23): tier 1 served as deployed, with the
product connector pointed at the reference product. An owner invites a teammate, creates a key (its secret
shown once) and rotates it; a member sees "ask your admin" and no forms."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.tier1_selfheal.auth import issue_session_token
from tests.browser.chromium import ARGS, ensure_chromium
from tests.product_service import product_client, seed_account, started_product
from tests.tier1_service import started_tier1

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture(scope="module")
async def product(infra: Any) -> AsyncIterator[Any]:
    async with started_product(infra) as svc:
        yield svc


@pytest.fixture(scope="module")
async def tier1(infra: Any, pg_pool: Any, product: Any) -> AsyncIterator[Any]:
    settings = infra.model_copy(update={"product_api_url": product.state["settings"].product_api_url})
    async with started_tier1(settings, pg_pool) as svc:
        yield svc


@pytest.fixture
async def api(product: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with product_client(product) as client:
        yield client


async def test_given_an_owner_when_inviting_and_creating_then_rotating_a_key_then_the_page_shows_each_once(
    tier1: Any, api: httpx.AsyncClient, pg_pool: Any, infra: Any, unique: str, test_output: Path
) -> None:
    from playwright.async_api import async_playwright

    executable = ensure_chromium()
    customer_id = await seed_account(api, pg_pool, unique)
    token = issue_session_token(infra.customer_token_keyset(), customer_id, 600)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 900, "height": 1100})
            page.on("dialog", lambda dialog: dialog.accept())
            # Given the owner signed in on the Team page
            await page.goto(f"http://127.0.0.1:{tier1.http_port}/billing/team#token={token}")
            await page.wait_for_selector(f"tr[data-email='owner-{unique}@acme.io']", timeout=30_000)
            assert await page.is_hidden("#readonly")
            # When they invite a teammate as admin
            await page.fill("#invite-email", "maria@acme.io")
            await page.select_option("#invite-role", "admin")
            await page.click("#invite-form button[type=submit]")
            # Then the confirmation shows and the teammate is listed as invited
            await page.wait_for_selector("tr[data-email='maria@acme.io']", timeout=30_000)
            assert "We invited maria@acme.io to your workspace as admin" in await page.inner_text("#notice")
            # When they create a key
            await page.fill("#key-name", "ci")
            await page.click("#key-form button[type=submit]")
            await page.wait_for_selector("#secret-box:not([hidden])", timeout=30_000)
            secret = (await page.inner_text("#secret")).strip()
            assert secret.startswith("sk_live_")
            await page.screenshot(path=str(test_output / "portal_team_key_created.png"), full_page=True)
            # And rotate it
            await page.click("tr[data-active='true'] button.rotate")
            await page.wait_for_selector("tr[data-active='false']", timeout=30_000)
            assert "We rotated your API key" in await page.inner_text("#notice")
            await page.screenshot(path=str(test_output / "portal_team_rotated.png"), full_page=True)
        finally:
            await browser.close()
    # Then the product holds exactly one invitation, and of two keys only the replacement works
    members = (await api.get(f"/v1/accounts/{customer_id}/members")).json()["members"]
    assert [m["status"] for m in members if m["email"] == "maria@acme.io"] == ["invited"]
    keys = (await api.get(f"/v1/accounts/{customer_id}/keys")).json()["keys"]
    assert [k["active"] for k in keys] == [False, True]
    assert (await api.post("/v1/keys/verify", json={"secret": secret})).json() == {"valid": False}
    rows = await pg_pool.fetch(
        "SELECT target, status FROM action_ledger WHERE customer_id=$1 AND action='product_action'",
        customer_id,
    )
    assert sorted((r["target"].split(":")[0], r["status"]) for r in rows) == [
        ("create_api_key", "succeeded"),
        ("invite_member", "succeeded"),
        ("rotate_api_key", "succeeded"),
    ]


async def test_given_a_member_when_the_page_opens_then_ask_your_admin_and_no_forms(
    tier1: Any, api: httpx.AsyncClient, pg_pool: Any, infra: Any, unique: str, test_output: Path
) -> None:
    from playwright.async_api import async_playwright

    executable = ensure_chromium()
    customer_id = await seed_account(api, pg_pool, unique)
    now = int(time.time())
    token = infra.customer_token_keyset().sign(
        {
            "sub": customer_id,
            "purpose": "customer_session",
            "iat": now,
            "exp": now + 600,
            "email": f"dev-{unique}@acme.io",
        }
    )
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 900, "height": 900})
            await page.goto(f"http://127.0.0.1:{tier1.http_port}/billing/team#token={token}")
            await page.wait_for_selector("#readonly:not([hidden])", timeout=30_000)
            text = await page.inner_text("#readonly-text")
            assert "ask your admin" in text.lower()
            assert f"admin-{unique}@acme.io" in text
            assert await page.is_hidden("#invite-form")
            assert await page.is_hidden("#key-form")
            assert await page.locator("button.remove").count() == 0
            await page.screenshot(path=str(test_output / "portal_team_member.png"), full_page=True)
        finally:
            await browser.close()
