"""Never a dead end, actively: a contact with no outcome after a bound is handed to a person.

Every contact ends in exactly one outcome. When one has none long after it started (its message was
lost, or it is stuck behind a failure nobody saw), the sweeper publishes an escalation with reason
``error`` for it; Tier 3 opens the case and records the outcome (first writer wins). The escalation's id
and time are derived from the contact, so a repeated sweep, or a second replica sweeping at the same
time, publishes an identical message. Each contact swept is logged (``sweeper.contact.escalated``),
audited, counted in ``swept_contacts`` (once, whichever replica) and in the health of the service
running the sweeper.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import EscalationReason, Intent, Tier, derived_id
from schemas.messages import EscalationOpenedPayload, EscalationOpenedV1
from tierline.messaging import publish
from tierline.pipeline import audit

log = structlog.get_logger(__name__)

ACTOR = "sweeper"


class SweeperSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIERLINE_SWEEPER_", extra="ignore")

    enabled: bool = True
    interval_s: float = 60.0
    bound_s: float = 300.0
    batch: int = 200


@dataclass(frozen=True)
class OpenContact:
    """A contact the database shows without an outcome."""

    contact_id: str
    customer_id: str
    trigger: str
    channel: str | None
    started_at: datetime
    intent: str | None = None


# --------------------------------------------------------------------------- pure decisions
def overdue(contacts: Sequence[OpenContact], *, now: datetime, bound: timedelta) -> list[OpenContact]:
    """The contacts that have waited longer than ``bound`` for an outcome, oldest first."""
    return sorted((c for c in contacts if now - c.started_at > bound), key=lambda c: c.started_at)


def sweep_message_id(contact_id: str) -> Any:
    return derived_id("sweeper", "escalation", contact_id)


def sweep_escalation(contact: OpenContact, *, bound: timedelta) -> EscalationOpenedV1:
    """The escalation for an overdue contact: identical however often and wherever it is built."""
    intent = contact.intent if contact.intent in Intent.__members__.values() else None
    minutes = bound.total_seconds() / 60
    return EscalationOpenedV1.build(
        EscalationOpenedPayload(
            reason=EscalationReason.ERROR,
            opened_by=Tier.TIER3,
            intent=Intent(intent) if intent else None,
            suggested_next_step=(
                f"No outcome {minutes:g} min after this {contact.trigger} contact started: it was lost or "
                "stuck in the pipeline. Answer the customer and check the contact's trace and dead letters."
            ),
            contact_started_at=contact.started_at,
        ),
        contact_id=contact.contact_id,
        customer_id=contact.customer_id,
        message_id=sweep_message_id(contact.contact_id),
        occurred_at=contact.started_at + bound,
    )


# --------------------------------------------------------------------------- I/O
OPEN_CONTACTS_SQL = """
SELECT c.contact_id, c.customer_id, c.trigger, c.channel, c.started_at, c.intent
FROM contacts c
WHERE c.started_at < $1
  AND NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.contact_id = c.contact_id)
ORDER BY c.started_at
LIMIT $2
"""


class ContactSweeper:
    """Finds overdue contacts in Postgres and hands each to a person; counts what it swept."""

    def __init__(
        self, pool: asyncpg.Pool, broker: KafkaBroker, settings: SweeperSettings, *, swept_by: str
    ) -> None:
        self.pool = pool
        self.broker = broker
        self.settings = settings
        self.swept_by = swept_by
        self.swept_since_start = 0
        self.last_sweep_at: datetime | None = None
        self.last_error: str | None = None

    @property
    def bound(self) -> timedelta:
        return timedelta(seconds=self.settings.bound_s)

    async def open_contacts(self, now: datetime) -> list[OpenContact]:
        rows = await self.pool.fetch(OPEN_CONTACTS_SQL, now - self.bound, self.settings.batch)
        return [OpenContact(**dict(r)) for r in rows]

    async def sweep_once(self, now: datetime | None = None) -> list[str]:
        """One pass: escalate every overdue contact; returns the contact ids escalated in this pass."""
        now = now or datetime.now(UTC)
        escalated = []
        for contact in overdue(await self.open_contacts(now), now=now, bound=self.bound):
            msg = sweep_escalation(contact, bound=self.bound)
            await publish(self.broker, msg)
            first = await self.pool.fetchval(
                """INSERT INTO swept_contacts (contact_id, customer_id, message_id, swept_by)
                   VALUES ($1, $2, $3, $4) ON CONFLICT (contact_id) DO NOTHING RETURNING true""",
                contact.contact_id,
                contact.customer_id,
                msg.message_id,
                self.swept_by,
            )
            if first:  # once per contact, whichever replica or pass got there first
                await audit(
                    self.broker,
                    cause=msg,
                    actor=ACTOR,
                    action="contact.swept",
                    target=contact.contact_id,
                    decision=EscalationReason.ERROR.value,
                    details={"trigger": contact.trigger, "bound_s": self.settings.bound_s},
                )
                self.swept_since_start += 1
            log.warning(
                "sweeper.contact.escalated",
                contact_id=contact.contact_id,
                customer_id=contact.customer_id,
                trigger=contact.trigger,
                started_at=contact.started_at.isoformat(),
                first=bool(first),
            )
            escalated.append(contact.contact_id)
        self.last_sweep_at = now
        self.last_error = None
        return escalated

    async def run(self) -> None:
        """Sweep every interval until cancelled; a failed pass (broker or database down) is retried."""
        while True:
            await asyncio.sleep(self.settings.interval_s)
            try:
                await self.sweep_once()
            except Exception as exc:  # noqa: BLE001 - reported in health, retried next interval
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.error("sweeper.pass_failed", error=self.last_error)

    async def health(self) -> tuple[bool, str]:
        """Always ok (a failed pass is retried); the figure operators read: contacts swept so far."""
        if not self.settings.enabled:
            return True, "disabled (TIERLINE_SWEEPER_ENABLED=false)"
        detail = (
            f"swept {self.swept_since_start} contacts since start "
            f"(no outcome after {self.settings.bound_s:g} s)"
        )
        if self.last_error:
            detail += f"; last pass failed: {self.last_error}"
        return True, detail
