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
from services.tier1_selfheal import contracts as c
from tierline.actions import PRICE_CONFIRMATION_PURPOSE, ActionContext, Actions
from tierline.http import HttpProblem, path_id
from tierline.http_contracts import Call, api_route, render
from tierline.stripe_adapter import LinkExpired, LinkInvalid, verify_link_token

log = structlog.get_logger(__name__)

ACTOR = "tier1_selfheal"


@dataclass(frozen=True)
class PriceConfirmDeps:
    pool: Any
    actions: Actions
    link_secret: str


ERRORS = {403: "the link is for another confirmation", 404: "no such confirmation"}


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


class PriceConfirmationLink:
    """Auth dependency: the confirmation link's signed token (bearer header or ``?token=``) → its claims."""

    schemes = {
        "confirmationLink": {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "the signed token of the emailed price-confirmation link (or a bearer header)",
        }
    }

    def __init__(self, secret: Callable[[], str]) -> None:
        self.secret = secret

    async def __call__(self, request: Request) -> dict[str, Any]:
        header = request.headers.get("authorization", "")
        token = (
            header[7:].strip() if header.lower().startswith("bearer ") else request.query_params.get("token")
        )
        try:
            return verify_link_token(token or "", self.secret(), purpose=PRICE_CONFIRMATION_PURPOSE)
        except LinkExpired as exc:
            raise HttpProblem(
                401, "link_expired", "this confirmation link has expired; ask us again"
            ) from exc
        except LinkInvalid as exc:
            raise HttpProblem(401, "invalid_token", str(exc)) from exc


def price_confirmation_routes(get_deps: Callable[[], PriceConfirmDeps]) -> list[Route]:
    links = PriceConfirmationLink(lambda: get_deps().link_secret)

    async def confirmation(call: Call[dict[str, Any], Any]) -> tuple[PriceConfirmDeps, Any] | Response:
        confirmation_id = call.path["confirmation_id"]
        deps = get_deps()
        if call.principal.get("sub") != confirmation_id:
            return _error(403, "forbidden", "this link is for another confirmation")
        row = await deps.pool.fetchrow(
            "SELECT * FROM price_confirmations WHERE confirmation_id=$1", confirmation_id
        )
        if row is None:
            return _error(404, "confirmation_not_found", confirmation_id)
        return deps, row

    async def show(call: Call[dict[str, Any], None]) -> Response | c.PriceConfirmationView:
        """The change waiting for the customer's confirmation: plan, seats, the old and the new price."""
        found = await confirmation(call)
        if isinstance(found, Response):
            return found
        return c.PriceConfirmationView.model_validate(_view(found[1]))

    async def confirm(call: Call[dict[str, Any], None]) -> Response | c.PriceConfirmationView:
        """Confirm the higher price: the change runs once through the executor (a second click replays it).

        409 with the same body when the change did not go through."""
        found = await confirmation(call)
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
        view = c.PriceConfirmationView.model_validate({**_view(row), "result": result})
        return render(view, 200 if outcome.ok else 409)

    async def page(request: Request) -> Response:
        path_id(request, "confirmation_id")
        return HTMLResponse(
            (resources.files("services.tier1_selfheal") / "static" / "confirm_price.html").read_text()
        )

    return [
        Route("/confirm-price/{confirmation_id}", page),
        api_route(
            "/v1/price-confirmations/{confirmation_id}",
            show,
            method="GET",
            auth=links,
            response=c.PriceConfirmationView,
            errors=ERRORS,
            tags=["price-confirmation"],
        ),
        api_route(
            "/v1/price-confirmations/{confirmation_id}",
            confirm,
            method="POST",
            auth=links,
            response=c.PriceConfirmationView,
            errors={**ERRORS, 409: "the change did not go through", 410: "the confirmation expired"},
            tags=["price-confirmation"],
        ),
    ]
