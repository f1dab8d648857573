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
                """SELECT k.case_id, k.reason, k.status, k.opened_at, k.sla_due_at, k.resolved_at,
                          k.resolution_note,
                          (SELECT t.text FROM conversation_turns t JOIN contacts c
                             ON c.conversation_id = t.conversation_id
                           WHERE c.contact_id = k.contact_id AND t.kind = 'resolution'
                           ORDER BY t.seq DESC LIMIT 1) AS told
                   FROM cases k WHERE k.contact_id=$1""",
                contact_id,
            )
        except asyncpg.UndefinedTableError:
            return None
        return dict(row) if row is not None else None

    async def customer_cases(self, customer_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """The customer's latest cases (never a dead-letter case), newest first, each with what the people
        on it told the customer (the human replies and the resolution of its conversation)."""
        try:
            rows = await self.pool.fetch(
                """SELECT k.case_id, k.contact_id, k.status, k.opened_at, k.sla_due_at, k.resolved_at,
                          k.resolution_note, c.conversation_id,
                          COALESCE((SELECT jsonb_agg(jsonb_build_object('kind', t.kind, 'text', t.text,
                                                                        'created_at', t.created_at)
                                                     ORDER BY t.seq)
                                    FROM conversation_turns t
                                    WHERE t.conversation_id = c.conversation_id
                                      AND t.role = 'agent'), '[]'::jsonb) AS messages
                   FROM cases k LEFT JOIN contacts c ON c.contact_id = k.contact_id
                   WHERE k.customer_id = $1 AND k.reason <> 'dead_letter'
                   ORDER BY k.opened_at DESC LIMIT $2""",
                customer_id,
                limit,
            )
        except asyncpg.UndefinedTableError:
            return []
        return [dict(r) for r in rows]

    async def action_results(self, contact_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            """SELECT action, status, target, result, error FROM action_ledger WHERE contact_id=$1
               ORDER BY created_at""",
            contact_id,
        )
        return [dict(r) for r in rows]
