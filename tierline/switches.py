"""Operators' switches: the money kill switch and the spend breaker that trips it (issue 24).

``tierline pause money`` stops every automatic money action at once without stopping the pipeline: the
executor (``tierline.actions``) reads the switch (cached for at most :attr:`MoneySwitch.TTL_S`), and an
automatic refund, payment retry or plan change that charges more is not executed while it is paused; the
contact goes to a person with reason ``money_paused``. Actions of people (tier 3) are not held.

The spend breaker trips the same switch when the automatic refunds of the last hour (the action ledger)
with the one about to run would pass the policy's ``breaker.refunds_per_hour_usd``, and raises
``ops.alert.raised.v1``. Every change of a switch is stored in Postgres (``ops_switches``: who, why,
when) and published as an audit event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, Field

from schemas import Action, derived_id
from schemas.messages import AlertPayload, AlertRaisedV1, AuditEventPayload, AuditEventRecordedV1

log = structlog.get_logger(__name__)

MONEY = "money"
SWITCHES = (MONEY,)

#: The rule named in the decision record of an action the paused switch held.
MONEY_PAUSED_RULE = "ops.money_paused"

#: What the switch holds: actions that move money. A plan change only when it charges more.
MONEY_ACTIONS: frozenset[Action] = frozenset({Action.REFUND, Action.RETRY_PAYMENT, Action.CHANGE_PLAN})

#: The contact id and partition key of operators' audit events and alerts (not a customer's).
OPS_CONTACT = "ops:switches"
OPS_KEY = "ops"


def is_money_action(action: Action, *, actor: str, price_increase_usd: float = 0.0) -> bool:
    """Whether the money switch holds this action: automatic (not a person) and moving money."""
    if actor == "human" or action not in MONEY_ACTIONS:
        return False
    return action is not Action.CHANGE_PLAN or price_increase_usd > 0


@dataclass(frozen=True)
class SwitchState:
    name: str
    paused: bool = False
    reason: str = ""
    actor: str = ""
    changed_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "paused": self.paused,
            "reason": self.reason,
            "actor": self.actor,
            "changed_at": self.changed_at.isoformat() if self.changed_at else None,
            "details": self.details,
        }


class SwitchView(BaseModel):
    """A switch as the console and the CLI show it."""

    name: str
    paused: bool
    reason: str = ""
    actor: str = ""
    changed_at: datetime | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class SwitchesView(BaseModel):
    money: SwitchView


class UnknownSwitch(ValueError):
    """Only the switches in ``SWITCHES`` exist."""


def _state(name: str, row: Any) -> SwitchState:
    if row is None:
        return SwitchState(name)
    return SwitchState(
        name=name,
        paused=bool(row["paused"]),
        reason=row["reason"],
        actor=row["actor"],
        changed_at=row["changed_at"],
        details=dict(row["details"] or {}),
    )


async def read(pool: asyncpg.Pool, name: str = MONEY) -> SwitchState:
    row = await pool.fetchrow(
        "SELECT paused, reason, actor, details, changed_at FROM ops_switches WHERE name=$1", name
    )
    return _state(name, row)


async def set_switch(
    pool: asyncpg.Pool,
    broker: KafkaBroker | None,
    *,
    name: str,
    paused: bool,
    actor: str,
    reason: str,
    details: dict[str, Any] | None = None,
) -> tuple[SwitchState, bool]:
    """Pause or resume a switch; ``(state, changed)``. A change is audited (``broker``: published now;
    ``None``: the caller publishes :func:`audit_event` itself); setting the state it has changes nothing."""
    if name not in SWITCHES:
        raise UnknownSwitch(f"no switch {name!r} (switches: {', '.join(SWITCHES)})")
    row = await pool.fetchrow(
        """INSERT INTO ops_switches (name, paused, reason, actor, details, changed_at)
           VALUES ($1, $2, $3, $4, $5, now())
           ON CONFLICT (name) DO UPDATE SET paused=EXCLUDED.paused, reason=EXCLUDED.reason,
               actor=EXCLUDED.actor, details=EXCLUDED.details, changed_at=EXCLUDED.changed_at
             WHERE ops_switches.paused IS DISTINCT FROM EXCLUDED.paused
           RETURNING paused, reason, actor, details, changed_at""",
        name,
        paused,
        reason,
        actor,
        details or {},
    )
    if row is None:
        return await read(pool, name), False
    state = _state(name, row)
    log.warning(
        "ops.switch.paused" if paused else "ops.switch.resumed", switch=name, actor=actor, reason=reason
    )
    if broker is not None:
        from tierline.messaging import publish

        await publish(broker, audit_event(state))
    return state, True


def audit_event(state: SwitchState) -> AuditEventRecordedV1:
    """The audit record of one change of a switch (its id derived from the change: published once)."""
    verb = "paused" if state.paused else "resumed"
    when = state.changed_at.isoformat() if state.changed_at else ""
    return AuditEventRecordedV1.build(
        AuditEventPayload(
            actor=state.actor,
            action=f"ops.{state.name}.{verb}",
            target=state.name,
            decision=verb,
            details={"reason": state.reason, **state.details},
        ),
        contact_id=OPS_CONTACT,
        customer_id=OPS_KEY,
        message_id=derived_id("ops.switch", state.name, verb, when),
    )


class MoneySwitch:
    """The executor's view of the money switch: read from Postgres at most every ``TTL_S`` seconds, so a
    pause takes effect in every process within that time."""

    TTL_S = 1.0

    def __init__(self, pool: asyncpg.Pool, clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.clock = clock
        self._cached: tuple[float, SwitchState] | None = None

    async def state(self) -> SwitchState:
        now = self.clock()
        if self._cached is not None and now < self._cached[0]:
            return self._cached[1]
        state = await read(self.pool, MONEY)
        self._cached = (now + self.TTL_S, state)
        return state

    def remember(self, state: SwitchState) -> None:
        """A change this process made is seen at once (the breaker that tripped it)."""
        self._cached = (self.clock() + self.TTL_S, state)


# ------------------------------------------------------------------------------------------ spend breaker
BREAKER_ACTOR = "breaker:refunds_per_hour"


async def refunds_last_hour_usd(pool: asyncpg.Pool) -> Decimal:
    """Automatic refunds of the last hour (succeeded, or in flight), from the action ledger."""
    total = await pool.fetchval(
        """SELECT COALESCE(sum(amount_usd), 0) FROM action_ledger
           WHERE action = 'refund' AND status IN ('succeeded', 'pending') AND actor <> 'human'
             AND updated_at > now() - interval '1 hour'"""
    )
    return Decimal(str(total))


def breaker_trips(spent_usd: Decimal, amount_usd: float, limit_usd: Decimal | None) -> bool:
    """Whether this refund would take the hour's automatic refunds past the limit (pure)."""
    if limit_usd is None:
        return False
    return spent_usd + Decimal(str(amount_usd)).quantize(Decimal("0.01")) > limit_usd


async def trip_breaker(
    pool: asyncpg.Pool,
    broker: KafkaBroker,
    *,
    spent_usd: Decimal,
    amount_usd: float,
    limit_usd: Decimal,
    customer_id: str,
    contact_id: str,
) -> SwitchState:
    """Pause money (audited) and raise ``ops.alert.raised.v1`` (once per trip)."""
    from tierline.messaging import publish

    details = {
        "refunds_last_hour_usd": float(spent_usd),
        "refund_held_usd": amount_usd,
        "limit_usd": float(limit_usd),
        "customer_id": customer_id,
        "contact_id": contact_id,
    }
    state, changed = await set_switch(
        pool,
        broker,
        name=MONEY,
        paused=True,
        actor=BREAKER_ACTOR,
        reason=(
            f"automatic refunds of the last hour (${spent_usd:.2f}) with ${amount_usd:.2f} more would pass "
            f"${limit_usd:.2f}"
        ),
        details=details,
    )
    if changed:
        when = state.changed_at.isoformat() if state.changed_at else ""
        await publish(
            broker,
            AlertRaisedV1.build(
                AlertPayload(
                    kind="spend_breaker",
                    subject="refunds_per_hour_usd",
                    observed=float(spent_usd) + amount_usd,
                    expected=float(limit_usd),
                    threshold=float(limit_usd),
                    details={**details, "switch": MONEY, "paused": True},
                ),
                contact_id=OPS_CONTACT,
                customer_id=OPS_KEY,
                message_id=derived_id("ops.alert", "spend_breaker", when),
            ),
        )
        log.error("ops.breaker.tripped", **details)
    return state
