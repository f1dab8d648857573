"""The portal's Team and API keys sections on the real stack (issue 23): the routes over the reference
product through the one executor. A change happens once per request (a second click replays), appears in
the account history, and another customer's account, key or member is refused on every route."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from services.tier1_selfheal.auth import CustomerKeys, issue_session_token
from services.tier1_selfheal.portal_team import PRODUCT_DOWN, TeamDeps, portal_team_routes
from tests.product_service import product_client, seed_account, started_product
from tierline.account_changes import account_history
from tierline.actions import ActionExecutor
from tierline_tools.stack.procs import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def product(infra: Any) -> AsyncIterator[Any]:
    async with started_product(infra) as svc:
        yield svc


@pytest.fixture
async def api(product: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with product_client(product) as client:
        yield client


@pytest.fixture
async def portal(product: Any, pg_pool: Any, infra: Any) -> AsyncIterator[httpx.AsyncClient]:
    executor = ActionExecutor(
        pool=pg_pool, broker=product.broker, settings=product.state["settings"], diagnostics=None
    )
    deps = TeamDeps(pg_pool, executor, CustomerKeys.from_settings(infra))
    app = Starlette(routes=portal_team_routes(lambda: deps))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


def bearer(infra: Any, customer_id: str, email: str | None = None) -> dict[str, str]:
    if email is None:
        token = issue_session_token(infra.customer_token_keyset(), customer_id, 600)
    else:  # a session that names the person (as the product's own sign-in does)
        now = int(time.time())
        token = infra.customer_token_keyset().sign(
            {"sub": customer_id, "purpose": "customer_session", "iat": now, "exp": now + 600, "email": email}
        )
    return {"Authorization": f"Bearer {token}"}


async def test_given_an_owner_when_inviting_twice_from_the_portal_then_once_and_in_the_history(
    portal: httpx.AsyncClient, api: httpx.AsyncClient, pg_pool: Any, infra: Any, unique: str
) -> None:
    customer_id = await seed_account(api, pg_pool, unique)
    auth = bearer(infra, customer_id)
    body = {"params": {"email": "maria@acme.io", "role": "admin"}, "request_id": f"rq-{unique}"}
    # When the owner clicks Invite twice (same request), then once more (a new request, same teammate)
    first = await portal.post("/v1/portal/product-actions/invite_member", json=body, headers=auth)
    second = await portal.post("/v1/portal/product-actions/invite_member", json=body, headers=auth)
    third = await portal.post(
        "/v1/portal/product-actions/invite_member",
        json={**body, "request_id": f"rq-{unique}-b"},
        headers=auth,
    )
    # Then one invitation; the second click a replay; the third the product's own replay; in the history
    assert first.status_code == 200, first.text
    assert "We invited maria@acme.io" in first.json()["message"]
    assert second.json()["replayed"] is True
    assert third.status_code == 200
    team = (await portal.get("/v1/portal/team", headers=auth)).json()
    assert team["can_manage"] is True
    assert team["you"] == {"email": f"owner-{unique}@acme.io", "role": "owner"}
    assert [m for m in team["members"] if m["email"] == "maria@acme.io"][0]["status"] == "invited"
    assert (
        await pg_pool.fetchval("SELECT count(*) FROM product_idempotency WHERE account_id=$1", customer_id)
        == 1
    )
    history = await account_history(pg_pool, customer_id)
    assert [e["change"] for e in history] == ["invite_member", "invite_member"]  # one per request, one effect
    assert history[0]["after"]["email"] == "maria@acme.io"


async def test_given_an_admin_when_creating_a_key_then_the_secret_is_shown_once_and_it_works(
    portal: httpx.AsyncClient, api: httpx.AsyncClient, pg_pool: Any, infra: Any, unique: str
) -> None:
    customer_id = await seed_account(api, pg_pool, unique)
    auth = bearer(infra, customer_id, f"admin-{unique}@acme.io")
    created = await portal.post(
        "/v1/portal/product-actions/create_api_key",
        json={"params": {"name": "ci", "scopes": ["read", "write"]}, "request_id": f"rq-{unique}"},
        headers=auth,
    )
    assert created.status_code == 200, created.text
    secret = created.json()["shown_once"]["secret"]
    keys = await portal.get("/v1/portal/api-keys", headers=auth)
    assert secret not in keys.text
    assert keys.json()["keys"][0]["display"].endswith(secret[-4:])
    assert keys.json()["keys"][0]["created_by"] == f"admin-{unique}@acme.io"
    assert (await api.post("/v1/keys/verify", json={"secret": secret})).json()["valid"] is True


async def test_given_a_member_session_when_managing_then_ask_your_admin_and_nothing_changes(
    portal: httpx.AsyncClient, api: httpx.AsyncClient, pg_pool: Any, infra: Any, unique: str
) -> None:
    customer_id = await seed_account(api, pg_pool, unique)
    auth = bearer(infra, customer_id, f"dev-{unique}@acme.io")
    team = (await portal.get("/v1/portal/team", headers=auth)).json()
    assert team["can_manage"] is False
    refused = await portal.post(
        "/v1/portal/product-actions/invite_member", json={"params": {"email": "x@acme.io"}}, headers=auth
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == "ask_your_admin"
    assert refused.json()["admins"] == [f"admin-{unique}@acme.io", f"owner-{unique}@acme.io"]
    assert "x@acme.io" not in {
        m["email"] for m in (await portal.get("/v1/portal/team", headers=auth)).json()["members"]
    }


async def test_given_another_customers_ids_when_used_on_each_route_then_refused(
    portal: httpx.AsyncClient, api: httpx.AsyncClient, pg_pool: Any, infra: Any, unique: str
) -> None:
    mine = await seed_account(api, pg_pool, unique)
    theirs = await seed_account(api, pg_pool, f"{unique}x")
    their_key = (await api.post(f"/v1/accounts/{theirs}/keys", json={"name": "theirs"})).json()
    auth = bearer(infra, mine)
    # naming another customer: 403 on every route
    assert (await portal.get(f"/v1/portal/team?customer_id={theirs}", headers=auth)).status_code == 403
    assert (await portal.get(f"/v1/portal/api-keys?customer_id={theirs}", headers=auth)).status_code == 403
    named = await portal.post(
        "/v1/portal/product-actions/invite_member",
        json={"customer_id": theirs, "params": {"email": "x@acme.io"}},
        headers=auth,
    )
    assert named.status_code == 403
    # another account's key or member: 404, and theirs unchanged
    rotate = await portal.post(
        "/v1/portal/product-actions/rotate_api_key",
        json={"params": {"key": their_key["key_id"]}},
        headers=auth,
    )
    assert rotate.status_code == 404
    remove = await portal.post(
        "/v1/portal/product-actions/remove_member",
        json={"params": {"email": f"admin-{unique}x@acme.io"}},
        headers=auth,
    )
    assert remove.status_code == 404
    assert (await api.post("/v1/keys/verify", json={"secret": their_key["secret"]})).json()["valid"] is True
    their_members = (await api.get(f"/v1/accounts/{theirs}/members")).json()["members"]
    assert f"admin-{unique}x@acme.io" in {m["email"] for m in their_members}
    # no session: 401
    assert (await portal.get("/v1/portal/team")).status_code == 401
    assert (await portal.post("/v1/portal/product-actions/invite_member", json={})).status_code == 401


async def test_given_the_product_down_when_inviting_from_the_portal_then_503_and_nothing_changed(
    product: Any, api: httpx.AsyncClient, pg_pool: Any, infra: Any, unique: str
) -> None:
    customer_id = await seed_account(api, pg_pool, unique)
    down = product.state["settings"].model_copy(update={"product_api_url": f"http://127.0.0.1:{free_port()}"})
    executor = ActionExecutor(pool=pg_pool, broker=product.broker, settings=down, diagnostics=None)
    app = Starlette(
        routes=portal_team_routes(lambda: TeamDeps(pg_pool, executor, CustomerKeys.from_settings(infra)))
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        resp = await client.post(
            "/v1/portal/product-actions/invite_member",
            json={"params": {"email": "maria@acme.io"}, "request_id": f"rq-{uuid.uuid4().hex}"},
            headers=bearer(infra, customer_id),
        )
        listed = await client.get("/v1/portal/team", headers=bearer(infra, customer_id))
    assert resp.status_code == 503
    assert resp.json()["detail"] == PRODUCT_DOWN
    assert listed.status_code == 503
    assert "maria@acme.io" not in {
        m["email"] for m in (await api.get(f"/v1/accounts/{customer_id}/members")).json()["members"]
    }
