"""tierline.http: bounded bodies, bounded JSON, checked path ids, JSON on every error (no server needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.tier0_prevent.ingress import MalformedEvent, parse_event
from tierline import http as guard

LIMIT = 256 * 1024


def app() -> Starlette:
    async def echo(request: Request) -> Response:
        return JSONResponse({"got": await guard.read_json(request)})

    async def maybe(request: Request) -> Response:
        return JSONResponse({"got": await guard.read_json(request, empty={})})

    async def raw(request: Request) -> Response:
        return JSONResponse({"bytes": len(await request.body())})

    async def case(request: Request) -> Response:
        return JSONResponse({"case_id": guard.path_id(request, "case_id")})

    async def store(request: Request) -> Response:
        raise asyncpg.exceptions.CharacterNotInRepertoireError(
            "invalid byte sequence for encoding UTF8: 0x00"
        )

    async def teapot(request: Request) -> Response:
        raise HTTPException(418, "short and stout")

    return Starlette(
        routes=[
            Route("/echo", echo, methods=["POST"]),
            Route("/maybe", maybe, methods=["POST"]),
            Route("/raw", raw, methods=["POST"]),
            Route("/cases/{case_id}", case),
            Route("/store", store),
            Route("/teapot", teapot),
        ],
        middleware=guard.middleware(LIMIT),
        exception_handlers=guard.exception_handlers(),
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://door") as c:
        yield c


def problem(resp: httpx.Response) -> str:
    body = resp.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("detail"), str), body
    return str(body["error"])


async def chunks(total: int) -> AsyncIterator[bytes]:
    for _ in range(total // 4096):
        yield b"x" * 4096


# ----------------------------------------------------------------------------- JSON
@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"[" * 50_000 + b"]" * 50_000, "50,000-deep array"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "40-deep object"),
        (b"[1, 2]", "an array"),
        (b'"text"', "a string"),
        (b"42", "a number"),
        (b"null", "null"),
        (b"\xff\xfe{}", "invalid UTF-8"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": 1e999}', "an infinite number"),
        (b'{"a": 1' + b"0" * 5_000 + b"}", "an integer past Python's digit limit"),
        (b'{"a": "\\u0000"}', "a NUL character"),
        (b'{"\\u0000": 1}', "a NUL in a key"),
        (b'{"a": ["\\ud800"]}', "a lone surrogate"),
        (b"{not json", "not JSON"),
    ],
)
def test_given_hostile_json_when_parsed_then_invalid_json_400_without_recursion(raw: bytes, why: str) -> None:
    with pytest.raises(guard.InvalidJson) as caught:
        guard.parse_json(raw, max_depth=32)
    assert caught.value.status_code == 400, why


def test_given_brackets_inside_strings_and_escapes_when_depth_is_measured_then_only_structure_counts() -> (
    None
):
    text = '{"a": "[[[[{{{{\\\\", "b": "\\"[[[[", "c": [[1]]}'
    assert not guard.json_depth_exceeds(text, 3)
    assert guard.json_depth_exceeds(text, 2)
    assert guard.parse_json(text.encode(), max_depth=3) == {"a": "[[[[{{{{\\", "b": '"[[[[', "c": [[1]]}


async def test_given_a_non_object_body_when_posted_then_400_json(client: httpx.AsyncClient) -> None:
    resp = await client.post("/echo", content=b"[1]", headers={"content-type": "application/json"})
    assert (resp.status_code, problem(resp)) == (400, "invalid_json")


async def test_given_a_50000_deep_body_when_posted_then_400_not_500(client: httpx.AsyncClient) -> None:
    resp = await client.post("/echo", content=b"[" * 50_000 + b"]" * 50_000)
    assert (resp.status_code, problem(resp)) == (400, "invalid_json")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
)
async def test_given_a_body_that_is_not_json_by_its_type_when_posted_then_415(
    client: httpx.AsyncClient, content_type: str
) -> None:
    resp = await client.post("/echo", content=b'{"a": 1}', headers={"content-type": content_type})
    assert (resp.status_code, problem(resp)) == (415, "unsupported_media_type")


async def test_given_a_json_object_when_posted_then_it_is_read(client: httpx.AsyncClient) -> None:
    resp = await client.post("/echo", json={"action": "note", "n": [1, {"x": None}]})
    assert resp.json() == {"got": {"action": "note", "n": [1, {"x": None}]}}


async def test_given_an_empty_body_when_read_then_400_unless_a_default_is_given(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.post("/echo")
    assert (resp.status_code, problem(resp)) == (400, "invalid_json")
    assert (await client.post("/maybe")).json() == {"got": {}}


# ----------------------------------------------------------------------------- size
async def test_given_a_declared_length_over_the_limit_when_posted_then_413_without_reading(
    client: httpx.AsyncClient,
) -> None:
    read = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal read
        for _ in range(100):
            read += 1
            yield b"x" * 4096

    resp = await client.post("/raw", content=counted(), headers={"content-length": str(100 * 1024 * 1024)})
    assert (resp.status_code, problem(resp)) == (413, "payload_too_large")
    assert read == 0


async def test_given_a_chunked_body_past_the_limit_when_streamed_then_413(client: httpx.AsyncClient) -> None:
    resp = await client.post("/raw", content=chunks(4 * LIMIT))
    assert (resp.status_code, problem(resp)) == (413, "payload_too_large")
    ok = await client.post("/raw", content=chunks(LIMIT // 2))
    assert ok.json() == {"bytes": LIMIT // 2}


async def test_given_read_body_with_a_smaller_limit_when_the_stream_passes_it_then_413() -> None:
    async def door(request: Request) -> Response:
        return JSONResponse({"n": len(await guard.read_body(request, 8 * 1024))})

    small = Starlette(
        routes=[Route("/in", door, methods=["POST"])], exception_handlers=guard.exception_handlers()
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=small), base_url="http://door") as c:
        resp = await c.post("/in", content=chunks(64 * 1024))
        assert (resp.status_code, problem(resp)) == (413, "payload_too_large")
        assert (await c.post("/in", content=b"x" * 100)).json() == {"n": 100}


# ----------------------------------------------------------------------------- ids and errors
@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("case_id", "case_0123456789abcdef0123", True),
        ("case_id", "case_\x00", False),
        ("case_id", "case_0123456789ABCDEF0123", False),
        ("customer_id", "cus_PnL3kS9xAbCdEf", True),
        ("customer_id", "cus_" + "a" * 5000, False),
        ("customer_id", "cus_a\nb", False),
        ("customer_id", "' OR 1=1 --", False),
        ("invoice_id", "in_1PQr2sT3uV4w", True),
        ("invoice_id", "in_\x01", False),
        ("contact_id", "sh_9f1c0d2e", True),
        ("contact_id", "stripe:evt_1abc", True),
        ("contact_id", "c-6f1e5d6a-8f0b-4c1e-9d3a-1b2c3d4e5f60", True),
        ("contact_id", "\x00", False),
        ("contact_id", "..", False),
        ("contact_id", "x" * 201, False),
    ],
)
def test_given_a_path_id_when_checked_then_only_its_format_passes(name: str, value: str, ok: bool) -> None:
    if ok:
        assert guard.check_id(name, value) == value
    else:
        with pytest.raises(guard.InvalidId):
            guard.check_id(name, value)


async def test_given_a_nul_byte_in_a_path_id_when_requested_then_404_json(client: httpx.AsyncClient) -> None:
    resp = await client.get("/cases/case_%00")
    assert (resp.status_code, problem(resp)) == (404, "case_not_found")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("DELETE", "/echo", 405, "method_not_allowed"),
        ("GET", "/teapot", 418, "i'm_a_teapot"),
        ("GET", "/store", 400, "invalid_input"),
    ],
)
async def test_given_any_4xx_when_answered_then_the_body_is_json_with_an_error(
    client: httpx.AsyncClient, method: str, path: str, status: int, code: str
) -> None:
    resp = await client.request(method, path)
    assert (resp.status_code, problem(resp)) == (status, code)


# ----------------------------------------------------------------------------- the webhook parser
@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "evt_1", "type": "a", "created": 1, "data": {"object":'
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}}",
        b'{"id": "evt_\\u0000", "type": "a", "created": 1, "data": {"object": {}}}',
        b'{"id": "evt_1", "type": "a\\u0000", "created": 1, "data": {"object": {}}}',
        b'{"id": "evt_1", "type": "a", "created": 1, "data": {"object": {"customer": "\\udc80"}}}',
    ],
)
def test_given_a_hostile_event_when_parsed_then_malformed_event_not_a_crash(raw: bytes) -> None:
    with pytest.raises(MalformedEvent):
        parse_event(raw)


def test_given_a_handler_table_when_built_then_asyncpg_data_errors_map_to_400() -> None:
    handlers: dict[Any, Any] = guard.exception_handlers()
    assert asyncpg.exceptions.DataError in handlers
    assert issubclass(asyncpg.exceptions.UntranslatableCharacterError, asyncpg.exceptions.DataError)
