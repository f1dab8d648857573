"""The console's HTTP door: JSON API for agents plus the static page (no build step)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from services.tier3_handoff import approvals, domain
from services.tier3_handoff.auth import Agent, AgentVerifier, InvalidAgentToken
from services.tier3_handoff.handlers import Tier3Handoff, UnknownHumanAction
from services.tier3_handoff.ports import HumanActionDenied
from tierline.account_changes import account_history
from tierline.http import path_id, read_json

log = structlog.get_logger(__name__)

#: A reply's id, chosen by the console per draft: the same id sent twice is one reply.
_REPLY_ID = re.compile(r"[A-Za-z0-9_\-:.]{8,100}")

Endpoint = Callable[[Request, Agent], Awaitable[Response]]


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def console_routes(get_handoff: Callable[[], Tier3Handoff], verifier: AgentVerifier) -> list[Route]:
    """Routes for Service(routes=...). ``get_handoff`` is called per request (the pool exists after start);
    ``verifier`` checks agent tokens (tierline's agent keys today; an OIDC/JWKS verifier plugs in here)."""

    def authed(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            if not header.lower().startswith("bearer "):
                return _error(401, "unauthenticated", "Authorization: Bearer <agent token> required")
            try:
                agent = verifier.verify(header[7:].strip())
            except InvalidAgentToken as exc:
                return _error(401, "invalid_token", str(exc))
            try:
                return await endpoint(request, agent)
            except domain.CaseNotFound as exc:
                return _error(404, "case_not_found", str(exc))
            except approvals.ApprovalNotFound as exc:
                return _error(404, "approval_not_found", str(exc))
            except approvals.ApprovalForbidden as exc:
                return _error(403, "forbidden", str(exc))
            except approvals.ApprovalConflict as exc:
                return _error(409, "conflict", str(exc))
            except domain.CaseForbidden as exc:
                return _error(403, "forbidden", str(exc))
            except domain.CaseConflict as exc:
                return _error(409, "conflict", str(exc))
            except HumanActionDenied as exc:
                return _error(422, "denied", str(exc))
            except domain.ReplyInvalid as exc:
                return _error(422, "invalid_reply", str(exc))
            except (UnknownHumanAction, KeyError, ValueError, TypeError) as exc:
                return _error(400, "bad_request", f"{type(exc).__name__}: {exc}")

        return wrapper

    async def me(request: Request, agent: Agent) -> Response:
        return JSONResponse(
            {"agent_id": agent.agent_id, "queues": sorted(agent.queues), "roles": sorted(agent.roles)}
        )

    async def list_cases(request: Request, agent: Agent) -> Response:
        queue = request.query_params.get("queue")
        if queue and queue not in agent.queues:
            raise domain.CaseForbidden(f"not a member of queue {queue!r}")
        queues = [queue] if queue else sorted(agent.queues)
        status = request.query_params.get("status", "open,claimed")
        statuses = [s for s in status.split(",") if s in {c.value for c in domain.CaseStatus}]
        cases = await get_handoff().store.list_queue(queues, statuses)
        return JSONResponse(
            {"cases": [{**c.summary(), "headline": domain.summarize_packet(c.packet)} for c in cases]}
        )

    async def get_case(request: Request, agent: Agent) -> Response:
        handoff = get_handoff()
        case = await handoff.visible_case(path_id(request, "case_id"), agent.queues)
        return JSONResponse(
            {
                **case.summary(),
                "packet": case.packet,
                "resolution_note": case.resolution_note,
                "human_actions": await handoff.store.actions(case.case_id),
                "conversation": await handoff.thread(case),
                "draft_reply": domain.draft_reply(case.packet),
                "approvals": [a.summary() for a in await handoff.approvals.for_case(case.case_id)],
                # the customer's account changes: who, when, before → after (tierline.account_changes)
                "account_history": await account_history(handoff.pool, case.customer_id, limit=50),
            }
        )

    async def claim(request: Request, agent: Agent) -> Response:
        case = await get_handoff().claim(path_id(request, "case_id"), agent.agent_id, agent.queues)
        return JSONResponse(case.summary())

    async def act(request: Request, agent: Agent) -> Response:
        case_id = path_id(request, "case_id")
        body: dict[str, Any] = await read_json(request)
        result = await get_handoff().act(
            case_id,
            agent.agent_id,
            agent.queues,
            kind=str(body.get("action", "note")),
            note=str(body.get("note", "")),
            params={k: v for k, v in body.items() if k not in {"action", "note"}},
        )
        return JSONResponse(result)

    async def resolve(request: Request, agent: Agent) -> Response:
        case_id = path_id(request, "case_id")
        body: dict[str, Any] = await read_json(request)
        note = str(body.get("resolution_note") or body.get("note") or "").strip()
        if not note:
            raise ValueError("resolution_note is required")
        article = None
        if body.get("publish_article"):
            title, text = str(body.get("title") or "").strip(), str(body.get("body") or "").strip()
            if not title or not text:
                raise ValueError("publish_article needs title and body")
            article = (title, text, [str(t) for t in body.get("tags") or []])
        message = body.get("customer_message")
        msg = await get_handoff().resolve(
            case_id,
            agent.agent_id,
            agent.queues,
            note=note,
            article=article,
            customer_message=message if isinstance(message, str) and message.strip() else None,
        )
        return JSONResponse(
            {
                "case_id": msg.payload.case_id,
                "status": "resolved",
                "message_id": str(msg.message_id),
                "knowledge_article_id": msg.payload.knowledge_article_id,
            }
        )

    async def request_approval(request: Request, agent: Agent) -> Response:
        body: dict[str, Any] = await read_json(request)
        approval = await get_handoff().request_approval(
            path_id(request, "case_id"),
            agent.agent_id,
            agent.queues,
            charge_id=str(body.get("charge_id") or ""),
            amount_usd=float(body.get("amount_usd") or 0),
            note=str(body.get("note") or ""),
        )
        return JSONResponse(approval.summary())

    async def pending_approvals(request: Request, agent: Agent) -> Response:
        pending = await get_handoff().pending_approvals(agent.queues, approver=agent.approver)
        return JSONResponse({"approvals": [a.summary() for a in pending]})

    async def approve(request: Request, agent: Agent) -> Response:
        body: dict[str, Any] = await read_json(request, empty={})
        approval, record = await get_handoff().approve(
            path_id(request, "approval_id"),
            agent.agent_id,
            agent.queues,
            approver=agent.approver,
            note=str(body.get("note") or ""),
        )
        return JSONResponse({**approval.summary(), "record": record.model_dump(mode="json")})

    async def deny(request: Request, agent: Agent) -> Response:
        body: dict[str, Any] = await read_json(request, empty={})
        approval = await get_handoff().deny(
            path_id(request, "approval_id"),
            agent.agent_id,
            agent.queues,
            approver=agent.approver,
            note=str(body.get("note") or ""),
        )
        return JSONResponse(approval.summary())

    async def reply(request: Request, agent: Agent) -> Response:
        body: dict[str, Any] = await read_json(request)
        text = body.get("text")
        if not isinstance(text, str):
            raise domain.ReplyInvalid("text (the reply to the customer) is required")
        reply_id = str(body.get("reply_id") or uuid.uuid4().hex)
        if not _REPLY_ID.fullmatch(reply_id):
            raise domain.ReplyInvalid("reply_id must be 8-100 letters, digits or -_:.")
        result = await get_handoff().reply(
            path_id(request, "case_id"), agent.agent_id, agent.queues, text=text, reply_id=reply_id
        )
        return JSONResponse(result)

    async def page(request: Request) -> Response:
        html = (resources.files("services.tier3_handoff") / "static" / "console.html").read_text()
        return HTMLResponse(html)

    async def root(request: Request) -> Response:
        return RedirectResponse("/console")

    return [
        Route("/", root),
        Route("/console", page),
        Route("/v1/console/me", authed(me)),
        Route("/v1/cases", authed(list_cases)),
        Route("/v1/cases/{case_id}", authed(get_case)),
        Route("/v1/cases/{case_id}/claim", authed(claim), methods=["POST"]),
        Route("/v1/cases/{case_id}/actions", authed(act), methods=["POST"]),
        Route("/v1/cases/{case_id}/resolve", authed(resolve), methods=["POST"]),
        Route("/v1/cases/{case_id}/reply", authed(reply), methods=["POST"]),
        Route("/v1/cases/{case_id}/approvals", authed(request_approval), methods=["POST"]),
        Route("/v1/approvals", authed(pending_approvals)),
        Route("/v1/approvals/{approval_id}/approve", authed(approve), methods=["POST"]),
        Route("/v1/approvals/{approval_id}/deny", authed(deny), methods=["POST"]),
    ]
