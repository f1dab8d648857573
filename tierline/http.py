"""Every HTTP door's guard: bounded bodies, bounded JSON, checked path ids, a JSON body on every error.

One place for what malformed input gets back, so no door answers it with a 500:

- :class:`BodyLimitMiddleware` answers 413 to a declared ``Content-Length`` over the limit before a
  byte of the body is read, and stops a body without one (chunked) as soon as it streams past it;
- :func:`read_body` / :func:`read_json` read a request body within a limit; :func:`parse_json` refuses
  nesting deeper than ``max_depth`` without recursing, NaN/Infinity, NUL characters and lone
  surrogates (PostgreSQL and UTF-8 refuse them later, as a 500), and a body of the wrong JSON type;
- :func:`path_id` checks an id in a path against the format this codebase gives that kind of id;
- :func:`exception_handlers` render every 4xx — routing's 404/405, ``HTTPException``, asyncpg's
  data errors (a NUL byte, text the database encoding cannot hold) — as ``{"error", "detail"}``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import asyncpg
import structlog
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

#: The largest request body any door takes (a door may set a smaller limit of its own).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: The deepest JSON nesting a door accepts (the API's own documents are a few levels deep).
DEFAULT_MAX_JSON_DEPTH = 32

#: The ids that appear in paths, in the formats this codebase gives them. Customers and invoices are
#: Stripe objects (``cus_…``, ``in_…``: letters, digits, underscores); cases are derived from their
#: contact (``case_`` + 20 hex, ``services/tier3_handoff/domain.case_id_for``); contacts come from
#: gateways and doors (``sh_<hex>``, ``stripe:evt_…``, ``c-<uuid>``) and are bounded like the envelope's.
ID_PATTERNS: dict[str, re.Pattern[str]] = {
    "customer_id": re.compile(r"cus_[A-Za-z0-9_]{1,196}"),
    "invoice_id": re.compile(r"in_[A-Za-z0-9_]{1,197}"),
    "case_id": re.compile(r"case_[0-9a-f]{20}"),
    "approval_id": re.compile(r"apr_[0-9a-f]{20}"),
    "confirmation_id": re.compile(r"pc_[0-9a-f]{24}"),
    "contact_id": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}"),
}

_JSON_TYPES = {
    "application/json",
}
_STRUCTURE = re.compile(r'[\[\]{}"\\]')
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


# ----------------------------------------------------------------------------- typed 4xx answers
class HttpProblem(HTTPException):
    """A 4xx answer with a machine-readable code, rendered as ``{"error": code, "detail": detail}``."""

    def __init__(
        self, status_code: int, code: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status_code, detail, dict(headers) if headers else None)
        self.code = code


class PayloadTooLarge(HttpProblem):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "payload_too_large", f"the body is larger than {limit} bytes")
        self.limit = limit


class InvalidJson(HttpProblem):
    def __init__(self, detail: str) -> None:
        super().__init__(400, "invalid_json", detail)


class UnsupportedMediaType(HttpProblem):
    def __init__(self, content_type: str) -> None:
        super().__init__(415, "unsupported_media_type", f"send application/json, not {content_type[:80]!r}")


class InvalidId(HttpProblem):
    """A path id that cannot name anything: 404, like an id that names nothing."""

    def __init__(self, name: str) -> None:
        kind = name.removesuffix("_id")
        super().__init__(404, f"{kind}_not_found", f"that is not a valid {kind} id")


def problem_body(code: str, detail: str) -> dict[str, str]:
    return {"error": code, "detail": detail}


# ----------------------------------------------------------------------------- body size
def declared_length(headers: Mapping[str, str]) -> int | None:
    """The request's ``Content-Length``; a value that is not a decimal number is a 400."""
    raw = headers.get("content-length")
    if raw is None:
        return None
    if not raw.strip().isdigit() or not raw.strip().isascii():
        raise HttpProblem(400, "invalid_content_length", "Content-Length must be a decimal number")
    return int(raw)


class BodyLimitMiddleware:
    """ASGI middleware: 413 for a body over ``max_body_bytes``, declared or streamed."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            declared = declared_length(headers)
            if declared is not None and declared > self.max_body_bytes:
                raise PayloadTooLarge(self.max_body_bytes)
        except HttpProblem as exc:
            log.info("http.request.rejected", path=scope.get("path", "")[:200], error=exc.code)
            await _problem_response(exc)(scope, receive, send)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise PayloadTooLarge(self.max_body_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except PayloadTooLarge as exc:
            if started:
                raise
            log.info("http.request.rejected", path=scope.get("path", "")[:200], error=exc.code)
            await _problem_response(exc)(scope, receive, send)


async def read_body(request: Request, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> bytes:
    """The whole body; 413 on its ``Content-Length``, or as soon as it streams past ``max_bytes``."""
    declared = declared_length(request.headers)
    if declared is not None and declared > max_bytes:
        raise PayloadTooLarge(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


# ----------------------------------------------------------------------------- JSON
def json_depth_exceeds(text: str, max_depth: int) -> bool:
    """Whether ``text`` nests arrays/objects deeper than ``max_depth`` (a scan, no recursion)."""
    depth = 0
    in_string = False
    escaped_at = -1
    for match in _STRUCTURE.finditer(text):
        pos = match.start()
        if pos == escaped_at:
            continue
        char = match.group()
        if in_string:
            if char == "\\":
                escaped_at = pos + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} is out of range")
    return value


def unstorable_text(value: Any) -> bool:
    """Whether any string (or key) in a parsed JSON value holds a NUL or a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


_TYPE_NAMES: dict[type, str] = {dict: "object", list: "array", str: "string"}


def parse_json(raw: bytes, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH, expect: type | None = dict) -> Any:
    """Parse ``raw`` as UTF-8 JSON within ``max_depth`` levels; raises :class:`InvalidJson` (400)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson("the body is not UTF-8") from exc
    if json_depth_exceeds(text, max_depth):
        raise InvalidJson(f"the body nests deeper than {max_depth} levels")
    try:
        value = json.loads(text, parse_constant=_no_constants, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(f"the body is not JSON: {str(exc)[:120]}") from exc
    if expect is not None and not isinstance(value, expect):
        raise InvalidJson(f"the body must be a JSON {_TYPE_NAMES.get(expect, expect.__name__)}")
    if unstorable_text(value):
        raise InvalidJson("the body has a NUL character or an unpaired surrogate in a string")
    return value


_REQUIRED: Any = object()


async def read_json(
    request: Request,
    *,
    max_depth: int = DEFAULT_MAX_JSON_DEPTH,
    expect: type | None = dict,
    max_bytes: int = DEFAULT_MAX_BODY_BYTES,
    empty: Any = _REQUIRED,
) -> Any:
    """The request's JSON body, checked: size, media type, UTF-8, depth, type (``expect``), text.

    An empty body is ``empty`` when given, else a 400. A body declared as something other than JSON
    is a 415 (a body with no ``Content-Type`` is read as JSON).
    """
    body = await read_body(request, max_bytes)
    if not body.strip():
        if empty is _REQUIRED:
            raise InvalidJson("the body is empty; send a JSON object")
        return empty
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media, _, params = content_type.partition(";")
        media = media.strip().lower()
        charset = re.search(r"charset\s*=\s*\"?([A-Za-z0-9_\-]+)", params)
        if not (media in _JSON_TYPES or media.endswith("+json")) or (
            charset is not None and charset.group(1).lower() not in ("utf-8", "utf8")
        ):
            raise UnsupportedMediaType(content_type)
    return parse_json(body, max_depth=max_depth, expect=expect)


# ----------------------------------------------------------------------------- path ids
def check_id(name: str, value: str) -> str:
    """``value`` if it has the format of a ``name`` (see :data:`ID_PATTERNS`), else :class:`InvalidId`."""
    if not ID_PATTERNS[name].fullmatch(value):
        raise InvalidId(name)
    return value


def path_id(request: Request, name: str) -> str:
    """The path parameter ``name``, checked against its id format."""
    return check_id(name, str(request.path_params[name]))


# ----------------------------------------------------------------------------- error rendering
def _problem_response(exc: HTTPException) -> JSONResponse:
    code = getattr(exc, "code", None) or _slug(exc.status_code)
    return JSONResponse(problem_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


def _slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _problem_response(exc)


async def _on_bad_data(request: Request, exc: Exception) -> Response:
    """Input the database or the codecs cannot take (a NUL byte, an untranslatable character): 400."""
    log.info("http.request.bad_data", path=request.url.path[:200], error=type(exc).__name__)
    return JSONResponse(
        problem_body("invalid_input", "the request holds characters or values that cannot be stored"),
        status_code=400,
    )


async def _on_unhandled(request: Request, exc: Exception) -> Response:
    log.error("http.request.failed", path=request.url.path[:200], error=f"{type(exc).__name__}: {exc}"[:300])
    return JSONResponse(problem_body("internal_error", "something went wrong on our side"), status_code=500)


Handler = Callable[[Request, Exception], Awaitable[Response]]


def exception_handlers() -> dict[Any, Handler]:
    """For ``Starlette(exception_handlers=...)``: every error answer is JSON."""
    return {
        HTTPException: _on_http_exception,
        asyncpg.exceptions.DataError: _on_bad_data,
        UnicodeError: _on_bad_data,
        RecursionError: _on_bad_data,
        Exception: _on_unhandled,
    }


def middleware(max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> list[Middleware]:
    """For ``Starlette(middleware=...)``."""
    return [Middleware(BodyLimitMiddleware, max_body_bytes=max_body_bytes)]
