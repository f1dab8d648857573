"""Wiring of the reference product's HTTP API (bearer auth with ``TIERLINE_PRODUCT_API_TOKEN``).

Every mutating request may carry ``Idempotency-Key``: the first response under a key is stored and
answered again (``Idempotent-Replayed: true``) for 24 hours, so a caller's retry never acts twice.
``X-Acting-User`` names the person a caller acts for; member and key changes then need that person to be
an active owner or admin (ownership transfer: the owner).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.product import store
from services.product.domain import (
    Invalid,
    ProductError,
    ProductForbidden,
    normalize_email,
    overlap_seconds,
    parse_role,
    parse_scopes,
)
from tierline.runtime import Service
from tierline.settings import DEFAULT_PORTS, InfraSettings

NAME = "product"
log = structlog.get_logger(__name__)

Mutation = Callable[[asyncpg.Connection, dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]


def _error(exc: ProductError) -> JSONResponse:
    return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise Invalid("the body is not JSON") from exc
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    return body


class ProductApi:
    def __init__(self, service: Service, token: str) -> None:
        if not token:
            raise ValueError("the product API needs a bearer token")
        self.service = service
        self.token = token

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    def guarded(
        self, endpoint: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            if not self._authorized(request):
                return JSONResponse(
                    {"error": "unauthorized", "detail": "send Authorization: Bearer <token>"}, 401
                )
            try:
                return await endpoint(request)
            except ProductError as exc:
                log.info("product.request.refused", path=request.url.path, error=exc.code, detail=exc.detail)
                return _error(exc)

        route.__name__ = endpoint.__name__
        return route

    async def mutate(self, request: Request, account_id: str, change: Mutation) -> Response:
        """Run ``change`` in one transaction, once per Idempotency-Key."""
        body = await _body(request)
        key = request.headers.get("idempotency-key")
        async with self.service.db.acquire() as conn, conn.transaction():
            if key:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))", key)
                done = await conn.fetchrow("SELECT * FROM product_idempotency WHERE idempotency_key=$1", key)
                if done is not None and done["created_at"] is not None:
                    fresh = await conn.fetchval(
                        "SELECT $1::timestamptz > now() - interval '24 hours'", done["created_at"]
                    )
                    if fresh:
                        if done["request_path"] != request.url.path:
                            raise Invalid("this Idempotency-Key was used for another request")
                        return JSONResponse(
                            done["response"], done["status_code"], headers={"Idempotent-Replayed": "true"}
                        )
                    await conn.execute("DELETE FROM product_idempotency WHERE idempotency_key=$1", key)
            actor = request.headers.get("x-acting-user")
            body["_actor"] = normalize_email(actor) if actor else None
            status, result = await change(conn, body)
            if key:
                await conn.execute(
                    """INSERT INTO product_idempotency (idempotency_key, account_id, request_path,
                           status_code, response) VALUES ($1,$2,$3,$4,$5)""",
                    key,
                    account_id,
                    request.url.path,
                    status,
                    result,
                )
        log.info("product.changed", path=request.url.path, method=request.method, account_id=account_id)
        return JSONResponse(result, status)

    # ------------------------------------------------------------------ account
    async def get_account(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]
        return JSONResponse(await store.account(self.service.db, account_id))

    async def put_account(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]

        async def change(conn: asyncpg.Connection, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            owner = normalize_email(body.get("owner_email"))
            return 200, await store.create_account(conn, account_id, str(body.get("name") or ""), owner)

        return await self.mutate(request, account_id, change)

    async def patch_account(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]

        async def change(conn: asyncpg.Connection, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            await store.require_manager(conn, account_id, body["_actor"])
            email = normalize_email(body["email"]) if body.get("email") else None
            name = str(body["name"])[:200] if body.get("name") else None
            return 200, await store.update_profile(conn, account_id, name=name, email=email)

        return await self.mutate(request, account_id, change)

    # ------------------------------------------------------------------ members
    async def list_members(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]
        return JSONResponse({"members": await store.members(self.service.db, account_id)})

    async def invite(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]

        async def change(conn: asyncpg.Connection, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            await store.require_manager(conn, account_id, body["_actor"])
            email, role = normalize_email(body.get("email")), parse_role(body.get("role") or "member")
            return 201, await store.invite(conn, account_id, email, role, body["_actor"])

        return await self.mutate(request, account_id, change)

    async def accept(self, request: Request) -> Response:
        async def change(conn: asyncpg.Connection, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            return 200, await store.accept_invite(conn, str(body.get("token") or ""))

        return await self.mutate(request, "-", change)

    async def remove_member(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]
        email = normalize_email(request.path_params["email"])

        async def change(conn: asyncpg.Connection, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            await store.require_manager(conn, account_id, body["_actor"])
            return 200, await store.remove_member(conn, account_id, email)

        return await self.mutate(request, account_id, change)

    async def change_role(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]
        email = normalize_email(request.path_params["email"])

        async def change(conn: asyncpg.Connection, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            await store.require_manager(conn, account_id, body["_actor"])
            return 200, await store.change_role(conn, account_id, email, parse_role(body.get("role")))

        return await self.mutate(request, account_id, change)

    async def transfer(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]

        async def change(conn: asyncpg.Connection, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            actor = body["_actor"]
            if actor is not None:
                owner = await conn.fetchval(
                    """SELECT email FROM product_members WHERE account_id=$1 AND role='owner'
                       AND status='active'""",
                    account_id,
                )
                if owner != actor:
                    raise ProductForbidden("only the owner transfers ownership")
            return 200, await store.transfer_ownership(conn, account_id, normalize_email(body.get("email")))

        return await self.mutate(request, account_id, change)

    # ------------------------------------------------------------------ API keys
    async def list_keys(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]
        return JSONResponse({"keys": await store.keys(self.service.db, account_id)})

    async def create_key(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]

        async def change(conn: asyncpg.Connection, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            await store.require_manager(conn, account_id, body["_actor"])
            name = str(body.get("name") or "API key")[:100]
            created_by = body["_actor"] or (
                normalize_email(body["created_by"]) if body.get("created_by") else None
            )
            return 201, await store.create_key(
                conn, account_id, name, parse_scopes(body.get("scopes")), created_by
            )

        return await self.mutate(request, account_id, change)

    async def rotate_key(self, request: Request) -> Response:
        account_id, ref = request.path_params["account_id"], request.path_params["key"]

        async def change(conn: asyncpg.Connection, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            await store.require_manager(conn, account_id, body["_actor"])
            return 201, await store.rotate_key(conn, account_id, ref, overlap_seconds(body.get("overlap_s")))

        return await self.mutate(request, account_id, change)

    async def revoke_key(self, request: Request) -> Response:
        account_id, ref = request.path_params["account_id"], request.path_params["key"]

        async def change(conn: asyncpg.Connection, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            await store.require_manager(conn, account_id, body["_actor"])
            return 200, await store.revoke_key(conn, account_id, ref)

        return await self.mutate(request, account_id, change)

    async def verify_key(self, request: Request) -> Response:
        body = await _body(request)
        return JSONResponse(await store.verify_key(self.service.db, str(body.get("secret") or "")))

    def routes(self) -> list[Route]:
        g = self.guarded
        acct = "/v1/accounts/{account_id}"
        return [
            Route(acct, g(self.get_account), methods=["GET"]),
            Route(acct, g(self.put_account), methods=["PUT"]),
            Route(acct, g(self.patch_account), methods=["PATCH"]),
            Route(f"{acct}/members", g(self.list_members), methods=["GET"]),
            Route(f"{acct}/invites", g(self.invite), methods=["POST"]),
            Route("/v1/invites/accept", g(self.accept), methods=["POST"]),
            Route(f"{acct}/members/{{email}}", g(self.remove_member), methods=["DELETE"]),
            Route(f"{acct}/members/{{email}}", g(self.change_role), methods=["PATCH"]),
            Route(f"{acct}/owner", g(self.transfer), methods=["POST"]),
            Route(f"{acct}/keys", g(self.list_keys), methods=["GET"]),
            Route(f"{acct}/keys", g(self.create_key), methods=["POST"]),
            Route(f"{acct}/keys/{{key}}/rotate", g(self.rotate_key), methods=["POST"]),
            Route(f"{acct}/keys/{{key}}", g(self.revoke_key), methods=["DELETE"]),
            Route("/v1/keys/verify", g(self.verify_key), methods=["POST"]),
        ]


def create_service(settings: InfraSettings) -> Service:
    service = Service.create(NAME, settings, http_port=settings.http_port or DEFAULT_PORTS[NAME])
    api = ProductApi(service, settings.product_api_token.get_secret_value())
    service.routes.extend(api.routes())
    return service
