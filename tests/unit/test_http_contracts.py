"""The typed HTTP layer (tierline/http_contracts.py): auth as a dependency, bodies and queries validated by
their models with a field-level 422, the body guards kept, responses shaped by their models, and an
OpenAPI document generated from the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tierline import http as http_guard
from tierline.http import HttpProblem
from tierline.http_contracts import Call, api_route, openapi_document

pytestmark = pytest.mark.unit


class Note(BaseModel):
    text: str = Field(max_length=20)
    count: int = 1


class NoteQuery(BaseModel):
    limit: int = 10


class Saved(BaseModel):
    case_id: str
    text: str
    count: int | None = None
    seen_by: str | None = None


class Bearer:
    """Accepts ``Bearer good`` as the agent ``kim``."""

    schemes = {"agentToken": {"type": "http", "scheme": "bearer"}}

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, request: Request) -> str:
        self.calls += 1
        if request.headers.get("authorization") != "Bearer good":
            raise HttpProblem(401, "unauthenticated", "no agent token")
        return "kim"


AUTH = Bearer()
REACHED: list[Any] = []


async def save(call: Call[str, Note]) -> Saved:
    """Save a note on a case.

    The longer description of saving."""
    REACHED.append(call.body)
    limit = call.query_as(NoteQuery).limit
    return Saved.model_validate(
        {"case_id": call.path["case_id"], "text": call.body.text, "count": min(limit, call.body.count)}
    )


async def page(request: Request) -> Response:
    """A page."""
    return PlainTextResponse("hi")


def routes() -> list[Any]:
    return [
        Route("/page", page),
        api_route(
            "/v1/cases/{case_id}/notes",
            save,
            method="POST",
            auth=AUTH,
            body=Note,
            query=NoteQuery,
            response=Saved,
            status_code=201,
            errors={409: "the case is held by someone else"},
        ),
    ]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    REACHED.clear()
    app = Starlette(
        routes=routes(),
        middleware=http_guard.middleware(),
        exception_handlers=http_guard.exception_handlers(),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


GOOD = {"Authorization": "Bearer good"}
CASE = "/v1/cases/case_0123456789abcdef0123/notes"


async def test_given_a_valid_body_when_posted_then_the_endpoint_gets_the_model_and_answers_its_shape(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.post(CASE + "?limit=2", json={"text": "hello", "count": 5}, headers=GOOD)

    assert resp.status_code == 201
    # keys the endpoint did not set (seen_by) are left out, set ones are kept
    assert resp.json() == {"case_id": "case_0123456789abcdef0123", "text": "hello", "count": 2}
    assert REACHED == [Note(text="hello", count=5)]


@pytest.mark.parametrize(
    ("body", "field", "kind"),
    [
        ({"count": 1}, "body.text", "missing"),
        ({"text": 5}, "body.text", "string_type"),
        ({"text": "x" * 21}, "body.text", "string_too_long"),
        ({"text": "ok", "count": "many"}, "body.count", "int_parsing"),
    ],
)
async def test_given_a_malformed_body_when_posted_then_422_names_the_field_and_the_endpoint_is_not_reached(
    client: httpx.AsyncClient, body: dict[str, Any], field: str, kind: str
) -> None:
    resp = await client.post(CASE, json=body, headers=GOOD)

    assert resp.status_code == 422
    answer = resp.json()
    assert answer["error"] == "invalid_request"
    assert answer["detail"].startswith(field + ":")
    assert [(f["field"], f["type"]) for f in answer["fields"]] == [(field, kind)]
    assert REACHED == []


async def test_given_a_malformed_query_when_posted_then_422_names_the_query_field(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.post(CASE + "?limit=lots", json={"text": "hi"}, headers=GOOD)

    assert resp.status_code == 422
    assert resp.json()["fields"][0]["field"] == "query.limit"


@pytest.mark.parametrize(
    ("content", "ctype", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"", "application/json", 400, "invalid_json"),
        (b'["a list"]', "application/json", 400, "invalid_json"),
        (b'{"text": "a\\u0000b"}', "application/json", 400, "invalid_json"),
        (b'{"text": "hi"}', "text/plain", 415, "unsupported_media_type"),
    ],
)
async def test_given_a_body_that_is_not_a_json_object_then_the_guards_answer_before_the_model(
    client: httpx.AsyncClient, content: bytes, ctype: str, status: int, code: str
) -> None:
    resp = await client.post(CASE, content=content, headers={**GOOD, "content-type": ctype})

    assert (resp.status_code, resp.json()["error"]) == (status, code)
    assert REACHED == []


async def test_given_no_credential_when_posted_then_401_before_the_body_is_judged(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.post(CASE, json={"text": 5})

    assert resp.status_code == 401
    assert resp.json() == {"error": "unauthenticated", "detail": "no agent token"}


async def test_given_a_malformed_path_id_then_404_like_an_id_that_names_nothing(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.post("/v1/cases/not-a-case/notes", json={"text": "hi"}, headers=GOOD)

    assert (resp.status_code, resp.json()["error"]) == (404, "case_not_found")


def test_given_routes_when_the_document_is_generated_then_it_describes_every_route_from_the_models() -> None:
    doc = openapi_document(routes(), title="t")

    assert set(doc["paths"]) == {"/page", "/v1/cases/{case_id}/notes"}
    op = doc["paths"]["/v1/cases/{case_id}/notes"]["post"]
    assert op["operationId"] == "save"
    assert (op["summary"], op["description"]) == (
        "Save a note on a case.",
        "The longer description of saving.",
    )
    assert op["security"] == [{"agentToken": []}]
    assert doc["components"]["securitySchemes"] == {"agentToken": {"type": "http", "scheme": "bearer"}}
    body_ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    ok_ref = op["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    schemas = doc["components"]["schemas"]
    # the document's schemas are the models' own
    assert schemas[body_ref.rsplit("/", 1)[1]] == Note.model_json_schema()
    assert schemas[ok_ref.rsplit("/", 1)[1]] == Saved.model_json_schema(mode="serialization")
    assert {"401", "409", "422", "400", "404", "413", "415"} <= set(op["responses"])
    assert op["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    path_param, query_param = op["parameters"]
    assert path_param["name"] == "case_id"
    assert path_param["schema"]["pattern"] == "^case_[0-9a-f]{20}$"
    assert (query_param["name"], query_param["in"], query_param["schema"]["type"]) == (
        "limit",
        "query",
        "integer",
    )
    assert doc["paths"]["/page"]["get"]["x-tierline-typed"] is False
