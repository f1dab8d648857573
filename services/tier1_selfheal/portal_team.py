"""The portal's Team and API keys sections (issue 23): the SaaS product's own members and keys, changed
through the product connector (``tierline/billing/product_actions.yaml``) by the one executor.

``GET /v1/portal/team`` and ``GET /v1/portal/api-keys`` read the signed-in customer's product account;
``POST /v1/portal/product-actions/{name}`` runs any connector action of the ``team`` or ``api_keys``
sections (``{"params": {...}, "request_id": "..."}``): policy-checked, ledgered once per request id (a
second click replays), audited, confirmed by email and shown in the account history. ``/billing/team`` is
the page. Customer session auth exactly as the chat (``auth.py``); the person acting is the session's
``email`` claim when it carries one (the product's own sign-in), else the account's billing contact. Naming
another customer is a 403; another account's key or member is a 404 (the product scopes every call to
the session's account).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from schemas import Action, Tier, derived_id
from schemas.messages import SelfhealRequestedPayload, SelfhealRequestedV1, Sender
from services.tier1_selfheal.auth import (
    PAGE_HEADERS,
    SESSION_PURPOSE,
    CustomerKeys,
    InvalidSession,
    TokenClaims,
    token_from,
    verify_token,
)
from tierline.actions import ActionContext, ActionOutcome

log = structlog.get_logger(__name__)

SECTIONS = ("team", "api_keys")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_\-:.]{8,100}$")
PRODUCT_DOWN = "We couldn't reach the product right now. Nothing was changed; please try again in a minute."


@dataclass(frozen=True)
class TeamDeps:
    pool: Any
    actions: Any  # the ActionExecutor (product_action, product_connector)
    secret: CustomerKeys


class TeamError(Exception):
    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra


def _error(exc: TeamError) -> JSONResponse:
    return JSONResponse({"error": exc.code, "detail": exc.detail, **exc.extra}, status_code=exc.status)


def acting_email(claims: TokenClaims) -> str | None:
    """The person behind the session, when the session says (the product's JWTs carry ``email``)."""
    email = claims.raw.get("email")
    return email.strip().lower() if isinstance(email, str) and "@" in email else None


def team_context(customer_id: str, contact_id: str, name: str, params: dict[str, Any]) -> ActionContext:
    """The executor's context for a product action the signed-in customer clicked in the portal."""
    cause = SelfhealRequestedV1.build(
        SelfhealRequestedPayload(
            action=Action.PRODUCT_ACTION,
            params={"product_action": name, **params},
            source="api",
            sender=Sender(kind="customer_session", subject=customer_id),
        ),
        contact_id=contact_id,
        customer_id=customer_id,
        message_id=derived_id("portal-product", contact_id),
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


def outcome_response(outcome: ActionOutcome) -> JSONResponse:
    """What the page shows: the confirmation (and a new key's secret, once), or why nothing changed."""
    message = str(outcome.data.get("customer_message") or outcome.detail)
    if outcome.ok:
        body: dict[str, Any] = {
            "status": "succeeded",
            "message": message,
            "replayed": outcome.replayed,
            "answer": outcome.data.get("answer", {}),
        }
        if "shown_once" in outcome.data:
            body["shown_once"] = outcome.data["shown_once"]
        return JSONResponse(body)
    if outcome.status == "denied" and "admins" in outcome.data:
        raise TeamError(403, "ask_your_admin", message, admins=outcome.data["admins"])
    if outcome.status in ("denied", "needs_human"):
        code = "invalid_parameters" if outcome.policy is None and outcome.status == "denied" else "policy"
        raise TeamError(422 if code == "invalid_parameters" else 409, code, message)
    status = outcome.data.get("product_status")
    if status == 404:
        raise TeamError(404, "not_found", "No such member or key on your account.")
    if isinstance(status, int) and 400 <= status < 500:
        raise TeamError(409, "refused", message)
    raise TeamError(503, "product_unavailable", PRODUCT_DOWN)


def portal_team_routes(get_deps: Callable[[], TeamDeps]) -> list[Route]:
    """Routes for Service(routes=...); ``get_deps`` is called per request (the pool exists after start)."""

    def session(request: Request, deps: TeamDeps) -> TokenClaims:
        try:
            claims = verify_token(
                deps.secret, token_from(request.headers, request.cookies), purposes=(SESSION_PURPOSE,)
            )
        except InvalidSession as exc:
            raise TeamError(401, "unauthenticated", str(exc)) from exc
        named = request.query_params.get("customer_id")
        if named not in (None, "", claims.subject):
            log.warning("tier1.team.cross_customer_denied", subject=claims.subject)
            raise TeamError(403, "forbidden", "you can only manage your own account")
        return claims

    def guarded(
        endpoint: Callable[[Request, TeamDeps], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            try:
                return await endpoint(request, get_deps())
            except TeamError as exc:
                return _error(exc)

        route.__name__ = endpoint.__name__
        return route

    async def read(deps: TeamDeps, what: str, customer_id: str) -> list[dict[str, Any]]:
        from tierline.product_connector import ProductCallFailed

        connector = deps.actions.product_connector()
        try:
            items: list[dict[str, Any]] = await getattr(connector, what)(customer_id)
        except ProductCallFailed as exc:
            if exc.status == 404:
                raise TeamError(
                    404, "not_found", "Your account has no workspace in the product yet."
                ) from exc
            raise TeamError(503, "product_unavailable", PRODUCT_DOWN) from exc
        return items

    async def get_team(request: Request, deps: TeamDeps) -> Response:
        claims = session(request, deps)
        members = await read(deps, "members", claims.subject)
        you = acting_email(claims) or await deps.pool.fetchval(
            "SELECT coalesce((SELECT email FROM stripe_customers WHERE id=$1), "
            "(SELECT email FROM customers WHERE id=$1))",
            claims.subject,
        )
        roles = {str(m["email"]).lower(): m["role"] for m in members if m.get("status") == "active"}
        role = roles.get(str(you or "").lower())
        spec = deps.actions.product_connector().spec
        return JSONResponse(
            {
                "customer_id": claims.subject,
                "you": {"email": you, "role": role},
                "can_manage": role in ("owner", "admin"),
                "admins": sorted(e for e, r in roles.items() if r in ("owner", "admin")),
                "members": members,
                "actions": {s: [a.name for a in spec.section(s)] for s in SECTIONS},
            }
        )

    async def get_keys(request: Request, deps: TeamDeps) -> Response:
        claims = session(request, deps)
        return JSONResponse({"customer_id": claims.subject, "keys": await read(deps, "keys", claims.subject)})

    async def run_action(request: Request, deps: TeamDeps) -> Response:
        claims = session(request, deps)
        name = request.path_params["name"]
        spec = deps.actions.product_connector().spec
        if name not in spec.actions or spec.actions[name].section not in SECTIONS:
            raise TeamError(404, "unknown_action", f"no product action {name!r} here")
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise TeamError(400, "invalid_json", "send a JSON object") from exc
        if not isinstance(body, dict) or not isinstance(body.get("params", {}), dict):
            raise TeamError(422, "invalid_parameters", "params must be an object")
        if body.get("customer_id") not in (None, "", claims.subject):
            raise TeamError(403, "forbidden", "you can only manage your own account")
        request_id = str(body.get("request_id") or uuid.uuid4().hex)
        if not _REQUEST_ID.fullmatch(request_id):
            raise TeamError(422, "invalid_request_id", "request_id must be 8-100 letters, digits or -_:.")
        params: dict[str, Any] = body.get("params") or {}
        contact_id = f"pt_{derived_id('portal-product', claims.subject, name, request_id).hex}"
        ctx = team_context(claims.subject, contact_id, name, params)
        outcome: ActionOutcome = await deps.actions.product_action(
            ctx, name, params, requester=acting_email(claims)
        )
        log.info("tier1.team.action", action=name, status=outcome.status, replayed=outcome.replayed)
        return outcome_response(outcome)

    async def page(request: Request) -> Response:
        html = (resources.files("services.tier1_selfheal") / "static" / "portal_team.html").read_text(
            encoding="utf-8"
        )
        return HTMLResponse(html, headers=PAGE_HEADERS)

    return [
        Route("/billing/team", page, methods=["GET"]),
        Route("/v1/portal/team", guarded(get_team), methods=["GET"]),
        Route("/v1/portal/api-keys", guarded(get_keys), methods=["GET"]),
        Route("/v1/portal/product-actions/{name}", guarded(run_action), methods=["POST"]),
    ]
