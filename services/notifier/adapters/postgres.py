"""The notifier's Postgres: notifications (one row per dedupe key, the per-customer rate limit under an
advisory lock), the inbound mail log, email threads of conversations and the delivery of turns."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from schemas.messages import NotificationRequestedV1
from services.notifier.domain import SendVerdict, notification_verdict


class NotificationStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def reserve(
        self, msg: NotificationRequestedV1, *, max_per_window: int, window_hours: float
    ) -> SendVerdict:
        p = msg.payload
        async with self.pool.acquire() as conn, conn.transaction():
            # one customer at a time: two notifier replicas cannot both pass the limit
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('notify:' || $1, 0))", msg.customer_id
            )
            existing = await conn.fetchval(
                "SELECT status FROM notifications WHERE dedupe_key=$1 FOR UPDATE", p.dedupe_key
            )
            recent = await conn.fetchval(
                """SELECT count(*) FROM notifications
                   WHERE customer_id=$1 AND status IN ('delivered', 'sending') AND channel = 'email'
                   AND created_at > now() - make_interval(secs => $2) AND dedupe_key <> $3""",
                msg.customer_id,
                window_hours * 3600.0,
                p.dedupe_key,
            )
            verdict = notification_verdict(existing, int(recent or 0), max_per_window)
            if verdict is SendVerdict.DUPLICATE:
                return verdict
            if existing is not None:  # 'sending' left by an attempt that did not finish
                await conn.execute(
                    "UPDATE notifications SET attempts = attempts + 1 WHERE dedupe_key=$1", p.dedupe_key
                )
                return verdict
            await conn.execute(
                """INSERT INTO notifications (dedupe_key, message_id, contact_id, customer_id, channel,
                       to_addr, template, subject, status, reason, attempts)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)""",
                p.dedupe_key,
                msg.message_id,
                msg.contact_id,
                msg.customer_id,
                p.channel,
                p.to,
                p.template,
                p.subject,
                "sending" if verdict is SendVerdict.SEND else "suppressed",
                None
                if verdict is SendVerdict.SEND
                else f"rate limit: {max_per_window} per {window_hours:g}h",
                1 if verdict is SendVerdict.SEND else 0,
            )
            return verdict

    async def mark_delivered(self, dedupe_key: str, smtp_message_id: str | None = None) -> None:
        await self.pool.execute(
            """UPDATE notifications SET status='delivered', delivered_at=now(),
                   smtp_message_id=coalesce($2, smtp_message_id) WHERE dedupe_key=$1""",
            dedupe_key,
            smtp_message_id,
        )

    async def mark_failed(self, dedupe_key: str, error: str, smtp_message_id: str | None = None) -> bool:
        """The notification ends failed; True the first time (the caller opens the case once)."""
        status = await self.pool.execute(
            """UPDATE notifications SET status='failed', last_error=$2,
                   smtp_message_id=coalesce($3, smtp_message_id)
               WHERE dedupe_key=$1 AND status <> 'failed'""",
            dedupe_key,
            error[:1000],
            smtp_message_id,
        )
        return status.endswith(" 1")


@dataclass(frozen=True)
class KnownSender:
    customer_id: str
    email: str


@dataclass(frozen=True)
class SentMail:
    """A mail of ours that a bounce names: a conversation turn or a notification."""

    kind: str  # 'turn' | 'notification'
    key: str  # turn id or dedupe key
    contact_id: str
    customer_id: str
    to_addr: str | None


class MailStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # ------------------------------------------------------------------ inbound
    async def customer_by_email(self, address: str) -> KnownSender | None:
        """The customer whose email on file is ``address`` (case-insensitive): the subscription store
        first, then the Stripe mirror. Several customers on one address: the oldest account."""
        row = await self.pool.fetchrow(
            """SELECT id, email FROM (
                   SELECT id, email, 0 AS src, created_at FROM customers WHERE lower(email) = lower($1)
                   UNION ALL
                   SELECT id, email, 1 AS src, created FROM stripe_customers
                   WHERE lower(email) = lower($1) AND NOT deleted) m
               ORDER BY src, created_at NULLS LAST, id LIMIT 1""",
            address,
        )
        return KnownSender(customer_id=row["id"], email=row["email"]) if row else None

    async def address_on_file(self, conversation_id: str, customer_id: str) -> str | None:
        """The customer's email on file, kept on the conversation for its next turns (a conversation
        opened by another door, e.g. the demo's or the eval's email contacts, has none of its own)."""
        email = await self.pool.fetchval(
            """SELECT email FROM (
                   SELECT email, 0 AS src FROM customers WHERE id=$1 AND email IS NOT NULL
                   UNION ALL SELECT email, 1 FROM stripe_customers WHERE id=$1 AND email IS NOT NULL) m
               ORDER BY src LIMIT 1""",
            customer_id,
        )
        if email:
            await self.pool.execute(
                """UPDATE conversations SET customer_email=$2
                   WHERE conversation_id=$1 AND customer_email IS NULL""",
                conversation_id,
                email,
            )
        return str(email) if email else None

    async def inbound_seen(self, message_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow("SELECT * FROM inbound_emails WHERE message_id=$1", message_id)

    async def record_inbound(
        self,
        *,
        message_id: str,
        door: str,
        envelope_from: str | None,
        from_addr: str | None,
        subject: str | None,
        outcome: str,
        detail: str | None = None,
        customer_id: str | None = None,
        conversation_id: str | None = None,
        contact_id: str | None = None,
        size_bytes: int = 0,
        sha256: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> None:
        await self.pool.execute(
            """INSERT INTO inbound_emails (message_id, door, envelope_from, from_addr, subject, outcome,
                   detail, customer_id, conversation_id, contact_id, size_bytes, sha256, attachments)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13::jsonb)
               ON CONFLICT (message_id) DO NOTHING""",
            message_id,
            door,
            (envelope_from or "")[:500] or None,
            (from_addr or "")[:500] or None,
            (subject or "")[:500] or None,
            outcome,
            (detail or "")[:1000] or None,
            customer_id,
            conversation_id,
            contact_id,
            size_bytes,
            sha256,
            json.dumps(attachments or []),
        )

    async def replied_to_unknown_recently(self, address: str, hours: float) -> bool:
        """An auto-reply went to this unknown address within ``hours`` (at most one per window)."""
        return bool(
            await self.pool.fetchval(
                """SELECT 1 FROM inbound_emails WHERE lower(from_addr) = lower($1)
                   AND outcome = 'unknown_sender' AND detail LIKE 'auto-replied%'
                   AND received_at > now() - make_interval(secs => $2) LIMIT 1""",
                address,
                hours * 3600.0,
            )
        )

    async def thread_owner(self, thread_ids: list[str]) -> tuple[str, str] | None:
        """(conversation id, customer id) of the conversation whose email thread holds one of the ids."""
        if not thread_ids:
            return None
        row = await self.pool.fetchrow(
            """SELECT conversation_id, customer_id FROM conversations
               WHERE email_thread_ids && $1::text[] ORDER BY updated_at DESC LIMIT 1""",
            thread_ids,
        )
        return (row["conversation_id"], row["customer_id"]) if row else None

    async def append_thread_id(self, conversation_id: str, message_id: str) -> None:
        await self.pool.execute(
            """UPDATE conversations SET email_thread_ids = array_append(email_thread_ids, $2)
               WHERE conversation_id = $1 AND NOT ($2 = ANY(email_thread_ids))""",
            conversation_id,
            message_id,
        )

    async def last_inbound(self, conversation_id: str) -> str | None:
        value = await self.pool.fetchval(
            """SELECT message_id FROM inbound_emails WHERE conversation_id=$1 AND outcome='contact'
               ORDER BY received_at DESC LIMIT 1""",
            conversation_id,
        )
        return str(value) if value else None

    # ------------------------------------------------------------------ outbound turns
    async def turn_delivery(self, turn_id: uuid.UUID) -> str | None:
        value = await self.pool.fetchval("SELECT delivery FROM conversation_turns WHERE turn_id=$1", turn_id)
        return str(value) if value is not None else None

    async def mark_turn(
        self,
        turn_id: uuid.UUID,
        delivery: str,
        *,
        email_message_id: str | None = None,
        conversation_id: str | None = None,
    ) -> bool:
        """Set the turn's delivery (once: a turn already sent or failed keeps its state); the mail's
        Message-ID joins the conversation's thread. True when this call changed it."""
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                """UPDATE conversation_turns SET delivery=$2, delivered_at=now(),
                       email_message_id=coalesce($3, email_message_id)
                   WHERE turn_id=$1 AND delivery = 'stored'""",
                turn_id,
                delivery,
                email_message_id,
            )
            if email_message_id and conversation_id and delivery == "sent":
                await conn.execute(
                    """UPDATE conversations SET email_thread_ids = array_append(email_thread_ids, $2)
                       WHERE conversation_id = $1 AND NOT ($2 = ANY(email_thread_ids))""",
                    conversation_id,
                    email_message_id,
                )
        return status.endswith(" 1")

    async def sent_mail(self, message_ids: list[str]) -> list[SentMail]:
        """Our mails with these Message-IDs (what a bounce reports)."""
        if not message_ids:
            return []
        rows = await self.pool.fetch(
            """SELECT 'turn' AS kind, t.turn_id::text AS key, t.contact_id, v.customer_id,
                      v.customer_email AS to_addr
               FROM conversation_turns t JOIN conversations v USING (conversation_id)
               WHERE t.email_message_id = ANY($1::text[]) AND t.role <> 'customer'
               UNION ALL
               SELECT 'notification', dedupe_key, contact_id, customer_id, to_addr FROM notifications
               WHERE smtp_message_id = ANY($1::text[])""",
            message_ids,
        )
        return [
            SentMail(
                kind=r["kind"],
                key=r["key"],
                contact_id=r["contact_id"] or "",
                customer_id=r["customer_id"],
                to_addr=r["to_addr"],
            )
            for r in rows
        ]

    async def mark_turn_bounced(self, turn_id: str) -> bool:
        status = await self.pool.execute(
            "UPDATE conversation_turns SET delivery='failed' WHERE turn_id=$1::uuid AND delivery <> 'failed'",
            turn_id,
        )
        return status.endswith(" 1")
