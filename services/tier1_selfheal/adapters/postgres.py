"""Postgres adapters: Tier 1's request log and the live status of a contact (outcomes, cases)."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.tier1_selfheal.ports import RequestRecord

#: Tier 1's own table (created idempotently at start under an advisory lock; one row per contact).
SCHEMA = """
CREATE TABLE IF NOT EXISTS tier1_requests (
    contact_id  text        PRIMARY KEY,
    customer_id text        NOT NULL,
    action      text        NOT NULL,
    params      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    state       text        NOT NULL DEFAULT 'received'
                CHECK (state IN ('received', 'resolved', 'handed_to_tier2', 'escalated')),
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tier1_requests_customer ON tier1_requests (customer_id, created_at);
"""


async def ensure_schema(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(724101)")
        await conn.execute(SCHEMA)


def _record(row: Any) -> RequestRecord:
    return RequestRecord(
        contact_id=row["contact_id"],
        customer_id=row["customer_id"],
        action=row["action"],
        state=row["state"],
        reason=row["reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class PostgresRequestStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(
        self, contact_id: str, customer_id: str, action: str, params: dict[str, Any]
    ) -> RequestRecord:
        row = await self.pool.fetchrow(
            """INSERT INTO tier1_requests (contact_id, customer_id, action, params) VALUES ($1,$2,$3,$4)
               ON CONFLICT (contact_id) DO NOTHING RETURNING *""",
            contact_id,
            customer_id,
            action,
            params,
        )
        if row is None:
            row = await self.pool.fetchrow("SELECT * FROM tier1_requests WHERE contact_id=$1", contact_id)
        return _record(row)

    async def set_state(self, contact_id: str, state: str, reason: str | None = None) -> None:
        await self.pool.execute(
            "UPDATE tier1_requests SET state=$2, reason=$3, updated_at=now() WHERE contact_id=$1",
            contact_id,
            state,
            reason,
        )

    async def get(self, contact_id: str) -> RequestRecord | None:
        row = await self.pool.fetchrow("SELECT * FROM tier1_requests WHERE contact_id=$1", contact_id)
        return _record(row) if row is not None else None


class ContactStatusReader:
    """Everything the status endpoint shows, read from the stores every stage writes."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def owner(self, contact_id: str) -> str | None:
        owner = await self.pool.fetchval("SELECT customer_id FROM contacts WHERE contact_id=$1", contact_id)
        if owner is None:
            owner = await self.pool.fetchval(
                "SELECT customer_id FROM tier1_requests WHERE contact_id=$1", contact_id
            )
        return str(owner) if owner is not None else None

    async def outcome(self, contact_id: str) -> dict[str, Any] | None:
        msg = await self.pool.fetchval("SELECT message FROM outcomes WHERE contact_id=$1", contact_id)
        return msg if isinstance(msg, dict) else None

    async def case(self, contact_id: str) -> dict[str, Any] | None:
        try:
            row = await self.pool.fetchrow(
                "SELECT case_id, reason, status, opened_at FROM cases WHERE contact_id=$1", contact_id
            )
        except asyncpg.UndefinedTableError:
            return None
        return dict(row) if row is not None else None

    async def action_results(self, contact_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            """SELECT action, status, target, result, error FROM action_ledger WHERE contact_id=$1
               ORDER BY created_at""",
            contact_id,
        )
        return [dict(r) for r in rows]
