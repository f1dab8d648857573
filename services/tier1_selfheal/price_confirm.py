"""The customer's confirmation of a higher price (issue 18): a signed page showing the old and the new price.

A plan or seat change that raises what the customer pays, asked in text, never runs on the text alone: the
executor records a pending confirmation and hands the customer a link here (token purpose
``confirm_price``, subject = the confirmation id). ``GET`` shows the change; ``POST`` confirms it and runs it
once through the one executor, under a key derived from the confirmation (a second click replays it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from schemas import Tier, derived_id
from schemas.messages import SelfhealRequestedPayload, SelfhealRequestedV1
from schemas.vocab import Action
from tierline.actions import PRICE_CONFIRMATION_PURPOSE, ActionContext, Actions
from tierline.http import path_id
from tierline.stripe_adapter import LinkExpired, LinkInvalid, verify_link_token

log = structlog.get_logger(__name__)

ACTOR = "tier1_selfheal"


@dataclass(frozen=True)
class PriceConfirmDeps:
    pool: Any
    actions: Actions
    link_secret: str


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def _view(row: Any) -> dict[str, Any]:
    return {
        "confirmation_id": row["confirmation_id"],
        "plan": row["plan"],
        "seats": row["seats"],
        "old_price_usd": row["old_amount_cents"] / 100,
        "new_price_usd": row["new_amount_cents"] / 100,
        "status": row["status"],
        "expires_at": row["expires_at"].isoformat(),
        "result": row["result"],
    }


def price_confirmation_routes(get_deps: Callable[[], PriceConfirmDeps]) -> list[Route]:
    async def confirmation(request: Request) -> tuple[PriceConfirmDeps, Any] | Response:
        confirmation_id = path_id(request, "confirmation_id")
        deps = get_deps()
        header = request.headers.get("authorization", "")
        token = (
            header[7:].strip() if header.lower().startswith("bearer ") else request.query_params.get("token")
        )
        try:
            claims = verify_link_token(token or "", deps.link_secret, purpose=PRICE_CONFIRMATION_PURPOSE)
        except LinkExpired:
            return _error(401, "link_expired", "this confirmation link has expired; ask us again")
        except LinkInvalid as exc:
            return _error(401, "invalid_token", str(exc))
        if claims.get("sub") != confirmation_id:
            return _error(403, "forbidden", "this link is for another confirmation")
        row = await deps.pool.fetchrow(
            "SELECT * FROM price_confirmations WHERE confirmation_id=$1", confirmation_id
        )
        if row is None:
            return _error(404, "confirmation_not_found", confirmation_id)
        return deps, row

    async def show(request: Request) -> Response:
        found = await confirmation(request)
        if isinstance(found, Response):
            return found
        return JSONResponse(_view(found[1]))

    async def confirm(request: Request) -> Response:
        found = await confirmation(request)
        if isinstance(found, Response):
            return found
        deps, row = found
        await deps.pool.execute(
            """UPDATE price_confirmations SET status='confirmed', confirmed_at=now()
               WHERE confirmation_id=$1 AND status='pending' AND expires_at > now()""",
            row["confirmation_id"],
        )
        row = await deps.pool.fetchrow(
            "SELECT * FROM price_confirmations WHERE confirmation_id=$1", row["confirmation_id"]
        )
        if row["status"] != "confirmed":
            return _error(410, "link_expired", "this confirmation has expired; ask us again")
        cause = SelfhealRequestedV1.build(
            SelfhealRequestedPayload(
                action=Action.CHANGE_PLAN, params={"plan": row["plan"], "seats": row["seats"]}, source="api"
            ),
            contact_id=row["contact_id"],
            customer_id=row["customer_id"],
            message_id=derived_id("price-confirmation", row["confirmation_id"]),
        )
        ctx = ActionContext(
            contact_id=row["contact_id"],
            customer_id=row["customer_id"],
            tier=Tier.TIER1,
            actor="selfheal",
            actor_id=f"customer:{row['customer_id']}",
            cause=cause,
            price_confirmation=row["confirmation_id"],
        )
        outcome = await deps.actions.change_plan(ctx, row["plan"], row["seats"])
        result = {"status": outcome.status, "detail": outcome.detail[:500], "replayed": outcome.replayed}
        await deps.pool.execute(
            "UPDATE price_confirmations SET result=$2 WHERE confirmation_id=$1",
            row["confirmation_id"],
            result,
        )
        log.info(
            "tier1.price_confirmation.confirmed",
            confirmation_id=row["confirmation_id"],
            status=outcome.status,
            replayed=outcome.replayed,
        )
        return JSONResponse({**_view(row), "result": result}, status_code=200 if outcome.ok else 409)

    async def page(request: Request) -> Response:
        path_id(request, "confirmation_id")
        return HTMLResponse(
            (resources.files("services.tier1_selfheal") / "static" / "confirm_price.html").read_text()
        )

    return [
        Route("/confirm-price/{confirmation_id}", page),
        Route("/v1/price-confirmations/{confirmation_id}", show, methods=["GET"]),
        Route("/v1/price-confirmations/{confirmation_id}", confirm, methods=["POST"]),
    ]
