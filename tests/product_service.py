"""The reference product (services/product/) started in-process on the test stack, and a seeded account:
what the product connector's integration and browser tests act on over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from services.product.app import create_service
from tierline_tools.stack.procs import free_port


@asynccontextmanager
async def started_product(infra: Any, *, port: int | None = None) -> AsyncIterator[Any]:
    """The product service (on ``port``, else a free one); ``svc.state["settings"]`` points the connector
    at it."""
    port = port or free_port()
    settings = infra.model_copy(update={"http_port": port, "product_api_url": f"http://127.0.0.1:{port}"})
    svc = create_service(settings)
    await svc.start()
    svc.state["settings"] = settings
    try:
        yield svc
    finally:
        await svc.stop()


def product_client(product: Any) -> httpx.AsyncClient:
    settings = product.state["settings"]
    token = settings.product_api_token.get_secret_value()
    return httpx.AsyncClient(
        base_url=settings.product_api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


async def seed_account(api: httpx.AsyncClient, pg_pool: Any, unique: str) -> str:
    """A customer whose billing email is the product account's owner, with an admin and a member
    (``owner-<unique>@acme.io``, ``admin-…``, ``dev-…``)."""
    customer_id = f"cus_prod{unique}"
    owner = f"owner-{unique}@acme.io"
    await pg_pool.execute("INSERT INTO customers (id, email) VALUES ($1, $2)", customer_id, owner)
    created = await api.put(f"/v1/accounts/{customer_id}", json={"name": "Acme", "owner_email": owner})
    assert created.status_code == 200, created.text
    for email, role in ((f"admin-{unique}@acme.io", "admin"), (f"dev-{unique}@acme.io", "member")):
        invited = (
            await api.post(f"/v1/accounts/{customer_id}/invites", json={"email": email, "role": role})
        ).json()
        accepted = await api.post("/v1/invites/accept", json={"token": invited["invite_token"]})
        assert accepted.status_code == 200, accepted.text
    return customer_id
