"""The credential of the internal HTTP APIs (diagnostics, analytics): ``Authorization: Bearer <token>``.

The token is ``TIERLINE_SERVICE_TOKEN`` (``InfraSettings.service_token``); every caller inside the
pipeline sends it, and the routes that serve customer data refuse a request without it. Health and
the OpenAPI document stay open.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tierline.http import HttpProblem

log = structlog.get_logger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


def bearer_headers(token: str) -> dict[str, str]:
    """The header a caller of an internal API sends."""
    return {"Authorization": f"Bearer {token}"}


def has_service_token(request: Request, token: str) -> bool:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def require_service_token(token: str, endpoint: Endpoint) -> Endpoint:
    """``endpoint``, answering 401 (JSON body) unless the request carries the service token."""
    if not token:
        raise ValueError("an empty service token would open the internal API to anyone")

    async def guarded(request: Request) -> Response:
        if not has_service_token(request, token):
            log.warning("service_auth.refused", path=request.url.path)
            return JSONResponse(
                {"error": "unauthorized", "detail": "send Authorization: Bearer <TIERLINE_SERVICE_TOKEN>"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="tierline-internal"'},
            )
        return await endpoint(request)

    guarded.__name__ = getattr(endpoint, "__name__", "guarded")
    guarded.__doc__ = endpoint.__doc__
    return guarded


def protect_routes(routes: list[Route], token: str) -> list[Route]:
    """The same routes, each behind :func:`require_service_token`."""
    return [
        Route(
            route.path,
            require_service_token(token, route.endpoint),
            methods=sorted(route.methods or ()) or None,
            name=route.name,
        )
        for route in routes
    ]


class ServiceBearer:
    """The internal APIs' auth dependency (``tierline.http_contracts``): the service token, or a 401."""

    schemes = {
        "serviceToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "the internal service credential (TIERLINE_SERVICE_TOKEN)",
        }
    }

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an empty service token would open the internal API to anyone")
        self.token = token

    async def __call__(self, request: Request) -> str:
        if not has_service_token(request, self.token):
            log.warning("service_auth.refused", path=request.url.path)
            raise HttpProblem(
                401,
                "unauthorized",
                "send Authorization: Bearer <TIERLINE_SERVICE_TOKEN>",
                headers={"WWW-Authenticate": 'Bearer realm="tierline-internal"'},
            )
        return "service"
