"""The chat widget in headless Chromium on the real stack, embedded in another site with its script tag:
a customer asks a billing question, sees their message and the answer arrive live (SSE), rates the answer,
asks for a person and sees the honest handoff status; a reload shows the same thread.

Every service runs in this process (the package's shared pipeline), on the real broker, Postgres and Stripe
emulator; the only doors used are the widget's (the page and its API).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from services.tier1_selfheal.auth import issue_session_token
from tests.browser.chromium import ARGS, ensure_chromium
from tierline.stripe_adapter import StripeActions
from tierline_tools.world import build_world

pytestmark = [pytest.mark.browser, pytest.mark.integration]

QUESTION = "Why was I charged $49 this month?"
FRAME = "iframe[title='Billing support chat']"


class HostSite:
    """The SaaS's own page, embedding the widget with its script tag: another site (localhost, not
    127.0.0.1), served from loopback so that Chromium lets it load the loopback widget."""

    def __init__(self) -> None:
        self.html = ""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                body = site.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_address[1]}/account"


@pytest.fixture
def host_site() -> Iterator[HostSite]:
    site = HostSite()
    thread = threading.Thread(target=site.server.serve_forever, daemon=True)
    thread.start()
    yield site
    site.server.shutdown()
    site.server.server_close()


async def test_given_embedded_chat_when_customer_asks_rates_and_asks_for_a_person_then_thread_shows_it_all(
    pipeline: list[Any],
    stack: Any,
    infra: Any,
    pg_pool: Any,
    unique: str,
    test_output: Path,
    host_site: HostSite,
) -> None:
    from playwright.async_api import async_playwright

    executable = ensure_chromium()
    # Given a pro customer charged $49 three days ago, signed in on the SaaS's own site, which embeds the chat
    world = await build_world(
        {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 3}]},
        StripeActions(infra),
        label=f"br-chat-{unique}",
    )
    customer_id = world.customer_id
    token = issue_session_token(infra.customer_token_keyset(), customer_id, 900)
    base = f"http://127.0.0.1:{stack.service_ports['tier1_selfheal']}"
    host_site.html = (
        "<!doctype html><html><body><h1>Your account</h1>"
        f'<script src="{base}/chat/embed.js" data-token="{token}"></script></body></html>'
    )

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1000, "height": 800})
            await page.goto(host_site.url)
            chat = page.frame_locator(FRAME)
            # When they type a billing question and send it
            await chat.locator("#chat-input").fill(QUESTION)
            await chat.locator("#chat-send").click()
            # Then their message appears as stored by the router (the pending copy is replaced by it)
            mine = chat.locator(".turn[data-role=customer]:not([data-pending])", has_text=QUESTION)
            await mine.wait_for(timeout=90_000)
            conversation_id = await pg_pool.fetchval(
                "SELECT conversation_id FROM conversations WHERE customer_id=$1 AND channel='chat'",
                customer_id,
            )
            assert conversation_id is not None
            assert conversation_id.startswith("chat_")
            # And the answer arrives live, with a rating control
            answer = chat.locator(".turn[data-role=assistant][data-kind=answer]").first
            await answer.wait_for(timeout=120_000)
            assert "49" in await answer.inner_text()
            await page.screenshot(path=str(test_output / "chat_answer.png"), full_page=True)
            # When they rate it 5 and say it solved their problem
            await answer.locator(".rating button[data-csat='5']").click()
            await answer.locator(".rating button[data-solved='true']").click()
            await answer.locator(".rating .thanks").wait_for(timeout=30_000)
            # Then one rating row holds both
            answered_contact = await answer.get_attribute("data-contact-id")
            rating = await pg_pool.fetchrow(
                "SELECT csat, solved FROM conversation_ratings WHERE conversation_id=$1 AND contact_id=$2",
                conversation_id,
                answered_contact,
            )
            assert rating is not None
            assert (rating["csat"], rating["solved"]) == (5, True)
            # When they click "Talk to a human"
            await chat.locator("#human").click()
            # Then the honest handoff status arrives in the same thread, and a person has the case
            handoff = chat.locator(".turn[data-kind=handoff_status]").first
            await handoff.wait_for(timeout=120_000)
            assert (await handoff.inner_text()).strip()
            status = await pg_pool.fetchval(
                "SELECT status FROM conversations WHERE conversation_id=$1", conversation_id
            )
            assert status == "with_human"
            reasons = {
                r["reason"]
                for r in await pg_pool.fetch("SELECT reason FROM cases WHERE customer_id=$1", customer_id)
            }
            assert "customer_asked" in reasons
            await page.screenshot(path=str(test_output / "chat_handoff.png"), full_page=True)
            # When the page is reloaded, Then the same thread is shown again (from the stored turns)
            await page.reload()
            chat = page.frame_locator(FRAME)
            await chat.locator(".turn[data-kind=handoff_status]").first.wait_for(timeout=30_000)
            assert await chat.locator(".turn[data-role=customer]", has_text=QUESTION).count() == 1
        finally:
            await browser.close()
