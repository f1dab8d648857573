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
from services.tier1_selfheal import contracts as c
from services.tier1_selfheal import domain
from services.tier1_selfheal.adapters.postgres import ContactStatusReader
from services.tier1_selfheal.auth import (
    COOKIE_NAME,
    PAGE_HEADERS,
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
from tierline.http_contracts import Call, api_route
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


Raw = Callable[[Request], Awaitable[Response]]

#: The customer's credentials, as the OpenAPI document names them (any one will do).
SESSION_SCHEMES: dict[str, dict[str, Any]] = {
    "customerSession": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "a customer session token (`tierline token customer`, or the product's JWT)",
    },
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": COOKIE_NAME},
}
LINK_SCHEMES: dict[str, dict[str, Any]] = {
    "customerSession": SESSION_SCHEMES["customerSession"],
    "linkToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "the signed token of an emailed pay / update-card link",
    },
}


class CustomerSession:
    """Auth dependency: the signed-in customer (bearer header or session cookie) → their claims."""

    schemes = SESSION_SCHEMES

    def __init__(self, keys: Callable[[], CustomerKeys]) -> None:
        self.keys = keys

    async def __call__(self, request: Request) -> TokenClaims:
        token = token_from(request.headers, request.cookies)
        return verify_token(self.keys(), token, purposes=(SESSION_PURPOSE,))


class LinkToken:
    """Auth dependency: a signed link's token (bearer header or ``?token=``) of one of ``purposes``."""

    schemes = LINK_SCHEMES

    def __init__(self, keys: Callable[[], CustomerKeys], purposes: tuple[str, ...]) -> None:
        self.keys, self.purposes = keys, purposes

    async def __call__(self, request: Request) -> TokenClaims:
        token = token_from(request.headers, {}, request.query_params)
        return verify_token(self.keys(), token, purposes=self.purposes)


def meter_errors(endpoint: Raw) -> Raw:
    """The meter's typed errors as JSON answers: an :class:`HttpError` as itself, a refused token 401."""

    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except HttpError as exc:
            return _error(exc.status, exc.code, exc.detail)
        except InvalidSession as exc:
            return _error(401, "unauthenticated", str(exc))

    return wrapper


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

    sessions = CustomerSession(lambda: get_deps().secret)
    pay_links = LinkToken(lambda: get_deps().secret, (PAY_INVOICE_PURPOSE, SESSION_PURPOSE))
    status_links = LinkToken(
        lambda: get_deps().secret, (UPDATE_CARD_PURPOSE, PAY_INVOICE_PURPOSE, SESSION_PURPOSE)
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

    async def chat_conversation(deps: MeterDeps, wanted: str | None, customer_id: str) -> str | None:
        """The chat conversation a fix was clicked in (the widget sends it), the customer's own or 404."""
        if wanted in (None, ""):
            return None
        found = await conversations.get_conversation(deps.pool, wanted)
        if found is None or found.customer_id != customer_id:
            raise HttpError(404, "conversation_not_found", "no such conversation")
        return found.conversation_id

    # ------------------------------------------------------------------------------------ meter API
    async def get_meter(call: Call[TokenClaims, None]) -> c.HealthMeterView:
        """The signed-in customer's Billing Health Meter: the diagnosis and the 1-click fixes it offers."""
        claims = call.principal
        same_customer(call.query_as(c.MeterQuery).customer_id, claims.subject)
        return c.HealthMeterView.model_validate(diagnosis_json(await diagnose(get_deps(), claims.subject)))

    async def post_fix(call: Call[TokenClaims, c.FixRequest]) -> c.FixAccepted | c.HumanAccepted:
        """Ask for a 1-click fix: it is published on tier1.selfheal.requested.v1 and runs policy-checked."""
        deps, claims, body = get_deps(), call.principal, call.body
        same_customer(body.customer_id, claims.subject)
        action = body.action
        if action is Action.ESCALATE:
            return await human(deps, claims, c.HumanRequest(text=body.text, request_id=body.request_id))
        if action not in CLICKABLE:
            raise HttpError(422, "not_self_serve", f"{action.value} is not a 1-click fix; talk to us instead")
        params = body.params or {}
        try:
            domain.parse_fix(action, params)
        except domain.InvalidFixRequest as exc:
            raise HttpError(422, "invalid_params", str(exc)) from exc
        request_id = str(body.request_id or call.request.headers.get("idempotency-key") or uuid.uuid4().hex)
        if not _REQUEST_ID.fullmatch(request_id):
            raise HttpError(422, "invalid_request_id", "request_id must be 8-100 letters, digits or -_:.")
        conversation_id = await chat_conversation(deps, body.conversation_id, claims.subject)
        label = body.label
        contact_id, duplicate = await submit(
            deps,
            claims.subject,
            action,
            params,
            request_id,
            conversation_id=conversation_id,
            label=label[:200] if label else None,
        )
        return c.FixAccepted(
            contact_id=contact_id,
            status_url=f"/v1/health-meter/contacts/{contact_id}",
            duplicate=duplicate,
        )

    async def get_contact(call: Call[TokenClaims, None]) -> c.ContactStatus:
        """The honest status of one of your requests (pending, resolved, with a person, ...)."""
        status = await contact_status(get_deps(), call.principal.subject, call.path["contact_id"])
        return c.ContactStatus.model_validate(status)

    async def post_human(call: Call[TokenClaims, c.HumanRequest]) -> c.HumanAccepted:
        """Talk to a human: a person from the billing team takes over, with everything known so far."""
        return await human(get_deps(), call.principal, call.body)

    async def human(deps: MeterDeps, claims: TokenClaims, body: c.HumanRequest) -> c.HumanAccepted:
        same_customer(body.customer_id, claims.subject)
        text = body.text
        request_id = str(body.request_id or uuid.uuid4().hex)
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
        return c.HumanAccepted(
            contact_id=contact_id, status="escalated", status_url=f"/v1/health-meter/contacts/{contact_id}"
        )

    async def get_cases(call: Call[TokenClaims, None]) -> c.CustomerCases:
        """The signed-in customer's requests that reach a person, with the honest status of each."""
        rows = await ContactStatusReader(get_deps().pool).customer_cases(call.principal.subject)
        return c.CustomerCases.model_validate({"cases": [case_json(r) for r in rows]})

    async def post_session(call: Call[None, c.SessionStart]) -> Response:
        """Sign in: check a session token and keep it in an HttpOnly cookie."""
        deps = get_deps()
        claims = verify_token(deps.secret, call.body.token, purposes=(SESSION_PURPOSE,))
        view = c.SessionView(customer_id=claims.subject, expires_at=claims.expires_at)
        resp = JSONResponse(view.model_dump(mode="json"))
        resp.set_cookie(
            COOKIE_NAME,
            call.body.token,
            httponly=True,
            samesite="strict",
            secure=deps.cookie_secure,
            max_age=max(0, claims.expires_at - int(time.time())),
        )
        return resp

    async def delete_session(call: Call[None, None]) -> Response:
        """Sign out: forget the session cookie."""
        resp = JSONResponse(c.SignedOut(signed_out=True).model_dump(mode="json"))
        resp.delete_cookie(COOKIE_NAME)
        return resp

    # ------------------------------------------------------------------------------------ link pages
    async def link_customer(deps: MeterDeps, claims: TokenClaims, invoice_id: str | None = None) -> str:
        """The customer a link (or a session) speaks for; for pay links, the invoice's own customer."""
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

    async def post_update_card(call: Call[None, None]) -> Response:
        """Gone: card numbers never reach tierline.

        The card page (``portal_cards``) lets Stripe collect the card and sends only the SetupIntent it
        confirmed to ``POST /v1/portal/card``."""
        raise HttpError(
            410,
            "gone",
            "tierline no longer accepts card details: open /update-card, where the card goes straight to "
            "the payment processor, or POST /v1/portal/card with a confirmed setup_intent",
        )

    async def get_pay(call: Call[TokenClaims, None]) -> c.InvoiceDue:
        """The invoice a pay link (or your session) opens: what is due."""
        deps, invoice_id = get_deps(), call.path["invoice_id"]
        await link_customer(deps, call.principal, invoice_id)
        inv = await invoice_of(deps, invoice_id)
        return c.InvoiceDue(
            invoice_id=inv.invoice_id,
            status=inv.status,
            amount_due_usd=inv.amount_due_usd,
            currency=inv.currency,
        )

    async def post_pay(call: Call[TokenClaims, c.PayRequest]) -> c.PayAccepted:
        """Pay the invoice with the card on file (a retry_payment fix; the same request id is one)."""
        deps, invoice_id = get_deps(), call.path["invoice_id"]
        customer_id = await link_customer(deps, call.principal, invoice_id)
        request_id = str(call.body.request_id or uuid.uuid4().hex)
        cid, duplicate = await submit(
            deps,
            customer_id,
            Action.RETRY_PAYMENT,
            {"invoice_id": invoice_id},
            f"pay:{invoice_id}:{request_id}",
        )
        return c.PayAccepted(contact_id=cid, duplicate=duplicate)

    async def get_link_contact(call: Call[TokenClaims, None]) -> c.ContactStatus:
        """Status of a contact for a link page (update-card / pay token), limited to that customer."""
        deps, claims = get_deps(), call.principal
        customer_id = claims.subject
        if claims.purpose == PAY_INVOICE_PURPOSE:
            customer_id = (await invoice_of(deps, claims.subject)).customer_id
        return c.ContactStatus.model_validate(
            await contact_status(deps, customer_id, call.path["contact_id"])
        )

    # ------------------------------------------------------------------------------------ pages
    def page(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            """A Health Meter page (static HTML; its data comes from the JSON API)."""
            return HTMLResponse(
                _read_page(name),
                headers=PAGE_HEADERS,
            )

        return serve

    meter: dict[str, Any] = {"guard": meter_errors, "tags": ["health-meter"]}
    session: dict[str, Any] = {**meter, "auth": sessions}
    links: dict[str, Any] = {**meter, "tags": ["links"]}
    contact_errors = {403: "another account's request", 404: "no such request"}
    invoice_errors = {403: "another invoice, or another account's", 404: "no such invoice"}
    return [
        Route("/", page("health_meter.html")),
        Route("/health-meter", page("health_meter.html")),
        Route("/pay/{invoice_id}", page("pay.html")),
        api_route(
            "/v1/session", post_session, method="POST", body=c.SessionStart, response=c.SessionView, **meter
        ),
        api_route("/v1/session", delete_session, method="DELETE", response=c.SignedOut, **meter),
        api_route(
            "/v1/health-meter",
            get_meter,
            method="GET",
            query=c.MeterQuery,
            response=c.HealthMeterView,
            errors={
                403: "customer_id names another account",
                404: "no billing account",
                503: "the diagnosis is taking too long",
            },
            **session,
        ),
        api_route(
            "/v1/health-meter/fixes",
            post_fix,
            method="POST",
            body=c.FixRequest,
            response=c.FixAccepted,
            status_code=202,
            errors={
                403: "customer_id names another account",
                404: "conversation_id names no conversation of yours",
                409: "the request id was used for another fix",
                422: "not a 1-click fix, invalid params or request id",
            },
            **session,
        ),
        api_route(
            "/v1/health-meter/contacts/{contact_id}",
            get_contact,
            method="GET",
            response=c.ContactStatus,
            errors=contact_errors,
            **session,
        ),
        api_route(
            "/v1/health-meter/human",
            post_human,
            method="POST",
            body=c.HumanRequest,
            body_required=False,
            response=c.HumanAccepted,
            status_code=202,
            errors={403: "customer_id names another account"},
            **session,
        ),
        api_route("/v1/health-meter/cases", get_cases, method="GET", response=c.CustomerCases, **session),
        api_route(
            "/v1/update-card",
            post_update_card,
            method="POST",
            status_code=410,
            errors={410: "gone: card details go to the payment processor (/update-card)"},
            **links,
        ),
        api_route(
            "/v1/pay/{invoice_id}",
            get_pay,
            method="GET",
            auth=pay_links,
            response=c.InvoiceDue,
            errors=invoice_errors,
            **links,
        ),
        api_route(
            "/v1/pay/{invoice_id}",
            post_pay,
            method="POST",
            auth=pay_links,
            body=c.PayRequest,
            body_required=False,
            response=c.PayAccepted,
            status_code=202,
            errors={**invoice_errors, 409: "the request id was used for another fix"},
            **links,
        ),
        api_route(
            "/v1/links/contacts/{contact_id}",
            get_link_contact,
            method="GET",
            auth=status_links,
            response=c.ContactStatus,
            errors=contact_errors,
            **links,
        ),
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
