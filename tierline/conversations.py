"""Conversations: the thread between a customer and tierline (issue 19).

A conversation (id, customer, channel, status) owns its contacts. The customer's messages are stored by the
router as it reads them (`open_conversation` + `record_customer_turn`); every message *to* the customer
goes through `say`, which stores the turn and publishes ``conversation.message.sent.v1`` for delivery on
the conversation's channel (the notifier sends email; chat and the Health Meter read the stored turns).

Status follows the last turn: a clarifying question waits for the customer, a handoff or a human's reply
means a person holds it, a resolution closes it, an automated answer leaves it open.

Ids are derived from their cause, so a redelivered message stores and publishes nothing new.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from schemas import Envelope, derived_id
from schemas.messages import (
    Choice,
    ConversationMessageSentPayload,
    ConversationMessageSentV1,
    Turn,
    TurnKind,
)
from schemas.vocab import Channel
from tierline import metrics
from tierline.messaging import publish
from tierline.safetext import safe_text

log = structlog.get_logger(__name__)

Status = Literal["open", "waiting_customer", "with_human", "resolved"]

#: The status a conversation takes after each kind of message to the customer.
STATUS_AFTER: dict[str, Status] = {
    "answer": "open",
    "fix_confirmation": "open",
    "clarifying_question": "waiting_customer",
    "handoff_status": "with_human",
    "human_reply": "with_human",
    "resolution": "resolved",
}
#: Who speaks each kind of turn (the role stored with it).
ROLE_OF: dict[str, Literal["assistant", "agent", "system"]] = {
    "answer": "assistant",
    "fix_confirmation": "assistant",
    "clarifying_question": "assistant",
    "handoff_status": "system",
    "human_reply": "agent",
    "resolution": "agent",
}
#: How many earlier turns travel with a contact to the tier that takes it.
HISTORY_TURNS = 20


class ConversationMismatch(ValueError):
    """A message names a conversation that belongs to another customer: never joined, never shown."""


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    customer_id: str
    channel: Channel
    status: Status
    subject: str | None = None
    customer_email: str | None = None
    email_thread_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StoredTurn:
    turn_id: uuid.UUID
    seq: int
    role: str
    kind: str
    author: str
    text: str
    contact_id: str | None
    choices: list[dict[str, str]]
    created_at: datetime
    email_message_id: str | None = None


def _conversation(row: asyncpg.Record) -> Conversation:
    return Conversation(
        conversation_id=row["conversation_id"],
        customer_id=row["customer_id"],
        channel=Channel(row["channel"]),
        status=row["status"],
        subject=row["subject"],
        customer_email=row["customer_email"],
        email_thread_ids=list(row["email_thread_ids"] or []),
    )


async def open_conversation(
    conn: asyncpg.Pool | asyncpg.Connection,
    *,
    conversation_id: str,
    customer_id: str,
    channel: Channel,
    subject: str | None = None,
    customer_email: str | None = None,
) -> Conversation:
    """The conversation, created on its first message. Raises `ConversationMismatch` when the id
    belongs to another customer."""
    row = await conn.fetchrow(
        """INSERT INTO conversations (conversation_id, customer_id, channel, subject, customer_email)
           VALUES ($1,$2,$3,$4,$5)
           ON CONFLICT (conversation_id) DO UPDATE SET updated_at = conversations.updated_at
           RETURNING *""",
        conversation_id,
        customer_id,
        channel.value,
        safe_text(subject, 500)[0] if subject else None,
        customer_email,
    )
    assert row is not None
    conversation = _conversation(row)
    if conversation.customer_id != customer_id:
        raise ConversationMismatch(
            f"conversation {conversation_id} belongs to another customer than {customer_id}"
        )
    return conversation


async def get_conversation(
    conn: asyncpg.Pool | asyncpg.Connection, conversation_id: str
) -> Conversation | None:
    row = await conn.fetchrow("SELECT * FROM conversations WHERE conversation_id=$1", conversation_id)
    return _conversation(row) if row else None


async def conversation_for_contact(
    conn: asyncpg.Pool | asyncpg.Connection, contact_id: str
) -> Conversation | None:
    row = await conn.fetchrow(
        """SELECT v.* FROM contacts c JOIN conversations v ON v.conversation_id = c.conversation_id
           WHERE c.contact_id = $1""",
        contact_id,
    )
    return _conversation(row) if row else None


async def attach_contact(
    conn: asyncpg.Pool | asyncpg.Connection, *, contact_id: str, conversation_id: str
) -> None:
    await conn.execute(
        "UPDATE contacts SET conversation_id=$2 WHERE contact_id=$1 AND conversation_id IS NULL",
        contact_id,
        conversation_id,
    )


async def record_customer_turn(
    conn: asyncpg.Pool | asyncpg.Connection,
    *,
    conversation_id: str,
    message_id: uuid.UUID,
    contact_id: str,
    text: str,
    author: str = "customer",
    email_message_id: str | None = None,
) -> bool:
    """Store the customer's message (once per message id). True when it was new."""
    row = await conn.fetchrow(
        """INSERT INTO conversation_turns
               (turn_id, conversation_id, role, kind, author, contact_id, text, email_message_id)
           VALUES ($1,$2,'customer','message',$3,$4,$5,$6)
           ON CONFLICT (turn_id) DO NOTHING RETURNING turn_id""",
        message_id,
        conversation_id,
        author,
        contact_id,
        safe_text(text, 20_000)[0],
        email_message_id,
    )
    if row is not None:
        await conn.execute(
            """UPDATE conversations SET updated_at = now(),
                   status = CASE WHEN status = 'resolved' THEN 'open' ELSE status END
               WHERE conversation_id = $1""",
            conversation_id,
        )
    return row is not None


async def turns(
    conn: asyncpg.Pool | asyncpg.Connection,
    conversation_id: str,
    *,
    after_seq: int = 0,
    limit: int = 200,
) -> list[StoredTurn]:
    """The conversation's turns after ``after_seq``, oldest first."""
    rows = await conn.fetch(
        """SELECT turn_id, seq, role, kind, author, text, contact_id, choices, created_at, email_message_id
           FROM conversation_turns WHERE conversation_id=$1 AND seq > $2 ORDER BY seq LIMIT $3""",
        conversation_id,
        after_seq,
        limit,
    )
    return [
        StoredTurn(
            turn_id=r["turn_id"],
            seq=int(r["seq"]),
            role=r["role"],
            kind=r["kind"],
            author=r["author"],
            text=r["text"],
            contact_id=r["contact_id"],
            choices=json.loads(r["choices"]) if isinstance(r["choices"], str) else list(r["choices"]),
            created_at=r["created_at"],
            email_message_id=r["email_message_id"],
        )
        for r in rows
    ]


async def history(
    conn: asyncpg.Pool | asyncpg.Connection,
    conversation_id: str,
    *,
    before_contact: str | None = None,
    limit: int = HISTORY_TURNS,
) -> list[Turn]:
    """The last ``limit`` turns before the given contact's own message, oldest first, as message turns."""
    rows = await conn.fetch(
        """SELECT role, text FROM (
               SELECT role, text, seq FROM conversation_turns
               WHERE conversation_id=$1
                 AND ($2::text IS NULL OR seq < coalesce(
                     (SELECT min(seq) FROM conversation_turns WHERE conversation_id=$1 AND contact_id=$2
                        AND role='customer'), 9223372036854775807))
               ORDER BY seq DESC LIMIT $3) t ORDER BY seq""",
        conversation_id,
        before_contact,
        limit,
    )
    return [Turn(role=r["role"], text=r["text"]) for r in rows]


async def set_status(conn: asyncpg.Pool | asyncpg.Connection, conversation_id: str, status: Status) -> None:
    await conn.execute(
        "UPDATE conversations SET status=$2, updated_at=now() WHERE conversation_id=$1",
        conversation_id,
        status,
    )


async def say(
    broker: KafkaBroker,
    conn: asyncpg.Pool | asyncpg.Connection,
    *,
    contact_id: str,
    customer_id: str,
    kind: TurnKind,
    text: str,
    author: str,
    cause: Envelope[Any] | None = None,
    key: str = "",
    choices: list[Choice] | None = None,
    sla_due_at: datetime | None = None,
    language: str | None = None,
    variant: str | None = None,
) -> ConversationMessageSentV1 | None:
    """Tell the customer ``text`` in the contact's conversation: store the turn, move the conversation's
    status, publish it for delivery. None (and nothing done) when the contact has no conversation, e.g.
    a contact started by a Stripe event. The id derives from ``cause`` (or from contact, kind and ``key``
    when there is no message that caused it, e.g. a human's reply: pass a unique key), so a retry repeats
    the same turn instead of adding one."""
    conversation = await conversation_for_contact(conn, contact_id)
    if conversation is None:
        return None
    message_id = (
        derived_id(cause.message_id, ConversationMessageSentV1.TOPIC, kind, key)
        if cause is not None
        else derived_id("turn", contact_id, kind, key)
    )
    msg = ConversationMessageSentV1.build(
        ConversationMessageSentPayload(
            conversation_id=conversation.conversation_id,
            channel=conversation.channel,
            kind=kind,
            text=safe_text(text, 20_000)[0],
            author=author,
            choices=list(choices or []),
            sla_due_at=sla_due_at,
            language=language,
            variant=variant,
        ),
        contact_id=contact_id,
        customer_id=customer_id,
        cause=cause,
        message_id=message_id,
    )
    stored = await conn.fetchrow(
        """INSERT INTO conversation_turns
               (turn_id, conversation_id, role, kind, author, contact_id, text, choices)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8)
           ON CONFLICT (turn_id) DO NOTHING RETURNING turn_id""",
        msg.message_id,
        conversation.conversation_id,
        ROLE_OF[kind],
        kind,
        author,
        contact_id,
        msg.payload.text,
        [c.model_dump() for c in msg.payload.choices],  # the pool's jsonb codec encodes it
    )
    if stored is not None:
        await set_status(conn, conversation.conversation_id, STATUS_AFTER[kind])
        await metrics.observe_first_response(conn, conversation.conversation_id, contact_id, kind)
    await publish(broker, msg)  # published again on a retry: consumers de-duplicate by message id
    log.info(
        "conversation.said", conversation_id=conversation.conversation_id, kind=kind, new=stored is not None
    )
    return msg
