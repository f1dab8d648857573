"""What every stage does the same way: start a contact, audit an action, record the one outcome."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import Envelope, Tier, derived_id
from schemas.messages import (
    AuditEventPayload,
    AuditEventRecordedV1,
    EscalationOpenedPayload,
    EscalationOpenedV1,
    OutcomeRecordedPayload,
    OutcomeRecordedV1,
)
from tierline import metrics
from tierline.messaging import publish
from tierline.safetext import safe_text

log = structlog.get_logger(__name__)


class CostModel(BaseSettings):
    """Cost of one contact by the tier that resolved it (defaults from public figures)."""

    model_config = SettingsConfigDict(env_prefix="TIERLINE_COST_", extra="ignore")

    tier0: float = 0.0
    tier1: float = 0.10
    tier2: float = 0.20
    tier3: float = 8.00

    def cost(self, resolved_by: Tier, tier_path: list[Tier]) -> float:
        """The resolving tier's cost plus the automated tiers tried on the way (at least the tier's own)."""
        per = {Tier.TIER0: self.tier0, Tier.TIER1: self.tier1, Tier.TIER2: self.tier2, Tier.TIER3: self.tier3}
        steps = set(tier_path) | {resolved_by}
        return round(sum(per[t] for t in steps), 4)


async def start_contact(
    pool: asyncpg.Pool | asyncpg.Connection,
    *,
    contact_id: str,
    customer_id: str,
    trigger: str,
    channel: str | None,
    started_at: datetime | None = None,
) -> None:
    await pool.execute(
        """INSERT INTO contacts (contact_id, customer_id, trigger, channel, started_at)
           VALUES ($1,$2,$3,$4,$5) ON CONFLICT (contact_id) DO NOTHING""",
        contact_id,
        customer_id,
        trigger,
        channel,
        started_at or datetime.now(UTC),
    )


async def set_contact_intent(pool: asyncpg.Pool, contact_id: str, intent: str, confidence: float) -> None:
    await pool.execute(
        "UPDATE contacts SET intent=$2, confidence=$3 WHERE contact_id=$1", contact_id, intent, confidence
    )


async def contact_latency_ms(pool: asyncpg.Pool, contact_id: str) -> int:
    started = await pool.fetchval("SELECT started_at FROM contacts WHERE contact_id=$1", contact_id)
    if started is None:
        return 0
    return max(0, int((datetime.now(UTC) - started).total_seconds() * 1000))


async def audit(
    broker: KafkaBroker,
    *,
    cause: Envelope[Any],
    actor: str,
    action: str,
    target: str | None = None,
    decision: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEventRecordedV1:
    """Append one record to the audit topic (id derived from the cause: replays don't duplicate it).

    The tamper-evident hash chain is computed per partition by the audit sink, in log order.
    """
    msg = AuditEventRecordedV1.build(
        AuditEventPayload(
            actor=actor, action=action, target=target, decision=decision, details=details or {}
        ),
        contact_id=cause.contact_id,
        customer_id=cause.customer_id,
        cause=cause,
        role=f"audit:{actor}:{action}:{target}:{decision}",
    )
    await publish(broker, msg)
    return msg


def outcome_message_id(contact_id: str) -> Any:
    return derived_id("outcome", contact_id)


async def record_outcome(
    pool: asyncpg.Pool,
    broker: KafkaBroker,
    *,
    cause: Envelope[Any],
    payload: OutcomeRecordedPayload,
    costs: CostModel | None = None,
) -> OutcomeRecordedV1:
    """Record the contact's one terminal outcome. The first writer wins; a later call re-publishes it."""
    costs = costs or CostModel()
    latency = await contact_latency_ms(pool, cause.contact_id)
    payload = payload.model_copy(
        update={
            "latency_ms": payload.latency_ms or latency,
            "cost_usd": payload.cost_usd or costs.cost(payload.resolved_by, payload.tier_path),
        }
    )
    msg = OutcomeRecordedV1.build(
        payload,
        contact_id=cause.contact_id,
        customer_id=cause.customer_id,
        cause=cause,
        message_id=outcome_message_id(cause.contact_id),
    )
    row = await pool.fetchrow(
        """INSERT INTO outcomes (contact_id, customer_id, message_id, resolved_by, message)
           VALUES ($1,$2,$3,$4,$5) ON CONFLICT (contact_id) DO NOTHING RETURNING contact_id""",
        cause.contact_id,
        cause.customer_id,
        msg.message_id,
        payload.resolved_by.value,
        json.loads(msg.model_dump_json()),
    )
    if row is None:
        stored = await pool.fetchval("SELECT message FROM outcomes WHERE contact_id=$1", cause.contact_id)
        msg = OutcomeRecordedV1.model_validate(stored)
        log.info("outcome.already_recorded", contact_id=cause.contact_id, resolved_by=msg.payload.resolved_by)
    else:
        metrics.OUTCOMES.labels(payload.resolved_by.value).inc()
        log.info(
            "outcome.recorded",
            contact_id=cause.contact_id,
            resolved_by=payload.resolved_by,
            actions=[a.value for a in payload.actions],
        )
    await publish(broker, msg)
    return msg


async def escalate(
    broker: KafkaBroker,
    *,
    cause: Envelope[Any],
    payload: EscalationOpenedPayload,
) -> EscalationOpenedV1:
    """Hand the contact to a human (Tier 3) with everything known so far."""
    msg = EscalationOpenedV1.build(
        payload,
        contact_id=cause.contact_id,
        customer_id=cause.customer_id,
        cause=cause,
        message_id=derived_id("escalation", cause.contact_id),
    )
    await publish(broker, msg)
    log.info("escalation.opened", contact_id=cause.contact_id, reason=payload.reason, by=payload.opened_by)
    return msg


async def escalate_failed_message(
    broker: KafkaBroker, body: dict[str, Any], error: BaseException, *, opened_by: Tier | str
) -> EscalationOpenedV1:
    """A contact whose message could not be processed still reaches a human (reason ``error``)."""
    import uuid

    from schemas import EscalationReason

    raw_payload = body.get("payload")
    payload: dict[str, Any] = raw_payload if isinstance(raw_payload, dict) else {}
    text = payload.get("text") if isinstance(payload.get("text"), str) else None
    if text is not None:  # what failed may be huge or hold NUL bytes: the case gets a bounded, safe copy
        text = safe_text(text, 20_000)[0]
    try:
        cause_id: uuid.UUID | None = uuid.UUID(str(body.get("message_id")))
    except ValueError:
        cause_id = None
    msg = EscalationOpenedV1(
        message_id=derived_id("escalation", body["contact_id"]),
        type=EscalationOpenedV1.TOPIC,
        contact_id=str(body["contact_id"]),
        customer_id=str(body["customer_id"]),
        causation_id=cause_id,
        payload=EscalationOpenedPayload(
            reason=EscalationReason.ERROR,
            opened_by=opened_by,  # type: ignore[arg-type]
            text=text,
            suggested_next_step=f"Processing failed ({type(error).__name__}); answer the customer and check "
            "the dead-letter record for this contact.",
        ),
    )
    await publish(broker, msg)
    log.warning("escalation.opened_after_failure", contact_id=msg.contact_id, error_type=type(error).__name__)
    return msg
