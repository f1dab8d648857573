"""The invoices page in headless Chromium on the real stack: a customer signs in, sees their invoices with
status, period, amount and tax, downloads a PDF that carries their company and VAT id, and emails an
invoice to themselves (the page shows the confirmation)."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from services.tier1_selfheal.auth import issue_session_token
from tests.browser.chromium import ARGS, ensure_chromium
from tests.tier1_service import started_tier1
from tierline.stripe_adapter import StripeActions
from tierline_tools.world import build_world

pytestmark = [pytest.mark.browser, pytest.mark.integration]

VAT_ID = "DE136695976"


@pytest.fixture(scope="module")
async def tier1(infra: Any, pg_pool: Any) -> AsyncIterator[Any]:
    async with started_tier1(infra, pg_pool) as svc:
        yield svc


async def test_given_customer_with_invoices_when_using_invoices_page_then_lists_downloads_pdf_and_resends(
    tier1: Any, infra: Any, test_output: Path
) -> None:
    from playwright.async_api import async_playwright

    executable = ensure_chromium()
    # Given a customer with a paid $49 invoice, their company name and VAT id on file
    tag = uuid.uuid4().hex[:8]
    stripe = StripeActions(infra)
    world = await build_world(
        {"customer": {"email": f"br-inv-{tag}@example.test"}, "charges": [{"amount_usd": 49, "days_ago": 3}]},
        stripe,
        label=f"br-inv-{tag}",
    )
    await stripe.update_customer(
        world.customer_id,
        idempotency_key=f"br-inv-{tag}",
        name="Bluebird Labs Ltd",
        address={"country": "IE"},
    )
    await stripe.add_tax_id(world.customer_id, "eu_vat", VAT_ID, f"br-inv-{tag}-vat")
    invoice_id = world.initial_invoice_id
    assert invoice_id
    token = issue_session_token(infra.customer_token_keyset(), world.customer_id, 600)
    row = f"#invoices tr[data-invoice-id={invoice_id}]"

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            context = await browser.new_context(
                accept_downloads=True, viewport={"width": 1000, "height": 800}
            )
            page = await context.new_page()
            # When the customer opens the billing home, follows "Invoices" and signs in
            await page.goto(f"http://127.0.0.1:{tier1.http_port}/billing")
            await page.click("#billing-nav a[href='/billing/invoices']")
            await page.fill("#token-input", token)
            await page.click("#signin-form button[type=submit]")
            # Then the invoice is listed with its status, period, amount and tax
            await page.wait_for_selector(row, timeout=30_000)
            text = await page.inner_text(row)
            assert "Paid" in text
            assert "$49.00" in await page.inner_text(f"{row} td.amount")
            assert "$0.00" in await page.inner_text(f"{row} td.tax")
            assert " to " in text  # the service period
            await page.screenshot(path=str(test_output / "portal_invoices.png"), full_page=True)

            # When they download the PDF, Then the file is a PDF with their company and VAT id
            async with page.expect_download() as download_info:
                await page.click(f"{row} a.pdf")
            download = await download_info.value
            pdf_path = await download.path()
            data = await asyncio.to_thread(Path(pdf_path).read_bytes)
            assert data.startswith(b"%PDF-")
            pdf_text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
            assert "Bluebird Labs Ltd" in pdf_text
            assert f"VAT ID: {VAT_ID}" in pdf_text
            assert "$49.00" in pdf_text

            # When they email it to themselves, Then the page confirms it was sent
            await page.click(f"{row} button.resend")
            await page.wait_for_selector("#resend-status[data-state=resolved]", timeout=90_000)
            assert invoice_id in await page.inner_text("#resend-text")
            await page.screenshot(path=str(test_output / "portal_invoices_resent.png"), full_page=True)
        finally:
            await browser.close()
