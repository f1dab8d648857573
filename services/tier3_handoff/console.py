"""The console's HTTP door: the typed JSON API for agents plus the static page (no build step).

Every JSON route declares its contract (``services/tier3_handoff/contracts.py``) through
``tierline.http_contracts``: the agent's bearer token is a dependency (:class:`AgentBearer`), bodies and
queries are validated by their models (a malformed one is a 422 naming the field), and the generated
OpenAPI document (``/openapi.json``) describes exactly these routes.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from services.tier3_handoff import approvals, domain
from services.tier3_handoff import contracts as c
from services.tier3_handoff.auth import Agent, AgentVerifier, InvalidAgentToken
from services.tier3_handoff.handlers import Tier3Handoff, UnknownHumanAction
from services.tier3_handoff.ports import HumanActionDenied
from tierline import switches
from tierline.account_changes import account_history
from tierline.http import HttpProblem
from tierline.http_contracts import Call, api_route

log = structlog.get_logger(__name__)

Raw = Callable[[Request], Awaitable[Response]]

#: The console's credential, as the OpenAPI document names it.
AGENT_SCHEME: Mapping[str, Mapping[str, Any]] = {
    "agentToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "an agent token (`tierline token agent`, or the identity provider's JWT)",
    }
}


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


class AgentBearer:
    """The console's auth dependency: ``Authorization: Bearer <agent token>`` → the :class:`Agent`."""

    schemes = AGENT_SCHEME

    def __init__(self, verifier: AgentVerifier) -> None:
        self.verifier = verifier

    async def __call__(self, request: Request) -> Agent:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            raise HttpProblem(401, "unauthenticated", "Authorization: Bearer <agent token> required")
        try:
            return self.verifier.verify(header[7:].strip())
        except InvalidAgentToken as exc:
            raise HttpProblem(401, "invalid_token", str(exc)) from exc


def console_errors(endpoint: Raw) -> Raw:
    """The console's typed errors, each to its status (the same answers as before the contracts)."""

    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
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


AgentCall = Call[Agent, Any]


def console_routes(get_handoff: Callable[[], Tier3Handoff], verifier: AgentVerifier) -> list[Route]:
    """Routes for Service(routes=...). ``get_handoff`` is called per request (the pool exists after start);
    ``verifier`` checks agent tokens (tierline's agent keys today; an OIDC/JWKS verifier plugs in here)."""
    agents = AgentBearer(verifier)

    async def me(call: AgentCall) -> c.AgentView:
        """The signed-in agent: name, queues and roles."""
        agent: Agent = call.principal
        return c.AgentView(agent_id=agent.agent_id, queues=sorted(agent.queues), roles=sorted(agent.roles))

    async def list_cases(call: AgentCall) -> c.CaseList:
        """The cases of your queues (or one of them), by status."""
        agent: Agent = call.principal
        query = call.query_as(c.CaseListQuery)
        if query.queue and query.queue not in agent.queues:
            raise domain.CaseForbidden(f"not a member of queue {query.queue!r}")
        queues = [query.queue] if query.queue else sorted(agent.queues)
        statuses = [s for s in query.status.split(",") if s in {st.value for st in domain.CaseStatus}]
        cases = await get_handoff().store.list_queue(queues, statuses)
        return c.CaseList.model_validate(
            {"cases": [{**k.summary(), "headline": domain.summarize_packet(k.packet)} for k in cases]}
        )

    async def get_case(call: AgentCall) -> c.CaseDetail:
        """One case with its full context: packet, actions, conversation, approvals, account history."""
        handoff = get_handoff()
        case = await handoff.visible_case(call.path["case_id"], call.principal.queues)
        return c.CaseDetail.model_validate(
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

    async def claim(call: AgentCall) -> c.CaseSummary:
        """Claim a case of your queues (one holder at a time)."""
        agent: Agent = call.principal
        case = await get_handoff().claim(call.path["case_id"], agent.agent_id, agent.queues)
        return c.CaseSummary.model_validate(case.summary())

    async def act(call: Call[Agent, c.ActOnCase]) -> c.ActResult:
        """A human action on a case you hold: a note, or a policy-checked tool call."""
        agent, body = call.principal, call.body
        result = await get_handoff().act(
            call.path["case_id"],
            agent.agent_id,
            agent.queues,
            kind=body.action,
            note=body.note,
            params=dict(body.model_extra or {}),
        )
        return c.ActResult.model_validate(result)

    async def resolve(call: Call[Agent, c.ResolveCase]) -> c.CaseResolved:
        """Resolve a case you hold; optionally publish a knowledge article and tell the customer."""
        agent, body = call.principal, call.body
        note = (body.resolution_note or body.note or "").strip()
        if not note:
            raise ValueError("resolution_note is required")
        article = None
        if body.publish_article:
            title, text = (body.title or "").strip(), (body.body or "").strip()
            if not title or not text:
                raise ValueError("publish_article needs title and body")
            article = (title, text, list(body.tags))
        message = body.customer_message
        msg = await get_handoff().resolve(
            call.path["case_id"],
            agent.agent_id,
            agent.queues,
            note=note,
            article=article,
            customer_message=message if message and message.strip() else None,
        )
        return c.CaseResolved(
            case_id=msg.payload.case_id,
            status="resolved",
            message_id=str(msg.message_id),
            knowledge_article_id=msg.payload.knowledge_article_id,
        )

    async def request_approval(call: Call[Agent, c.RequestRefundApproval]) -> c.ApprovalView:
        """Ask a lead to approve a refund over your limit."""
        agent, body = call.principal, call.body
        approval = await get_handoff().request_approval(
            call.path["case_id"],
            agent.agent_id,
            agent.queues,
            charge_id=body.charge_id,
            amount_usd=body.amount_usd,
            note=body.note,
        )
        return c.ApprovalView.model_validate(approval.summary())

    async def pending_approvals(call: AgentCall) -> c.ApprovalList:
        """The approvals waiting for a decision in your queues (approvers only)."""
        agent: Agent = call.principal
        pending = await get_handoff().pending_approvals(agent.queues, approver=agent.approver)
        return c.ApprovalList.model_validate({"approvals": [a.summary() for a in pending]})

    async def approve(call: Call[Agent, c.DecisionNote]) -> c.ApprovalDecided:
        """Approve a refund someone else asked for: it runs once, through the executor."""
        agent = call.principal
        approval, record = await get_handoff().approve(
            call.path["approval_id"],
            agent.agent_id,
            agent.queues,
            approver=agent.approver,
            note=call.body.note,
        )
        return c.ApprovalDecided.model_validate(
            {**approval.summary(), "record": record.model_dump(mode="json")}
        )

    async def deny(call: Call[Agent, c.DecisionNote]) -> c.ApprovalView:
        """Deny a refund someone else asked for."""
        agent = call.principal
        approval = await get_handoff().deny(
            call.path["approval_id"],
            agent.agent_id,
            agent.queues,
            approver=agent.approver,
            note=call.body.note,
        )
        return c.ApprovalView.model_validate(approval.summary())

    async def reply(call: Call[Agent, c.ReplyToCustomer]) -> c.ReplySent:
        """Reply to the customer in the case's conversation, on its channel (once per reply id)."""
        agent, body = call.principal, call.body
        result = await get_handoff().reply(
            call.path["case_id"],
            agent.agent_id,
            agent.queues,
            text=body.text,
            reply_id=body.reply_id or uuid.uuid4().hex,
        )
        return c.ReplySent.model_validate(result)

    async def ops_switches(call: AgentCall) -> switches.SwitchesView:
        """The operators' switches, for the console's banner: money paused or not, since when, who, why."""
        state = await switches.read(get_handoff().pool, switches.MONEY)
        return switches.SwitchesView(money=switches.SwitchView.model_validate(state.summary()))

    async def page(request: Request) -> Response:
        """The console page (static HTML, no build step)."""
        html = (resources.files("services.tier3_handoff") / "static" / "console.html").read_text()
        return HTMLResponse(html)

    async def root(request: Request) -> Response:
        """Redirects to the console page."""
        return RedirectResponse("/console")

    case_errors = {403: "not a member of the case's queue", 404: "no such case"}
    held = {**case_errors, 409: "another agent holds the case, or it is resolved"}
    decision = {
        403: "not an approver, or your own request",
        404: "no such approval",
        409: "already decided the other way",
    }
    common: dict[str, Any] = {"auth": agents, "guard": console_errors, "tags": ["console"]}
    return [
        Route("/", root),
        Route("/console", page),
        api_route("/v1/console/me", me, method="GET", response=c.AgentView, **common),
        api_route("/v1/ops/switches", ops_switches, method="GET", response=switches.SwitchesView, **common),
        api_route(
            "/v1/cases",
            list_cases,
            method="GET",
            query=c.CaseListQuery,
            response=c.CaseList,
            errors={403: "not a member of that queue"},
            **common,
        ),
        api_route(
            "/v1/cases/{case_id}", get_case, method="GET", response=c.CaseDetail, errors=case_errors, **common
        ),
        api_route(
            "/v1/cases/{case_id}/claim",
            claim,
            method="POST",
            response=c.CaseSummary,
            errors={**case_errors, 409: "already claimed by another agent, or resolved"},
            **common,
        ),
        api_route(
            "/v1/cases/{case_id}/actions",
            act,
            method="POST",
            body=c.ActOnCase,
            response=c.ActResult,
            errors={**held, 400: "unknown action or missing parameter", 422: "the policy denied it"},
            **common,
        ),
        api_route(
            "/v1/cases/{case_id}/resolve",
            resolve,
            method="POST",
            body=c.ResolveCase,
            response=c.CaseResolved,
            errors={**held, 400: "no resolution_note, or an article without title and body"},
            **common,
        ),
        api_route(
            "/v1/cases/{case_id}/reply",
            reply,
            method="POST",
            body=c.ReplyToCustomer,
            response=c.ReplySent,
            errors={**held, 422: "an empty or too long reply, or a case without a conversation"},
            **common,
        ),
        api_route(
            "/v1/cases/{case_id}/approvals",
            request_approval,
            method="POST",
            body=c.RequestRefundApproval,
            response=c.ApprovalView,
            errors={**held, 400: "no charge or a non-positive amount"},
            **common,
        ),
        api_route(
            "/v1/approvals",
            pending_approvals,
            method="GET",
            response=c.ApprovalList,
            errors={403: "approvers only"},
            **common,
        ),
        api_route(
            "/v1/approvals/{approval_id}/approve",
            approve,
            method="POST",
            body=c.DecisionNote,
            body_required=False,
            response=c.ApprovalDecided,
            errors={**decision, 422: "the policy denied the refund"},
            **common,
        ),
        api_route(
            "/v1/approvals/{approval_id}/deny",
            deny,
            method="POST",
            body=c.DecisionNote,
            body_required=False,
            response=c.ApprovalView,
            errors=decision,
            **common,
        ),
    ]
