"""Tier 0's Postgres: the dunning schedule (claimed with SKIP LOCKED), risk flags, mirror look-ups."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class ClaimedAttempt:
    invoice_id: str
    attempt_no: int
    customer_id: str
    contact_id: str
    amount_due_cents: int
    max_attempts: int
    cause: dict[str, Any]
    attempts_left: int  # scheduled attempts after this one


@dataclass(frozen=True)
class ExpiringCard:
    payment_method_id: str
    customer_id: str
    brand: str | None
    last4: str | None
    exp_month: int
    exp_year: int


class Tier0Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # ------------------------------------------------------------------ dunning schedule
    async def create_schedule(
        self,
        *,
        invoice_id: str,
        customer_id: str,
        contact_id: str,
        decline_code: str | None,
        amount_due_cents: int,
        retry_at: list[datetime],
        cause: dict[str, Any],
    ) -> dict[str, Any]:
        """Create the schedule once (a replay finds the one that exists). Returns its attempts."""
        async with self.pool.acquire() as conn, conn.transaction():
            created = await conn.fetchval(
                """INSERT INTO dunning_schedules (invoice_id, customer_id, contact_id, decline_code,
                       amount_due_cents, max_attempts, cause)
                   VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (invoice_id) DO NOTHING RETURNING true""",
                invoice_id,
                customer_id,
                contact_id,
                decline_code,
                amount_due_cents,
                len(retry_at),
                cause,
            )
            if created:
                await conn.executemany(
                    "INSERT INTO dunning_attempts (invoice_id, attempt_no, due_at) VALUES ($1,$2,$3)",
                    [(invoice_id, n, at) for n, at in enumerate(retry_at, start=1)],
                )
            rows = await conn.fetch(
                "SELECT attempt_no, due_at FROM dunning_attempts WHERE invoice_id=$1 ORDER BY attempt_no",
                invoice_id,
            )
        return {
            "invoice_id": invoice_id,
            "created": bool(created),
            "retry_at": [r["due_at"].isoformat() for r in rows],
        }

    async def schedule(self, invoice_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow("SELECT * FROM dunning_schedules WHERE invoice_id=$1", invoice_id)
        if row is None:
            return None
        attempts = await self.pool.fetch(
            "SELECT * FROM dunning_attempts WHERE invoice_id=$1 ORDER BY attempt_no", invoice_id
        )
        return {**dict(row), "attempts": [dict(a) for a in attempts]}

    async def close_schedule(
        self, invoice_id: str, status: str, reason: str, *, recovered_cents: int = 0
    ) -> bool:
        """Close an active schedule and cancel its pending attempts. False if none was active."""
        async with self.pool.acquire() as conn, conn.transaction():
            closed = await conn.fetchval(
                """UPDATE dunning_schedules
                   SET status=$2, close_reason=$3, closed_at=now(), recovered_cents=$4
                   WHERE invoice_id=$1 AND status='active' RETURNING true""",
                invoice_id,
                status,
                reason,
                recovered_cents,
            )
            if closed:
                await conn.execute(
                    """UPDATE dunning_attempts SET status='canceled', finished_at=now()
                       WHERE invoice_id=$1 AND status='scheduled'""",
                    invoice_id,
                )
        return bool(closed)

    async def claim_due(
        self,
        worker: str,
        *,
        limit: int,
        lease_s: float,
        now: datetime | None = None,
    ) -> list[ClaimedAttempt]:
        """Claim due attempts of active schedules. Rows another replica holds are skipped (SKIP LOCKED);
        a claim whose worker died is taken over after the lease (the ledger key keeps the retry once)."""
        rows = await self.pool.fetch(
            """WITH due AS (
                   SELECT a.invoice_id, a.attempt_no
                   FROM dunning_attempts a JOIN dunning_schedules s USING (invoice_id)
                   WHERE s.status = 'active'
                     AND ((a.status = 'scheduled' AND a.due_at <= coalesce($3, now()))
                       OR (a.status = 'running' AND a.claimed_at < now() - make_interval(secs => $4)))
                   ORDER BY a.due_at
                   LIMIT $2
                   FOR UPDATE OF a SKIP LOCKED)
               UPDATE dunning_attempts a SET status='running', claimed_by=$1, claimed_at=now()
               FROM due, dunning_schedules s
               WHERE a.invoice_id = due.invoice_id AND a.attempt_no = due.attempt_no
                 AND s.invoice_id = a.invoice_id
               RETURNING a.invoice_id, a.attempt_no, s.customer_id, s.contact_id, s.amount_due_cents,
                         s.max_attempts, s.cause,
                         (SELECT count(*) FROM dunning_attempts b WHERE b.invoice_id = a.invoice_id
                            AND b.status = 'scheduled' AND b.attempt_no > a.attempt_no) AS attempts_left""",
            worker,
            limit,
            now,
            lease_s,
        )
        return [
            ClaimedAttempt(
                r["invoice_id"],
                r["attempt_no"],
                r["customer_id"],
                r["contact_id"],
                int(r["amount_due_cents"]),
                r["max_attempts"],
                r["cause"],
                int(r["attempts_left"]),
            )
            for r in rows
        ]

    async def finish_attempt(
        self,
        invoice_id: str,
        attempt_no: int,
        status: str,
        *,
        decline_code: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        await self.pool.execute(
            """UPDATE dunning_attempts SET status=$3, finished_at=now(), decline_code=$4, result=$5
               WHERE invoice_id=$1 AND attempt_no=$2""",
            invoice_id,
            attempt_no,
            status,
            decline_code,
            json.loads(json.dumps(result or {}, default=str)),
        )

    # ------------------------------------------------------------------ policy facts (one query)
    async def policy_facts(self, customer_id: str, invoice_id: str | None = None) -> dict[str, Any]:
        """What the policy needs beyond the event, from the mirror and the subscription store: the
        customer's disputes, plan tier, and (for dunning) the invoice as mirrored, with the last decline
        its retries saw."""
        row = await self.pool.fetchrow(
            """SELECT
                 (SELECT coalesce(json_agg(json_build_object('id', d.id, 'status', d.status)), '[]'::json)
                    FROM stripe_disputes d WHERE d.customer_id = $1) AS disputes,
                 (SELECT p.tier FROM subscriptions s JOIN plans p ON p.id = s.plan_id
                    WHERE s.customer_id = $1 ORDER BY (s.status <> 'canceled') DESC, s.updated_at DESC
                    LIMIT 1) AS plan_tier,
                 (SELECT row_to_json(i) FROM (SELECT id, status, amount_due_cents, attempt_count,
                         hosted_invoice_url, link_expires_at, last_decline_code
                    FROM stripe_invoices WHERE id = $2) i) AS invoice,
                 (SELECT coalesce(
                    (SELECT a.decline_code FROM dunning_attempts a WHERE a.invoice_id = $2
                       AND a.decline_code IS NOT NULL ORDER BY a.attempt_no DESC LIMIT 1),
                    (SELECT s.decline_code FROM dunning_schedules s WHERE s.invoice_id = $2)
                 )) AS dunning_decline,
                 (SELECT count(*) FROM dunning_attempts a WHERE a.invoice_id = $2
                    AND a.status IN ('succeeded', 'failed')) AS dunning_tried""",
            customer_id,
            invoice_id,
        )
        disputes = _json(row["disputes"]) if row else []
        invoice = _json(row["invoice"]) if row and row["invoice"] else None
        return {
            "disputes": disputes or [],
            "plan_tier": row["plan_tier"] if row else None,
            "invoice": invoice,
            "dunning_decline": row["dunning_decline"] if row else None,
            "dunning_tried": int(row["dunning_tried"] or 0) if row else 0,
        }

    # ------------------------------------------------------------------ customers, risk
    async def flag_risk(self, customer_id: str, flag: str, details: dict[str, Any]) -> dict[str, Any]:
        row = await self.pool.fetchval(
            """INSERT INTO customers (id, risk_flags) VALUES ($1, jsonb_build_object($2::text, $3::jsonb))
               ON CONFLICT (id) DO UPDATE SET risk_flags = customers.risk_flags || EXCLUDED.risk_flags
               RETURNING risk_flags""",
            customer_id,
            flag,
            details,
        )
        return dict(row or {})

    async def customer_email(self, customer_id: str) -> str | None:
        return await self.pool.fetchval(  # type: ignore[no-any-return]
            """SELECT coalesce((SELECT email FROM stripe_customers WHERE id=$1 AND email IS NOT NULL),
                              (SELECT email FROM customers WHERE id=$1))""",
            customer_id,
        )

    async def decline_code_for_invoice(self, invoice_id: str) -> str | None:
        """The mirror's last decline for an invoice (invoice row, then its payment intents / charges)."""
        return await self.pool.fetchval(  # type: ignore[no-any-return]
            """SELECT coalesce(
                 (SELECT last_decline_code FROM stripe_invoices WHERE id=$1),
                 (SELECT last_decline_code FROM stripe_payment_intents WHERE invoice_id=$1
                    AND last_decline_code IS NOT NULL ORDER BY version DESC LIMIT 1),
                 (SELECT pi.last_decline_code FROM stripe_invoices i
                    JOIN stripe_payment_intents pi ON pi.id = i.payment_intent_id WHERE i.id=$1),
                 (SELECT coalesce(ch.decline_code, ch.failure_code) FROM stripe_invoices i
                    JOIN stripe_charges ch ON ch.id = i.charge_id WHERE i.id=$1 AND ch.status='failed'),
                 (SELECT coalesce(decline_code, failure_code) FROM stripe_charges WHERE invoice_id=$1
                    AND status='failed' ORDER BY version DESC LIMIT 1))""",
            invoice_id,
        )

    async def default_card(self, customer_id: str) -> ExpiringCard | None:
        row = await self.pool.fetchrow(
            """SELECT pm.* FROM stripe_payment_methods pm
               LEFT JOIN stripe_customers c ON c.id = pm.customer_id
               WHERE pm.customer_id=$1 AND NOT pm.detached AND pm.exp_month IS NOT NULL
               ORDER BY (pm.id = c.default_payment_method) DESC NULLS LAST, pm.version DESC LIMIT 1""",
            customer_id,
        )
        return _card(row) if row is not None else None

    async def expiring_cards(self, until: datetime, since: datetime) -> list[ExpiringCard]:
        """Attached cards whose last valid day falls in [since, until] (month granularity)."""
        rows = await self.pool.fetch(
            """SELECT * FROM stripe_payment_methods
               WHERE NOT detached AND customer_id IS NOT NULL AND exp_month BETWEEN 1 AND 12
                 AND (make_date(exp_year, exp_month, 1) + interval '1 month' - interval '1 second')
                     AT TIME ZONE 'UTC' BETWEEN $2::timestamptz AND $1::timestamptz
               ORDER BY exp_year, exp_month, id""",
            until,
            since,
        )
        return [_card(r) for r in rows]


def _json(value: Any) -> Any:
    """json columns arrive as text unless the pool has a codec for them."""
    return json.loads(value) if isinstance(value, str) else value


def _card(row: Any) -> ExpiringCard:
    return ExpiringCard(
        row["id"], row["customer_id"], row["brand"], row["last4"], int(row["exp_month"]), int(row["exp_year"])
    )
