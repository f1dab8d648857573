"""The scenario world builder: one customer's billing world, made real in Stripe.

Used by the eval runner, the demo and tests. :class:`WorldSpec` is the scenario ``world`` object of
``spec/scenarios.md`` (every field optional; omitted = a healthy active subscription paid by a working
card). :func:`build_world` creates it through the Stripe SDK (the emulator or a test-mode account);
what Stripe cannot hold is returned for the caller to send through the real doors:
``pending_events`` (signed-webhook events, e.g. ``charge.dispute.created``) and ``usage_events``
(for ``usage.event.recorded.v1``).

Emulator-gap conventions (shared with diagnostics, which normalises Stripe objects for the mirror):
metadata ``tl_created`` (effective creation time of charges / invoices / refunds), ``tl_decline_code``
(invoices, charges, payment methods), ``tl_link_expires_at`` (invoices), ``tl_refund_status`` (refunds),
``tl_plan`` (plans, customers, subscriptions).

How the emulator is driven into each state (localstripe 1.15):

* history (the subscription's first invoice, ``charges``) is paid by a working visa; when the world's
  card is not that visa it becomes the default afterwards and the history card is detached;
* the subscription's first invoice *is* the newest charge of the subscription's amount (the start is
  backdated to that day); with no such charge, a prepaid-credit line makes the first invoice $0 so no
  charge appears that the scenario did not ask for;
* ``past_due`` is reached the way Stripe reaches it: a renewal invoice whose payment is declined
  (a 3-D Secure card that declines after authentication is what makes localstripe run its
  recurring-failure path); a failed invoice on an ``active`` subscription leaves it active;
* ``canceled`` / ``none`` with a failed invoice: the subscription is created, fails, then is canceled.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import stripe
import structlog
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from tierline.stripe_adapter import (
    CardDeclined,
    StripeActions,
    as_dict,
    ref_id,
)

log = structlog.get_logger(__name__)

DAY = 86_400
#: tierline's list prices (the seeded ``plans`` table), used when a world gives no ``monthly_usd``.
LIST_PRICE_USD: dict[str, float] = {"starter": 19, "pro": 49, "business": 299, "enterprise": 999}
STRIPE_API_VERSION = stripe.api_version

VISA = "4242424242424242"
DECLINES_ON_CHARGE = "4000000000000341"  # attaches, every charge declines
DECLINES_AFTER_3DS = "4000008260003178"  # needs 3DS, then declines: drives the recurring-failure path
CARD_DECLINE_CODES = {
    "declined_generic": "generic_decline",
    "declined_insufficient_funds": "insufficient_funds",
    "expired": "expired_card",
}


# ------------------------------------------------------------------------------------------------ spec
class _Spec(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CustomerSpec(_Spec):
    plan: Literal["starter", "pro", "business", "enterprise"] = "pro"
    tenure_days: int = Field(default=365, ge=0)
    email: str | None = None
    name: str | None = None
    seats: int = Field(default=1, ge=1)
    country: str = "US"


class SubscriptionSpec(_Spec):
    status: Literal["active", "past_due", "canceled", "none"] = "active"
    monthly_usd: float | None = Field(default=None, gt=0)


class ChargeSpec(_Spec):
    amount_usd: float = Field(gt=0)
    days_ago: int = Field(default=0, ge=0)


class FailedInvoiceSpec(_Spec):
    amount_usd: float | None = Field(default=None, gt=0)
    days_ago: int = Field(default=0, ge=0)
    decline_code: str | None = None


class RefundSpec(_Spec):
    amount_usd: float = Field(gt=0)
    days_ago: int = Field(default=0, ge=0)
    status: Literal["pending", "succeeded", "failed", "canceled"] = "succeeded"


class UsageSpec(_Spec):
    metric: str = "api_calls"
    limit: int | None = Field(default=None, ge=0)
    last_30d: int = Field(default=0, ge=0)
    prev_30d: int = Field(default=0, ge=0)


class WorldSpec(_Spec):
    """The scenario ``world``. Defaults: a healthy active subscription paid by a working card."""

    customer: CustomerSpec = CustomerSpec()
    card: Literal["visa", "declined_generic", "declined_insufficient_funds", "expired", "none"] = "visa"
    subscription: SubscriptionSpec = SubscriptionSpec()
    charges: list[ChargeSpec] = Field(default_factory=list)  # succeeded charges, newest first
    failed_invoice: FailedInvoiceSpec | None = None
    expired_invoice_link: bool = False
    refunds: list[RefundSpec] = Field(default_factory=list)
    dispute_open: bool = False
    usage: UsageSpec | None = None

    @property
    def monthly_usd(self) -> float:
        return self.subscription.monthly_usd or LIST_PRICE_USD[self.customer.plan]

    @property
    def needs_subscription(self) -> bool:
        return self.subscription.status != "none" or self.failed_invoice is not None

    @property
    def effective_failed_invoice(self) -> FailedInvoiceSpec | None:
        """The failed invoice to build: the one asked for, or the one a ``past_due`` status implies."""
        if self.failed_invoice is not None or self.subscription.status != "past_due":
            return self.failed_invoice
        return FailedInvoiceSpec(amount_usd=self.monthly_usd, days_ago=0)


# ---------------------------------------------------------------------------------------------- result
class UsageEvent(NamedTuple):
    metric: str
    ts: datetime
    units: int


class BuiltWorld(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    label: str
    spec: WorldSpec
    customer_id: str
    email: str
    tier: str
    plan_id: str | None = None  # the Stripe plan of the subscription
    subscription_id: str | None = None
    payment_method_id: str | None = None  # the customer's default card now (None for card "none")
    charge_ids: list[str] = Field(default_factory=list)  # aligned with spec.charges (newest first)
    support_charge_ids: list[str] = Field(default_factory=list)  # charges made to carry refunds / a dispute
    invoice_ids: list[str] = Field(default_factory=list)
    initial_invoice_id: str | None = None
    failed_invoice_id: str | None = None
    failed_charge_id: str | None = None
    refund_ids: list[str] = Field(default_factory=list)
    dispute: dict[str, Any] | None = None
    pending_events: list[dict[str, Any]] = Field(default_factory=list)
    usage_events: list[UsageEvent] = Field(default_factory=list)
    objects: dict[str, Any] = Field(default_factory=dict)  # raw Stripe objects as built, by kind
    built_at: int = 0
    _actions: StripeActions | None = PrivateAttr(default=None)


# -------------------------------------------------------------------------------------- events, signing
def _random_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(18).replace("-", "").replace("_", "")[:24]


def build_event(event_type: str, obj: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    """A Stripe Event JSON carrying ``obj``, shaped like the events Stripe sends to webhooks."""
    return {
        "id": _random_id("evt_"),
        "object": "event",
        "api_version": STRIPE_API_VERSION,
        "created": int(created if created is not None else time.time()),
        "data": {"object": as_dict(obj)},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def sign_payload(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header: ``t=<ts>,v1=<hex HMAC-SHA256(secret, f"{ts}.{payload}")>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def usage_events_for(usage: UsageSpec, now: datetime | None = None) -> list[UsageEvent]:
    """One event a day over 60 days: ``last_30d`` spread over the last 30 days, ``prev_30d`` before that.

    Day *i* is stamped ``now - i days - 1 h`` so the 30-day windows ending now hold exactly the
    asked-for totals (remainders go to the most recent days).
    """
    now = now or datetime.now(UTC)
    base = now.timestamp() - 3600
    events: list[UsageEvent] = []
    for first_day, total in ((0, usage.last_30d), (30, usage.prev_30d)):
        per_day, rest = divmod(total, 30)
        for i in range(30):
            units = per_day + (1 if i < rest else 0)
            if units:
                ts = datetime.fromtimestamp(base - (first_day + i) * DAY, UTC)
                events.append(UsageEvent(usage.metric, ts, units))
    return events


# ---------------------------------------------------------------------------------------------- builder
class _Builder:
    def __init__(self, spec: WorldSpec, actions: StripeActions, label: str) -> None:
        self.spec, self.a, self.label, self.v1 = spec, actions, label, actions.v1
        self.now = int(time.time())
        self.objects: dict[str, Any] = {"charges": {}, "invoices": {}, "refunds": {}}

    def key(self, step: str) -> str:
        return f"world:{self.label}:{step}"

    async def create(self, service: Any, params: dict[str, Any], step: str) -> dict[str, Any]:
        return as_dict(
            await self.a.call(
                lambda: service.create_async(params, {"idempotency_key": self.key(step)}),
                op=f"world.{step}",
                create=True,
            )
        )

    async def meta(self, kind: str, obj_id: str, metadata: dict[str, str], **extra: Any) -> dict[str, Any]:
        service = getattr(self.v1, kind)
        return as_dict(
            await self.a.call(
                lambda: service.update_async(obj_id, {"metadata": metadata, **extra}),
                op=f"world.{kind}.update",
            )
        )

    async def card(
        self, number: str, step: str, *, expired: bool = False, metadata: dict[str, str] | None = None
    ) -> str:
        year = datetime.now(UTC).year
        exp_month, exp_year = (1, max(2019, year - 1)) if expired else (12, year + 4)
        pm = await self.create(
            self.v1.payment_methods,
            {
                "type": "card",
                "card": {"number": number, "exp_month": exp_month, "exp_year": exp_year, "cvc": "123"},
                "metadata": metadata or {},
            },
            step,
        )
        await self.a.call(
            lambda: self.v1.payment_methods.attach_async(pm["id"], {"customer": self.customer_id}),
            op="world.pm.attach",
        )
        return str(pm["id"])

    async def set_default(self, pm_id: str | None) -> None:
        await self.a.call(
            lambda: self.v1.customers.update_async(
                self.customer_id, {"invoice_settings": {"default_payment_method": pm_id or ""}}
            ),
            op="world.customer.default_pm",
        )

    async def detach(self, pm_id: str) -> None:
        await self.a.call(lambda: self.v1.payment_methods.detach_async(pm_id), op="world.pm.detach")

    async def pay_charge(self, cents: int, days_ago: int, step: str, pm_id: str) -> dict[str, Any]:
        """A succeeded charge (through a PaymentIntent, as Stripe bills today), backdated by metadata."""
        created = str(self.now - days_ago * DAY)
        pi = await self.create(
            self.v1.payment_intents,
            {
                "amount": cents,
                "currency": "usd",
                "customer": self.customer_id,
                "payment_method": pm_id,
                "confirm": True,
                "off_session": True,
                "metadata": {"tl_created": created},
            },
            step,
        )
        charge_id = ref_id(pi.get("latest_charge"))
        assert charge_id, f"payment intent {pi['id']} made no charge"
        charge = await self.meta("charges", charge_id, {"tl_created": created})
        self.objects["charges"][charge_id] = charge
        return charge

    # -- steps -----------------------------------------------------------------------------------------
    async def build(self) -> BuiltWorld:
        spec, c = self.spec, self.spec.customer
        email = c.email or f"{self.label}@customers.tierline.test"
        customer = await self.create(
            self.v1.customers,
            {
                "email": email,
                "name": c.name or f"{self.label.replace('-', ' ').title()} Ltd",
                "address": {"country": c.country},
                "metadata": {
                    "tl_plan": c.plan,
                    "tenure_days": str(c.tenure_days),
                    "seats": str(c.seats),
                    "tl_label": self.label,
                    "tl_created": str(self.now - c.tenure_days * DAY),
                },
            },
            "customer",
        )
        self.customer_id = customer["id"]
        built = BuiltWorld(
            label=self.label,
            spec=spec,
            customer_id=self.customer_id,
            email=email,
            tier=c.plan,
            built_at=self.now,
        )
        built._actions = self.a

        # The card that paid the history: the world's visa, or a working visa detached at the end.
        history_pm = await self.card(VISA, "card.history")
        await self.set_default(history_pm)

        charges = list(enumerate(spec.charges))
        built.charge_ids = [""] * len(charges)
        if spec.needs_subscription:
            await self.subscription(built, charges)
        for idx, ch in charges:  # what the subscription invoice did not already account for
            built.charge_ids[idx] = (
                await self.pay_charge(round(ch.amount_usd * 100), ch.days_ago, f"charge.{idx}", history_pm)
            )["id"]

        world_pm = await self.world_card()
        if spec.needs_subscription and (failed := spec.effective_failed_invoice) is not None:
            await self.failed_invoice(built, failed, world_pm)
        if spec.needs_subscription and spec.subscription.status in ("canceled", "none"):
            assert built.subscription_id
            sub = as_dict(
                await self.a.call(
                    lambda: self.v1.subscriptions.cancel_async(built.subscription_id or ""),
                    op="world.subscription.cancel",
                )
            )
            self.objects["subscription"] = sub

        await self.refunds(built, history_pm)
        if spec.dispute_open:
            await self.dispute(built, history_pm)

        await self.set_default(world_pm)
        if world_pm != history_pm:
            await self.detach(history_pm)
        built.payment_method_id = world_pm
        if spec.usage is not None:
            built.usage_events = usage_events_for(spec.usage, datetime.fromtimestamp(self.now, UTC))

        self.objects["customer"] = await self.a.get_customer(self.customer_id)
        if world_pm:
            self.objects["payment_method"] = await self.a.get_payment_method(world_pm)
        if built.subscription_id:
            self.objects["subscription"] = await self.a.get_subscription(built.subscription_id)
        built.objects = self.objects
        log.info(
            "world.built",
            label=self.label,
            customer=self.customer_id,
            subscription=built.subscription_id,
            charges=len(built.charge_ids),
            failed_invoice=built.failed_invoice_id,
            refunds=len(built.refund_ids),
        )
        return built

    async def world_card(self) -> str | None:
        """The card the customer has now (``None`` for "none"); the history visa doubles as "visa"."""
        card = self.spec.card
        if card == "none":
            return None
        if card == "visa":
            return str(
                (await self.a.get_customer(self.customer_id))["invoice_settings"]["default_payment_method"]
            )
        code = CARD_DECLINE_CODES[card]
        return await self.card(
            DECLINES_ON_CHARGE,
            "card.world",
            expired=card == "expired",
            metadata={"tl_decline_code": code, **({"tl_card_expired": "true"} if card == "expired" else {})},
        )

    async def subscription(self, built: BuiltWorld, charges: list[tuple[int, ChargeSpec]]) -> None:
        spec = self.spec
        monthly_cents = round(spec.monthly_usd * 100)
        built.plan_id = await self.a.ensure_plan(spec.customer.plan, spec.monthly_usd, "month")
        # The newest charge of the subscription's amount (within one period) is its first invoice.
        first = next(
            (
                (i, ch)
                for i, ch in charges
                if round(ch.amount_usd * 100) == monthly_cents and ch.days_ago <= 27
            ),
            None,
        )
        start = self.now - (first[1].days_ago * DAY if first else 0)
        if first is None:
            await self.create(
                self.v1.invoice_items,
                {
                    "customer": self.customer_id,
                    "amount": -monthly_cents,
                    "currency": "usd",
                    "description": "Prepaid credit: first period settled before this statement",
                    "metadata": {"tl_world": "prepaid_credit"},
                },
                "sub.prepaid",
            )
        params: dict[str, Any] = {
            "customer": self.customer_id,
            "items": [{"plan": built.plan_id, "quantity": spec.customer.seats}],
            "metadata": {
                "tl_plan": spec.customer.plan,
                "tl_seats": str(spec.customer.seats),
                "tl_label": self.label,
            },
        }
        if start < self.now:
            params["backdate_start_date"] = start
        sub = await self.create(self.v1.subscriptions, params, "subscription")
        built.subscription_id = sub["id"]
        invoice_id = ref_id(sub.get("latest_invoice"))
        assert invoice_id, "localstripe creates the first invoice with the subscription"
        built.initial_invoice_id = invoice_id
        built.invoice_ids.append(invoice_id)
        invoice = await self.meta("invoices", invoice_id, {"tl_created": str(start)})
        self.objects["invoices"][invoice_id] = invoice
        if first is not None:
            idx, _ = first
            charge_id = ref_id(invoice.get("charge"))
            assert charge_id, f"first invoice {invoice_id} was not charged"
            extra = {"invoice": invoice_id} if self.a.emulated else {}
            self.objects["charges"][charge_id] = await self.meta(
                "charges", charge_id, {"tl_created": str(start)}, **extra
            )
            built.charge_ids[idx] = charge_id
            charges.remove(first)

    async def failed_invoice(
        self, built: BuiltWorld, failed: FailedInvoiceSpec, world_pm: str | None
    ) -> None:
        spec = self.spec
        assert built.subscription_id
        monthly_cents = round(spec.monthly_usd * 100)
        cents = round((failed.amount_usd or spec.monthly_usd) * 100)
        if cents != monthly_cents:
            await self.create(
                self.v1.invoice_items,
                {
                    "customer": self.customer_id,
                    "amount": cents - monthly_cents,
                    "currency": "usd",
                    "description": "Usage and adjustments" if cents > monthly_cents else "Discount",
                },
                "failed.adjust",
            )
        invoice = await self.create(
            self.v1.invoices,
            {"customer": self.customer_id, "subscription": built.subscription_id},
            "failed.invoice",
        )
        invoice_id = invoice["id"]
        code = failed.decline_code or CARD_DECLINE_CODES.get(spec.card, "insufficient_funds")
        created = self.now - failed.days_ago * DAY
        link_expiry = self.now - DAY if spec.expired_invoice_link else created + 30 * DAY
        if link_expiry <= self.now and not spec.expired_invoice_link:
            link_expiry = self.now + DAY  # a 30+ day old invoice asked to have a live link
        await self.meta(
            "invoices",
            invoice_id,
            {"tl_created": str(created), "tl_decline_code": code, "tl_link_expires_at": str(link_expiry)},
        )

        past_due = spec.subscription.status == "past_due" and self.a.emulated
        failing_pm = await self.card(
            DECLINES_AFTER_3DS if past_due else DECLINES_ON_CHARGE,
            "card.failing",
            metadata={"tl_decline_code": code},
        )
        await self.set_default(failing_pm)
        try:
            paid = as_dict(
                await self.a.call(
                    lambda: self.v1.invoices.pay_async(invoice_id), op="world.invoice.pay", create=True
                )
            )
            if past_due:  # authenticate, then the card declines: localstripe's recurring-failure path
                pi = as_dict(
                    await self.a.call(
                        lambda: self.v1.payment_intents.retrieve_async(
                            ref_id(paid.get("payment_intent")) or ""
                        ),
                        op="world.pi.get",
                    )
                )
                await self.a.raw_post(
                    f"/v1/payment_intents/{pi['id']}/_authenticate",
                    client_secret=pi["client_secret"],
                    success="true",
                )
        except CardDeclined:
            pass  # the point of the exercise
        invoice = await self.a.get_invoice(invoice_id)
        assert invoice["status"] == "open", f"failed invoice {invoice_id} is {invoice['status']}"
        charge_id = ref_id(invoice.get("charge"))
        if charge_id:
            extra = {"invoice": invoice_id} if self.a.emulated else {}
            self.objects["charges"][charge_id] = await self.meta(
                "charges", charge_id, {"tl_created": str(created), "tl_decline_code": code}, **extra
            )
        await self.set_default(world_pm)
        await self.detach(failing_pm)
        built.failed_invoice_id, built.failed_charge_id = invoice_id, charge_id
        built.invoice_ids.append(invoice_id)
        self.objects["invoices"][invoice_id] = await self.a.get_invoice(invoice_id)

    def _refundable(self, built: BuiltWorld) -> list[tuple[str, int, int]]:
        """(charge id, days ago, cents still refundable) for every succeeded charge built so far."""
        out = []
        for cid, ch in self.objects["charges"].items():
            if ch.get("status") != "succeeded" or cid not in built.charge_ids + built.support_charge_ids:
                continue
            days_ago = (self.now - int((ch.get("metadata") or {}).get("tl_created") or ch["created"])) // DAY
            out.append((cid, days_ago, int(ch["amount"]) - int(ch.get("amount_refunded") or 0)))
        return out

    async def refunds(self, built: BuiltWorld, history_pm: str) -> None:
        for i, r in enumerate(self.spec.refunds):
            cents = round(r.amount_usd * 100)
            fits = sorted(
                (days, cid)
                for cid, days, left in self._refundable(built)
                if left >= cents and days >= r.days_ago
            )
            if fits:
                charge_id = fits[0][1]
            else:  # a refund needs a charge: make the one it refunds
                charge = await self.pay_charge(cents, r.days_ago + 2, f"refund.{i}.charge", history_pm)
                charge_id = charge["id"]
                built.support_charge_ids.append(charge_id)
            result = await self.a.refund(charge_id, cents, "requested_by_customer", self.key(f"refund.{i}"))
            extra = {"status": r.status} if self.a.emulated and r.status != "succeeded" else {}
            refund = await self.meta(
                "refunds",
                result.refund_id,
                {"tl_created": str(self.now - r.days_ago * DAY), "tl_refund_status": r.status},
                **extra,
            )
            self.objects["refunds"][refund["id"]] = refund
            self.objects["charges"][charge_id] = await self.a.get_charge(charge_id)
            built.refund_ids.append(refund["id"])

    async def dispute(self, built: BuiltWorld, history_pm: str) -> None:
        ids = [cid for cid in built.charge_ids if cid] or built.support_charge_ids
        if ids:
            charge = await self.a.get_charge(ids[0])
        else:
            charge = await self.pay_charge(
                round(self.spec.monthly_usd * 100), 5, "dispute.charge", history_pm
            )
            built.support_charge_ids.append(charge["id"])
        dispute = dispute_object(charge, self.now)
        built.dispute = dispute
        built.pending_events.append(build_event("charge.dispute.created", dispute, created=self.now))


def dispute_object(charge: dict[str, Any], now: int) -> dict[str, Any]:
    """A ``dispute`` object as Stripe sends it in ``charge.dispute.created`` (the emulator has none)."""
    return {
        "id": _random_id("dp_"),
        "object": "dispute",
        "amount": int(charge["amount"]),
        "balance_transactions": [],
        "charge": charge["id"],
        "created": now,
        "currency": charge.get("currency") or "usd",
        "evidence": {},
        "evidence_details": {
            "due_by": now + 7 * DAY,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {"tl_customer": charge.get("customer") or ""},
        "payment_intent": ref_id(charge.get("payment_intent")),
        "reason": "general",
        "status": "needs_response",
    }


async def build_world(spec: WorldSpec | dict[str, Any], actions: StripeActions, *, label: str) -> BuiltWorld:
    """Create the scenario world in Stripe. ``label`` makes ids / emails / idempotency keys unique."""
    world = spec if isinstance(spec, WorldSpec) else WorldSpec.model_validate(spec)
    return await _Builder(world, actions, label).build()


# ---------------------------------------------------------------------------------------- world events
def _card_source(pm: dict[str, Any]) -> dict[str, Any]:
    card = pm.get("card") or {}
    return {
        "id": pm["id"],
        "object": "card",
        "brand": str(card.get("brand", "visa")).title(),
        "country": card.get("country"),
        "customer": pm.get("customer"),
        "exp_month": card.get("exp_month"),
        "exp_year": card.get("exp_year"),
        "fingerprint": card.get("fingerprint"),
        "funding": card.get("funding"),
        "last4": card.get("last4"),
        "metadata": pm.get("metadata") or {},
    }


async def world_event(
    spec_stripe_event: dict[str, Any], built: BuiltWorld, actions: StripeActions | None = None
) -> dict[str, Any]:
    """The scenario's ``stripe_event`` as a Stripe Event, its object re-read from Stripe (through
    ``actions``, by default the adapter that built the world).

    Supported: ``invoice.payment_failed`` / ``invoice.payment_succeeded`` / ``invoice.finalized``,
    ``invoice.upcoming``, ``charge.failed``, ``charge.succeeded``, ``charge.refunded``,
    ``charge.dispute.created``, ``customer.source.expiring``, ``payment_method.updated`` /
    ``payment_method.attached``, ``customer.updated``, ``customer.subscription.updated`` /
    ``.deleted``. Raises ``ValueError`` when the world lacks what the event is about.
    """
    actions = actions or built._actions
    if actions is None:
        raise ValueError("world_event needs the StripeActions the world was built with")
    etype = str(spec_stripe_event["type"])
    if etype.startswith("invoice.") and etype != "invoice.upcoming":
        invoice_id = built.failed_invoice_id or (built.invoice_ids[-1] if built.invoice_ids else None)
        if invoice_id is None:
            raise ValueError(f"{etype}: the world has no invoice")
        return build_event(etype, await actions.get_invoice(invoice_id))
    if etype == "invoice.upcoming":
        upcoming = await actions.raw_get("/v1/invoices/upcoming", customer=built.customer_id)
        return build_event(etype, upcoming)
    if etype == "charge.failed":
        if not built.failed_charge_id:
            raise ValueError("charge.failed: the world has no failed charge (give it a failed_invoice)")
        return build_event(etype, await actions.get_charge(built.failed_charge_id))
    if etype in ("charge.succeeded", "charge.refunded", "charge.updated"):
        ids = [c for c in built.charge_ids if c] + built.support_charge_ids
        if not ids:
            raise ValueError(f"{etype}: the world has no charge")
        return build_event(etype, await actions.get_charge(ids[0]))
    if etype == "charge.dispute.created":
        if built.dispute is not None:
            return build_event(etype, built.dispute)
        ids = [c for c in built.charge_ids if c] + built.support_charge_ids
        if not ids:
            raise ValueError("charge.dispute.created: the world has no charge to dispute")
        return build_event(etype, dispute_object(await actions.get_charge(ids[0]), int(time.time())))
    if etype in (
        "customer.source.expiring",
        "payment_method.updated",
        "payment_method.attached",
        "payment_method.automatically_updated",
    ):
        if not built.payment_method_id:
            raise ValueError(f"{etype}: the world has no card")
        pm = await actions.get_payment_method(built.payment_method_id)
        return build_event(etype, _card_source(pm) if etype == "customer.source.expiring" else pm)
    if etype.startswith("customer.subscription."):
        if not built.subscription_id:
            raise ValueError(f"{etype}: the world has no subscription")
        return build_event(etype, await actions.get_subscription(built.subscription_id))
    if etype.startswith("customer."):
        return build_event(etype, await actions.get_customer(built.customer_id))
    raise ValueError(f"unsupported scenario stripe_event type {etype!r}")
