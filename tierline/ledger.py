"""The action ledger: every external action (retry, refund, link, email) happens once.

The key is derived from (contact, action, target). Execution holds a transaction-scoped advisory
lock on the key, so two replicas serialise; a finished key returns its recorded result without
acting again. Because the Stripe emulator ignores idempotency keys, a crash between the Stripe call
and the ledger write is covered by ``reconcile``: before acting again, ask the outside world whether
the effect already happened (e.g. a refund carrying this key in its metadata).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger(__name__)


def idempotency_key(contact_id: str, action: str, target: str | None) -> str:
    raw = f"{contact_id}|{action}|{target or '-'}"
    return f"tl_{action}_{hashlib.sha256(raw.encode()).hexdigest()[:32]}"


@dataclass(frozen=True)
class LedgerResult:
    key: str
    status: str  # succeeded | failed | denied
    result: dict[str, Any]
    error: str | None
    replayed: bool

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


class ActionFailed(Exception):
    """A business failure of an action (card declined again, link unavailable): recorded, not retried."""

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result or {}


class ActionLedger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, key: str) -> LedgerResult | None:
        row = await self.pool.fetchrow("SELECT * FROM action_ledger WHERE idempotency_key = $1", key)
        if row is None or row["status"] == "pending":
            return None
        return LedgerResult(key, row["status"], row["result"], row["error"], True)

    async def record_denied(
        self,
        *,
        key: str,
        contact_id: str,
        customer_id: str,
        action: str,
        target: str | None,
        tier: str,
        actor: str,
        reason: str,
        amount_usd: float = 0.0,
    ) -> LedgerResult:
        await self.pool.execute(
            """INSERT INTO action_ledger (idempotency_key, contact_id, customer_id, action, target, tier,
                   actor, status, amount_usd, error, attempts)
               VALUES ($1,$2,$3,$4,$5,$6,$7,'denied',$8,$9,0) ON CONFLICT (idempotency_key) DO NOTHING""",
            key,
            contact_id,
            customer_id,
            action,
            target,
            tier,
            actor,
            amount_usd,
            reason,
        )
        return LedgerResult(key, "denied", {}, reason, False)

    async def execute(
        self,
        *,
        key: str,
        contact_id: str,
        customer_id: str,
        action: str,
        target: str | None,
        tier: str,
        actor: str,
        effect: Callable[[], Awaitable[dict[str, Any]]],
        amount_usd: float = 0.0,
        reconcile: Callable[[], Awaitable[dict[str, Any] | None]] | None = None,
    ) -> LedgerResult:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)
            row = await conn.fetchrow("SELECT * FROM action_ledger WHERE idempotency_key = $1", key)
            if row is not None and row["status"] != "pending":
                log.info("ledger.replayed", key=key, action=action, status=row["status"])
                return LedgerResult(key, row["status"], row["result"], row["error"], True)
            if row is None:
                await conn.execute(
                    """INSERT INTO action_ledger (idempotency_key, contact_id, customer_id, action, target,
                           tier, actor, status, amount_usd) VALUES ($1,$2,$3,$4,$5,$6,$7,'pending',$8)""",
                    key,
                    contact_id,
                    customer_id,
                    action,
                    target,
                    tier,
                    actor,
                    amount_usd,
                )
            prior = await reconcile() if reconcile is not None else None
            status, result, error = "succeeded", prior or {}, None
            if prior is None:
                try:
                    result = await effect()
                except ActionFailed as exc:
                    status, result, error = "failed", exc.result, str(exc)
            await conn.execute(
                """UPDATE action_ledger
                   SET status=$2, result=$3, error=$4, attempts=attempts+1, updated_at=now()
                   WHERE idempotency_key=$1""",
                key,
                status,
                result,
                error,
            )
            log.info("ledger.executed", key=key, action=action, status=status, reconciled=prior is not None)
            return LedgerResult(key, status, result, error, False)

    async def count_recent(
        self, customer_id: str, action: str, days: int, *, exclude_contact: str | None = None
    ) -> int:
        return int(
            await self.pool.fetchval(
                """SELECT count(*) FROM action_ledger
                   WHERE customer_id=$1 AND action=$2 AND status='succeeded'
                     AND created_at > now() - make_interval(days => $3)
                     AND ($4::text IS NULL OR contact_id <> $4)""",
                customer_id,
                action,
                days,
                exclude_contact,
            )
        )
