"""The billing details form and the card page in headless Chromium on the real stack: an invalid VAT id is
shown inline and a valid one is saved to Stripe; a new card goes from the browser to the Stripe emulator,
and no request to tierline carries the card number."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.tier1_selfheal.auth import issue_session_token
from tests.browser.chromium import ARGS, ensure_chromium
from tests.tier1_service import started_tier1
from tierline.stripe_adapter import StripeActions
from tierline_tools.world import VISA, build_world

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture(scope="module")
async def tier1(infra: Any, pg_pool: Any) -> AsyncIterator[Any]:
    async with started_tier1(infra, pg_pool) as svc:
        yield svc


async def test_given_details_form_when_vat_is_wrong_then_inline_error_and_a_valid_one_is_saved(
    tier1: Any, infra: Any, unique: str, test_output: Path
) -> None:
    from playwright.async_api import async_playwright

    executable = ensure_chromium()
    stripe_actions = StripeActions(infra)
    world = await build_world({"customer": {"country": "DE"}}, stripe_actions, label=f"br-pd-{unique}")
    token = issue_session_token(infra.customer_token_keyset(), world.customer_id, 600)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 800, "height": 1100})
            await page.goto(f"http://127.0.0.1:{tier1.http_port}/billing/details?token={token}")
            await page.wait_for_selector("#details-form", state="visible", timeout=30_000)
            # When the customer fills the form with a VAT id whose check digit is wrong
            await page.fill("#company_name", "Acme GmbH")
            await page.fill("#line1", "Hauptstr. 5")
            await page.fill("#postal_code", "10115")
            await page.fill("#city", "Berlin")
            await page.fill("#country", "DE")
            await page.fill("#tax_id", "DE123456789")
            await page.click("#save")
            # Then the error is shown under the VAT field, and nothing is saved
            await page.wait_for_selector("#err-tax_id", state="visible", timeout=30_000)
            assert "check-digit" in await page.inner_text("#err-tax_id")
            assert await page.get_attribute("#tax_id", "aria-invalid") == "true"
            await page.screenshot(path=str(test_output / "billing_details_error.png"), full_page=True)
            assert (await stripe_actions.get_customer(world.customer_id)).get("name") != "Acme GmbH"
            # When they correct it and save again
            await page.fill("#tax_id", "DE136695976")
            await page.click("#save")
            # Then the page confirms, lists the VAT id, and Stripe holds the details
            await page.wait_for_selector("#result[data-state=ok]", timeout=60_000)
            assert await page.is_hidden("#err-tax_id")
            assert await page.inner_text("#tax-ids") == "DE136695976"
            await page.screenshot(path=str(test_output / "billing_details_saved.png"), full_page=True)
        finally:
            await browser.close()
    customer = await stripe_actions.get_customer(world.customer_id)
    assert customer["name"] == "Acme GmbH"
    assert customer["address"]["city"] == "Berlin"
    found = await stripe_actions.raw_get(f"/v1/customers/{world.customer_id}/tax_ids")
    assert [(t["type"], t["value"]) for t in found["data"]] == [("eu_vat", "DE136695976")]


async def test_given_update_card_link_when_card_added_then_it_goes_to_the_emulator_never_to_tierline(
    tier1: Any, infra: Any, unique: str, test_output: Path
) -> None:
    from playwright.async_api import Request, async_playwright

    executable = ensure_chromium()
    stripe_actions = StripeActions(infra)
    world = await build_world({}, stripe_actions, label=f"br-card-{unique}")
    tierline = f"http://127.0.0.1:{tier1.http_port}"
    link = await stripe_actions.update_card_link(world.customer_id, tierline)
    token = link.url.split("token=", 1)[1]
    sent: list[tuple[str, str]] = []

    def record(request: Request) -> None:
        sent.append((request.url, request.post_data or ""))

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 700, "height": 800})
            page.on("request", record)
            # When the customer opens the emailed link and types a new card
            await page.goto(f"{tierline}/update-card?token={token}")
            await page.wait_for_selector("#emulator-fields", state="visible", timeout=30_000)
            await page.fill("#number", "4242 4242 4242 4242")
            await page.fill("#exp", "12/31")
            await page.fill("#cvc", "123")
            await page.click("#save")
            # Then the page confirms the new default card
            await page.wait_for_selector("#result[data-state=ok]", timeout=60_000)
            assert "ending in 4242" in await page.inner_text("#result-text")
            await page.screenshot(path=str(test_output / "update_card.png"), full_page=True)
        finally:
            await browser.close()
    # And the card number went to the emulator only: no request to tierline carried it
    to_tierline = [(url, body) for url, body in sent if url.startswith(tierline)]
    to_stripe = [(url, body) for url, body in sent if url.startswith(infra.stripe_api_base.rstrip("/"))]
    assert any(url.endswith("/v1/portal/card") for url, _ in to_tierline)
    assert not [url for url, body in to_tierline if VISA in body.replace(" ", "") or "cvc" in body]
    assert any(VISA in body for _, body in to_stripe)
    customer = await stripe_actions.get_customer(world.customer_id)
    pm = await stripe_actions.get_payment_method(customer["invoice_settings"]["default_payment_method"])
    assert pm["card"]["last4"] == "4242"
