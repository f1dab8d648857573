"""The billing home's "Manage in Stripe" (issue 21): a Stripe Customer Portal session, created server-side for
the signed-in customer only, with the pinned portal configuration and a return URL back to ``/billing``.

``POST /v1/portal/stripe-session`` answers ``{"url": ...}`` and the page's button opens it (``manage.js``,
included by the billing home). The session is created through the Stripe adapter
(``StripeActions.customer_portal_session``); on the embedded stack the emulator's wrapper serves the portal
session in the real API's shape. Customer session auth exactly as the Health Meter (``auth.py``); naming
another customer is a 403 and nothing is created.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.tier1_selfheal.auth import (
    SESSION_PURPOSE,
    CustomerKeys,
    InvalidSession,
    TokenClaims,
    token_from,
    verify_token,
)
from tierline.http import read_json
from tierline.stripe_adapter import PortalSession, StripeActionError, StripeNotFound

log = structlog.get_logger(__name__)

STRIPE_DOWN = "The payment processor could not be reached; nothing was opened. Try again in a minute."


class PortalSessions(Protocol):
    """``tierline.stripe_adapter.StripeActions``: the one call this door needs."""

    async def customer_portal_session(
        self, customer_id: str, return_url: str, *, configuration: str | None = None
    ) -> PortalSession: ...


@dataclass
class StripePortalDeps:
    stripe: PortalSessions
    secret: CustomerKeys
    return_url: str  # the billing home, e.g. https://billing.example.com/billing
    configuration: str | None = None  # the pinned portal configuration (bpc_...); None: the account default


class ManageError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def signed_in(request: Request, secret: CustomerKeys, claimed: Any) -> str:
    """The session's customer; a request naming another customer is refused (403)."""
    claims: TokenClaims = verify_token(
        secret, token_from(request.headers, request.cookies), purposes=(SESSION_PURPOSE,)
    )
    for named in (claimed, request.query_params.get("customer_id")):
        if named not in (None, "") and named != claims.subject:
            log.warning("tier1.portal.cross_customer_denied", subject=claims.subject)
            raise ManageError(403, "forbidden", "you can only manage your own account")
    return claims.subject


def stripe_portal_routes(get_deps: Callable[[], StripePortalDeps]) -> list[Route]:
    def guarded(
        endpoint: Callable[[Request, StripePortalDeps], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            try:
                return await endpoint(request, get_deps())
            except ManageError as exc:
                return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)
            except InvalidSession as exc:
                return JSONResponse({"error": "unauthenticated", "detail": str(exc)}, status_code=401)

        return wrapper

    async def post_session(request: Request, deps: StripePortalDeps) -> Response:
        body: dict[str, Any] = await read_json(request, empty={})
        customer_id = signed_in(request, deps.secret, body.get("customer_id"))
        try:
            session = await deps.stripe.customer_portal_session(
                customer_id, deps.return_url, configuration=deps.configuration
            )
        except StripeNotFound as exc:
            raise ManageError(404, "customer_not_found", "we could not find your billing account") from exc
        except StripeActionError as exc:
            log.error("tier1.portal.stripe_session_failed", error=type(exc).__name__)
            raise ManageError(503, "stripe_unavailable", STRIPE_DOWN) from exc
        log.info("tier1.portal.stripe_session_created", session=session.id)
        return JSONResponse(
            {"url": session.url, "id": session.id, "return_url": session.return_url},
            headers={"Cache-Control": "no-store"},
        )

    async def manage_js(request: Request) -> Response:
        script = (resources.files("services.tier1_selfheal") / "static" / "manage.js").read_text("utf-8")
        return Response(
            script, media_type="text/javascript; charset=utf-8", headers={"Cache-Control": "no-store"}
        )

    return [
        Route("/v1/portal/stripe-session", guarded(post_session), methods=["POST"]),
        Route("/billing/manage.js", manage_js, methods=["GET"]),
    ]
