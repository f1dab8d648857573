"""The Stripe mirror in Postgres: normalisation of Stripe objects, versioned upserts, snapshot loads.

Every mirror row carries ``version`` (the Stripe event's ``created`` in ms, or the live-read time); an
upsert only replaces a row whose version is not newer, so events replayed in any order converge.
The emulator-gap ``metadata`` keys (``tl_created``, ``tl_link_expires_at``, ``tl_refund_status``) win over
the real Stripe fields when present. Declines are read from Stripe's own fields only, in the shapes of every
API version (tierline/billing/stripe_shapes.py): the emulator reports them as Stripe does. Full card numbers
are never read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from tierline.billing import stripe_shapes as shapes
from tierline.billing.records import (
    BillingSnapshot,
    ChargeRecord,
    DisputeRecord,
    InvoiceRecord,
    PaymentIntentRecord,
    PaymentMethodRecord,
    PlanRecord,
    RefundRecord,
    SubscriptionRecord,
)

log = structlog.get_logger(__name__)


class UnsupportedObject(ValueError):
    """A Stripe object type the mirror does not hold."""


@dataclass(frozen=True, slots=True)
class MirrorRow:
    table: str
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Freshness:
    """How much the mirror knows about a customer, and when it last heard about them."""

    known: bool
    in_store: bool
    synced_at: datetime | None

    def age_s(self, now: datetime) -> float | None:
        return None if self.synced_at is None else max(0.0, (now - self.synced_at).total_seconds())


# ----------------------------------------------------------------------------- normalisation helpers


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _ts(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return datetime.fromtimestamp(int(float(value)), UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _created(obj: dict[str, Any]) -> datetime | None:
    return _ts(_meta(obj).get("tl_created")) or _ts(obj.get("created"))


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _decline_from_error(err: Any) -> str | None:
    if not isinstance(err, dict):
        return None
    return _text(err.get("decline_code")) or _text(err.get("code"))


def _customer(obj: dict[str, Any]) -> MirrorRow:
    tax_ids = obj.get("tax_ids")
    tax_list = (
        tax_ids.get("data", [])
        if isinstance(tax_ids, dict)
        else (tax_ids if isinstance(tax_ids, list) else [])
    )
    settings = _dict(obj.get("invoice_settings"))
    return MirrorRow(
        "stripe_customers",
        {
            "id": obj["id"],
            "email": _text(obj.get("email")),
            "name": _text(obj.get("name")),
            "address": _dict(obj.get("address")),
            "tax_ids": [
                {"type": t.get("type"), "value": t.get("value")} for t in tax_list if isinstance(t, dict)
            ],
            "default_payment_method": _id(settings.get("default_payment_method"))
            or _id(obj.get("default_source")),
            "metadata": _meta(obj),
            "deleted": bool(obj.get("deleted", False)),
            "created": _created(obj),
        },
    )


def _payment_method(obj: dict[str, Any]) -> MirrorRow:
    card = obj.get("card") if obj.get("object") == "payment_method" else obj
    card = card if isinstance(card, dict) else {}
    return MirrorRow(
        "stripe_payment_methods",
        {
            "id": obj["id"],
            "customer_id": _id(obj.get("customer")),
            "brand": _text(card.get("brand")) and str(card.get("brand")).lower(),
            "last4": _text(card.get("last4")),
            "exp_month": _int(card.get("exp_month")) or None,
            "exp_year": _int(card.get("exp_year")) or None,
            "detached": False,
        },
    )


def _invoice(obj: dict[str, Any]) -> MirrorRow:
    meta = _meta(obj)
    pi = obj.get("payment_intent")
    return MirrorRow(
        "stripe_invoices",
        {
            "id": obj["id"],
            "customer_id": _id(obj.get("customer")),
            "subscription_id": shapes.invoice_subscription_id(obj),
            "status": _text(obj.get("status")) or "draft",
            "amount_due_cents": _int(obj.get("amount_due")),
            "amount_paid_cents": _int(obj.get("amount_paid")),
            "currency": _text(obj.get("currency")) or "usd",
            "attempt_count": _int(obj.get("attempt_count")),
            "next_payment_attempt": _ts(obj.get("next_payment_attempt")),
            "hosted_invoice_url": _text(obj.get("hosted_invoice_url")),
            "link_expires_at": _ts(meta.get("tl_link_expires_at")),
            "last_decline_code": shapes.invoice_decline_code(obj),
            "last_failure_message": _text((pi.get("last_payment_error") or {}).get("message"))
            if isinstance(pi, dict)
            else None,
            "charge_id": shapes.invoice_charge_id(obj),
            "payment_intent_id": shapes.invoice_payment_intent_id(obj),
            "created": _created(obj),
            "period_start": _ts(obj.get("period_start")),
            "period_end": _ts(obj.get("period_end")),
        },
    )


def _payment_intent(obj: dict[str, Any]) -> MirrorRow:
    return MirrorRow(
        "stripe_payment_intents",
        {
            "id": obj["id"],
            "customer_id": _id(obj.get("customer")),
            "invoice_id": _id(obj.get("invoice")),
            "status": _text(obj.get("status")) or "requires_payment_method",
            "amount_cents": _int(obj.get("amount")),
            "last_decline_code": shapes.payment_intent_decline_code(obj),
            "created": _created(obj),
        },
    )


def _charge(obj: dict[str, Any]) -> MirrorRow:
    failure = _text(obj.get("failure_code"))
    decline = shapes.charge_decline_code(obj)
    pm = obj.get("payment_method") or obj.get("source")
    return MirrorRow(
        "stripe_charges",
        {
            "id": obj["id"],
            "customer_id": _id(obj.get("customer")),
            "invoice_id": _id(obj.get("invoice")),
            "payment_intent_id": _id(obj.get("payment_intent")),
            "amount_cents": _int(obj.get("amount")),
            "amount_refunded_cents": _int(obj.get("amount_refunded")),
            "currency": _text(obj.get("currency")) or "usd",
            "status": _text(obj.get("status")) or "pending",
            "failure_code": failure,
            "decline_code": decline,
            "payment_method_id": _id(pm),
            "description": _text(obj.get("description")),
            "disputed": bool(obj.get("disputed", False)),
            "created": _created(obj) or datetime.now(UTC),
        },
    )


def _refund(obj: dict[str, Any]) -> MirrorRow:
    meta = _meta(obj)
    return MirrorRow(
        "stripe_refunds",
        {
            "id": obj["id"],
            "charge_id": _id(obj.get("charge")),
            "customer_id": _text(meta.get("tl_customer")),
            "amount_cents": _int(obj.get("amount")),
            "status": _text(meta.get("tl_refund_status")) or _text(obj.get("status")) or "pending",
            "reason": _text(obj.get("reason")),
            "metadata": meta,
            "created": _created(obj) or datetime.now(UTC),
        },
    )


def _dispute(obj: dict[str, Any]) -> MirrorRow:
    return MirrorRow(
        "stripe_disputes",
        {
            "id": obj["id"],
            "charge_id": _id(obj.get("charge")),
            "customer_id": _id(obj.get("customer")) or _text(_meta(obj).get("tl_customer")),
            "amount_cents": _int(obj.get("amount")),
            "status": _text(obj.get("status")) or "needs_response",
            "reason": _text(obj.get("reason")),
            "created": _created(obj) or datetime.now(UTC),
        },
    )


def subscription_plan(obj: dict[str, Any]) -> dict[str, Any]:
    """The (first) plan or price a subscription bills, as a plain dict."""
    plan = obj.get("plan")
    items = obj.get("items")
    first = None
    if isinstance(items, dict) and items.get("data"):
        first = items["data"][0]
    if not isinstance(plan, dict) and isinstance(first, dict):
        plan = first.get("plan") if isinstance(first.get("plan"), dict) else first.get("price")
    return plan if isinstance(plan, dict) else {}


def _subscription(obj: dict[str, Any]) -> MirrorRow:
    plan = subscription_plan(obj)
    items = obj.get("items")
    data = items.get("data", []) if isinstance(items, dict) else []
    first = data[0] if data and isinstance(data[0], dict) else {}
    meta = _meta(obj)
    amount = 0
    for item in data or [obj]:
        p = item.get("plan") or item.get("price") or {}
        unit = p.get("amount") if p.get("amount") is not None else p.get("unit_amount")
        amount += _int(unit) * max(1, _int(item.get("quantity"), 1))
    quantity = (
        sum(max(1, _int(i.get("quantity"), 1)) for i in data)
        if data
        else max(1, _int(obj.get("quantity"), 1))
    )
    return MirrorRow(
        "subscriptions",
        {
            "id": obj["id"],
            "customer_id": _id(obj.get("customer")),
            "plan_id": None,  # resolved against the plans table by MirrorStore
            "status": _text(obj.get("status")) or "incomplete",
            "seats": _int(meta.get("tl_seats")) or quantity,
            "price_usd": round(amount / 100.0, 2),
            "current_period_start": _ts(obj.get("current_period_start") or first.get("current_period_start")),
            "current_period_end": _ts(obj.get("current_period_end") or first.get("current_period_end")),
            "cancel_at_period_end": bool(obj.get("cancel_at_period_end", False)),
            "canceled_at": _ts(obj.get("canceled_at")),
            "_plan": plan,
        },
    )


_NORMALIZERS = {
    "customer": _customer,
    "payment_method": _payment_method,
    "card": _payment_method,
    "invoice": _invoice,
    "payment_intent": _payment_intent,
    "charge": _charge,
    "refund": _refund,
    "dispute": _dispute,
    "subscription": _subscription,
}


def normalize(obj: dict[str, Any]) -> MirrorRow:
    """One Stripe object → the mirror row it becomes (table + column values)."""
    kind = obj.get("object")
    fn = _NORMALIZERS.get(str(kind))
    if fn is None or not _id(obj.get("id")):
        raise UnsupportedObject(f"cannot mirror Stripe object {kind!r}")
    return fn(obj)


# ----------------------------------------------------------------------------- SQL

#: Columns a newer row may leave empty without erasing what an older one knew.
_STICKY = {
    "stripe_payment_methods": {"customer_id"},
    "stripe_charges": {"invoice_id", "payment_intent_id", "decline_code"},
    "stripe_refunds": {"customer_id"},
    "stripe_disputes": {"customer_id"},
    "stripe_invoices": {
        "last_decline_code",
        "link_expires_at",
        "hosted_invoice_url",
        # an invoice of today's API versions names neither its payments nor (at top level) its subscription
        "charge_id",
        "payment_intent_id",
        "subscription_id",
    },
    "stripe_payment_intents": {"last_decline_code"},
}
#: Columns that need a value even when the object omits it: derived from related rows.
_DERIVED = {
    (
        "stripe_refunds",
        "customer_id",
    ): "COALESCE({p}, (SELECT customer_id FROM stripe_charges WHERE id = {charge}))",
    (
        "stripe_disputes",
        "customer_id",
    ): "COALESCE({p}, (SELECT customer_id FROM stripe_charges WHERE id = {charge}))",
}


def _upsert_sql(row: MirrorRow) -> tuple[str, list[Any]]:
    cols = [c for c in row.values if not c.startswith("_")]
    args = [row.values[c] for c in cols]
    placeholders = [f"${i + 1}" for i in range(len(cols))]
    charge_p = placeholders[cols.index("charge_id")] if "charge_id" in cols else "NULL"
    exprs = [
        _DERIVED.get((row.table, c), "{p}").format(p=p, charge=charge_p)
        for c, p in zip(cols, placeholders, strict=True)
    ]
    n = len(cols)
    sticky = _STICKY.get(row.table, set())
    sets = ", ".join(
        f"{c} = COALESCE(excluded.{c}, {row.table}.{c})" if c in sticky else f"{c} = excluded.{c}"
        for c in cols
        if c != "id"
    )
    sql = (
        f"INSERT INTO {row.table} ({', '.join(cols)}, version, synced_at) "
        f"VALUES ({', '.join(exprs)}, ${n + 1}, now()) "
        f"ON CONFLICT (id) DO UPDATE SET {sets}, version = excluded.version, synced_at = now() "
        f"WHERE excluded.version >= {row.table}.version"
    )
    return sql, args


_LOAD_SQL = """
SELECT
  (SELECT row_to_json(c) FROM (SELECT id, email, name, default_payment_method, deleted, synced_at
     FROM stripe_customers WHERE id = $1) c) AS customer,
  (SELECT row_to_json(s) FROM (SELECT id, email, name FROM customers WHERE id = $1) s) AS store_customer,
  (SELECT json_agg(p) FROM (SELECT id, brand, last4, exp_month, exp_year, detached, synced_at
     FROM stripe_payment_methods WHERE customer_id = $1) p) AS payment_methods,
  (SELECT json_agg(i) FROM (SELECT id, status, amount_due_cents, amount_paid_cents, attempt_count,
       hosted_invoice_url, link_expires_at, last_decline_code, charge_id, payment_intent_id, subscription_id,
       created, next_payment_attempt, synced_at
     FROM stripe_invoices WHERE customer_id = $1 ORDER BY created DESC NULLS LAST LIMIT 24) i) AS invoices,
  (SELECT json_agg(x) FROM (SELECT id, status, amount_cents, invoice_id, last_decline_code, created, synced_at
     FROM stripe_payment_intents WHERE customer_id = $1 ORDER BY created DESC NULLS LAST LIMIT 24) x)
     AS payment_intents,
  (SELECT json_agg(ch) FROM (SELECT c.id, c.amount_cents, c.status, c.created, c.amount_refunded_cents,
       COALESCE(c.invoice_id, (SELECT i.id FROM stripe_invoices i WHERE i.customer_id = $1
          AND (i.charge_id = c.id
               OR (c.payment_intent_id IS NOT NULL AND i.payment_intent_id = c.payment_intent_id))
          LIMIT 1)) AS invoice_id,
       c.payment_intent_id, c.failure_code, c.decline_code, c.payment_method_id, c.disputed, c.description,
       c.synced_at
     FROM stripe_charges c WHERE c.customer_id = $1 ORDER BY c.created DESC LIMIT 50) ch) AS charges,
  (SELECT json_agg(r) FROM (SELECT id, charge_id, amount_cents, status, created, reason, synced_at
     FROM stripe_refunds WHERE customer_id = $1 ORDER BY created DESC LIMIT 50) r) AS refunds,
  (SELECT json_agg(d) FROM (SELECT id, charge_id, amount_cents, status, created, reason, synced_at
     FROM stripe_disputes WHERE customer_id = $1) d) AS disputes,
  (SELECT json_agg(s) FROM (SELECT id, status, plan_id, seats, price_usd, current_period_start,
       current_period_end, cancel_at_period_end, canceled_at
     FROM subscriptions WHERE customer_id = $1) s) AS subscriptions,
  (SELECT json_agg(pl) FROM (SELECT id, name, tier, price_usd, seat_limit, included_usage, overage_unit_usd
     FROM plans WHERE id IN (SELECT plan_id FROM subscriptions WHERE customer_id = $1)) pl) AS plans
"""


def _dt(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _rows(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, str):
        value = json.loads(value)
    return list(value)


def _one(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else None


class MirrorStore:
    """Reads and writes the Stripe mirror and the subscription store (asyncpg)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._plan_ids: set[str] | None = None

    # ------------------------------------------------------------------ writes
    async def upsert_object(self, obj: dict[str, Any], version_ms: int) -> None:
        """Mirror one Stripe object (and, for a subscription, the subscription/customer store rows)."""
        row = normalize(obj)
        async with self.pool.acquire() as conn, conn.transaction():
            await self._upsert_row(conn, row, version_ms)
            # Nested objects Stripe expanded (an invoice's charge, a payment intent's latest charge).
            for nested_key, link in (("charge", "invoice"), ("latest_charge", None)):
                nested = obj.get(nested_key)
                if isinstance(nested, dict) and nested.get("object") == "charge":
                    child = dict(nested)
                    if link and not _id(child.get("invoice")) and obj.get("object") == "invoice":
                        child["invoice"] = obj["id"]
                    await self._upsert_row(conn, normalize(child), version_ms)

    async def _upsert_row(self, conn: asyncpg.Connection, row: MirrorRow, version_ms: int) -> None:
        if row.table == "subscriptions":
            await self._upsert_subscription(conn, row, version_ms)
            return
        if row.table == "stripe_customers":
            await self._upsert_store_customer(conn, row)
        if row.values.get("customer_id") is None and row.table in ("stripe_invoices", "stripe_charges"):
            raise UnsupportedObject(f"{row.table} {row.values['id']} has no customer")
        sql, args = _upsert_sql(row)
        await conn.execute(sql, *args, version_ms)
        if row.table == "stripe_disputes":
            await conn.execute(
                "UPDATE stripe_charges SET disputed = true WHERE id = $1", row.values["charge_id"]
            )

    async def _upsert_store_customer(self, conn: asyncpg.Connection, row: MirrorRow) -> None:
        v = row.values
        country = (v["address"] or {}).get("country") if isinstance(v["address"], dict) else None
        await conn.execute(
            """INSERT INTO customers (id, email, name, country, tenure_start) VALUES ($1,$2,$3,$4,$5)
               ON CONFLICT (id) DO UPDATE SET email = COALESCE(excluded.email, customers.email),
                 name = COALESCE(excluded.name, customers.name),
                 country = COALESCE(excluded.country, customers.country),
                 tenure_start = COALESCE(customers.tenure_start, excluded.tenure_start)""",
            v["id"],
            v["email"],
            v["name"],
            country,
            v["created"],
        )

    async def plan_ids(self, conn: asyncpg.Connection) -> set[str]:
        if self._plan_ids is None:
            self._plan_ids = {r["id"] for r in await conn.fetch("SELECT id FROM plans")}
        return self._plan_ids

    async def resolve_plan(self, conn: asyncpg.Connection, plan: dict[str, Any]) -> str:
        """Map a Stripe plan/price to a ``plans.id``: metadata ``tl_plan``, then nickname, then id prefix."""
        known = await self.plan_ids(conn)
        meta = _meta(plan)
        candidates = [meta.get("tl_plan"), plan.get("nickname"), plan.get("id"), plan.get("lookup_key")]
        for cand in candidates:
            if not isinstance(cand, str) or not cand:
                continue
            lowered = cand.lower()
            if lowered in known:
                return lowered
            for sep in ("-", "_", " ", ":"):
                head = lowered.split(sep, 1)[0]
                if head in known:
                    return head
        # A custom plan: register it so the subscription still has a source of truth.
        plan_id = _id(plan.get("id")) or "custom"
        amount = plan.get("amount") if plan.get("amount") is not None else plan.get("unit_amount")
        interval = plan.get("interval") or (plan.get("recurring") or {}).get("interval") or "month"
        await conn.execute(
            """INSERT INTO plans (id, name, price_usd, interval, seat_limit, tier)
               VALUES ($1,$2,$3,$4,NULL,$5)
               ON CONFLICT (id) DO NOTHING""",
            plan_id,
            plan.get("nickname") or plan_id,
            round(_int(amount) / 100.0, 2),
            interval,
            _text(meta.get("tl_tier")) or "starter",
        )
        known.add(plan_id)
        log.info("diagnostics.mirror.custom_plan", plan_id=plan_id)
        return plan_id

    async def _upsert_subscription(self, conn: asyncpg.Connection, row: MirrorRow, version_ms: int) -> None:
        v = dict(row.values)
        plan = v.pop("_plan")
        v["plan_id"] = await self.resolve_plan(conn, plan) if plan else "starter"
        if v["customer_id"] is None:
            raise UnsupportedObject(f"subscription {v['id']} has no customer")
        cols = list(v)
        n = len(cols)
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "id")
        await conn.execute(
            f"INSERT INTO subscriptions ({', '.join(cols)}, version, updated_at) "
            f"VALUES ({', '.join(f'${i + 1}' for i in range(n))}, ${n + 1}, now()) "
            f"ON CONFLICT (id) DO UPDATE SET {sets}, version = excluded.version, updated_at = now() "
            f"WHERE excluded.version >= subscriptions.version",
            *[v[c] for c in cols],
            version_ms,
        )
        tier = await conn.fetchval("SELECT tier FROM plans WHERE id = $1", v["plan_id"])
        live = v["status"] not in ("canceled", "incomplete_expired")
        await conn.execute(
            """INSERT INTO customers (id, plan_tier) VALUES ($1, $2)
               ON CONFLICT (id) DO UPDATE SET plan_tier = CASE WHEN $3 THEN excluded.plan_tier
                    ELSE COALESCE(customers.plan_tier, excluded.plan_tier) END""",
            v["customer_id"],
            tier,
            live,
        )

    async def store_live_read(self, customer_id: str, objects: list[dict[str, Any]], version_ms: int) -> int:
        """Upsert what a live Stripe read returned; cards no longer listed are marked detached."""
        stored = 0
        listed_pms: list[str] = []
        for obj in objects:
            if obj.get("object") in ("payment_method", "card"):
                listed_pms.append(obj["id"])
            try:
                await self.upsert_object(obj, version_ms)
                stored += 1
            except UnsupportedObject as exc:
                log.warning("diagnostics.mirror.skipped", customer_id=customer_id, error=str(exc))
        await self.pool.execute(
            """UPDATE stripe_payment_methods SET detached = true, synced_at = now()
               WHERE customer_id = $1 AND NOT (id = ANY($2::text[])) AND version < $3""",
            customer_id,
            listed_pms,
            version_ms,
        )
        return stored

    async def apply_stripe_event(self, event_type: str, obj: dict[str, Any], created: int) -> bool:
        """Apply one verified Stripe event to the mirror. Returns False for event types it ignores."""
        kind = obj.get("object")
        if kind not in _NORMALIZERS:
            log.info("diagnostics.mirror.event_ignored", event_type=event_type, object=kind)
            return False
        version_ms = int(created) * 1000
        obj = dict(obj)
        if event_type == "customer.deleted" or (kind == "customer" and event_type.endswith(".deleted")):
            obj["deleted"] = True
        if event_type == "customer.subscription.deleted":
            obj["status"] = "canceled"
        if event_type == "invoice.deleted":
            obj["status"] = "deleted"
        await self.upsert_object(obj, version_ms)
        if event_type in ("payment_method.detached", "customer.source.deleted") or (
            kind in ("payment_method", "card") and event_type.endswith(".deleted")
        ):
            await self.pool.execute(
                "UPDATE stripe_payment_methods SET detached = true, synced_at = now() "
                "WHERE id = $1 AND version <= $2",
                obj["id"],
                version_ms,
            )
        log.info("diagnostics.mirror.event_applied", event_type=event_type, object=kind, id=obj.get("id"))
        return True

    # ------------------------------------------------------------------ reads
    async def load(self, customer_id: str) -> tuple[BillingSnapshot, Freshness]:
        rec = await self.pool.fetchrow(_LOAD_SQL, customer_id)
        assert rec is not None
        customer = _one(rec["customer"])
        store = _one(rec["store_customer"])
        stamps: list[datetime] = []

        def seen(row: dict[str, Any]) -> dict[str, Any]:
            ts = _dt(row.get("synced_at"))
            if ts is not None:
                stamps.append(ts)
            return row

        pms = tuple(
            PaymentMethodRecord(r["id"], r["brand"], r["last4"], r["exp_month"], r["exp_year"], r["detached"])
            for r in map(seen, _rows(rec["payment_methods"]))
        )
        invoices = tuple(
            InvoiceRecord(
                id=r["id"],
                status=r["status"],
                amount_due_cents=r["amount_due_cents"],
                amount_paid_cents=r["amount_paid_cents"],
                attempt_count=r["attempt_count"],
                hosted_invoice_url=r["hosted_invoice_url"],
                link_expires_at=_dt(r["link_expires_at"]),
                last_decline_code=r["last_decline_code"],
                charge_id=r["charge_id"],
                payment_intent_id=r["payment_intent_id"],
                subscription_id=r["subscription_id"],
                created=_dt(r["created"]),
                next_payment_attempt=_dt(r["next_payment_attempt"]),
            )
            for r in map(seen, _rows(rec["invoices"]))
        )
        pis = tuple(
            PaymentIntentRecord(
                r["id"],
                r["status"],
                r["amount_cents"],
                r["invoice_id"],
                r["last_decline_code"],
                _dt(r["created"]),
            )
            for r in map(seen, _rows(rec["payment_intents"]))
        )
        charges = tuple(
            ChargeRecord(
                id=r["id"],
                amount_cents=r["amount_cents"],
                status=r["status"],
                created=_dt(r["created"]) or datetime.now(UTC),
                amount_refunded_cents=r["amount_refunded_cents"],
                invoice_id=r["invoice_id"],
                payment_intent_id=r["payment_intent_id"],
                failure_code=r["failure_code"],
                decline_code=r["decline_code"],
                payment_method_id=r["payment_method_id"],
                disputed=r["disputed"],
                description=r["description"],
            )
            for r in map(seen, _rows(rec["charges"]))
        )
        refunds = tuple(
            RefundRecord(
                r["id"],
                r["charge_id"],
                r["amount_cents"],
                r["status"],
                _dt(r["created"]) or datetime.now(UTC),
                r["reason"],
            )
            for r in map(seen, _rows(rec["refunds"]))
        )
        disputes = tuple(
            DisputeRecord(
                r["id"],
                r["charge_id"],
                r["amount_cents"],
                r["status"],
                _dt(r["created"]) or datetime.now(UTC),
                r["reason"],
            )
            for r in map(seen, _rows(rec["disputes"]))
        )
        subs = tuple(
            SubscriptionRecord(
                id=r["id"],
                status=r["status"],
                plan_id=r["plan_id"],
                seats=r["seats"],
                price_usd=float(r["price_usd"]),
                current_period_start=_dt(r["current_period_start"]),
                current_period_end=_dt(r["current_period_end"]),
                cancel_at_period_end=r["cancel_at_period_end"],
                canceled_at=_dt(r["canceled_at"]),
            )
            for r in _rows(rec["subscriptions"])
        )
        plans = {
            r["id"]: PlanRecord(
                id=r["id"],
                name=r["name"],
                tier=r["tier"],
                price_usd=float(r["price_usd"]),
                seat_limit=r["seat_limit"],
                included_usage={k: float(x) for k, x in (r["included_usage"] or {}).items()},
                overage_unit_usd={k: float(x) for k, x in (r["overage_unit_usd"] or {}).items()},
            )
            for r in _rows(rec["plans"])
        }
        if customer is not None:
            seen(customer)
        snapshot = BillingSnapshot(
            customer_id=customer_id,
            customer_known=customer is not None or store is not None,
            email=(customer or {}).get("email") or (store or {}).get("email"),
            name=(customer or {}).get("name") or (store or {}).get("name"),
            deleted=bool((customer or {}).get("deleted")),
            default_payment_method_id=(customer or {}).get("default_payment_method"),
            payment_methods=pms,
            invoices=invoices,
            payment_intents=pis,
            charges=charges,
            refunds=refunds,
            disputes=disputes,
            subscriptions=subs,
            plans=plans,
        )
        return snapshot, Freshness(
            known=customer is not None, in_store=store is not None, synced_at=max(stamps) if stamps else None
        )


def now_ms() -> int:
    return int(time.time() * 1000)
