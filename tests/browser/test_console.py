"""The Tier 3 console in headless Chromium: an agent signs in, claims the oldest high-priority case,
sees the packet and resolves it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas import Tier
from schemas.messages import ActionRecord, DiagnosisView, EscalationOpenedPayload, EscalationOpenedV1, Turn
from schemas.vocab import Action, EscalationReason, HealthStatus, Intent, RootCause
from services.tier3_handoff.app import create_service
from services.tier3_handoff.auth import issue_agent_token
from tests.browser.chromium import ARGS, CHROMIUM
from tierline.messaging import publish

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


def packet(reason: EscalationReason, plan: str, amount: float) -> EscalationOpenedPayload:
    return EscalationOpenedPayload(
        reason=reason,
        opened_by=Tier.TIER2,
        intent=Intent.UNRECOGNIZED_CHARGE,
        plan=plan,
        amount_usd=amount,
        text="There is a charge I never made",
        diagnosis=DiagnosisView(
            customer_id="x",
            status=HealthStatus.RED,
            root_cause=RootCause.CARD_DECLINED_FRAUD,
            explanation="Three declines flagged as fraudulent since Monday",
        ),
        transcript=[
            Turn(role="customer", text="There is a charge I never made"),
            Turn(role="assistant", text="I am handing this to a specialist"),
        ],
        actions_tried=[
            ActionRecord(
                action=Action.EXPLAIN_CHARGE, tier=Tier.TIER2, status="succeeded", idempotency_key="k-explain"
            )
        ],
        suggested_next_step="Confirm the charge with the customer, then block the card",
        tier_path=[Tier.TIER2],
    )


async def wait_case(pg_pool: Any, contact_id: str) -> Any:
    for _ in range(200):
        row = await pg_pool.fetchrow("SELECT * FROM cases WHERE contact_id=$1", contact_id)
        if row:
            return row
        await asyncio.sleep(0.2)
    raise AssertionError(f"no case for {contact_id}")


async def test_given_agent_when_signing_in_claiming_and_resolving_top_case_then_case_resolved(
    console, infra, pg_pool, unique, test_output
):
    from playwright.async_api import async_playwright

    high = EscalationOpenedV1.build(
        packet(EscalationReason.FRAUD, "enterprise", 900.0),
        contact_id=f"br-hi-{unique}",
        customer_id=f"cus_{unique}",
    )
    low = EscalationOpenedV1.build(
        packet(EscalationReason.CUSTOMER_ASKED, "starter", 10.0),
        contact_id=f"br-lo-{unique}",
        customer_id=f"cus_{unique}",
    )
    await publish(console.broker, low)
    await publish(console.broker, high)
    hi_row, lo_row = await wait_case(pg_pool, high.contact_id), await wait_case(pg_pool, low.contact_id)
    assert hi_row["priority"] == 1
    assert lo_row["priority"] > 1
    # make ours the oldest high-priority case of the shared session database
    old = datetime(2001, 1, 1, tzinfo=UTC)
    await pg_pool.execute(
        "UPDATE cases SET opened_at=$2, sla_due_at=$3, sla_alerted_at=now() WHERE case_id=$1",
        hi_row["case_id"],
        old,
        old + timedelta(hours=1),
    )
    agent = f"ana-{unique}"
    token = issue_agent_token(infra.agent_token_keyset(), agent, ["risk", "billing", "enterprise"])

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        await page.goto(f"http://127.0.0.1:{console.http_port}/console")
        await page.fill("#token", token)
        await page.click("#signin-button")
        await page.wait_for_selector("tr.case-row")
        assert agent in await page.inner_text("#who")
        first = page.locator("tr.case-row").first
        assert await first.get_attribute("data-priority") == "1"
        assert await first.get_attribute("data-case-id") == hi_row["case_id"]
        await first.click()
        await page.wait_for_selector("#detail-body:not(.hidden)")
        assert "card_declined_fraud" in await page.inner_text("#diagnosis")
        assert "I never made" in await page.inner_text("#transcript")
        assert "explain_charge" in await page.inner_text("#actions-tried")
        assert "block the card" in await page.inner_text("#next-step")
        await page.click("#claim")
        await page.wait_for_function("document.getElementById('claim-status').textContent.includes('you')")
        await page.fill(
            "#resolution-note", "Confirmed fraud with the customer; card blocked, charge disputed"
        )
        await page.check("#publish-article")
        await page.fill("#article-title", f"Unrecognized charge flagged as fraud {unique}")
        await page.fill("#article-body", "Confirm with the customer, block the card, open a dispute.")
        await page.click("#resolve-button")
        await page.wait_for_function(
            "document.getElementById('resolve-status').textContent.includes('resolved')"
        )
        await page.screenshot(path=str(test_output / "console.png"), full_page=True)
        await browser.close()

    row = await pg_pool.fetchrow("SELECT * FROM cases WHERE case_id=$1", hi_row["case_id"])
    assert row["status"] == "resolved"
    assert row["assignee"] == agent
    assert row["resolution_note"].startswith("Confirmed fraud")
    assert (test_output / "console.png").stat().st_size > 10_000
