"""Postgres adapters: Tier 1's request log and the live status of a contact (outcomes, cases)."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.tier1_selfheal.ports import RequestRecord

#: Tier 1's own tables; created by the migration ``tierline/migrations/050_tier1.sql``, never here.
REQUIRED_TABLES = ("tier1_requests",)


class SchemaMissing(RuntimeError):
    """The database lacks a table Tier 1 needs: the migrations have not been applied."""


async def verify_schema(pool: asyncpg.Pool) -> None:
    """Fail fast at start when the migrations were not applied (``tierline migrate``)."""
    missing = [t for t in REQUIRED_TABLES if not await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", t)]
    if missing:
        raise SchemaMissing(
            f"missing table(s) {', '.join(missing)}: apply the Postgres migrations first (tierline migrate)"
        )


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
