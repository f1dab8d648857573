"""The approvals store in Postgres (migration 085_approvals.sql).

Every transition is one conditional statement, so two leads racing, a double click or a retried request
change an approval once: ``decide`` updates only a pending row.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.tier3_handoff.approvals import Approval, ApprovalStatus
from tierline.safetext import pg_safe

_COLUMNS = (
    "approval_id, case_id, contact_id, customer_id, charge_id, amount_usd, note, requested_by, requested_at, "
    "status, decided_by, decided_at, decision_note, result"
)


def _approval(row: asyncpg.Record) -> Approval:
    data = dict(row)
    data["amount_usd"] = float(data["amount_usd"])
    data["status"] = ApprovalStatus(data["status"])
    return Approval(**data)


class PostgresApprovalStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def request(self, approval: Approval) -> Approval:
        """Insert a pending request, unless the same agent already has one pending for the same charge and
        amount on the case (a double click asks once): the pending one is returned then."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                f"approval:{approval.case_id}:{approval.charge_id}",
            )
            row = await conn.fetchrow(
                f"""SELECT {_COLUMNS} FROM approvals WHERE case_id=$1 AND charge_id=$2 AND amount_usd=$3
                    AND requested_by=$4 AND status='pending' ORDER BY requested_at LIMIT 1""",
                approval.case_id,
                approval.charge_id,
                approval.amount_usd,
                approval.requested_by,
            )
            if row is not None:
                return _approval(row)
            row = await conn.fetchrow(
                f"""INSERT INTO approvals (approval_id, case_id, contact_id, customer_id, charge_id,
                        amount_usd, note, requested_by, requested_at, status)
                    VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,'pending') RETURNING {_COLUMNS}""",
                approval.approval_id,
                approval.case_id,
                approval.contact_id,
                approval.customer_id,
                pg_safe(approval.charge_id),
                approval.amount_usd,
                pg_safe(approval.note),
                approval.requested_by,
                approval.requested_at,
            )
            assert row is not None
            return _approval(row)

    async def get(self, approval_id: str) -> Approval | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM approvals WHERE approval_id=$1", approval_id)
        return _approval(row) if row else None

    async def for_case(self, case_id: str) -> list[Approval]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM approvals WHERE case_id=$1 ORDER BY requested_at", case_id
        )
        return [_approval(r) for r in rows]

    async def pending(self, queues: list[str], limit: int = 200) -> list[Approval]:
        """Pending approvals of cases in ``queues``, oldest first."""
        rows = await self.pool.fetch(
            f"""SELECT {", ".join("a." + c.strip() for c in _COLUMNS.split(","))}
                FROM approvals a JOIN cases c USING (case_id)
                WHERE a.status='pending' AND c.queue = ANY($1::text[]) ORDER BY a.requested_at LIMIT $2""",
            queues,
            limit,
        )
        return [_approval(r) for r in rows]

    async def decide(self, approval_id: str, status: ApprovalStatus, agent_id: str, note: str) -> bool:
        """Pending -> ``status`` by ``agent_id``; False when it was no longer pending (someone was first)."""
        done = await self.pool.execute(
            """UPDATE approvals SET status=$2, decided_by=$3, decided_at=now(), decision_note=$4
               WHERE approval_id=$1 AND status='pending'""",
            approval_id,
            status.value,
            agent_id,
            pg_safe(note),
        )
        return done.endswith(" 1")

    async def record_result(self, approval_id: str, result: dict[str, Any]) -> bool:
        """Keep what the approved refund did; False when a result is there already (a replay)."""
        done = await self.pool.execute(
            "UPDATE approvals SET result=$2 WHERE approval_id=$1 AND result IS NULL",
            approval_id,
            pg_safe(result),
        )
        return done.endswith(" 1")
