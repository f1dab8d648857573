"""The portal's invoices (issue 21): the list, a hosted page and a real PDF for every invoice, receipts,
resend by email, and ``/billing`` (the billing home every emailed return link points at).

Doors and who opens them:

* ``/billing`` (the Health Meter page, the billing home) and ``/billing/invoices`` (the list page): plain
  pages; their data comes from the session-authenticated API below.
* ``GET /v1/portal/invoices`` / ``GET /v1/portal/invoices/{id}``: the signed-in customer's invoices (Stripe's
  record, read live), each with status, period, amounts, tax, number and its view / PDF links.
* ``POST /v1/portal/invoices/{id}/resend``: publishes a ``send_invoice`` fix for that invoice, exactly as a
  Health Meter button does, so the one executor runs it (policy, audit, ledgered once per click id).
* ``GET /invoices/{id}`` (hosted page) and ``/invoices/{id}.pdf``: an emailed link (``?token=``, purpose
  ``invoice_document`` — or ``pay_invoice`` — whose subject is this invoice) or the customer's session; on
  real Stripe the PDF redirects to Stripe's own ``invoice_pdf``.
* ``GET /receipts/{charge}``: an emailed receipt link (purpose ``receipt``, subject this charge) or the
  session.

A link for one invoice or payment never opens another (403); a session never opens another customer's (403).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Protocol

import asyncpg
import jinja2
import structlog
from faststream.kafka import KafkaBroker
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from schemas import Action
from schemas.messages import SelfhealRequestedPayload, SelfhealRequestedV1, Sender
from services.tier1_selfheal import domain
from services.tier1_selfheal.api import contact_id_for, request_message_id
from services.tier1_selfheal.auth import (
    COOKIE_NAME,
    PAGE_HEADERS,
    PAY_INVOICE_PURPOSE,
    SESSION_PURPOSE,
    CustomerKeys,
    InvalidSession,
    TokenClaims,
    verify_token,
)
from services.tier1_selfheal.ports import RequestStore
from tierline.http import path_id, read_json
from tierline.invoice_pdf import (
    InvoiceDetails,
    document_from_stripe,
    effective_created,
    iso_day,
    money,
    render_invoice_pdf,
    tax_id_label,
)
from tierline.messaging import publish
from tierline.pipeline import start_contact
from tierline.stripe_adapter import (
    INVOICE_DOCUMENT_PURPOSE,
    RECEIPT_PURPOSE,
    InvalidStripeRequest,
    StripeActionError,
    StripeNotFound,
    ref_id,
)

log = structlog.get_logger(__name__)

_CHARGE_ID = re.compile(r"(?:ch|py)_[A-Za-z0-9_]{1,197}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_\-:.]{8,100}")


class InvoiceSource(Protocol):
    """What the invoices doors read from Stripe (:class:`tierline.stripe_adapter.StripeActions`)."""

    async def get_invoice(self, invoice_id: str) -> dict[str, Any]: ...
    async def list_invoices(self, customer_id: str, limit: int = 100) -> list[dict[str, Any]]: ...
    async def get_customer(self, customer_id: str) -> dict[str, Any]: ...
    async def list_tax_ids(self, customer_id: str) -> list[dict[str, Any]]: ...
    async def get_charge(self, charge_id: str) -> dict[str, Any]: ...
    async def get_payment_method(self, pm_id: str) -> dict[str, Any]: ...
    def stripe_documents(self, invoice: dict[str, Any]) -> tuple[str | None, str | None]: ...


@dataclass
class InvoicesDeps:
    pool: asyncpg.Pool
    broker: KafkaBroker
    requests: RequestStore
    secret: CustomerKeys
    stripe: InvoiceSource


class PortalError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


FORBIDDEN_INVOICE = PortalError(403, "forbidden", "this invoice belongs to another account")


def _static(name: str) -> str:
    return (resources.files("services.tier1_selfheal") / "static" / name).read_text(encoding="utf-8")


@cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_static), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["money"] = lambda cents, currency: money(int(cents), str(currency))
    env.filters["tax_id_label"] = tax_id_label
    return env


def link_or_session_token(request: Request) -> str | None:
    """An emailed link's ``?token=`` first (it names exactly what it opens), then the session."""
    query = request.query_params.get("token")
    if query:
        return query
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(COOKIE_NAME) or None


def session_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(COOKIE_NAME) or None


def invoice_json(doc: InvoiceDetails, hosted: str | None, pdf: str | None) -> dict[str, Any]:
    return {
        **doc.as_json(),
        "hosted_url": hosted or f"/invoices/{doc.invoice_id}",
        "pdf_url": pdf or f"/invoices/{doc.invoice_id}.pdf",
        "resend_url": f"/v1/portal/invoices/{doc.invoice_id}/resend",
    }


def receipt_view(charge: dict[str, Any], customer: dict[str, Any], card: dict[str, Any]) -> dict[str, Any]:
    """What the receipt page shows of a payment (Stripe's charge, its customer and card)."""
    currency = str(charge.get("currency") or "usd")
    refunded = int(charge.get("amount_refunded") or 0)
    brand = str(card.get("brand") or "card").capitalize()
    return {
        "charge_id": charge["id"],
        "number": charge.get("receipt_number") or charge["id"],
        "status": str(charge.get("status") or ""),
        "amount": money(int(charge.get("amount") or 0), currency),
        "refunded": money(refunded, currency) if refunded else None,
        "paid_on": iso_day(effective_created(charge)) or "",
        "description": charge.get("description") or "",
        "invoice_id": ref_id(charge.get("invoice")),
        "card": f"{brand} ending in {card['last4']}" if card.get("last4") else None,
        "customer_name": customer.get("name") or "",
        "customer_email": customer.get("email") or "",
        "issued": datetime.now(UTC).date().isoformat(),
    }


def invoices_routes(get_deps: Callable[[], InvoicesDeps]) -> list[Route]:
    """Routes for Service(routes=...); ``get_deps`` is called per request (the pool exists after start)."""

    def guarded(
        endpoint: Callable[[Request, InvoicesDeps], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            try:
                return await endpoint(request, get_deps())
            except PortalError as exc:
                return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)
            except InvalidSession as exc:
                return JSONResponse({"error": "unauthenticated", "detail": str(exc)}, status_code=401)
            except (StripeNotFound, InvalidStripeRequest):  # an id Stripe does not know (or refuses)
                return JSONResponse({"error": "not_found", "detail": "no such document"}, status_code=404)
            except StripeActionError as exc:  # unreachable, or refusing our key
                log.warning(
                    "tier1.invoices.stripe_unavailable", path=request.url.path, error=type(exc).__name__
                )
                return JSONResponse(
                    {"error": "billing_unavailable", "detail": "billing is unreachable; try again shortly"},
                    status_code=503,
                )

        return wrapper

    def session(request: Request, deps: InvoicesDeps) -> TokenClaims:
        return verify_token(deps.secret, session_token(request), purposes=(SESSION_PURPOSE,))

    async def owned_invoice(deps: InvoicesDeps, invoice_id: str, customer_id: str) -> dict[str, Any]:
        invoice = await deps.stripe.get_invoice(invoice_id)
        if ref_id(invoice.get("customer")) != customer_id:
            log.warning("tier1.invoices.cross_customer_denied", invoice=invoice_id, subject=customer_id)
            raise FORBIDDEN_INVOICE
        return invoice

    async def invoice_for(request: Request, deps: InvoicesDeps, invoice_id: str) -> dict[str, Any]:
        """The invoice a link (for exactly this invoice) or a session (of its customer) may open."""
        claims = verify_token(
            deps.secret,
            link_or_session_token(request),
            purposes=(INVOICE_DOCUMENT_PURPOSE, PAY_INVOICE_PURPOSE, SESSION_PURPOSE),
        )
        if claims.purpose == SESSION_PURPOSE:
            return await owned_invoice(deps, invoice_id, claims.subject)
        if claims.subject != invoice_id:
            log.warning("tier1.invoices.link_for_other_invoice", invoice=invoice_id, purpose=claims.purpose)
            raise PortalError(403, "forbidden", "this link is for another invoice")
        return await deps.stripe.get_invoice(invoice_id)

    async def details(deps: InvoicesDeps, invoice: dict[str, Any]) -> InvoiceDetails:
        customer_id = ref_id(invoice.get("customer")) or ""
        customer = await deps.stripe.get_customer(customer_id)
        return document_from_stripe(invoice, customer, await deps.stripe.list_tax_ids(customer_id))

    # ------------------------------------------------------------------------------------ JSON API
    async def list_invoices(request: Request, deps: InvoicesDeps) -> Response:
        claims = session(request, deps)
        customer = await deps.stripe.get_customer(claims.subject)
        out = []
        for invoice in await deps.stripe.list_invoices(claims.subject):
            hosted, pdf = deps.stripe.stripe_documents(invoice)
            out.append(invoice_json(document_from_stripe(invoice, customer, []), hosted, pdf))
        log.info("tier1.invoices.listed", customer_id=claims.subject, count=len(out))
        return JSONResponse({"customer_id": claims.subject, "invoices": out})

    async def get_invoice(request: Request, deps: InvoicesDeps) -> Response:
        claims = session(request, deps)
        invoice = await owned_invoice(deps, path_id(request, "invoice_id"), claims.subject)
        hosted, pdf = deps.stripe.stripe_documents(invoice)
        return JSONResponse(invoice_json(await details(deps, invoice), hosted, pdf))

    async def resend(request: Request, deps: InvoicesDeps) -> Response:
        """Email the invoice again: the same ``send_invoice`` fix a button publishes (one per click id)."""
        claims = session(request, deps)
        invoice_id = path_id(request, "invoice_id")
        body: dict[str, Any] = await read_json(request, empty={})
        if body.get("customer_id") not in (None, "", claims.subject):
            raise PortalError(403, "forbidden", "you can only act on your own account")
        await owned_invoice(deps, invoice_id, claims.subject)
        request_id = str(body.get("request_id") or request.headers.get("idempotency-key") or uuid.uuid4().hex)
        if not _REQUEST_ID.fullmatch(request_id):
            raise PortalError(422, "invalid_request_id", "request_id must be 8-100 letters, digits or -_:.")
        customer_id = claims.subject
        contact_id = contact_id_for(customer_id, f"resend:{invoice_id}:{request_id}")
        params = {"invoice_id": invoice_id}
        row = await deps.requests.record(contact_id, customer_id, Action.SEND_INVOICE.value, params)
        duplicate = row.state != "received" or bool(
            await deps.pool.fetchval("SELECT 1 FROM contacts WHERE contact_id=$1", contact_id)
        )
        await start_contact(
            deps.pool, contact_id=contact_id, customer_id=customer_id, trigger="selfheal", channel="dashboard"
        )
        msg = SelfhealRequestedV1.build(
            SelfhealRequestedPayload(
                action=Action.SEND_INVOICE,
                params=params,
                source="api",
                sender=Sender(kind="customer_session", subject=customer_id),
                intent=domain.ACTION_INTENT.get(Action.SEND_INVOICE),
            ),
            contact_id=contact_id,
            customer_id=customer_id,
            message_id=request_message_id(contact_id),
        )
        await publish(deps.broker, msg)  # again on a duplicate: same id, the consumer's inbox skips it
        log.info(
            "tier1.invoices.resend_requested", contact_id=contact_id, invoice=invoice_id, duplicate=duplicate
        )
        return JSONResponse(
            {
                "contact_id": contact_id,
                "invoice_id": invoice_id,
                "status_url": f"/v1/health-meter/contacts/{contact_id}",
                "duplicate": duplicate,
            },
            status_code=202,
        )

    # ------------------------------------------------------------------------------------ documents
    async def invoice_pdf(request: Request, deps: InvoicesDeps) -> Response:
        invoice_id = path_id(request, "invoice_id")
        invoice = await invoice_for(request, deps, invoice_id)
        _, stripe_pdf = deps.stripe.stripe_documents(invoice)
        if stripe_pdf:  # real Stripe renders its own
            return RedirectResponse(stripe_pdf, status_code=302, headers={"Cache-Control": "no-store"})
        doc = await details(deps, invoice)
        data = await asyncio.to_thread(render_invoice_pdf, doc)  # font loading: off the event loop
        disposition = "attachment" if request.query_params.get("download") else "inline"
        log.info("tier1.invoices.pdf_rendered", invoice=invoice_id, bytes=len(data))
        return Response(
            data,
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'{disposition}; filename="invoice-{doc.number}.pdf"',
                "Cache-Control": "private, no-store",
                "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def invoice_page(request: Request, deps: InvoicesDeps) -> Response:
        invoice_id = path_id(request, "invoice_id")
        invoice = await invoice_for(request, deps, invoice_id)
        _, stripe_pdf = deps.stripe.stripe_documents(invoice)
        doc = await details(deps, invoice)
        token = request.query_params.get("token")
        pdf_url = stripe_pdf or f"/invoices/{invoice_id}.pdf" + (f"?token={token}" if token else "")
        template = _templates().get_template("invoice_view.html")
        html = template.render(doc=doc, view=doc.as_json(), pdf_url=pdf_url)
        return HTMLResponse(html, headers=PAGE_HEADERS)

    async def receipt_page(request: Request, deps: InvoicesDeps) -> Response:
        charge_id = str(request.path_params["charge_id"])
        if not _CHARGE_ID.fullmatch(charge_id):
            raise PortalError(404, "not_found", "no such payment")
        claims = verify_token(
            deps.secret, link_or_session_token(request), purposes=(RECEIPT_PURPOSE, SESSION_PURPOSE)
        )
        if claims.purpose == RECEIPT_PURPOSE and claims.subject != charge_id:
            log.warning("tier1.receipts.link_for_other_payment", charge=charge_id)
            raise PortalError(403, "forbidden", "this link is for another payment")
        charge = await deps.stripe.get_charge(charge_id)
        customer_id = ref_id(charge.get("customer")) or ""
        if claims.purpose == SESSION_PURPOSE and customer_id != claims.subject:
            log.warning("tier1.receipts.cross_customer_denied", charge=charge_id, subject=claims.subject)
            raise PortalError(403, "forbidden", "this payment belongs to another account")
        customer = await deps.stripe.get_customer(customer_id)
        card = (charge.get("payment_method_details") or {}).get("card") or {}
        pm_id = ref_id(charge.get("payment_method"))
        if not card and pm_id:
            try:
                card = (await deps.stripe.get_payment_method(pm_id)).get("card") or {}
            except StripeActionError:
                card = {}
        html = _templates().get_template("receipt_view.html").render(**receipt_view(charge, customer, card))
        log.info("tier1.receipts.viewed", charge=charge_id, via=claims.purpose)
        return HTMLResponse(html, headers=PAGE_HEADERS)

    def page(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            return HTMLResponse(_static(name), headers=PAGE_HEADERS)

        return serve

    return [
        Route("/billing", page("health_meter.html"), methods=["GET"]),
        Route("/billing/invoices", page("invoices.html"), methods=["GET"]),
        Route("/v1/portal/invoices", guarded(list_invoices), methods=["GET"]),
        Route("/v1/portal/invoices/{invoice_id}", guarded(get_invoice), methods=["GET"]),
        Route("/v1/portal/invoices/{invoice_id}/resend", guarded(resend), methods=["POST"]),
        Route("/invoices/{invoice_id}.pdf", guarded(invoice_pdf), methods=["GET"]),
        Route("/invoices/{invoice_id}", guarded(invoice_page), methods=["GET"]),
        Route("/receipts/{charge_id}", guarded(receipt_page), methods=["GET"]),
    ]
