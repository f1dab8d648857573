"""Real customers' texts through the real doors: messy emails (greeting, signature, quoted thread),
several asks in one message, and vague texts read with the diagnosis (the whole pipeline in-process on
the real broker, Postgres, chDB, Qdrant local and the Stripe emulator)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tierline_tools.scenarios.model import Scenario, check
from tierline_tools.scenarios.runner import ScenarioRunner, run_all

pytestmark = pytest.mark.integration

GMAIL_THREAD = """Hi team,

And the invoice for last month please, for our books.

Thanks,
Maria

Maria Lopez | Finance Manager | Acme Ltd
+1 (555) 123-4567 | www.acme.example

On Mon, Nov 3, 2026 at 9:14 AM Tierline Support <support@tierline.io> wrote:
> Hi Maria, sorry about the double charge on your card. We have refunded the duplicate payment of
> $49.00; it will show on your statement in 5-10 days.
>
> > On Sun, Nov 2, 2026, Maria Lopez <maria@acme.example> wrote:
> > You charged my card twice this month! I want my money back for the second payment.
"""

OUTLOOK_THREAD = """Hi,

Can I get last month's invoice too?

Best regards,
Maria Lopez
Finance Manager, Acme Ltd
Tel: +1 (555) 123-4567

-----Original Message-----
From: Tierline Support <support@tierline.io>
Sent: Monday, November 3, 2026 9:14 AM
To: Maria Lopez <maria@acme.example>
Subject: RE: charged twice

Hi Maria, sorry about the double charge on your card. We have refunded the duplicate payment of $49.00.

From: Maria Lopez
Sent: Sunday, November 2, 2026
You charged my card twice this month! I want my money back for the second payment, and I want to cancel.
"""

PAID_LAST_MONTH: dict[str, Any] = {
    "customer": {"plan": "pro"},
    "charges": [{"amount_usd": 49, "days_ago": 12}],
}
PAST_DUE_EXPIRED_CARD: dict[str, Any] = {
    "customer": {"plan": "starter", "tenure_days": 90},
    "card": "expired",
    "subscription": {"status": "past_due", "monthly_usd": 19},
    "failed_invoice": {"amount_usd": 19, "days_ago": 2, "decline_code": "expired_card"},
}
PAST_DUE_SOFT_DECLINE: dict[str, Any] = {
    "customer": {"plan": "pro"},
    "card": "visa",
    "subscription": {"status": "past_due", "monthly_usd": 49},
    "failed_invoice": {"amount_usd": 49, "days_ago": 1, "decline_code": "insufficient_funds"},
}


def scenario(sid: str, world: dict[str, Any], text: str, channel: str, **expect: Any) -> Scenario:
    return Scenario.model_validate(
        {"id": sid, "world": world, "contact": {"channel": channel, "text": text}, "expect": expect}
    )


@pytest.fixture(scope="module")
async def runner(stack, infra, pipeline) -> AsyncIterator[ScenarioRunner]:  # type: ignore[no-untyped-def]
    ingress = f"http://127.0.0.1:{stack.service_ports['tier0_prevent']}"
    async with ScenarioRunner(infra, ingress_url=ingress, timeout_s=60) as r:
        yield r


async def run_and_check(runner: ScenarioRunner, scenarios: list[Scenario]) -> list[Any]:
    results = await run_all(runner, scenarios, concurrency=3)
    failures = {
        r.id: (check(s, r), r.model_dump()) for s, r in zip(scenarios, results, strict=True) if check(s, r)
    }
    assert not failures, failures
    return results


async def test_given_emails_with_greeting_signature_and_quoted_thread_when_received_then_invoice_sent(
    runner: ScenarioRunner,
) -> None:
    """Given an email whose new words ask for last month's invoice under a quoted thread about a double
    charge and a refund, When it comes in through the email door, Then Tier 1/2 sends the invoice: the
    quoted history and the signature are not read as the customer's ask."""
    await run_and_check(
        runner,
        [
            scenario(
                "messy-gmail-invoice",
                PAID_LAST_MONTH,
                GMAIL_THREAD,
                "email",
                resolved_by=["tier1", "tier2"],
                actions_include=["send_invoice"],
                actions_exclude=["refund", "escalate"],
            ),
            scenario(
                "messy-outlook-invoice",
                PAID_LAST_MONTH,
                OUTLOOK_THREAD,
                "email",
                resolved_by=["tier1", "tier2"],
                actions_include=["send_invoice"],
                actions_exclude=["refund", "escalate", "cancel_subscription"],
            ),
        ],
    )


async def test_given_a_card_link_and_an_invoice_in_one_message_when_received_then_both_in_one_outcome(
    runner: ScenarioRunner,
) -> None:
    """Given one message asking for a new card link and last month's invoice (one line, and as a
    bulleted email), When it comes in, Then the same contact ends in one outcome listing both actions."""
    results = await run_and_check(
        runner,
        [
            scenario(
                "several-asks-chat",
                PAID_LAST_MONTH,
                "Hi, can you send me a new card link and last month's invoice? Thanks, Bo",
                "chat",
                resolved_by=["tier1", "tier2"],
                actions_include=["send_update_card_link", "send_invoice"],
                actions_exclude=["refund", "escalate", "retry_payment"],
            ),
            scenario(
                "several-asks-bullets",
                PAID_LAST_MONTH,
                "Hello,\n\nTwo things:\n- send me a link to update my card\n- resend last month's invoice\n\n"
                "Thanks!\nLee\n\nSent from my iPhone",
                "email",
                resolved_by=["tier1", "tier2"],
                actions_include=["send_update_card_link", "send_invoice"],
                actions_exclude=["refund", "escalate"],
            ),
        ],
    )
    for result in results:
        assert result.actions.index("send_update_card_link") < result.actions.index("send_invoice")


async def test_given_a_question_for_the_agent_and_an_invoice_ask_when_received_then_tier2_sends_it_too(
    runner: ScenarioRunner,
) -> None:
    """Given one message with a payment-methods question (Tier 2's) and a request for last month's
    invoice, When it comes in, Then the agent answers (or hands the question to a person) and the
    invoice is sent as well, listed in the contact's one outcome."""
    await run_and_check(
        runner,
        [
            scenario(
                "several-asks-tier2",
                PAID_LAST_MONTH,
                "Can I pay by bank transfer instead of card, and can you send me last month's invoice?",
                "chat",
                resolved_by=["tier2", "tier3"],
                actions_include=["send_invoice"],
                actions_exclude=["refund", "retry_payment", "cancel_subscription"],
            ),
        ],
    )


async def test_given_a_money_ask_beside_an_invoice_ask_when_received_then_invoice_sent_and_a_person_decides(
    runner: ScenarioRunner,
) -> None:
    """Given one message asking for last month's invoice and, in a second sentence, a refund, When it
    comes in, Then the invoice is sent and the contact goes to a person for the refund: a money ask is
    never done on the side."""
    await run_and_check(
        runner,
        [
            scenario(
                "several-asks-money-side",
                PAID_LAST_MONTH,
                "Send me last month's invoice. Also I want a refund for the charge on the 3rd.",
                "chat",
                resolved_by="tier3",
                actions_include=["send_invoice"],
                actions_exclude=["refund"],
                refund_usd_max=0,
            ),
        ],
    )


async def test_given_vague_texts_from_red_customers_when_received_then_the_diagnosis_fix_not_a_person(
    runner: ScenarioRunner,
) -> None:
    """Given a past-due customer with an expired card who cannot get into the dashboard, and one with a
    soft-declined payment who cannot log in, When they write, Then each gets the diagnosis'
    fix (an update-card link; a retry); a truly out-of-scope text from the same red customer still goes
    to a person as out of scope."""
    await run_and_check(
        runner,
        [
            scenario(
                "vague-expired-card",
                PAST_DUE_EXPIRED_CARD,
                "why can't I get into my dashboard",
                "chat",
                resolved_by="tier1",
                actions_include=["send_update_card_link"],
                actions_exclude=["retry_payment", "refund", "escalate"],
            ),
            scenario(
                "vague-soft-decline",
                PAST_DUE_SOFT_DECLINE,
                "Hello, I can't log in to our workspace anymore.\n\nBest,\nKim",
                "chat",
                resolved_by="tier1",
                actions_include=["retry_payment"],
                actions_exclude=["refund", "escalate"],
            ),
            scenario(
                "red-but-out-of-scope",
                PAST_DUE_EXPIRED_CARD,
                "what's the weather in Seoul tomorrow",
                "chat",
                resolved_by="tier3",
                escalation_reason_any=["out_of_scope"],
                actions_exclude=["send_update_card_link", "retry_payment", "refund"],
            ),
        ],
    )
