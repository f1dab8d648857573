"""The Billing Health Meter HTTP door: JSON API for the signed-in customer, plus the three pages.

Every effect goes through the topic: a click publishes ``tier1.selfheal.requested.v1`` and the consumer
runs the policy-checked fix, so the API, the pages and dashboards publishing directly behave the same.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from schemas import Action, EscalationReason, Tier, derived_id
from schemas.messages import (
    DiagnosisView,
    EscalationOpenedPayload,
    SelfhealRequestedPayload,
    SelfhealRequestedV1,
    Sender,
)
from schemas.vocab import Channel
from services.tier1_selfheal import domain
from services.tier1_selfheal.adapters.postgres import ContactStatusReader
from services.tier1_selfheal.auth import (
    COOKIE_NAME,
    PAY_INVOICE_PURPOSE,
    SESSION_PURPOSE,
    UPDATE_CARD_PURPOSE,
    CustomerKeys,
    InvalidSession,
    TokenClaims,
    token_from,
    verify_token,
)
from services.tier1_selfheal.ports import CardVault, Diagnostics, RequestStore, UnknownInvoice
from tierline import conversations
from tierline.http import path_id, read_json
from tierline.messaging import publish
from tierline.pipeline import escalate, start_contact

log = structlog.get_logger(__name__)

#: What a customer may ask for from the meter (refunds and the rest go through a conversation).
CLICKABLE: frozenset[Action] = domain.TIER1_ACTIONS
_REQUEST_ID = re.compile(r"[A-Za-z0-9_\-:.]{8,100}")


@dataclass
class MeterDeps:
    pool: asyncpg.Pool
    broker: KafkaBroker
    diagnostics: Diagnostics
    cards: CardVault
    requests: RequestStore
    secret: CustomerKeys  # session keys (kid) and the link secret
    diagnosis_timeout_s: float = 10.0
    cookie_secure: bool = False


class HttpError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def contact_id_for(customer_id: str, request_id: str) -> str:
    """The same click (same request id) always names the same contact: a double click is one request."""
    return f"sh_{derived_id('selfheal', customer_id, request_id).hex}"


def request_message_id(contact_id: str) -> uuid.UUID:
    return derived_id("selfheal-request", contact_id)


def _read_page(name: str) -> str:
    return (resources.files("services.tier1_selfheal") / "static" / name).read_text(encoding="utf-8")


def diagnosis_json(d: DiagnosisView) -> dict[str, Any]:
    ev = d.evidence
    invoice = ev.get("invoice") or {}
    card = ev.get("payment_method") or {}
    plan = ev.get("plan") or {}
    return {
        "customer_id": d.customer_id,
        "status": d.status.value,
        "root_cause": d.root_cause.value,
        "explanation": d.explanation,
        "recommended_action": d.recommended_action.value if d.recommended_action else None,
        "self_serve_eligible": d.self_serve_eligible,
        "invoice": {
            k: invoice.get(k) for k in ("id", "status", "amount_due_usd", "link_expired", "decline_code")
        }
        if invoice
        else None,
        "card": {k: card.get(k) for k in ("brand", "last4", "exp_month", "exp_year")} if card else None,
        "plan": {k: plan.get(k) for k in ("name", "tier", "monthly_usd", "seats", "seat_limit")}
        if plan
        else None,
        "missing_sources": d.missing_sources,
        "fixes": [f.as_json() for f in domain.fixes_for(d)],
    }


def meter_routes(get_deps: Callable[[], MeterDeps]) -> list[Route]:
    """Routes for Service(routes=...); ``get_deps`` is called per request (the pool exists after start)."""

    def guarded(
        endpoint: Callable[[Request, MeterDeps], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            try:
                return await endpoint(request, get_deps())
            except HttpError as exc:
                return _error(exc.status, exc.code, exc.detail)
            except InvalidSession as exc:
                return _error(401, "unauthenticated", str(exc))

        return wrapper

    def session(request: Request, deps: MeterDeps) -> TokenClaims:
        return verify_token(
            deps.secret, token_from(request.headers, request.cookies), purposes=(SESSION_PURPOSE,)
        )

    def same_customer(claimed: Any, subject: str) -> None:
        if claimed not in (None, "") and claimed != subject:
            log.warning("tier1.api.cross_customer_denied", subject=subject)
            raise HttpError(403, "forbidden", "you can only act on your own account")

    async def diagnose(deps: MeterDeps, customer_id: str) -> DiagnosisView:
        try:
            return await asyncio.wait_for(deps.diagnostics.diagnose(customer_id), deps.diagnosis_timeout_s)
        except LookupError as exc:
            raise HttpError(404, "customer_not_found", "we could not find your billing account") from exc
        except TimeoutError as exc:
            raise HttpError(
                503, "diagnosis_unavailable", "the diagnosis is taking too long; try again"
            ) from exc

    async def submit(
        deps: MeterDeps,
        customer_id: str,
        action: Action,
        params: dict[str, Any],
        request_id: str,
        *,
        text: str | None = None,
        conversation_id: str | None = None,
        label: str | None = None,
    ) -> tuple[str, bool]:
        """Record and publish one fix request; the same request id twice is one request. A fix clicked in
        a chat joins its conversation (the click is the customer's turn), so its confirmation lands there."""
        contact_id = contact_id_for(customer_id, request_id)
        row = await deps.requests.record(contact_id, customer_id, action.value, params)
        if row.action != action.value:
            raise HttpError(409, "conflict", "this request id was already used for another fix")
        duplicate = (
            row.state != "received"
            or (await deps.pool.fetchval("SELECT 1 FROM contacts WHERE contact_id=$1", contact_id))
            is not None
        )
        await start_contact(
            deps.pool, contact_id=contact_id, customer_id=customer_id, trigger="selfheal", channel="dashboard"
        )
        if conversation_id is not None:
            await conversations.attach_contact(
                deps.pool, contact_id=contact_id, conversation_id=conversation_id
            )
            await conversations.record_customer_turn(
                deps.pool,
                conversation_id=conversation_id,
                message_id=request_message_id(contact_id),
                contact_id=contact_id,
                text=label or action.value.replace("_", " "),
            )
        msg = SelfhealRequestedV1.build(
            SelfhealRequestedPayload(
                action=action,
                params=params,
                source="api",
                sender=Sender(kind="customer_session", subject=customer_id),
                intent=domain.ACTION_INTENT.get(action),
                text=text,
            ),
            contact_id=contact_id,
            customer_id=customer_id,
            message_id=request_message_id(contact_id),
        )
        # published again on a duplicate: the id is the same, so the consumer's inbox skips it, and a
        # request whose first publish was lost still gets through
        await publish(deps.broker, msg)
        log.info("tier1.api.fix_requested", contact_id=contact_id, action=action.value, duplicate=duplicate)
        return contact_id, duplicate

    async def chat_conversation(deps: MeterDeps, body: dict[str, Any], customer_id: str) -> str | None:
        """The chat conversation a fix was clicked in (the widget sends it), the customer's own or 404."""
        wanted = body.get("conversation_id")
        if wanted in (None, ""):
            return None
        found = (
            await conversations.get_conversation(deps.pool, wanted)
            if isinstance(wanted, str) and len(wanted) <= 200
            else None
        )
        if found is None or found.customer_id != customer_id:
            raise HttpError(404, "conversation_not_found", "no such conversation")
        return found.conversation_id

    # ------------------------------------------------------------------------------------ meter API
    async def get_meter(request: Request, deps: MeterDeps) -> Response:
        claims = session(request, deps)
        same_customer(request.query_params.get("customer_id"), claims.subject)
        return JSONResponse(diagnosis_json(await diagnose(deps, claims.subject)))

    async def post_fix(request: Request, deps: MeterDeps) -> Response:
        claims = session(request, deps)
        body: dict[str, Any] = await read_json(request)
        same_customer(body.get("customer_id"), claims.subject)
        try:
            action = Action(str(body.get("action")))
        except ValueError as exc:
            raise HttpError(422, "unknown_action", f"unknown action {body.get('action')!r}") from exc
        if action is Action.ESCALATE:
            return await human(request, deps, claims=claims, body=body)
        if action not in CLICKABLE:
            raise HttpError(422, "not_self_serve", f"{action.value} is not a 1-click fix; talk to us instead")
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise HttpError(422, "invalid_params", "params must be an object")
        try:
            domain.parse_fix(action, params)
        except domain.InvalidFixRequest as exc:
            raise HttpError(422, "invalid_params", str(exc)) from exc
        request_id = str(body.get("request_id") or request.headers.get("idempotency-key") or uuid.uuid4().hex)
        if not _REQUEST_ID.fullmatch(request_id):
            raise HttpError(422, "invalid_request_id", "request_id must be 8-100 letters, digits or -_:.")
        conversation_id = await chat_conversation(deps, body, claims.subject)
        label = body.get("label") if isinstance(body.get("label"), str) else None
        contact_id, duplicate = await submit(
            deps,
            claims.subject,
            action,
            params,
            request_id,
            conversation_id=conversation_id,
            label=label[:200] if label else None,
        )
        return JSONResponse(
            {
                "contact_id": contact_id,
                "status_url": f"/v1/health-meter/contacts/{contact_id}",
                "duplicate": duplicate,
            },
            status_code=202,
        )

    async def get_contact(request: Request, deps: MeterDeps) -> Response:
        claims = session(request, deps)
        return JSONResponse(await contact_status(deps, claims.subject, path_id(request, "contact_id")))

    async def human(
        request: Request,
        deps: MeterDeps,
        *,
        claims: TokenClaims | None = None,
        body: dict[str, Any] | None = None,
    ) -> Response:
        claims = claims or session(request, deps)
        if body is None:
            body = await read_json(request, empty={})
        same_customer(body.get("customer_id"), claims.subject)
        text = body.get("text") if isinstance(body.get("text"), str) else None
        request_id = str(body.get("request_id") or uuid.uuid4().hex)
        customer_id = claims.subject
        contact_id = contact_id_for(customer_id, f"human:{request_id}")
        await deps.requests.record(contact_id, customer_id, Action.ESCALATE.value, {})
        await start_contact(
            deps.pool, contact_id=contact_id, customer_id=customer_id, trigger="selfheal", channel="dashboard"
        )
        conversation_id = await open_dashboard_conversation(
            deps.pool, contact_id=contact_id, customer_id=customer_id, text=text
        )
        try:
            diagnosis: DiagnosisView | None = await asyncio.wait_for(
                deps.diagnostics.diagnose(customer_id), min(3.0, deps.diagnosis_timeout_s)
            )
        except Exception as exc:  # noqa: BLE001 - a person is reached even without a diagnosis
            log.warning("tier1.api.human_without_diagnosis", error=type(exc).__name__)
            diagnosis = None
        cause = SelfhealRequestedV1.build(
            SelfhealRequestedPayload(
                action=Action.ESCALATE,
                source="api",
                text=(text or "")[:2000] or None,
                sender=Sender(kind="customer_session", subject=customer_id),
                intent=domain.ACTION_INTENT[Action.ESCALATE],
            ),
            contact_id=contact_id,
            customer_id=customer_id,
            message_id=request_message_id(contact_id),
        )
        await escalate(
            deps.broker,
            cause=cause,
            payload=EscalationOpenedPayload(
                reason=EscalationReason.CUSTOMER_ASKED,
                opened_by=Tier.TIER1,
                intent=cause.payload.intent,
                text=text or "The customer pressed 'Talk to a human' in the Billing Health Meter.",
                plan=(diagnosis.evidence.get("plan") or {}).get("tier") if diagnosis else None,
                diagnosis=diagnosis,
                suggested_next_step=domain.human_next_step(diagnosis),
                tier_path=[Tier.TIER1],
                conversation_id=conversation_id,
            ),
        )
        await deps.requests.set_state(contact_id, "escalated", EscalationReason.CUSTOMER_ASKED.value)
        return JSONResponse(
            {
                "contact_id": contact_id,
                "status": "escalated",
                "status_url": f"/v1/health-meter/contacts/{contact_id}",
            },
            status_code=202,
        )

    async def get_cases(request: Request, deps: MeterDeps) -> Response:
        """The signed-in customer's requests that reach a person, with the honest status of each."""
        claims = session(request, deps)
        rows = await ContactStatusReader(deps.pool).customer_cases(claims.subject)
        return JSONResponse({"cases": [case_json(r) for r in rows]})

    async def post_session(request: Request, deps: MeterDeps) -> Response:
        """Sign-in form: check a session token and keep it in an HttpOnly cookie."""
        body: dict[str, Any] = await read_json(request)
        claims = verify_token(deps.secret, str(body.get("token") or ""), purposes=(SESSION_PURPOSE,))
        resp = JSONResponse({"customer_id": claims.subject, "expires_at": claims.expires_at})
        resp.set_cookie(
            COOKIE_NAME,
            str(body["token"]),
            httponly=True,
            samesite="strict",
            secure=deps.cookie_secure,
            max_age=max(0, claims.expires_at - int(time.time())),
        )
        return resp

    async def delete_session(request: Request, deps: MeterDeps) -> Response:
        resp = JSONResponse({"signed_out": True})
        resp.delete_cookie(COOKIE_NAME)
        return resp

    # ------------------------------------------------------------------------------------ link pages
    async def link_customer(
        request: Request, deps: MeterDeps, purpose: str, invoice_id: str | None = None
    ) -> str:
        """The customer a link (or a session) speaks for; for pay links, the invoice's own customer."""
        token = token_from(request.headers, {}, request.query_params)
        claims = verify_token(deps.secret, token, purposes=(purpose, SESSION_PURPOSE))
        if claims.purpose == PAY_INVOICE_PURPOSE:
            if invoice_id is None or claims.subject != invoice_id:
                raise HttpError(403, "forbidden", "this link is for another invoice")
            return (await invoice_of(deps, invoice_id)).customer_id
        if invoice_id is not None:
            inv = await invoice_of(deps, invoice_id)
            if inv.customer_id != claims.subject:
                raise HttpError(403, "forbidden", "you can only pay your own invoices")
        return claims.subject

    async def invoice_of(deps: MeterDeps, invoice_id: str) -> Any:
        try:
            return await deps.cards.invoice(invoice_id)
        except UnknownInvoice as exc:
            raise HttpError(404, "invoice_not_found", str(exc)) from exc

    async def post_update_card(request: Request, deps: MeterDeps) -> Response:
        """Gone: card numbers never reach tierline. The card page (``portal_cards``) lets Stripe collect
        the card and sends only the SetupIntent it confirmed to ``POST /v1/portal/card``."""
        raise HttpError(
            410,
            "gone",
            "tierline no longer accepts card details: open /update-card, where the card goes straight to "
            "the payment processor, or POST /v1/portal/card with a confirmed setup_intent",
        )

    async def get_pay(request: Request, deps: MeterDeps) -> Response:
        invoice_id = path_id(request, "invoice_id")
        await link_customer(request, deps, PAY_INVOICE_PURPOSE, invoice_id)
        inv = await invoice_of(deps, invoice_id)
        return JSONResponse(
            {
                "invoice_id": inv.invoice_id,
                "status": inv.status,
                "amount_due_usd": inv.amount_due_usd,
                "currency": inv.currency,
            }
        )

    async def post_pay(request: Request, deps: MeterDeps) -> Response:
        invoice_id = path_id(request, "invoice_id")
        customer_id = await link_customer(request, deps, PAY_INVOICE_PURPOSE, invoice_id)
        body: dict[str, Any] = await read_json(request, empty={})
        request_id = str(body.get("request_id") or uuid.uuid4().hex)
        if not _REQUEST_ID.fullmatch(request_id):
            raise HttpError(422, "invalid_request_id", "request_id must be 8-100 letters, digits or -_:.")
        cid, duplicate = await submit(
            deps,
            customer_id,
            Action.RETRY_PAYMENT,
            {"invoice_id": invoice_id},
            f"pay:{invoice_id}:{request_id}",
        )
        return JSONResponse({"contact_id": cid, "duplicate": duplicate}, status_code=202)

    async def get_link_contact(request: Request, deps: MeterDeps) -> Response:
        """Status of a contact for a link page (update-card / pay token), limited to that customer."""
        token = token_from(request.headers, {}, request.query_params)
        claims = verify_token(
            deps.secret, token, purposes=(UPDATE_CARD_PURPOSE, PAY_INVOICE_PURPOSE, SESSION_PURPOSE)
        )
        customer_id = claims.subject
        if claims.purpose == PAY_INVOICE_PURPOSE:
            customer_id = (await invoice_of(deps, claims.subject)).customer_id
        return JSONResponse(await contact_status(deps, customer_id, path_id(request, "contact_id")))

    # ------------------------------------------------------------------------------------ pages
    def page(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            return HTMLResponse(
                _read_page(name),
                headers={
                    "Cache-Control": "no-store",
                    "X-Frame-Options": "DENY",
                    "Referrer-Policy": "no-referrer",
                    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                    "style-src 'self' 'unsafe-inline'; img-src 'self' data:",
                },
            )

        return serve

    return [
        Route("/", page("health_meter.html")),
        Route("/health-meter", page("health_meter.html")),
        Route("/pay/{invoice_id}", page("pay.html")),
        Route("/v1/session", guarded(post_session), methods=["POST"]),
        Route("/v1/session", guarded(delete_session), methods=["DELETE"]),
        Route("/v1/health-meter", guarded(get_meter), methods=["GET"]),
        Route("/v1/health-meter/fixes", guarded(post_fix), methods=["POST"]),
        Route("/v1/health-meter/contacts/{contact_id}", guarded(get_contact), methods=["GET"]),
        Route("/v1/health-meter/human", guarded(human), methods=["POST"]),
        Route("/v1/health-meter/cases", guarded(get_cases), methods=["GET"]),
        Route("/v1/update-card", guarded(post_update_card), methods=["POST"]),
        Route("/v1/pay/{invoice_id}", guarded(get_pay), methods=["GET"]),
        Route("/v1/pay/{invoice_id}", guarded(post_pay), methods=["POST"]),
        Route("/v1/links/contacts/{contact_id}", guarded(get_link_contact), methods=["GET"]),
    ]


LINK_KEYS = ("url", "hosted_url", "pdf_url")


async def open_dashboard_conversation(
    pool: asyncpg.Pool, *, contact_id: str, customer_id: str, text: str | None
) -> str:
    """The meter's "talk to a human" starts a conversation (channel dashboard, named after the contact)
    with the customer's words as its first turn, so the person who takes it can answer in it."""
    conversation = await conversations.open_conversation(
        pool,
        conversation_id=contact_id,
        customer_id=customer_id,
        channel=Channel.DASHBOARD,
        subject="Talk to a human",
    )
    await conversations.attach_contact(pool, contact_id=contact_id, conversation_id=contact_id)
    await conversations.record_customer_turn(
        pool,
        conversation_id=conversation.conversation_id,
        message_id=request_message_id(contact_id),
        contact_id=contact_id,
        text=(text or "").strip()[:2000] or "I'd like to talk to a person.",
    )
    return conversation.conversation_id


def case_json(row: dict[str, Any]) -> dict[str, Any]:
    """One of the customer's cases as their pages show it (the people's messages, never internal notes
    other than the resolution they were told)."""
    messages = [m for m in (row["messages"] or []) if isinstance(m, dict)]
    told = [m.get("text") for m in messages if m.get("kind") == "resolution"]
    honest = domain.human_case_status(
        row["status"],
        sla_due_at=row["sla_due_at"],
        resolution_note=str(told[-1]) if told else row["resolution_note"],
    )
    return {
        "case_id": row["case_id"],
        "contact_id": row["contact_id"],
        "state": honest.state,
        "title": honest.title,
        "detail": honest.detail,
        "opened_at": row["opened_at"].isoformat(),
        "sla_due_at": row["sla_due_at"].isoformat() if row["sla_due_at"] else None,
        "conversation_id": row["conversation_id"],
        "messages": [
            {"kind": m.get("kind"), "text": m.get("text"), "created_at": m.get("created_at")}
            for m in messages
        ],
    }


async def contact_status(deps: MeterDeps, customer_id: str, contact_id: str) -> dict[str, Any]:
    """pending / resolved (by whom, with which actions) / handed_to_tier2 / escalated — own contacts only."""
    reader = ContactStatusReader(deps.pool)
    owner = await reader.owner(contact_id)
    if owner is None:
        raise HttpError(404, "contact_not_found", "no such request")
    if owner != customer_id:
        raise HttpError(403, "forbidden", "this request belongs to another account")
    out: dict[str, Any] = {"contact_id": contact_id, "status": "pending"}
    results = await reader.action_results(contact_id)
    links = [
        {"action": r["action"], "url": (r["result"] or {}).get(k)}
        for r in results
        if r["status"] == "succeeded"
        for k in LINK_KEYS
        if isinstance((r["result"] or {}).get(k), str)
    ]
    if links:
        out["links"] = links
    case = await reader.case(contact_id)
    if case is not None:
        # A handoff records the contact's outcome when the case opens: the case, not the outcome, says
        # whether a person has finished.
        honest = domain.human_case_status(
            case["status"],
            sla_due_at=case["sla_due_at"],
            resolution_note=case["told"] or case["resolution_note"],  # what the customer was told
        )
        out.update(
            status="resolved" if honest.state == "resolved" else "escalated",
            case_status=case["status"],
            escalation_reason=case["reason"],
            sla_due_at=case["sla_due_at"].isoformat() if case["sla_due_at"] else None,
            title=honest.title,
            detail=honest.detail,
        )
        if honest.state == "resolved":
            out.update(resolved_by=Tier.TIER3.value, summary=honest.detail)
        out["actions_tried"] = [{"action": r["action"], "status": r["status"]} for r in results]
        return out
    outcome = await reader.outcome(contact_id)
    if outcome is not None:
        p = outcome.get("payload") or {}
        handed = p.get("resolved_by") == Tier.TIER3.value  # a person has it (no case of its own yet)
        out.update(
            status="escalated" if handed else "resolved",
            resolved_by=None if handed else p.get("resolved_by"),
            actions=p.get("actions", []),
            summary=p.get("summary", ""),
            recovered_usd=p.get("recovered_usd", 0.0),
            escalation_reason=p.get("escalation_reason"),
        )
        if handed:
            out["detail"] = "A person from our billing team has your case."
        return out
    row = await deps.requests.get(contact_id)
    if row is not None and row.state in ("handed_to_tier2", "escalated"):
        out["status"] = row.state
        out["detail"] = (
            "Our assistant is looking into it with everything we tried."
            if row.state == "handed_to_tier2"
            else "A person from our billing team has your case."
        )
        if row.state == "escalated":
            out["escalation_reason"] = row.reason
    out["actions_tried"] = [{"action": r["action"], "status": r["status"]} for r in results]
    return out
