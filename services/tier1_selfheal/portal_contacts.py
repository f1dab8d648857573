"""Portal saves as contacts (issue 21): a change the customer made in the portal (billing details, card) is a
contact of its own, done by self-service: the contact (trigger ``selfheal``, channel ``dashboard``), a
conversation holding the customer's turn (resolved at once: nobody needs to answer it) and the one outcome,
resolved by Tier 1 — the path the Health Meter's one-click fixes take (``handlers.settle`` →
``record_outcome``), so deflection per workflow and the customer's history count it. Plan changes and
cancellations already go through that path (``portal_plan.submit`` → the selfheal consumer).

Every step is idempotent on the contact id (derived from the request): a retried save records nothing twice.
"""

from __future__ import annotations

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from schemas import Intent, Tier
from schemas.messages import OutcomeRecordedPayload
from schemas.vocab import Channel
from tierline import conversations
from tierline.actions import ActionContext, ActionOutcome
from tierline.pipeline import record_outcome, start_contact

log = structlog.get_logger(__name__)


async def record_portal_save(
    pool: asyncpg.Pool,
    broker: KafkaBroker,
    ctx: ActionContext,
    outcome: ActionOutcome,
    *,
    what: str,
    intent: Intent = Intent.UPDATE_BILLING_DETAILS,
) -> None:
    """Record a saved portal change (``outcome`` succeeded) as a self-service contact. Never raises: the
    change itself went through, and the page must say so; a failure here is logged."""
    try:
        await start_contact(
            pool,
            contact_id=ctx.contact_id,
            customer_id=ctx.customer_id,
            trigger="selfheal",
            channel=Channel.DASHBOARD.value,
        )
        conversation = await conversations.open_conversation(
            pool,
            conversation_id=ctx.contact_id,
            customer_id=ctx.customer_id,
            channel=Channel.DASHBOARD,
            subject=f"Changed in the billing portal: {what}",
        )
        await conversations.attach_contact(pool, contact_id=ctx.contact_id, conversation_id=ctx.contact_id)
        await conversations.record_customer_turn(
            pool,
            conversation_id=conversation.conversation_id,
            message_id=ctx.cause.message_id,
            contact_id=ctx.contact_id,
            text=f"I changed my {what} in the billing portal.",
        )
        await conversations.set_status(pool, conversation.conversation_id, "resolved")
        await record_outcome(
            pool,
            broker,
            cause=ctx.cause,
            payload=OutcomeRecordedPayload(
                resolved_by=Tier.TIER1,
                tier_path=[Tier.TIER1],
                intent=intent,
                actions=[outcome.action],
                channel=Channel.DASHBOARD,
                trigger="selfheal",
                summary=f"The customer changed their {what} in the billing portal."[:2000],
            ),
        )
    except Exception as exc:  # noqa: BLE001 - the change is saved; only its bookkeeping as a contact failed
        log.error(
            "tier1.portal.save_contact_failed",
            contact_id=ctx.contact_id,
            error=f"{type(exc).__name__}: {exc}"[:300],
        )
        return
    log.info("tier1.portal.save_recorded", contact_id=ctx.contact_id, action=outcome.action.value)
