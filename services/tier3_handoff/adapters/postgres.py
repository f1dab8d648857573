"""The case store in Postgres (migration 030_cases.sql)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg

from services.tier3_handoff.ports import Case
from tierline.safetext import pg_safe

_COLUMNS = (
    "case_id, contact_id, customer_id, reason, priority, sla_due_at, status, assignee, queue, packet, "
    "source_message_id, opened_at, claimed_at, resolved_at, resolution_note, sla_alerted_at"
)


def _case(row: asyncpg.Record) -> Case:
    data = dict(row)
    data["source_message_id"] = str(data["source_message_id"]) if data["source_message_id"] else None
    return Case(**data)


#: Dead letters a burst case keeps as examples (the count says how many there were).
DEAD_LETTER_SAMPLES = 10


async def _insert(conn: asyncpg.Pool | asyncpg.Connection, case: Case) -> str | None:
    """Insert a case unless its contact has one; its id, or None. Text stored NUL-free."""
    row = await conn.fetchval(
        f"""INSERT INTO cases ({_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)
            ON CONFLICT DO NOTHING RETURNING case_id""",
        case.case_id,
        pg_safe(case.contact_id),
        pg_safe(case.customer_id),
        case.reason,
        case.priority,
        case.sla_due_at,
        case.status,
        case.assignee,
        case.queue,
        pg_safe(case.packet),
        uuid.UUID(case.source_message_id) if case.source_message_id else None,
        case.opened_at,
        case.claimed_at,
        case.resolved_at,
        case.resolution_note,
        case.sla_alerted_at,
    )
    return str(row) if row is not None else None


class PostgresCaseStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert(self, case: Case) -> bool:
        """Insert once per contact; False when the contact already has a case."""
        return await _insert(self.pool, case) is not None

    async def record_dead_letter(
        self,
        case: Case,
        *,
        burst_key: str,
        window_s: float,
        message_id: str,
        consumer: str,
        sample: dict[str, Any],
    ) -> tuple[str, bool] | None:
        """Open ``case`` for the first dead letter of a burst, or count this one into the burst's open case.

        A burst is the open dead-letter case of the same ``burst_key`` (topic and error kind) whose last
        record is at most ``window_s`` old. Once per message id (the inbox, in the same transaction):
        None for a redelivered dead letter; else (case id, whether it was opened now).
        """
        sample = pg_safe(sample)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"deadletter-burst:{burst_key}")
            fresh = await conn.fetchval(
                "INSERT INTO inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
                consumer,
                message_id,
            )
            if fresh is None:
                return None
            open_case = await conn.fetchval(
                """SELECT case_id FROM cases
                   WHERE reason = 'dead_letter' AND status <> 'resolved' AND packet->>'burst_key' = $1
                     AND (packet->>'last_seen_at')::timestamptz > now() - make_interval(secs => $2)
                   ORDER BY opened_at DESC LIMIT 1""",
                burst_key,
                window_s,
            )
            if open_case is not None:
                await conn.execute(
                    """UPDATE cases SET packet = packet
                           || jsonb_build_object(
                                'count', COALESCE((packet->>'count')::int, 1) + 1,
                                'last_seen_at', now(),
                                'samples', CASE WHEN jsonb_array_length(COALESCE(packet->'samples', '[]'))
                                                     < $3 THEN COALESCE(packet->'samples', '[]') || $2::jsonb
                                                ELSE packet->'samples' END)
                       WHERE case_id = $1""",
                    open_case,
                    [sample],
                    DEAD_LETTER_SAMPLES,
                )
                return str(open_case), False
            packet = {**case.packet, "burst_key": burst_key, "count": 1, "samples": [sample]}
            inserted = await _insert(conn, replace(case, packet=packet))
            return case.case_id, inserted is not None

    async def get(self, case_id: str) -> Case | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM cases WHERE case_id=$1", case_id)
        return _case(row) if row else None

    async def get_by_contact(self, contact_id: str) -> Case | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM cases WHERE contact_id=$1", contact_id)
        return _case(row) if row else None

    async def open_case_in_conversation(
        self, conversation_id: str, customer_id: str, *, other_than_contact: str
    ) -> Case | None:
        """The conversation's open (not resolved) case of another of its contacts, oldest first."""
        row = await self.pool.fetchrow(
            f"""SELECT {", ".join(f"c.{c.strip()}" for c in _COLUMNS.split(","))}
                FROM cases c JOIN contacts k ON k.contact_id = c.contact_id
                WHERE k.conversation_id = $1 AND c.customer_id = $2 AND c.status <> 'resolved'
                  AND c.contact_id <> $3
                ORDER BY c.opened_at LIMIT 1""",
            conversation_id,
            customer_id,
            other_than_contact,
        )
        return _case(row) if row else None

    async def add_customer_reply(
        self, case_id: str, *, contact_id: str, message_id: str, text: str, turn: dict[str, Any]
    ) -> bool:
        """The customer's follow-up on an open case, once per contact: a ``customer_reply`` action and the
        turn appended to the packet's transcript. False when this contact's follow-up was recorded."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"case-follow-up:{case_id}")
            status = await conn.execute(
                """INSERT INTO case_actions (case_id, agent_id, kind, note, record)
                   SELECT $1, 'customer', 'customer_reply', $2, $3 WHERE NOT EXISTS (
                       SELECT 1 FROM case_actions WHERE case_id=$1 AND kind='customer_reply'
                          AND record->>'contact_id' = $4)""",
                case_id,
                pg_safe(text),
                pg_safe({"contact_id": contact_id, "message_id": message_id}),
                contact_id,
            )
            if not status.endswith(" 1"):
                return False
            await conn.execute(
                """UPDATE cases SET packet = jsonb_set(packet, '{transcript}',
                       COALESCE(packet->'transcript', '[]'::jsonb) || $2::jsonb)
                   WHERE case_id = $1""",
                case_id,
                pg_safe([turn]),
            )
        return True

    async def list_queue(self, queues: list[str], statuses: list[str], limit: int = 200) -> list[Case]:
        rows = await self.pool.fetch(
            f"""SELECT {_COLUMNS} FROM cases WHERE queue = ANY($1::text[]) AND status = ANY($2::text[])
                ORDER BY priority, sla_due_at, opened_at LIMIT $3""",
            queues,
            statuses,
            limit,
        )
        return [_case(r) for r in rows]

    async def claim(self, case_id: str, agent_id: str) -> bool:
        """Atomic: only an open case can be claimed (two agents racing: exactly one wins)."""
        status = await self.pool.execute(
            "UPDATE cases SET status='claimed', assignee=$2, claimed_at=now() "
            "WHERE case_id=$1 AND status='open'",
            case_id,
            agent_id,
        )
        return status.endswith(" 1")

    async def add_action(
        self, case_id: str, agent_id: str, kind: str, note: str, record: dict[str, Any] | None
    ) -> None:
        await self.pool.execute(
            "INSERT INTO case_actions (case_id, agent_id, kind, note, record) VALUES ($1,$2,$3,$4,$5)",
            case_id,
            agent_id,
            kind,
            note,
            record,
        )

    async def add_reply(self, case_id: str, agent_id: str, text: str, record: dict[str, Any]) -> bool:
        """Record a reply to the customer once per ``record['reply_id']``; False when it was recorded."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"case-reply:{case_id}")
            status = await conn.execute(
                """INSERT INTO case_actions (case_id, agent_id, kind, note, record)
                   SELECT $1::text, $2::text, 'reply', $3::text, $4::jsonb WHERE NOT EXISTS (
                       SELECT 1 FROM case_actions WHERE case_id=$1::text AND kind='reply'
                          AND record->>'reply_id' = $5::text)""",
                case_id,
                agent_id,
                pg_safe(text),
                pg_safe(record),
                str(record["reply_id"]),
            )
        return bool(status.endswith(" 1"))

    async def actions(self, case_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT agent_id, kind, note, record, created_at FROM case_actions WHERE case_id=$1 ORDER BY id",
            case_id,
        )
        return [{**dict(r), "created_at": r["created_at"].isoformat()} for r in rows]

    async def resolve(self, case_id: str, agent_id: str, note: str) -> bool:
        status = await self.pool.execute(
            """UPDATE cases SET status='resolved', resolved_at=now(), resolution_note=$3
               WHERE case_id=$1 AND status='claimed' AND assignee=$2""",
            case_id,
            agent_id,
            note,
        )
        return status.endswith(" 1")

    async def due_for_sla_alert(self, now: datetime, limit: int = 100) -> list[Case]:
        rows = await self.pool.fetch(
            f"""SELECT {_COLUMNS} FROM cases WHERE status <> 'resolved' AND sla_alerted_at IS NULL
                AND sla_due_at < $1 ORDER BY sla_due_at LIMIT $2""",
            now,
            limit,
        )
        return [_case(r) for r in rows]

    async def mark_sla_alerted(self, case_id: str) -> None:
        await self.pool.execute("UPDATE cases SET sla_alerted_at=now() WHERE case_id=$1", case_id)
