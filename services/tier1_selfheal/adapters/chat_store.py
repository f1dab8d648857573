"""Postgres adapter of the chat widget: conversations, their turns and ratings (migration 080)."""

from __future__ import annotations

import asyncpg

from schemas.vocab import Channel
from tierline import conversations
from tierline.conversations import Conversation, StoredTurn


class PostgresChatStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, conversation_id: str) -> Conversation | None:
        return await conversations.get_conversation(self.pool, conversation_id)

    async def open(self, conversation_id: str, customer_id: str) -> Conversation:
        return await conversations.open_conversation(
            self.pool, conversation_id=conversation_id, customer_id=customer_id, channel=Channel.CHAT
        )

    async def turns(self, conversation_id: str, *, after_seq: int = 0) -> list[StoredTurn]:
        return await conversations.turns(self.pool, conversation_id, after_seq=after_seq)

    async def recent(self, customer_id: str, *, limit: int = 5) -> list[Conversation]:
        rows = await self.pool.fetch(
            """SELECT conversation_id FROM conversations WHERE customer_id=$1 AND channel='chat'
               ORDER BY updated_at DESC LIMIT $2""",
            customer_id,
            limit,
        )
        found = [await conversations.get_conversation(self.pool, r["conversation_id"]) for r in rows]
        return [c for c in found if c is not None]

    async def has_contact(self, conversation_id: str, contact_id: str) -> bool:
        found = await self.pool.fetchval(
            """SELECT EXISTS (SELECT 1 FROM contacts WHERE contact_id=$2 AND conversation_id=$1)
                   OR EXISTS (SELECT 1 FROM conversation_turns WHERE conversation_id=$1 AND contact_id=$2)""",
            conversation_id,
            contact_id,
        )
        return bool(found)

    async def rate(
        self, conversation_id: str, contact_id: str, csat: int | None, solved: bool | None
    ) -> None:
        await self.pool.execute(
            """INSERT INTO conversation_ratings (conversation_id, contact_id, csat, solved)
               VALUES ($1,$2,$3,$4)
               ON CONFLICT (conversation_id, contact_id) DO UPDATE SET
                   csat = coalesce(EXCLUDED.csat, conversation_ratings.csat),
                   solved = coalesce(EXCLUDED.solved, conversation_ratings.solved),
                   rated_at = now()""",
            conversation_id,
            contact_id,
            csat,
            solved,
        )
