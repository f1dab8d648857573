"""The Stripe WRITE adapter: every billing action tierline may take, typed, retried and keyed.

One class, :class:`StripeActions`, built from :class:`~tierline.settings.InfraSettings`. The same code
talks to real Stripe (``stripe_api_base is None``) and to the localstripe emulator; where the emulator
lacks a feature, the gap is closed *here*, never in callers:

* **Idempotency.** Every write takes an ``idempotency_key`` and sends it to Stripe (real Stripe
  honours it; the emulator ignores it). The key is also written into metadata so a reconcile can see
  that an effect already happened: ``tl_idem`` on objects the action *creates* (refunds, proration
  items), ``tl_idem_<action>`` on objects it *updates* (``tl_idem_retry``, ``tl_idem_link``,
  ``tl_idem_cancel``, ``tl_idem_plan``, ``tl_idem_update``), so two actions never overwrite each
  other's proof. ``find_refund`` / ``find_invoice_retry`` / ``find_plan_change`` are the reconcile hooks
  for :meth:`tierline.ledger.ActionLedger.execute`.
* **Refund limits.** The emulator accepts refunds above the charge; the adapter checks the remaining
  refundable amount first and raises :class:`RefundExceedsCharge`.
* **Declines.** The emulator only reports ``card_declined``; the issuer decline code is read from the
  ``tl_decline_code`` metadata of the payment method / invoice (the world builder's convention).
* **Proration.** localstripe's upcoming-invoice simulation credits *whole* previous invoices, so on the
  emulator the preview is computed here from the current period (``source="computed"``) and
  :meth:`change_plan` replaces the emulator's "Unused time" items with the same computed prorations.
* **Links.** No billing portal / hosted invoice pages on the emulator: signed product pages instead
  (``{public_base_url}/update-card?token=`` 24 h, ``{public_base_url}/pay/{invoice}?token=`` 30 days),
  HS256 JWTs under ``session_secret``; :func:`verify_link_token` checks them. Nor invoice PDFs:
  :meth:`StripeActions.stripe_documents` gives Stripe's own hosted page and PDF on real Stripe and
  ``None`` on the emulator, where tier 1 serves signed ``/invoices/{id}`` and ``/invoices/{id}.pdf``
  (rendered by ``tierline/invoice_pdf.py``); receipts are tier 1's ``/receipts/{charge}?token=`` on both
  (:func:`receipt_url`).

Transient failures (connection errors, 5xx, 429) are retried with tenacity inside this module; a
create on the emulator is retried only when the request provably never reached it, because there the
idempotency key protects nothing. Business failures are :class:`~tierline.ledger.ActionFailed`
subclasses, so the ledger records them as ``failed`` without special casing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Literal, Protocol, TypeVar

import jwt
import stripe
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from tierline import metrics
from tierline.ledger import ActionFailed
from tierline.settings import InfraSettings

log = structlog.get_logger(__name__)

T = TypeVar("T")

UPDATE_CARD_TTL_S = 24 * 3600
INVOICE_LINK_TTL_S = 30 * 24 * 3600
#: Signed links to tierline's own invoice documents (hosted page + PDF, subject = the invoice id) and
#: payment receipts (subject = the charge id), served by tier 1 where Stripe has no page of its own.
INVOICE_DOCUMENT_PURPOSE = "invoice_document"
RECEIPT_PURPOSE = "receipt"
LINK_ALGORITHM = "HS256"
STRIPE_REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})


# --------------------------------------------------------------------------------------------- errors
class StripeActionError(Exception):
    """Base of every error this adapter raises."""


class StripeUnavailable(StripeActionError):
    """Stripe could not be reached (or kept failing with 5xx / 429) after retries: try again later."""


class StripeAuthFailed(StripeActionError):
    """The API key was rejected: a configuration error, never retried."""


class StripeNotFound(StripeActionError):
    """The object does not exist (or belongs to another account)."""


class InvalidStripeRequest(StripeActionError):
    """Stripe rejected the request as invalid."""


class CardDeclined(ActionFailed, StripeActionError):
    """The card was declined. ``code`` is the issuer decline code (``insufficient_funds`` ...)."""

    def __init__(
        self, code: str, message: str = "card declined", result: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{message} ({code})", result)
        self.code = code


class RefundExceedsCharge(ActionFailed, StripeActionError):
    def __init__(self, charge_id: str, requested_cents: int, remaining_cents: int) -> None:
        super().__init__(
            f"refund of {requested_cents} exceeds the {remaining_cents} still refundable on {charge_id}",
            {"charge_id": charge_id, "requested_cents": requested_cents, "remaining_cents": remaining_cents},
        )
        self.charge_id = charge_id
        self.requested_cents = requested_cents
        self.remaining_cents = remaining_cents


class ChargeNotRefundable(ActionFailed, StripeActionError):
    """The charge did not succeed (failed / pending), so nothing can be refunded."""


class InvoiceNotPayable(ActionFailed, StripeActionError):
    """The invoice is void / uncollectible, or the customer has no payment method to charge."""


#: ``error`` label of tierline_stripe_call_errors_total (first match; a decline is a business outcome)
_ERROR_KINDS: tuple[tuple[type[StripeActionError], str], ...] = (
    (CardDeclined, "card_declined"),
    (StripeUnavailable, "unavailable"),
    (StripeAuthFailed, "auth"),
    (StripeNotFound, "not_found"),
)


class LinkInvalid(StripeActionError):
    """A signed link token is malformed, tampered with, or for another purpose."""


class LinkExpired(LinkInvalid):
    """A signed link token is past its expiry."""


# -------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class _Result:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RetryResult(_Result):
    invoice_id: str
    status: Literal["paid", "failed"]
    amount_cents: int
    charge_id: str | None = None
    decline_code: str | None = None
    already_paid: bool = False
    idempotency_key: str | None = None


@dataclass(frozen=True)
class RefundResult(_Result):
    refund_id: str
    charge_id: str
    amount_cents: int
    status: str
    reason: str | None
    created: int
    idempotency_key: str | None


@dataclass(frozen=True)
class CustomerResult(_Result):
    customer_id: str
    email: str | None
    name: str | None
    address: dict[str, Any] | None


@dataclass(frozen=True)
class TaxIdResult(_Result):
    tax_id: str
    customer_id: str
    type: str
    value: str
    already_present: bool = False


@dataclass(frozen=True)
class SubscriptionResult(_Result):
    subscription_id: str
    status: str
    plan_id: str
    quantity: int
    cancel_at_period_end: bool
    current_period_start: int | None
    current_period_end: int | None


@dataclass(frozen=True)
class ProrationPreview(_Result):
    subscription_id: str
    old_plan_id: str
    new_plan_id: str
    old_seats: int
    new_seats: int
    old_amount_cents: int
    new_amount_cents: int
    credit_cents: int  # unused time on the old plan, given back (positive number)
    charge_cents: int  # remaining time on the new plan
    net_cents: int  # charge - credit: what the next invoice changes by
    proration_date: int
    period_end: int | None
    currency: str
    source: Literal["stripe_preview", "computed"]
    note: str = ""


@dataclass(frozen=True)
class PlanChangeResult(_Result):
    subscription: SubscriptionResult
    proration: ProrationPreview
    proration_item_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SignedLink(_Result):
    url: str
    expires_at: int
    kind: Literal["billing_portal", "signed_page", "hosted_invoice"]


@dataclass(frozen=True)
class PortalSession(_Result):
    """A Stripe Customer Portal session (``billing_portal.session``): open ``url`` once, soon."""

    id: str
    customer: str
    url: str
    return_url: str | None
    configuration: str | None
    created: int


@dataclass(frozen=True)
class InvoiceLink(_Result):
    invoice_id: str
    url: str
    expires_at: int
    expired: bool
    kind: Literal["signed_page", "hosted_invoice"]


@dataclass(frozen=True)
class InvoiceDocument(_Result):
    invoice_id: str
    number: str | None
    status: str
    amount_due_cents: int
    amount_paid_cents: int
    currency: str
    created: int
    hosted_url: str
    pdf_url: str
    expires_at: int


# ----------------------------------------------------------------------------------------------- port
class BillingActions(Protocol):
    """What tier services need from Stripe. :class:`StripeActions` is the adapter; fakes implement this."""

    async def retry_invoice(self, invoice_id: str, idempotency_key: str) -> RetryResult: ...
    async def find_invoice_retry(self, invoice_id: str, idempotency_key: str) -> RetryResult | None: ...
    async def refund(
        self, charge_id: str, amount_cents: int, reason: str, idempotency_key: str
    ) -> RefundResult: ...
    async def find_refund(self, charge_id: str, idempotency_key: str) -> RefundResult | None: ...
    async def update_customer(
        self,
        customer_id: str,
        *,
        idempotency_key: str,
        email: str | None = None,
        name: str | None = None,
        address: dict[str, str] | None = None,
    ) -> CustomerResult: ...
    async def add_tax_id(
        self, customer_id: str, type: str, value: str, idempotency_key: str
    ) -> TaxIdResult: ...
    async def cancel_at_period_end(
        self, subscription_id: str, idempotency_key: str
    ) -> SubscriptionResult: ...
    async def preview_plan_change(
        self, subscription_id: str, new_stripe_plan_id: str, seats: int | None = None
    ) -> ProrationPreview: ...
    async def change_plan(
        self, subscription_id: str, new_stripe_plan_id: str, seats: int | None, idempotency_key: str
    ) -> PlanChangeResult: ...
    async def update_card_link(self, customer_id: str, return_url: str) -> SignedLink: ...
    async def invoice_link(self, invoice_id: str) -> InvoiceLink: ...
    async def regenerate_invoice_link(self, invoice_id: str, idempotency_key: str) -> InvoiceLink: ...
    async def send_invoice(self, invoice_id: str) -> InvoiceDocument: ...


# ---------------------------------------------------------------------------------------- link tokens
def sign_link_token(secret: str, *, purpose: str, subject: str, expires_at: int, **claims: Any) -> str:
    payload = {
        "purpose": purpose,
        "sub": subject,
        "iat": int(time.time()),
        "exp": int(expires_at),
        "jti": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode(payload, secret, algorithm=LINK_ALGORITHM)


def receipt_url(base_url: str, secret: str, charge_id: str, *, now: int | None = None) -> str:
    """The signed link to tier 1's receipt page for one payment (30 days)."""
    expires = int(now if now is not None else time.time()) + INVOICE_LINK_TTL_S
    token = sign_link_token(secret, purpose=RECEIPT_PURPOSE, subject=charge_id, expires_at=expires)
    return f"{base_url.rstrip('/')}/receipts/{charge_id}?token={token}"


def verify_link_token(token: str, secret: str, *, purpose: str) -> dict[str, Any]:
    """Check a signed link token (update-card / pay-invoice page); returns its claims.

    Raises :class:`LinkExpired` past ``exp`` and :class:`LinkInvalid` for a bad signature or purpose.
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[LINK_ALGORITHM], options={"require": ["exp", "sub", "purpose"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise LinkExpired("link expired") from exc
    except jwt.PyJWTError as exc:
        raise LinkInvalid(f"invalid link token: {exc}") from exc
    if claims.get("purpose") != purpose:
        raise LinkInvalid(f"token is for {claims.get('purpose')!r}, not {purpose!r}")
    return claims


# ---------------------------------------------------------------------------------------- SDK helpers
def as_dict(obj: Any) -> dict[str, Any]:
    """A Stripe SDK object (or StripeResponse, or dict) as a plain recursive dict."""
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "to_dict"):
        return obj.to_dict()  # type: ignore[no-any-return]
    if hasattr(obj, "body"):
        return json.loads(obj.body)  # type: ignore[no-any-return]
    raise TypeError(f"cannot convert {type(obj).__name__} to dict")


def ref_id(value: Any) -> str | None:
    """An id from a field that may be an id or an expanded object."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return value.get("id")
    return getattr(value, "id", None)


def plan_amount_cents(plan: dict[str, Any], quantity: int) -> int:
    """What one period of ``plan`` costs for ``quantity`` units (per-unit or tiered plans)."""
    if (plan.get("billing_scheme") or "per_unit") == "per_unit":
        return int(plan.get("amount") or 0) * quantity
    tiers = plan.get("tiers") or []

    def cap(t: dict[str, Any]) -> float:
        return float("inf") if t.get("up_to") in (None, "inf") else int(t["up_to"])

    if plan.get("tiers_mode") == "graduated":
        total, lower = 0, 0
        for t in tiers:
            if quantity <= lower:
                break
            upper = min(quantity, cap(t))
            total += int(t.get("unit_amount") or 0) * int(upper - lower) + int(t.get("flat_amount") or 0)
            lower = int(upper) if upper != float("inf") else quantity
        return total
    for t in tiers:
        if quantity <= cap(t):
            return int(t.get("unit_amount") or 0) * quantity + int(t.get("flat_amount") or 0)
    return 0


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    return isinstance(exc, stripe.StripeError) and (exc.http_status or 0) >= 500


def _decline_code_of(err: stripe.StripeError) -> str | None:
    e = getattr(err, "error", None)
    return getattr(e, "decline_code", None) or getattr(err, "code", None)


# ---------------------------------------------------------------------------------------------- adapter
class StripeActions:
    """The Stripe write adapter (plus the few reads the actions need)."""

    def __init__(self, settings: InfraSettings, *, max_attempts: int = 4) -> None:
        self.settings = settings
        self.emulated = settings.stripe_api_base is not None
        kwargs: dict[str, Any] = {"max_network_retries": 0}
        if self.emulated:
            kwargs["base_addresses"] = {"api": settings.stripe_api_base}
        self.client = stripe.StripeClient(settings.stripe_api_key.get_secret_value(), **kwargs)
        # the SDK's TypedDict params add nothing over the checks here: services are used untyped
        self.v1: Any = self.client.v1
        self._max_attempts = max_attempts
        self._secret = settings.session_secret.get_secret_value()
        self._base_url = settings.public_base_url.rstrip("/")

    # -- plumbing ------------------------------------------------------------------------------------
    async def call(self, fn: Callable[[], Awaitable[T]], *, op: str, create: bool = False) -> T:
        """:meth:`_call`, timed and counted (``tierline_stripe_call_*``)."""
        operation = metrics.stripe_operation(op)
        started = time.perf_counter()
        try:
            return await self._call(fn, op=op, create=create)
        except StripeActionError as exc:
            kind = next((k for cls, k in _ERROR_KINDS if isinstance(exc, cls)), "invalid")
            metrics.STRIPE_ERRORS.labels(operation, kind).inc()
            raise
        finally:
            metrics.STRIPE_SECONDS.labels(operation).observe(time.perf_counter() - started)

    async def _call(self, fn: Callable[[], Awaitable[T]], *, op: str, create: bool = False) -> T:
        """Run one SDK coroutine with retries on transient errors and typed error mapping.

        ``create=True`` marks a non-idempotent write: on the emulator (which ignores idempotency keys)
        it is not retried at all; the ledger's reconcile covers it.
        """

        def retryable(exc: BaseException) -> bool:
            if not _is_transient(exc):
                return False
            # the emulator ignores idempotency keys: a blind retry of a create could double the effect
            return not (create and self.emulated)

        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._max_attempts),
                wait=wait_exponential(multiplier=0.2, max=3),
                retry=retry_if_exception(retryable),
                reraise=True,
            ):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        log.warning("stripe.call.retrying", op=op, attempt=attempt.retry_state.attempt_number)
                    return await fn()
        except stripe.CardError as exc:
            code = _decline_code_of(exc) or "card_declined"
            raise CardDeclined(code, exc.user_message or "card declined", {"op": op}) from exc
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            raise StripeAuthFailed(f"{op}: {exc.user_message or exc}") from exc
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                raise StripeNotFound(f"{op}: {exc.user_message or exc}") from exc
            raise InvalidStripeRequest(f"{op}: {exc.user_message or exc}") from exc
        except stripe.StripeError as exc:
            if _is_transient(exc):
                log.error("stripe.call.unavailable", op=op, error=type(exc).__name__)
                raise StripeUnavailable(f"{op}: {exc.user_message or exc}") from exc
            raise InvalidStripeRequest(f"{op}: {exc.user_message or exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _opts(key: str | None, step: str | None = None) -> dict[str, Any]:
        if not key:
            return {}
        return {"idempotency_key": f"{key}:{step}" if step else key}

    async def raw_get(self, path: str, **params: Any) -> dict[str, Any]:
        """A GET on an endpoint the typed SDK services do not cover (e.g. ``/v1/invoices/upcoming``)."""
        resp = await self.call(lambda: self.client.raw_request_async("get", path, **params), op=f"GET {path}")
        return as_dict(resp)

    async def raw_post(self, path: str, *, key: str | None = None, **params: Any) -> dict[str, Any]:
        if key:
            params["idempotency_key"] = key
        resp = await self.call(
            lambda: self.client.raw_request_async("post", path, **params), op=f"POST {path}"
        )
        return as_dict(resp)

    async def get_invoice(self, invoice_id: str) -> dict[str, Any]:
        return as_dict(await self.call(lambda: self.v1.invoices.retrieve_async(invoice_id), op="invoice.get"))

    async def get_charge(self, charge_id: str) -> dict[str, Any]:
        return as_dict(await self.call(lambda: self.v1.charges.retrieve_async(charge_id), op="charge.get"))

    async def invoice_decline_code(self, invoice_id: str) -> str | None:
        """Why an invoice's last payment failed, fetched from Stripe when the event did not say.

        Current API versions list an invoice's payments as InvoicePayment objects (the invoice names no
        charge or payment intent): ``/v1/invoice_payments?invoice=`` with the payment intents and charges
        expanded. Older versions (and the emulator, which has no such endpoint) put them on the invoice:
        the invoice with ``payment_intent`` and ``charge`` expanded. Either way the code comes from
        Stripe's own fields (tierline/billing/stripe_shapes.py); ``None`` when no payment failed."""
        from tierline.billing import stripe_shapes

        if not self.emulated:
            try:
                listed = await self.raw_get(
                    "/v1/invoice_payments",
                    invoice=invoice_id,
                    limit=10,
                    expand=["data.payment.payment_intent", "data.payment.charge"],
                )
                code = stripe_shapes.invoice_decline_code({"payments": listed})
                if code:
                    return code
            except (StripeNotFound, InvalidStripeRequest):
                pass  # an account on an older API version: the invoice names its payments itself
        invoice = as_dict(
            await self.call(
                lambda: self.v1.invoices.retrieve_async(invoice_id, {"expand": ["payment_intent", "charge"]}),
                op="invoice.get",
            )
        )
        return stripe_shapes.invoice_decline_code(invoice)

    async def get_customer(self, customer_id: str) -> dict[str, Any]:
        return as_dict(
            await self.call(lambda: self.v1.customers.retrieve_async(customer_id), op="customer.get")
        )

    async def get_subscription(self, subscription_id: str) -> dict[str, Any]:
        return as_dict(
            await self.call(
                lambda: self.v1.subscriptions.retrieve_async(subscription_id), op="subscription.get"
            )
        )

    async def get_plan(self, plan_id: str) -> dict[str, Any]:
        return as_dict(await self.call(lambda: self.v1.plans.retrieve_async(plan_id), op="plan.get"))

    async def get_payment_method(self, pm_id: str) -> dict[str, Any]:
        return as_dict(
            await self.call(lambda: self.v1.payment_methods.retrieve_async(pm_id), op="payment_method.get")
        )

    async def _update_metadata(
        self, kind: str, obj_id: str, metadata: dict[str, str], key: str | None, **extra: Any
    ) -> dict[str, Any]:
        service = getattr(self.v1, kind)
        params = {"metadata": metadata, **extra}
        return as_dict(
            await self.call(
                lambda: service.update_async(obj_id, params, self._opts(key, f"{kind}.meta")),
                op=f"{kind}.update",
            )
        )

    # -- payments ------------------------------------------------------------------------------------
    async def _default_payment_method(self, customer: dict[str, Any]) -> str | None:
        settings = customer.get("invoice_settings") or {}
        return ref_id(settings.get("default_payment_method")) or ref_id(customer.get("default_source"))

    async def _emulator_decline_code(self, invoice: dict[str, Any], pm_id: str | None) -> str:
        if pm_id:
            try:
                pm = await self.get_payment_method(pm_id)
                if code := (pm.get("metadata") or {}).get("tl_decline_code"):
                    return str(code)
            except StripeNotFound:
                pass
        return str((invoice.get("metadata") or {}).get("tl_decline_code") or "generic_decline")

    async def retry_invoice(self, invoice_id: str, idempotency_key: str) -> RetryResult:
        """Pay an open invoice with the customer's default payment method.

        Returns a ``paid`` :class:`RetryResult` (``already_paid`` when nothing had to be charged);
        raises :class:`CardDeclined` (with the failed result in ``.result``) on a decline.
        """
        invoice = await self.get_invoice(invoice_id)
        amount = int(invoice.get("amount_due") or 0)
        if invoice.get("status") == "paid":
            return RetryResult(
                invoice_id,
                "paid",
                amount,
                ref_id(invoice.get("charge")),
                already_paid=True,
                idempotency_key=idempotency_key,
            )
        if invoice.get("status") not in ("open", "draft"):
            raise InvoiceNotPayable(
                f"invoice {invoice_id} is {invoice.get('status')}",
                {"invoice_id": invoice_id, "status": invoice.get("status")},
            )
        customer = await self.get_customer(ref_id(invoice.get("customer")) or "")
        pm_id = await self._default_payment_method(customer)
        if pm_id is None:
            raise InvoiceNotPayable(
                f"customer {customer.get('id')} has no payment method",
                {"invoice_id": invoice_id, "reason": "no_payment_method"},
            )
        params: dict[str, Any] = {} if self.emulated else {"off_session": True}
        decline: CardDeclined | None = None
        try:
            invoice = as_dict(
                await self.call(
                    lambda: self.v1.invoices.pay_async(
                        invoice_id, params, self._opts(idempotency_key, "pay")
                    ),
                    op="invoice.pay",
                    create=True,
                )
            )
        except CardDeclined as exc:  # real Stripe reports the decline as an error
            decline = exc
            invoice = await self.get_invoice(invoice_id)
        if invoice.get("status") == "paid":
            charge_id = ref_id(invoice.get("charge"))
            await self._update_metadata(
                "invoices", invoice_id, {"tl_idem_retry": idempotency_key, "tl_retry_status": "paid"}, None
            )
            if self.emulated and charge_id:
                await self._link_charge(charge_id, invoice_id, {"tl_created": str(int(time.time()))})
            log.info("stripe.invoice.retry.paid", invoice=invoice_id, charge=charge_id)
            return RetryResult(invoice_id, "paid", amount, charge_id, idempotency_key=idempotency_key)

        charge_id, code = None, decline.code if decline else None
        pi_id = ref_id(invoice.get("payment_intent"))
        if pi_id:
            pi = as_dict(await self.call(lambda: self.v1.payment_intents.retrieve_async(pi_id), op="pi.get"))
            err = pi.get("last_payment_error") or {}
            charge_id = ref_id(err.get("charge")) or ref_id(pi.get("latest_charge"))
            code = err.get("decline_code") or code
        if self.emulated or code in (None, "card_declined"):
            code = (
                await self._emulator_decline_code(invoice, pm_id)
                if self.emulated
                else (code or "card_declined")
            )
        result = RetryResult(invoice_id, "failed", amount, charge_id, code, idempotency_key=idempotency_key)
        await self._update_metadata(
            "invoices",
            invoice_id,
            {"tl_idem_retry": idempotency_key, "tl_retry_status": "failed", "tl_decline_code": code},
            None,
        )
        if self.emulated and charge_id:
            await self._link_charge(
                charge_id, invoice_id, {"tl_decline_code": code, "tl_created": str(int(time.time()))}
            )
        log.info("stripe.invoice.retry.declined", invoice=invoice_id, charge=charge_id, decline_code=code)
        raise CardDeclined(code, "payment declined", result.to_dict())

    async def _link_charge(self, charge_id: str, invoice_id: str, metadata: dict[str, str]) -> None:
        """Emulator only: localstripe leaves ``charge.invoice`` empty; fill it so the mirror can join."""
        await self._update_metadata("charges", charge_id, metadata, None, invoice=invoice_id)

    async def find_invoice_retry(self, invoice_id: str, idempotency_key: str) -> RetryResult | None:
        """Reconcile: did a retry with this key already run? (its outcome, or None)."""
        invoice = await self.get_invoice(invoice_id)
        meta = invoice.get("metadata") or {}
        if meta.get("tl_idem_retry") != idempotency_key:
            return None
        paid = invoice.get("status") == "paid"
        return RetryResult(
            invoice_id,
            "paid" if paid else "failed",
            int(invoice.get("amount_due") or 0),
            ref_id(invoice.get("charge")),
            None if paid else meta.get("tl_decline_code"),
            idempotency_key=idempotency_key,
        )

    # -- refunds -------------------------------------------------------------------------------------
    @staticmethod
    def _refund_result(r: dict[str, Any]) -> RefundResult:
        meta = r.get("metadata") or {}
        return RefundResult(
            refund_id=r["id"],
            charge_id=ref_id(r.get("charge")) or "",
            amount_cents=int(r.get("amount") or 0),
            status=str(meta.get("tl_refund_status") or r.get("status") or "succeeded"),
            reason=r.get("reason") or meta.get("tl_reason"),
            created=int(meta.get("tl_created") or r["created"]),
            idempotency_key=meta.get("tl_idem"),
        )

    async def refund(
        self, charge_id: str, amount_cents: int, reason: str, idempotency_key: str
    ) -> RefundResult:
        """Refund part or all of a succeeded charge; :class:`RefundExceedsCharge` above what is left."""
        if amount_cents <= 0:
            raise InvalidStripeRequest(f"refund amount must be positive, got {amount_cents}")
        charge = await self.get_charge(charge_id)
        if charge.get("status") != "succeeded":
            raise ChargeNotRefundable(
                f"charge {charge_id} is {charge.get('status')}",
                {"charge_id": charge_id, "status": charge.get("status")},
            )
        remaining = int(charge.get("amount") or 0) - int(charge.get("amount_refunded") or 0)
        if amount_cents > remaining:
            raise RefundExceedsCharge(charge_id, amount_cents, remaining)
        params: dict[str, Any] = {
            "charge": charge_id,
            "amount": amount_cents,
            "metadata": {"tl_idem": idempotency_key, "tl_reason": reason},
        }
        if not self.emulated and reason in STRIPE_REFUND_REASONS:
            params["reason"] = reason  # localstripe rejects the parameter
        refund = as_dict(
            await self.call(
                lambda: self.v1.refunds.create_async(params, self._opts(idempotency_key)),
                op="refund.create",
                create=True,
            )
        )
        log.info("stripe.refund.created", charge=charge_id, refund=refund["id"], amount_cents=amount_cents)
        return self._refund_result(refund)

    async def find_refund(self, charge_id: str, idempotency_key: str) -> RefundResult | None:
        """Reconcile: the refund this key already made on the charge, if any."""
        page = as_dict(
            await self.call(
                lambda: self.v1.refunds.list_async({"charge": charge_id, "limit": 100}), op="refund.list"
            )
        )
        for r in page.get("data", []):
            if (r.get("metadata") or {}).get("tl_idem") == idempotency_key:
                return self._refund_result(r)
        return None

    # -- customer ------------------------------------------------------------------------------------
    async def update_customer(
        self,
        customer_id: str,
        *,
        idempotency_key: str,
        email: str | None = None,
        name: str | None = None,
        address: dict[str, str] | None = None,
    ) -> CustomerResult:
        params: dict[str, Any] = {"metadata": {"tl_idem_update": idempotency_key}}
        if email is not None:
            params["email"] = email
        if name is not None:
            params["name"] = name
        if address is not None:
            params["address"] = {k: v for k, v in address.items() if v is not None}
        if len(params) == 1:
            raise InvalidStripeRequest("nothing to update: give email, name or address")
        c = as_dict(
            await self.call(
                lambda: self.v1.customers.update_async(customer_id, params, self._opts(idempotency_key)),
                op="customer.update",
            )
        )
        log.info("stripe.customer.updated", customer=customer_id, fields=sorted(set(params) - {"metadata"}))
        return CustomerResult(c["id"], c.get("email"), c.get("name"), c.get("address"))

    async def add_tax_id(self, customer_id: str, type: str, value: str, idempotency_key: str) -> TaxIdResult:
        existing = as_dict(
            await self.call(lambda: self.v1.customers.tax_ids.list_async(customer_id), op="tax_id.list")
        )
        for t in existing.get("data", []):
            if t.get("type") == type and t.get("value") == value:
                return TaxIdResult(t["id"], customer_id, type, value, already_present=True)
        t = as_dict(
            await self.call(
                lambda: self.v1.customers.tax_ids.create_async(
                    customer_id, {"type": type, "value": value}, self._opts(idempotency_key)
                ),
                op="tax_id.create",
                create=True,
            )
        )
        log.info("stripe.tax_id.added", customer=customer_id, tax_id=t["id"], type=type)
        return TaxIdResult(t["id"], customer_id, type, value)

    async def delete_tax_id(self, customer_id: str, tax_id: str) -> None:
        """Undo a tax id this change added (a later step of the same change failed)."""
        await self.call(
            lambda: self.v1.customers.tax_ids.delete_async(customer_id, tax_id), op="tax_id.delete"
        )

    async def customer_with_tax_ids(self, customer_id: str) -> dict[str, Any]:
        """The customer and its tax ids in one object (the shape the mirror stores); also the first read
        of a billing-details change, so an unreachable Stripe fails it before anything is written."""
        customer = await self.get_customer(customer_id)
        taxes = as_dict(
            await self.call(lambda: self.v1.customers.tax_ids.list_async(customer_id), op="tax_id.list")
        )
        return {**customer, "tax_ids": {"object": "list", "data": taxes.get("data", [])}}

    async def set_default_payment_method(
        self, customer_id: str, payment_method_id: str, idempotency_key: str
    ) -> dict[str, Any]:
        """Attach a payment method Stripe collected (Elements / SetupIntent, or the emulator's tokenising
        page) to the customer and make it the invoices' default. A method attached to another customer is
        refused; one already attached to this customer (a confirmed SetupIntent does that) is kept."""
        pm = await self.get_payment_method(payment_method_id)
        owner = ref_id(pm.get("customer"))
        if owner not in (None, customer_id):
            raise InvalidStripeRequest("payment_method.attach: it belongs to another customer")
        if owner is None:
            pm = as_dict(
                await self.call(
                    lambda: self.v1.payment_methods.attach_async(
                        payment_method_id, {"customer": customer_id}, self._opts(idempotency_key, "attach")
                    ),
                    op="payment_method.attach",
                )
            )
        await self.call(
            lambda: self.v1.customers.update_async(
                customer_id,
                {"invoice_settings": {"default_payment_method": payment_method_id}},
                self._opts(idempotency_key, "default"),
            ),
            op="customer.set_default_payment_method",
        )
        card = pm.get("card") or {}
        log.info(
            "stripe.payment_method.default_set",
            customer=customer_id,
            payment_method=payment_method_id,
            brand=card.get("brand"),
            last4=card.get("last4"),
        )
        return pm

    # -- subscriptions -------------------------------------------------------------------------------
    @staticmethod
    def _sub_result(s: dict[str, Any]) -> SubscriptionResult:
        item = ((s.get("items") or {}).get("data") or [{}])[0]
        plan = item.get("plan") or s.get("plan") or {}
        return SubscriptionResult(
            subscription_id=s["id"],
            status=s.get("status", ""),
            plan_id=ref_id(plan) or "",
            quantity=int(item.get("quantity") or s.get("quantity") or 1),
            cancel_at_period_end=bool(s.get("cancel_at_period_end")),
            current_period_start=s.get("current_period_start") or item.get("current_period_start"),
            current_period_end=s.get("current_period_end") or item.get("current_period_end"),
        )

    async def cancel_at_period_end(self, subscription_id: str, idempotency_key: str) -> SubscriptionResult:
        s = as_dict(
            await self.call(
                lambda: self.v1.subscriptions.update_async(
                    subscription_id,
                    {"cancel_at_period_end": True, "metadata": {"tl_idem_cancel": idempotency_key}},
                    self._opts(idempotency_key),
                ),
                op="subscription.cancel_at_period_end",
            )
        )
        log.info("stripe.subscription.cancel_scheduled", subscription=subscription_id)
        return self._sub_result(s)

    async def preview_plan_change(
        self, subscription_id: str, new_stripe_plan_id: str, seats: int | None = None
    ) -> ProrationPreview:
        """What changing plan (and seats) now would cost: credit for unused time, charge for the rest."""
        sub = await self.get_subscription(subscription_id)
        return await self._preview(sub, new_stripe_plan_id, seats, int(time.time()))

    async def _preview(
        self, sub: dict[str, Any], new_plan_id: str, seats: int | None, now: int
    ) -> ProrationPreview:
        cur = self._sub_result(sub)
        old_plan = await self.get_plan(cur.plan_id)
        new_plan = await self.get_plan(new_plan_id)
        new_seats = seats or cur.quantity
        old_amount = plan_amount_cents(old_plan, cur.quantity)
        new_amount = plan_amount_cents(new_plan, new_seats)
        common: dict[str, Any] = {
            "subscription_id": cur.subscription_id,
            "old_plan_id": cur.plan_id,
            "new_plan_id": new_plan_id,
            "old_seats": cur.quantity,
            "new_seats": new_seats,
            "old_amount_cents": old_amount,
            "new_amount_cents": new_amount,
            "proration_date": now,
            "period_end": cur.current_period_end,
            "currency": str(new_plan.get("currency") or "usd"),
        }
        if not self.emulated:
            item_id = ((sub.get("items") or {}).get("data") or [{}])[0].get("id")
            preview = as_dict(
                await self.call(
                    lambda: self.v1.invoices.create_preview_async(
                        {
                            "customer": ref_id(sub.get("customer")) or "",
                            "subscription": cur.subscription_id,
                            "subscription_details": {
                                "items": [{"id": item_id, "price": new_plan_id, "quantity": new_seats}],
                                "proration_date": now,
                                "proration_behavior": "create_prorations",
                            },
                        }
                    ),
                    op="invoice.create_preview",
                )
            )
            credit = charge = 0
            for line in (preview.get("lines") or {}).get("data", []):
                parent = (line.get("parent") or {}).get("subscription_item_details") or {}
                if line.get("proration") or parent.get("proration"):
                    amt = int(line.get("amount") or 0)
                    credit, charge = (credit - amt, charge) if amt < 0 else (credit, charge + amt)
            return ProrationPreview(
                **common,
                credit_cents=credit,
                charge_cents=charge,
                net_cents=charge - credit,
                source="stripe_preview",
            )
        start, end = cur.current_period_start or now, cur.current_period_end or now
        fraction = 0.0 if end <= start else min(1.0, max(0.0, (end - now) / (end - start)))
        credit, charge = round(old_amount * fraction), round(new_amount * fraction)
        return ProrationPreview(
            **common,
            credit_cents=credit,
            charge_cents=charge,
            net_cents=charge - credit,
            source="computed",
            note=(
                f"computed by the adapter: {fraction:.4f} of the period remains (the emulator's "
                "upcoming-invoice simulation credits whole invoices instead of unused time)"
            ),
        )

    async def change_plan(
        self, subscription_id: str, new_stripe_plan_id: str, seats: int | None, idempotency_key: str
    ) -> PlanChangeResult:
        """Move the subscription to another plan / seat count now, prorating the rest of the period."""
        sub = await self.get_subscription(subscription_id)
        now = int(time.time())
        preview = await self._preview(sub, new_stripe_plan_id, seats, now)
        item_id = ((sub.get("items") or {}).get("data") or [{}])[0].get("id")
        new_plan = await self.get_plan(new_stripe_plan_id)
        meta = {"tl_idem_plan": idempotency_key}
        if tier := (new_plan.get("metadata") or {}).get("tl_plan"):
            meta["tl_plan"] = tier
        meta["tl_seats"] = str(preview.new_seats)
        item: dict[str, Any] = {"id": item_id, "quantity": preview.new_seats}
        params: dict[str, Any] = {"items": [item], "metadata": meta}
        if self.emulated:
            item["plan"] = new_stripe_plan_id
        else:
            item["price"] = new_stripe_plan_id
            params.update(proration_behavior="create_prorations", proration_date=now)
        updated = as_dict(
            await self.call(
                lambda: self.v1.subscriptions.update_async(
                    subscription_id, params, self._opts(idempotency_key)
                ),
                op="subscription.change_plan",
            )
        )
        item_ids: list[str] = []
        if self.emulated and (preview.old_plan_id, preview.old_seats) != (
            new_stripe_plan_id,
            preview.new_seats,
        ):
            item_ids = await self._replace_emulator_prorations(updated, preview, idempotency_key)
        log.info(
            "stripe.subscription.plan_changed",
            subscription=subscription_id,
            old=preview.old_plan_id,
            new=new_stripe_plan_id,
            seats=preview.new_seats,
            net_cents=preview.net_cents,
        )
        return PlanChangeResult(self._sub_result(updated), preview, item_ids)

    async def _replace_emulator_prorations(
        self, sub: dict[str, Any], preview: ProrationPreview, key: str
    ) -> list[str]:
        customer = ref_id(sub.get("customer")) or ""
        pending = as_dict(
            await self.call(
                lambda: self.v1.invoice_items.list_async({"customer": customer, "limit": 100}),
                op="invoice_item.list",
            )
        )
        for ii in pending.get("data", []):
            if (
                ii.get("subscription") == sub["id"]
                and ii.get("proration")
                and ii.get("invoice") is None
                and not (ii.get("metadata") or {}).get("tl_idem")
            ):
                await self.call(
                    partial(self.v1.invoice_items.delete_async, ii["id"]), op="invoice_item.delete"
                )
        ids = []
        for step, amount, text in (
            ("credit", -preview.credit_cents, f"Unused time on {preview.old_plan_id} x{preview.old_seats}"),
            ("charge", preview.charge_cents, f"Remaining time on {preview.new_plan_id} x{preview.new_seats}"),
        ):
            if amount == 0:
                continue
            params: dict[str, Any] = {
                "customer": customer,
                "subscription": sub["id"],
                "amount": amount,
                "currency": preview.currency,
                "description": text,
                "proration": True,
                "metadata": {"tl_idem": key, "tl_proration": step},
            }
            ii = as_dict(
                await self.call(
                    partial(self.v1.invoice_items.create_async, params, self._opts(key, step)),
                    op="invoice_item.create",
                    create=True,
                )
            )
            ids.append(ii["id"])
        return ids

    async def find_plan_change(self, subscription_id: str, idempotency_key: str) -> SubscriptionResult | None:
        """Reconcile: the subscription as left by a plan change with this key, if it already happened."""
        sub = await self.get_subscription(subscription_id)
        if (sub.get("metadata") or {}).get("tl_idem_plan") == idempotency_key:
            return self._sub_result(sub)
        if self.emulated:  # localstripe drops metadata on subscription updates: look for our prorations
            items = await self.raw_get(
                "/v1/invoiceitems", customer=ref_id(sub.get("customer")) or "", limit=100
            )
            if any(
                (ii.get("metadata") or {}).get("tl_idem") == idempotency_key
                and ii.get("subscription") == subscription_id
                for ii in items.get("data", [])
            ):
                return self._sub_result(sub)
        return None

    async def ensure_plan(self, tier: str, amount_usd: float, interval: str = "month") -> str:
        """The Stripe plan for ``tier`` at this price and interval, created (product + plan) on first use.

        Plans are flat-priced per subscription like tierline's catalogue (seats are the subscription
        quantity and an entitlement, not a price multiplier): one volume tier with a flat amount.
        The id is deterministic, so concurrent callers converge on one plan.
        """
        cents = round(amount_usd * 100)
        plan_id = f"tl_{tier}_{interval}_{cents}"
        try:
            return str((await self.get_plan(plan_id))["id"])
        except StripeNotFound:
            pass
        product_id = f"tl_prod_{tier}"
        try:
            await self.call(lambda: self.v1.products.retrieve_async(product_id), op="product.get")
        except StripeNotFound:
            try:
                await self.call(
                    lambda: self.v1.products.create_async(
                        {"id": product_id, "name": f"Tierline {tier.title()}", "metadata": {"tl_plan": tier}},
                        self._opts(f"product:{product_id}"),
                    ),
                    op="product.create",
                )
            except InvalidStripeRequest:  # created concurrently (409 / resource_already_exists)
                pass
        try:
            await self.call(
                lambda: self.v1.plans.create_async(
                    {
                        "id": plan_id,
                        "product": product_id,
                        "currency": "usd",
                        "interval": interval,
                        "nickname": f"{tier.title()} {interval}ly",
                        "billing_scheme": "tiered",
                        "tiers_mode": "volume",
                        "tiers": [{"up_to": "inf", "flat_amount": cents, "unit_amount": 0}],
                        "metadata": {"tl_plan": tier, "tl_amount_cents": str(cents)},
                    },
                    self._opts(f"plan:{plan_id}"),
                ),
                op="plan.create",
            )
        except InvalidStripeRequest:
            await self.get_plan(plan_id)  # created concurrently: fine if it exists now
        log.info("stripe.plan.ensured", plan=plan_id, tier=tier)
        return plan_id

    # -- links ---------------------------------------------------------------------------------------
    async def update_card_link(self, customer_id: str, return_url: str) -> SignedLink:
        """Where the customer puts in a new card: Stripe's billing portal, or our signed page (24 h)."""
        now = int(time.time())
        if not self.emulated:
            session = as_dict(
                await self.call(
                    lambda: self.v1.billing_portal.sessions.create_async(
                        {"customer": customer_id, "return_url": return_url}
                    ),
                    op="billing_portal.create",
                    create=True,
                )
            )
            return SignedLink(
                session["url"], now + 5 * 60, "billing_portal"
            )  # portal sessions are short-lived
        await self.get_customer(customer_id)  # 404 for an unknown customer, as the portal would
        expires = now + UPDATE_CARD_TTL_S
        token = sign_link_token(
            self._secret,
            purpose="update_card",
            subject=customer_id,
            expires_at=expires,
            return_url=return_url,
        )
        return SignedLink(f"{self._base_url}/update-card?token={token}", expires, "signed_page")

    async def customer_portal_session(
        self, customer_id: str, return_url: str, *, configuration: str | None = None
    ) -> PortalSession:
        """A Customer Portal session for the customer (``POST /v1/billing_portal/sessions``), with a pinned
        portal configuration when given. The emulator has no portal of its own: its wrapper
        (``tierline_tools/stack/localstripe_server.py``) answers in the real API's shape."""
        params: dict[str, Any] = {"customer": customer_id, "return_url": return_url}
        if configuration:
            params["configuration"] = configuration
        session = as_dict(
            await self.call(
                lambda: self.v1.billing_portal.sessions.create_async(params),
                op="billing_portal.create",
                create=True,
            )
        )
        url = session.get("url")
        if session.get("object") != "billing_portal.session" or not isinstance(url, str) or not url:
            raise InvalidStripeRequest(f"billing_portal.create: unexpected answer {str(session)[:200]}")
        log.info("stripe.portal_session.created", customer=customer_id, session=session.get("id"))
        return PortalSession(
            id=str(session.get("id") or ""),
            customer=str(session.get("customer") or customer_id),
            url=url,
            return_url=session.get("return_url"),
            configuration=ref_id(session.get("configuration")) or None,
            created=int(session.get("created") or time.time()),
        )

    def _invoice_expiry(self, invoice: dict[str, Any]) -> int:
        meta = invoice.get("metadata") or {}
        if meta.get("tl_link_expires_at"):
            return int(meta["tl_link_expires_at"])
        created = int(meta.get("tl_created") or invoice.get("created") or time.time())
        return created + INVOICE_LINK_TTL_S

    def _pay_url(self, invoice_id: str, expires_at: int) -> str:
        token = sign_link_token(
            self._secret, purpose="pay_invoice", subject=invoice_id, expires_at=expires_at
        )
        return f"{self._base_url}/pay/{invoice_id}?token={token}"

    async def invoice_link(self, invoice_id: str) -> InvoiceLink:
        """The invoice's current payable link and its expiry (which may already be past)."""
        invoice = await self.get_invoice(invoice_id)
        expires = self._invoice_expiry(invoice)
        expired = expires <= int(time.time())
        if not self.emulated and invoice.get("hosted_invoice_url"):
            return InvoiceLink(invoice_id, invoice["hosted_invoice_url"], expires, expired, "hosted_invoice")
        return InvoiceLink(invoice_id, self._pay_url(invoice_id, expires), expires, expired, "signed_page")

    async def regenerate_invoice_link(self, invoice_id: str, idempotency_key: str) -> InvoiceLink:
        """A fresh payable link valid 30 days; the invoice metadata carries the new expiry for the mirror."""
        invoice = await self.get_invoice(invoice_id)
        if invoice.get("status") not in ("open", "draft"):
            raise InvoiceNotPayable(
                f"invoice {invoice_id} is {invoice.get('status')}: nothing to pay",
                {"invoice_id": invoice_id, "status": invoice.get("status")},
            )
        expires = int(time.time()) + INVOICE_LINK_TTL_S
        invoice = await self._update_metadata(
            "invoices",
            invoice_id,
            {"tl_link_expires_at": str(expires), "tl_idem_link": idempotency_key},
            idempotency_key,
        )
        log.info("stripe.invoice.link_regenerated", invoice=invoice_id, expires_at=expires)
        if not self.emulated and invoice.get("hosted_invoice_url"):
            return InvoiceLink(invoice_id, invoice["hosted_invoice_url"], expires, False, "hosted_invoice")
        return InvoiceLink(invoice_id, self._pay_url(invoice_id, expires), expires, False, "signed_page")

    async def send_invoice(self, invoice_id: str) -> InvoiceDocument:
        """The invoice document to hand to the customer (PDF + hosted page); the notifier emails it."""
        invoice = await self.get_invoice(invoice_id)
        created = int((invoice.get("metadata") or {}).get("tl_created") or invoice.get("created") or 0)
        expires = int(time.time()) + INVOICE_LINK_TTL_S
        if not self.emulated and invoice.get("invoice_pdf"):
            hosted, pdf = invoice.get("hosted_invoice_url") or "", invoice["invoice_pdf"]
        else:
            token = sign_link_token(
                self._secret, purpose=INVOICE_DOCUMENT_PURPOSE, subject=invoice_id, expires_at=expires
            )
            hosted = f"{self._base_url}/invoices/{invoice_id}?token={token}"
            pdf = f"{self._base_url}/invoices/{invoice_id}.pdf?token={token}"
        return InvoiceDocument(
            invoice_id=invoice_id,
            number=invoice.get("number") or invoice_id,
            status=str(invoice.get("status")),
            amount_due_cents=int(invoice.get("amount_due") or 0),
            amount_paid_cents=int(invoice.get("amount_paid") or 0),
            currency=str(invoice.get("currency") or "usd"),
            created=created,
            hosted_url=hosted,
            pdf_url=pdf,
            expires_at=expires,
        )

    # -- invoice documents (the portal's invoices page) ------------------------------------------------
    async def list_invoices(self, customer_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The customer's invoices, newest first; drafts left out (nothing to show or pay yet)."""
        page = as_dict(
            await self.call(
                lambda: self.v1.invoices.list_async({"customer": customer_id, "limit": limit}),
                op="invoice.list",
            )
        )
        found = [
            i
            for i in page.get("data", [])
            if i.get("status") != "draft" and ref_id(i.get("customer")) == customer_id
        ]

        def issued(invoice: dict[str, Any]) -> int:  # a backdated emulator invoice carries tl_created
            return int((invoice.get("metadata") or {}).get("tl_created") or invoice.get("created") or 0)

        return sorted(found, key=issued, reverse=True)

    async def list_tax_ids(self, customer_id: str) -> list[dict[str, Any]]:
        page = as_dict(
            await self.call(lambda: self.v1.customers.tax_ids.list_async(customer_id), op="tax_id.list")
        )
        return [t for t in page.get("data", []) if isinstance(t, dict)]

    def stripe_documents(self, invoice: dict[str, Any]) -> tuple[str | None, str | None]:
        """Stripe's own hosted page and PDF of an invoice. The emulator has neither, so ``(None, None)``
        there: tier 1 serves ``/invoices/{id}`` and ``/invoices/{id}.pdf`` (``tierline/invoice_pdf.py``)."""
        if self.emulated:
            return None, None
        return invoice.get("hosted_invoice_url") or None, invoice.get("invoice_pdf") or None
