"""A new card without the card touching tierline: the card page and its two calls.

``POST /v1/portal/card/setup`` starts a Stripe SetupIntent for the customer and hands the page what it
needs to let Stripe collect the card (the client secret and the publishable key; on the emulator, its API
base). The page confirms the SetupIntent with Stripe itself — Stripe.js Elements on real Stripe, a form
posted from the browser straight to the emulator's API on the embedded stack — and then calls
``POST /v1/portal/card`` with only the SetupIntent id. Tier 1 reads the payment method it collected and
makes it the default through the one executor (``update_billing_details`` with ``payment_method``:
policy, ledger, audit, Stripe then the mirror), then retries the customer's open invoices as before
(each a Tier 1 request). The card number, expiry and CVC never reach tierline; the raw-card endpoint
``POST /v1/update-card`` answers 410.

Auth: the signed update-card link (purpose ``update_card``) or the customer's session. Another customer's
SetupIntent is a 404, another customer's id a 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from schemas import Action, derived_id
from schemas.messages import SelfhealRequestedPayload, SelfhealRequestedV1, Sender
from services.tier1_selfheal import domain
from services.tier1_selfheal.api import MeterDeps, contact_id_for, request_message_id
from services.tier1_selfheal.auth import (
    SESSION_PURPOSE,
    UPDATE_CARD_PURPOSE,
    InvalidSession,
    token_from,
    verify_token,
)
from services.tier1_selfheal.portal_details import (
    STRIPE_DOWN,
    PortalError,
    error_response,
    outcome_error,
    portal_context,
    same_customer,
    serve_page,
)
from services.tier1_selfheal.ports import Actions, CardRejected, UnknownSetup
from tierline.http import read_json
from tierline.messaging import publish
from tierline.pipeline import start_contact
from tierline.stripe_adapter import InvalidStripeRequest, StripeActionError, StripeNotFound

log = structlog.get_logger(__name__)


@dataclass
class CardDeps:
    meter: MeterDeps  # pool, broker, card vault, request store, customer keys
    actions: Actions
    stripe_api_base: str | None = None  # the emulator the page may post a card to (CSP connect-src)


def card_page_csp(stripe_api_base: str | None) -> str:
    """The card page may talk to Stripe (js.stripe.com, api.stripe.com) or, on the emulator, to it only."""
    if stripe_api_base:
        parts = urlsplit(stripe_api_base)
        stripe_origin = f"{parts.scheme}://{parts.netloc}"
        connect, script, frame = f"'self' {stripe_origin}", "'self' 'unsafe-inline'", "'none'"
    else:
        connect = "'self' https://api.stripe.com"
        script = "'self' 'unsafe-inline' https://js.stripe.com"
        frame = "https://js.stripe.com https://hooks.stripe.com"
    return (
        f"default-src 'self'; script-src {script}; connect-src {connect}; frame-src {frame}; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:"
    )


def portal_card_routes(get_deps: Callable[[], CardDeps], *, stripe_api_base: str | None) -> list[Route]:
    """Routes for Service(routes=...); ``get_deps`` is called per request (the pool exists after start)."""

    def guarded(
        endpoint: Callable[[Request, CardDeps], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            try:
                return await endpoint(request, get_deps())
            except PortalError as exc:
                return error_response(exc)
            except InvalidSession as exc:
                return JSONResponse({"error": "unauthenticated", "detail": str(exc)}, status_code=401)

        return wrapper

    def card_customer(request: Request, deps: CardDeps) -> str:
        token = token_from(request.headers, request.cookies, request.query_params)
        claims = verify_token(deps.meter.secret, token, purposes=(UPDATE_CARD_PURPOSE, SESSION_PURPOSE))
        return claims.subject

    async def post_setup(request: Request, deps: CardDeps) -> Response:
        customer_id = card_customer(request, deps)
        body: dict[str, Any] = await read_json(request, empty={})
        same_customer(body.get("customer_id"), customer_id)
        try:
            setup = await deps.meter.cards.start_card_setup(customer_id)
        except CardRejected as exc:
            raise PortalError(503, "card_setup_unavailable", str(exc)) from exc
        except StripeNotFound as exc:
            raise PortalError(404, "customer_not_found", "we could not find your billing account") from exc
        except InvalidStripeRequest as exc:
            raise PortalError(422, "card_setup_refused", str(exc)) from exc
        except StripeActionError as exc:
            log.warning("tier1.card.setup_failed", error=type(exc).__name__)
            raise PortalError(503, "stripe_unavailable", STRIPE_DOWN) from exc
        return JSONResponse(
            {
                "mode": setup.mode,
                "setup_intent": setup.setup_intent_id,
                "client_secret": setup.client_secret,
                "publishable_key": setup.publishable_key,
                "api_base": setup.api_base,
            },
            status_code=201,
        )

    async def retry_open_invoices(deps: CardDeps, customer_id: str, pm_id: str) -> list[dict[str, Any]]:
        """Each open invoice is retried with the new card as a Tier 1 request (same ids as before)."""
        m = deps.meter
        out = []
        for inv in await m.cards.open_invoices(customer_id):
            params = {"invoice_id": inv.invoice_id}
            contact_id = contact_id_for(customer_id, f"card:{pm_id}:{inv.invoice_id}")
            await m.requests.record(contact_id, customer_id, Action.RETRY_PAYMENT.value, params)
            await start_contact(
                m.pool,
                contact_id=contact_id,
                customer_id=customer_id,
                trigger="selfheal",
                channel="dashboard",
            )
            msg = SelfhealRequestedV1.build(
                SelfhealRequestedPayload(
                    action=Action.RETRY_PAYMENT,
                    params=params,
                    source="api",
                    sender=Sender(kind="customer_session", subject=customer_id),
                    intent=domain.ACTION_INTENT.get(Action.RETRY_PAYMENT),
                ),
                contact_id=contact_id,
                customer_id=customer_id,
                message_id=request_message_id(contact_id),
            )
            await publish(m.broker, msg)
            out.append(
                {"contact_id": contact_id, "invoice_id": inv.invoice_id, "amount_due_usd": inv.amount_due_usd}
            )
        return out

    async def post_card(request: Request, deps: CardDeps) -> Response:
        customer_id = card_customer(request, deps)
        body: dict[str, Any] = await read_json(request)
        same_customer(body.get("customer_id"), customer_id)
        extra = sorted(set(body) - {"setup_intent", "customer_id"})
        if extra:  # a card number, CVC or anything else has no business here
            raise PortalError(
                422,
                "invalid_card_request",
                "send only the setup_intent the payment processor confirmed; never card details",
            )
        setup_intent = body.get("setup_intent")
        if (
            not isinstance(setup_intent, str)
            or not setup_intent.startswith("seti_")
            or len(setup_intent) > 100
        ):
            raise PortalError(422, "invalid_card_request", "setup_intent must be a seti_ id")
        try:
            pm_id = await deps.meter.cards.collected_payment_method(customer_id, setup_intent)
        except UnknownSetup as exc:
            raise PortalError(404, "setup_not_found", "no such card setup for your account") from exc
        except CardRejected as exc:
            raise PortalError(422, "card_rejected", str(exc)) from exc
        except StripeActionError as exc:
            raise PortalError(503, "stripe_unavailable", STRIPE_DOWN) from exc
        contact_id = f"pc_{derived_id('portal-card', customer_id, setup_intent).hex}"
        ctx = portal_context(
            customer_id, contact_id, Action.UPDATE_BILLING_DETAILS, {"fields": ["payment_method"]}
        )
        try:
            outcome = await deps.actions.update_billing_details(ctx, payment_method=pm_id)
        except LookupError as exc:  # the diagnosis knows no such customer
            raise PortalError(404, "customer_not_found", "we could not find your billing account") from exc
        except Exception as exc:  # noqa: BLE001 - nothing was changed; the page says so
            log.error("tier1.card.save_failed", contact_id=contact_id, error=type(exc).__name__)
            raise PortalError(503, "stripe_unavailable", STRIPE_DOWN) from exc
        if not outcome.ok:
            raise outcome_error(outcome)
        card = outcome.data.get("card") or {}
        log.info("tier1.card.saved", customer_id=customer_id, payment_method=pm_id, replayed=outcome.replayed)
        from services.tier1_selfheal.portal_contacts import record_portal_save

        await record_portal_save(deps.meter.pool, deps.meter.broker, ctx, outcome, what="card")
        retries = await retry_open_invoices(deps, customer_id, pm_id)
        return JSONResponse({"card": card, "retries": retries}, status_code=202)

    page = serve_page("update_card.html", card_page_csp(stripe_api_base))
    return [
        Route("/update-card", page),
        Route("/billing/card", page),
        Route("/v1/portal/card/setup", guarded(post_setup), methods=["POST"]),
        Route("/v1/portal/card", guarded(post_card), methods=["POST"]),
    ]
