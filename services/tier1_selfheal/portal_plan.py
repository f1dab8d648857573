"""The portal's plan page and "my requests" (issue 21).

Plan: the current plan, seats and price; a change of plan or seats shows the proration preview first (the one
executor's ``change_plan(preview_only=True)``, the same preview the price confirmation shows) and runs, on the
click, as a Tier 1 request through ``tier1.selfheal.requested.v1`` — so the consumer runs the policy-checked
``change_plan`` / ``cancel_subscription`` once per request id, records the outcome and says it. The click on
this page confirms a higher price (the customer saw it: the request carries the previewed amount, and a price
that moved since is refused with the new preview). Cancelling is at period end, with the retention offer shown
before the click.

My requests: the customer's conversations (``tierline.conversations``) and cases with the honest status the
Health Meter shows (``api.case_json``). Customer session auth; naming another customer is a 403.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from schemas import Action, Tier
from schemas.messages import SelfhealRequestedPayload, SelfhealRequestedV1, Sender
from services.tier1_selfheal import domain
from services.tier1_selfheal.adapters.postgres import ContactStatusReader
from services.tier1_selfheal.api import case_json, contact_id_for, request_message_id
from services.tier1_selfheal.auth import CustomerKeys
from services.tier1_selfheal.portal_usage import PortalError, customer_of, portal_guard, static_page
from services.tier1_selfheal.ports import Diagnostics, RequestStore
from tierline.actions import ActionContext, Actions
from tierline.diagnostics_client import SourceUnavailable
from tierline.http import read_json
from tierline.messaging import publish
from tierline.pipeline import start_contact
from tierline.stripe_adapter import StripeActionError

log = structlog.get_logger(__name__)

_REQUEST_ID = re.compile(r"[A-Za-z0-9_\-:.]{8,100}")
MAX_SEATS = 10_000


@dataclass
class PlanDeps:
    pool: asyncpg.Pool
    broker: KafkaBroker
    actions: Actions
    diagnostics: Diagnostics
    requests: RequestStore
    secret: CustomerKeys
    retention_offer: str = ""


def _preview_context(customer_id: str, plan: str, seats: int | None) -> ActionContext:
    """A context for a preview only (nothing is recorded, published or changed under it)."""
    contact_id = f"preview_{uuid.uuid4().hex}"
    cause = SelfhealRequestedV1.build(
        SelfhealRequestedPayload(
            action=Action.CHANGE_PLAN,
            params={"plan": plan, "seats": seats, "preview_only": True},
            source="api",
            sender=Sender(kind="customer_session", subject=customer_id),
        ),
        contact_id=contact_id,
        customer_id=customer_id,
    )
    return ActionContext(
        contact_id=contact_id,
        customer_id=customer_id,
        tier=Tier.TIER1,
        actor="selfheal",
        actor_id=f"customer:{customer_id}",
        cause=cause,
        clicked=True,
    )


async def preview_change(actions: Actions, customer_id: str, plan: str, seats: int | None) -> dict[str, Any]:
    """The proration preview of moving to ``plan`` (and ``seats``): old and new price, credit, charge, net."""
    try:
        outcome = await actions.change_plan(
            _preview_context(customer_id, plan, seats), plan, seats, preview_only=True
        )
    except LookupError as exc:
        raise PortalError(404, "customer_not_found", "we could not find your billing account") from exc
    except (StripeActionError, SourceUnavailable) as exc:
        log.warning("tier1.portal.preview_unavailable", error=type(exc).__name__)
        raise PortalError(
            503,
            "billing_unavailable",
            "we cannot price this change right now; nothing has changed, try again",
        ) from exc
    if not outcome.ok:
        raise PortalError(422, "invalid_plan", outcome.detail or f"cannot move to {plan!r}")
    preview: dict[str, Any] = dict(outcome.data.get("preview") or {})
    return preview


def parse_change(body: dict[str, Any]) -> tuple[str, int | None]:
    plan = body.get("plan")
    if not isinstance(plan, str) or not re.fullmatch(r"[a-z0-9_\-]{1,40}", plan):
        raise PortalError(422, "invalid_plan", "choose a plan")
    seats = body.get("seats")
    if seats in (None, ""):
        return plan, None
    if isinstance(seats, bool) or not isinstance(seats, int | str) or not str(seats).isdigit():
        raise PortalError(422, "invalid_seats", "seats must be a whole number")
    n = int(seats)
    if not 1 <= n <= MAX_SEATS:
        raise PortalError(422, "invalid_seats", f"seats must be between 1 and {MAX_SEATS}")
    return plan, n


def request_id_of(body: dict[str, Any], request: Request) -> str:
    request_id = str(body.get("request_id") or request.headers.get("idempotency-key") or uuid.uuid4().hex)
    if not _REQUEST_ID.fullmatch(request_id):
        raise PortalError(422, "invalid_request_id", "request_id must be 8-100 letters, digits or -_:.")
    return request_id


def conversation_json(row: Any) -> dict[str, Any]:
    return {
        "conversation_id": row["conversation_id"],
        "channel": row["channel"],
        "subject": row["subject"],
        "status": row["status"],
        "title": CONVERSATION_TITLES.get(row["status"], row["status"]),
        "updated_at": row["updated_at"].isoformat(),
        "last_message": row["last_text"],
    }


def monthly_price(plan: dict[str, Any], sub: dict[str, Any]) -> float | None:
    """What the subscription costs a month: its own price, else the plan's per-seat price times the seats
    (a mirror row written before the price was known reads 0)."""
    if sub.get("price_usd"):
        return float(sub["price_usd"])
    if plan.get("monthly_usd") is None:
        return None
    return round(float(plan["monthly_usd"]) * int(plan.get("seats") or sub.get("seats") or 1), 2)


#: What each conversation status means for the customer (conversations.Status), said plainly.
CONVERSATION_TITLES = {
    "open": "We're on it",
    "waiting_customer": "Waiting for your reply",
    "with_human": "A person from our billing team has it",
    "resolved": "Resolved",
}


def plan_routes(get_deps: Callable[[], PlanDeps]) -> list[Route]:
    async def submit(
        deps: PlanDeps, customer_id: str, action: Action, params: dict[str, Any], request_id: str
    ) -> tuple[str, bool]:
        """One Tier 1 request (the same request id twice is one request), run by the consumer."""
        contact_id = contact_id_for(customer_id, f"portal:{request_id}")
        row = await deps.requests.record(contact_id, customer_id, action.value, params)
        if row.action != action.value:
            raise PortalError(409, "conflict", "this request id was already used for another change")
        duplicate = row.state != "received"
        await start_contact(
            deps.pool, contact_id=contact_id, customer_id=customer_id, trigger="selfheal", channel="dashboard"
        )
        msg = SelfhealRequestedV1.build(
            SelfhealRequestedPayload(
                action=action,
                params=params,
                source="api",
                sender=Sender(kind="customer_session", subject=customer_id),
                intent=domain.ACTION_INTENT.get(action),
            ),
            contact_id=contact_id,
            customer_id=customer_id,
            message_id=request_message_id(contact_id),
        )
        await publish(deps.broker, msg)  # again on a duplicate: same id, the consumer's inbox skips it
        log.info("tier1.portal.change_requested", contact_id=contact_id, action=action.value)
        return contact_id, duplicate

    async def current(deps: PlanDeps, customer_id: str) -> dict[str, Any]:
        try:
            diagnosis = await deps.diagnostics.diagnose(customer_id)
        except LookupError as exc:
            raise PortalError(404, "customer_not_found", "we could not find your billing account") from exc
        except SourceUnavailable as exc:
            raise PortalError(
                503, "billing_unavailable", "your plan cannot be read right now; try again"
            ) from exc
        return diagnosis.evidence

    async def get_plan(request: Request) -> Response:
        deps = get_deps()
        customer_id = customer_of(request, deps.secret)
        evidence = await current(deps, customer_id)
        plan = evidence.get("plan") or {}
        sub = evidence.get("subscription") or {}
        rows = await deps.pool.fetch(
            "SELECT id, name, price_usd, seat_limit FROM plans WHERE active ORDER BY price_usd, id"
        )
        return JSONResponse(
            {
                "customer_id": customer_id,
                "plan": {k: plan.get(k) for k in ("id", "name", "monthly_usd", "seats", "seat_limit")}
                if plan
                else None,
                "subscription": {
                    k: sub.get(k)
                    for k in ("status", "price_usd", "seats", "current_period_end", "cancel_at_period_end")
                }
                if sub
                else None,
                "plans": [
                    {
                        "id": r["id"],
                        "name": r["name"],
                        "price_usd": float(r["price_usd"]),
                        "seat_limit": r["seat_limit"],
                    }
                    for r in rows
                ],
                "price_usd": monthly_price(plan, sub),
                "retention_offer": deps.retention_offer or None,
            }
        )

    async def post_preview(request: Request) -> Response:
        deps = get_deps()
        customer_id = customer_of(request, deps.secret)
        body: dict[str, Any] = await read_json(request)
        if body.get("customer_id") not in (None, "", customer_id):
            raise PortalError(403, "forbidden", "you can only change your own plan")
        plan, seats = parse_change(body)
        return JSONResponse(
            {
                "plan": plan,
                "seats": seats,
                "preview": await preview_change(deps.actions, customer_id, plan, seats),
            }
        )

    async def post_change(request: Request) -> Response:
        deps = get_deps()
        customer_id = customer_of(request, deps.secret)
        body: dict[str, Any] = await read_json(request)
        if body.get("customer_id") not in (None, "", customer_id):
            raise PortalError(403, "forbidden", "you can only change your own plan")
        plan, seats = parse_change(body)
        request_id = request_id_of(body, request)
        seen = body.get("seen_new_amount_cents")
        if not isinstance(seen, int) or isinstance(seen, bool):
            raise PortalError(
                422, "preview_first", "preview the change first: the new price is confirmed here"
            )
        preview = await preview_change(deps.actions, customer_id, plan, seats)
        if int(preview.get("new_amount_cents") or 0) != seen:
            return JSONResponse(
                {
                    "error": "price_changed",
                    "detail": "the price changed since you saw it; check the new preview",
                    "preview": preview,
                },
                status_code=409,
            )
        params: dict[str, Any] = {"plan": plan} if seats is None else {"plan": plan, "seats": seats}
        contact_id, duplicate = await submit(deps, customer_id, Action.CHANGE_PLAN, params, request_id)
        return JSONResponse(
            {
                "contact_id": contact_id,
                "status_url": f"/v1/health-meter/contacts/{contact_id}",
                "duplicate": duplicate,
                "preview": preview,
            },
            status_code=202,
        )

    async def post_cancel(request: Request) -> Response:
        deps = get_deps()
        customer_id = customer_of(request, deps.secret)
        body: dict[str, Any] = await read_json(request, empty={})
        if body.get("customer_id") not in (None, "", customer_id):
            raise PortalError(403, "forbidden", "you can only cancel your own subscription")
        request_id = request_id_of(body, request)
        contact_id, duplicate = await submit(deps, customer_id, Action.CANCEL_SUBSCRIPTION, {}, request_id)
        return JSONResponse(
            {
                "contact_id": contact_id,
                "status_url": f"/v1/health-meter/contacts/{contact_id}",
                "duplicate": duplicate,
                "at_period_end": True,
            },
            status_code=202,
        )

    async def get_requests(request: Request) -> Response:
        deps = get_deps()
        customer_id = customer_of(request, deps.secret)
        conversations = await deps.pool.fetch(
            """SELECT v.conversation_id, v.channel, v.subject, v.updated_at,
                      CASE WHEN v.status = 'open' AND EXISTS (
                          SELECT 1 FROM cases k JOIN contacts c ON c.contact_id = k.contact_id
                          WHERE c.conversation_id = v.conversation_id AND k.status <> 'resolved')
                        THEN 'with_human' ELSE v.status END AS status,
                      (SELECT t.text FROM conversation_turns t WHERE t.conversation_id = v.conversation_id
                         ORDER BY t.seq DESC LIMIT 1) AS last_text
               FROM conversations v WHERE v.customer_id = $1 ORDER BY v.updated_at DESC LIMIT 50""",
            customer_id,
        )
        cases = await ContactStatusReader(deps.pool).customer_cases(customer_id, limit=50)
        return JSONResponse(
            {
                "conversations": [conversation_json(r) for r in conversations],
                "cases": [case_json(r) for r in cases],
            }
        )

    guarded: Callable[[Callable[[Request], Awaitable[Response]]], Callable[[Request], Awaitable[Response]]]
    guarded = portal_guard
    return [
        Route("/billing/plan", static_page("plan.html")),
        Route("/billing/requests", static_page("requests.html")),
        Route("/v1/portal/plan", guarded(get_plan), methods=["GET"]),
        Route("/v1/portal/plan/preview", guarded(post_preview), methods=["POST"]),
        Route("/v1/portal/plan", guarded(post_change), methods=["POST"]),
        Route("/v1/portal/plan/cancel", guarded(post_cancel), methods=["POST"]),
        Route("/v1/portal/requests", guarded(get_requests), methods=["GET"]),
    ]
