"""The console's JSON API under its typed contract: the agent token is a dependency, a malformed body is
a 422 naming the field before anything runs, the console's own 400/403 answers are unchanged, and the
answers have the models' shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from services.tier3_handoff.auth import Agent, InvalidAgentToken
from services.tier3_handoff.console import console_routes
from tierline import http as http_guard
from tierline.http_contracts import openapi_document

pytestmark = pytest.mark.unit
CASE = "case_0123456789abcdef0123"


class Verifier:
    def verify(self, token: str) -> Agent:
        if token != "kim-token":  # noqa: S105 - a test token
            raise InvalidAgentToken("unknown token")
        return Agent("kim", frozenset({"billing"}), frozenset({"approver"}))


class UntouchedHandoff:
    """Any use of the handoff is a failure: these requests must be answered before it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the handoff was reached ({name})")


def documented(path: str, method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The operation the generated document gives this route, and the document."""
    routes = console_routes(lambda: UntouchedHandoff(), Verifier())  # type: ignore[arg-type, return-value]
    doc = openapi_document(routes, title="console")
    return doc["paths"][path][method], doc


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(
        routes=console_routes(lambda: UntouchedHandoff(), Verifier()),  # type: ignore[arg-type, return-value]
        middleware=http_guard.middleware(),
        exception_handlers=http_guard.exception_handlers(),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://console.test",
        headers={"Authorization": "Bearer kim-token"},
    ) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (f"/v1/cases/{CASE}/resolve", {"resolution_note": 5}, "body.resolution_note"),
        (f"/v1/cases/{CASE}/resolve", {"resolution_note": "ok", "tags": "vip"}, "body.tags"),
        (f"/v1/cases/{CASE}/reply", {"reply_id": "abcdefgh1"}, "body.text"),
        (f"/v1/cases/{CASE}/reply", {"text": "hi", "reply_id": "short"}, "body.reply_id"),
        (f"/v1/cases/{CASE}/actions", {"action": ["refund"]}, "body.action"),
        (f"/v1/cases/{CASE}/approvals", {"charge_id": "ch_1", "amount_usd": "lots"}, "body.amount_usd"),
        ("/v1/approvals/apr_0123456789abcdef0123/approve", {"note": {"x": 1}}, "body.note"),
    ],
)
async def test_given_a_malformed_body_when_posted_then_422_names_the_field_before_the_case_is_touched(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], field: str
) -> None:
    resp = await client.post(path, json=body)

    assert resp.status_code == 422, resp.text
    assert resp.json()["error"] == "invalid_request"
    assert [f["field"] for f in resp.json()["fields"]] == [field]


async def test_given_no_or_a_wrong_token_then_401_even_for_a_malformed_body(
    client: httpx.AsyncClient,
) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope"}):
        resp = await client.post(f"/v1/cases/{CASE}/resolve", json={"resolution_note": 5}, headers=headers)
        assert resp.status_code == 401
        assert resp.json()["error"] in ("unauthenticated", "invalid_token")
    op, doc = documented("/v1/cases/{case_id}/resolve", "post")
    assert op["security"] == [{"agentToken": []}]
    assert doc["components"]["securitySchemes"]["agentToken"]["scheme"] == "bearer"
    assert "401" in op["responses"]


async def test_given_an_article_without_title_then_400_as_before(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        f"/v1/cases/{CASE}/resolve", json={"resolution_note": "done", "publish_article": True}
    )

    assert resp.status_code == 400
    assert resp.json()["error"] == "bad_request"
    op, _ = documented("/v1/cases/{case_id}/resolve", "post")
    assert "title and body" in op["responses"]["400"]["description"]


async def test_given_another_queue_when_listing_then_403_and_a_bad_case_id_404(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/v1/cases?queue=risk")).status_code == 403
    assert (await client.get("/v1/cases/not-a-case")).json()["error"] == "case_not_found"


async def test_given_an_agent_when_asking_who_am_i_then_the_model_shape(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/console/me")

    assert resp.json() == {"agent_id": "kim", "queues": ["billing"], "roles": ["approver"]}
    op, doc = documented("/v1/console/me", "get")
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(doc["components"]["schemas"][ref]["properties"]) == set(resp.json())
