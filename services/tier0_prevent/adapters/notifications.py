"""The notifier's Postgres: one row per dedupe key; the per-customer rate limit under an advisory lock."""

from __future__ import annotations

import asyncpg

from schemas.messages import NotificationRequestedV1
from services.tier0_prevent.domain import SendVerdict, notification_verdict


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
                   WHERE customer_id=$1 AND status IN ('delivered', 'sending')
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

    async def mark_delivered(self, dedupe_key: str) -> None:
        await self.pool.execute(
            "UPDATE notifications SET status='delivered', delivered_at=now() WHERE dedupe_key=$1", dedupe_key
        )
