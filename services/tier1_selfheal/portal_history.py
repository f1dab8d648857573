"""The customer's account history (issue 21): every change to their billing email, company details, VAT
id, plan, subscription and card, with who made it, when, and the values before → after.

``GET /v1/portal/history`` answers the signed-in customer's own timeline (read from the action ledger by
``tierline.account_changes``); ``/billing/history`` is the page. Customer session auth exactly as the
Health Meter and the chat (``auth.py``): tierline's session tokens or the product's own JWTs. Naming
another customer (``?customer_id=``) is a 403, never their history.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from services.tier1_selfheal.auth import (
    PAGE_HEADERS,
    SESSION_PURPOSE,
    CustomerKeys,
    InvalidSession,
    TokenClaims,
    token_from,
    verify_token,
)
from tierline.account_changes import account_history

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class HistoryDeps:
    pool: Any
    secret: CustomerKeys


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def portal_history_routes(get_deps: Callable[[], HistoryDeps]) -> list[Route]:
    """Routes for Service(routes=...); ``get_deps`` is called per request (the pool exists after start)."""

    def session(request: Request, deps: HistoryDeps) -> TokenClaims:
        return verify_token(
            deps.secret, token_from(request.headers, request.cookies), purposes=(SESSION_PURPOSE,)
        )

    async def get_history(request: Request) -> Response:
        deps = get_deps()
        try:
            claims = session(request, deps)
        except InvalidSession as exc:
            return _error(401, "unauthenticated", str(exc))
        named = request.query_params.get("customer_id")
        if named not in (None, "", claims.subject):
            log.warning("tier1.history.cross_customer_denied", subject=claims.subject)
            return _error(403, "forbidden", "you can only see your own account's history")
        events = await account_history(deps.pool, claims.subject)
        return JSONResponse({"customer_id": claims.subject, "events": events})

    async def page(request: Request) -> Response:
        html = (resources.files("services.tier1_selfheal") / "static" / "portal_history.html").read_text(
            encoding="utf-8"
        )
        return HTMLResponse(html, headers=PAGE_HEADERS)

    endpoint: Callable[[Request], Awaitable[Response]] = get_history
    return [
        Route("/billing/history", page, methods=["GET"]),
        Route("/v1/portal/history", endpoint, methods=["GET"]),
    ]
